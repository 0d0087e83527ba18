"""Values out of AnnData objects as tidy tables: genes and ``obs`` columns by cell.

:func:`obs_df` is scanpy's ``sc.get.obs_df`` for the Allen matrices, whose ``var_names`` are gene identifiers
(Ensembl, NCBI Gene, panel names) and whose symbols sit in a ``var`` column: ask for ``"PPP1R1B"`` and get its
column whichever the file uses. Unknown names get the closest names in the error message.

References
----------
Wolf FA, Angerer P, Theis FJ (2018) SCANPY. Genome Biol 19:15 (``get.obs_df``, the model of this module).
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._checks import check_anndata, check_layer
from ._names import closest_names
from .errors import NotFoundError, ParameterError, ParameterTypeError

__all__ = ["GENE_COLUMNS", "gene_positions", "obs_df"]

#: ``var`` columns searched for gene symbols when ``gene_column`` is not given (in this order).
GENE_COLUMNS = ("gene_symbol", "gene_symbols", "feature_name", "gene_name")


def _closest(name: str, choices: Sequence[str], n: int = 3) -> str:
    close = closest_names(name, choices, n=n)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def gene_positions(adata: ad.AnnData, genes: Sequence[str], gene_column: str | None = None) -> np.ndarray:
    """Column positions of ``genes`` in ``adata``, matched on ``var_names`` or on ``var[gene_column]``.

    With ``gene_column=None`` a name is looked up in ``var_names`` first, then in the first of
    :data:`GENE_COLUMNS` present. A name held by several columns (duplicated symbols) is an error naming them.

    Examples
    --------
    >>> a = ad.AnnData(np.zeros((1, 2)), var=pd.DataFrame({"gene_symbol": ["DRD1", "DRD2"]}, index=["E1", "E2"]))
    >>> gene_positions(a, ["DRD2", "E1"]).tolist()
    [1, 0]
    >>> gene_positions(a, ["Drd1"])
    Traceback (most recent call last):
    ...
    hmba_toolkit.errors.NotFoundError: gene 'Drd1' is in neither var_names nor var['gene_symbol']; did you mean 'DRD1'?
    """
    if isinstance(genes, str):
        raise ParameterTypeError(f"genes must be a list of names, not one string; use [{genes!r}]")
    if gene_column is not None and gene_column not in adata.var:
        raise ParameterError(f"gene_column {gene_column!r} is not a var column; columns: {list(adata.var.columns)}")
    column = gene_column or next((c for c in GENE_COLUMNS if c in adata.var), None)
    names = pd.Index(adata.var_names.astype(str))
    symbols = pd.Index(adata.var[column].astype(str)) if column else None
    out = []
    for g in genes:
        g = str(g)
        hits = np.flatnonzero(names == g) if gene_column is None else np.array([], dtype=int)
        if hits.size == 0 and symbols is not None:
            hits = np.flatnonzero(symbols == g)
        if hits.size == 0:
            where = ("not in var_names" if symbols is None else
                     f"not in var[{column!r}]" if gene_column else f"in neither var_names nor var[{column!r}]")
            pool = list(names) + (list(symbols) if symbols is not None else [])
            raise NotFoundError(f"gene {g!r} is {where}{_closest(g, pool)}")
        if hits.size > 1:
            raise ParameterError(f"gene {g!r} names {hits.size} columns ({list(names[hits])}); ask for them by var_names")
        out.append(int(hits[0]))
    return np.asarray(out, dtype=np.int64)


def obs_df(
    adata: ad.AnnData,
    keys: Sequence[str] = (),
    *,
    obs_keys: Sequence[str] = (),
    gene_column: str | None = None,
    layer: str | None = None,
) -> pd.DataFrame:
    """Genes and ``obs`` columns as one cells x keys DataFrame (index: ``obs_names``).

    Parameters
    ----------
    adata
        Cells x genes, e.g. from :meth:`hmba_toolkit.io.AbcCache.read_expression`.
    keys
        Gene names (``var_names`` or symbols, see :func:`gene_positions`) or ``obs`` columns, in the order wanted.
    obs_keys
        More ``obs`` columns, placed after ``keys`` (scanpy's argument).
    gene_column
        The ``var`` column holding gene symbols; None searches :data:`GENE_COLUMNS`.
    layer
        A layer instead of ``X``.

    Returns
    -------
    pandas.DataFrame
        One column per key, named as asked; expression as float (``X``'s dtype), ``obs`` columns as stored.

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> expr = cache.read_expression("HMBA-10xMultiome-BG-Aligned", genes=["PPP1R1B", "AQP4"], obs=["Class"])
    >>> df = obs_df(expr, ["PPP1R1B", "AQP4", "Class"])
    >>> df.groupby("Class", observed=True)["PPP1R1B"].mean().idxmax()
    'CN LGE GABA'
    """
    if isinstance(keys, str) or isinstance(obs_keys, str):
        raise ParameterTypeError("keys and obs_keys must be lists of names, not one string")
    check_anndata(adata, "obs_df")
    check_layer(adata, layer)
    genes = [k for k in keys if k not in adata.obs.columns]
    for k in obs_keys:
        if k not in adata.obs.columns:
            raise NotFoundError(f"obs_keys: {k!r} is not an obs column{_closest(k, list(adata.obs.columns))}")
    cols = gene_positions(adata, genes, gene_column) if genes else np.array([], dtype=np.int64)
    X = adata.layers[layer] if layer else adata.X
    block = X[:, cols]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    values = dict(zip(genes, block.T))
    # obs columns keep their dtype (categories, colours as strings); genes come as X's dtype
    out = {k: adata.obs[k].values if k in adata.obs.columns else values[k] for k in [*keys, *obs_keys]}
    return pd.DataFrame(out, index=adata.obs_names.copy())
