"""Mouse-to-human gene orthologs for the ISH genes, to set mouse maps beside HMBA's human genes.

The table pairs each mouse ISH gene (Allen acronym and Entrez id) with its human homolog(s)
as the Allen API lists them (``homologous_human_ID``; HomoloGene-derived), and names the human
gene with the HMBA-BG 10X aligned gene table (``NCBIGene:<id>`` -> symbol). Matching by
upper-cased symbol agrees for about 80% of genes only (``Zfp161`` is ``ZBTB14``), so use this
table rather than the symbols' case.

References
----------
Allen Mouse Brain Atlas API (Gene.homologous genes); snapshot of all 26,061 ISH experiments in
DJFernandes/ABIgeneRMINC ``inst/extdata/ABI_genes.csv``; HMBA-BG gene table
``gene_HMBA-10xMultiome-BG-Aligned``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import pandas as pd

from ..errors import ParameterError, ParameterTypeError

__all__ = ["human_orthologs", "to_human"]


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    path = resources.files("hmba_toolkit.datasets").joinpath("data", "mouse_human_homologs.csv.gz")
    with path.open("rb") as fh:
        t = pd.read_csv(fh, compression="gzip", dtype={"mouse_symbol": str, "human_symbol": str})
    for col in ("mouse_entrez_id", "human_entrez_id"):
        t[col] = pd.to_numeric(t[col], errors="coerce").astype("Int64")
    return t


def human_orthologs(mouse_genes: Iterable[str] | None = None, *, one_to_one: bool = True) -> pd.DataFrame:
    """Human orthologs of mouse genes (15,977 pairs for the ISH genes).

    Parameters
    ----------
    mouse_genes
        Mouse gene symbols (``"Pdyn"``); None returns every pair. Genes without a human
        homolog are left out.
    one_to_one
        Keep only pairs where the mouse gene has one human homolog and that human gene one
        mouse gene (what a cross-species comparison of single genes needs).

    Returns
    -------
    pandas.DataFrame
        ``mouse_symbol, mouse_entrez_id, human_entrez_id, human_symbol`` (``human_symbol`` is
        NaN when the human gene is not in the HMBA-BG aligned gene table), in the order of
        ``mouse_genes`` (or sorted by mouse symbol).

    Examples
    --------
    >>> human_orthologs(["Pdyn", "Zfp161", "Drd2"])[["mouse_symbol", "human_symbol"]]
      mouse_symbol human_symbol
    0         Pdyn         PDYN
    1       Zfp161       ZBTB14
    2         Drd2         DRD2
    """
    t = _table()
    if one_to_one:
        t = t[~t["mouse_symbol"].duplicated(keep=False) & ~(t["human_entrez_id"].duplicated(keep=False))]
    if mouse_genes is None:
        return t.reset_index(drop=True)
    if isinstance(mouse_genes, str):
        raise ParameterTypeError("mouse_genes must be a list of symbols, not one string")
    genes = pd.Index(list(mouse_genes))
    out = t.set_index("mouse_symbol").reindex(genes.intersection(t["mouse_symbol"], sort=False))
    return out.rename_axis("mouse_symbol").reset_index()


def to_human(data: pd.Series | pd.DataFrame, axis: str = "auto") -> pd.Series | pd.DataFrame:
    """Relabel mouse genes with their one-to-one human orthologs, dropping genes without one.

    Parameters
    ----------
    data
        A Series indexed by mouse symbols (a ranking), or a DataFrame whose columns (a
        structure x gene table) or index are mouse symbols.
    axis
        ``"index"`` or ``"columns"`` for DataFrames; ``"auto"`` uses the columns of a DataFrame
        and the index of a Series.

    Returns
    -------
    Series or DataFrame
        The same values labelled by human symbols (HMBA-BG aligned genes); the attrs record
        how many genes were ``dropped``.

    Examples
    --------
    >>> import pandas as pd
    >>> to_human(pd.Series({"Pdyn": 4.4, "Zfp161": 0.1, "Foxp1": 3.3}))
    PDYN      4.4
    ZBTB14    0.1
    dtype: float64
    """
    if axis == "auto":
        axis = "columns" if isinstance(data, pd.DataFrame) else "index"
    if axis not in ("index", "columns") or (axis == "columns" and not isinstance(data, pd.DataFrame)):
        raise ParameterError(f"axis must be 'index' or 'columns' (columns only for a DataFrame), not {axis!r}")
    labels = data.columns if axis == "columns" else data.index
    pairs = human_orthologs(list(dict.fromkeys(labels))).dropna(subset=["human_symbol"])
    mapping = dict(zip(pairs["mouse_symbol"], pairs["human_symbol"]))
    keep = labels.isin(list(mapping))
    out = data.loc[:, keep] if axis == "columns" else data.loc[keep]
    out = out.rename(columns=mapping) if axis == "columns" else out.rename(index=mapping)
    out.attrs["dropped"] = int((~keep).sum())
    if len(labels) and not keep.any():
        from .._compat import warn

        warn(f"to_human: none of the {len(labels)} labels ({list(labels[:3])}...) is a mouse gene with a one-to-one human "
             "ortholog in the Allen homolog table; the result is empty (are these mouse gene symbols?)")
    return out
