"""Read parts of an Allen-style h5ad (cells x genes CSR, gzip chunks) without loading it whole.

Allen's release files store ``X`` as a CSR group (``data``, ``indices``, ``indptr``),
``obs`` indexed by ``cell_label`` and ``var`` indexed by ``gene_identifier`` with a
``gene_symbol`` column. Reading a subset of cells touches only the ``indptr`` ranges
of those cells; a subset of genes is applied after decompression of those rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem

from .._names import did_you_mean
from ..errors import DataFormatError, MissingFileError

__all__ = ["read_h5ad_subset", "read_h5ad_obs_names", "read_h5ad_var", "gene_positions", "open_h5ad"]


def open_h5ad(path: str | os.PathLike) -> h5py.File:
    """Open an h5ad read-only, or raise an error that says what is wrong with the file.

    Raises
    ------
    MissingFileError
        The file does not exist.
    DataFormatError
        It is not a readable HDF5 file (truncated by an interrupted download, or not an h5ad).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: the h5ad file does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(f"{path}: not a readable HDF5/h5ad file (truncated or corrupt? download it again): {exc}") from exc


def _check_csr(path: Path, f: h5py.File) -> h5py.Group:
    if "X" not in f:
        raise DataFormatError(f"{path}: no 'X' matrix")
    X = f["X"]
    enc = X.attrs.get("encoding-type", "") if isinstance(X, h5py.Group) else "array"
    if enc != "csr_matrix":
        hint = " (gene-major; if rows are genes, the file is genes x cells: transpose it, e.g. adata.T, and save again)" if enc == "csc_matrix" else ""
        raise DataFormatError(f"{path}: X is stored as {enc!r}{hint}; Allen files are 'csr_matrix' (cells x genes)")
    return X


def read_h5ad_obs_names(path: str | os.PathLike) -> pd.Index:
    """The ``cell_label`` index of an h5ad file, read without touching ``X`` or the other ``obs`` columns."""
    path = Path(path)
    with open_h5ad(path) as f:
        obs = f["obs"]
        name = obs.attrs.get("_index", "_index")
        return pd.Index(read_elem(obs[name]), name=None if name == "_index" else name)


def read_h5ad_var(path: str | os.PathLike) -> pd.DataFrame:
    """The ``var`` table (``gene_identifier`` index, ``gene_symbol``, ...) of an h5ad file."""
    path = Path(path)
    with open_h5ad(path) as f:
        return read_elem(f["var"])


def gene_positions(
    var: pd.DataFrame,
    genes: Sequence[str],
    gene_column: str | None,
    source: str | os.PathLike,
    *,
    obs_index: pd.Index | None = None,
) -> np.ndarray:
    """Column positions of ``genes`` in ``var`` (its index, or ``var[gene_column]``), or a clear error.

    Unknown genes get the closest known names in the message; if they are found among the cell
    labels instead (``obs_index``), the matrix is reported as stored genes x cells. Names that
    several rows share (blank codewords without a symbol) must be asked for by identifier.

    Examples
    --------
    >>> var = pd.DataFrame({"gene_symbol": ["DRD1", "DRD2"]}, index=["NCBIGene:1812", "NCBIGene:1813"])
    >>> gene_positions(var, ["DRD2"], "gene_symbol", "x.h5ad").tolist()
    [1]
    """
    if isinstance(genes, str):
        raise DataFormatError(f"{source}: genes must be a list of names, not the string {genes!r}")
    genes = list(genes)
    if gene_column is not None and gene_column not in var.columns:
        raise DataFormatError(f"{source}: var has no column {gene_column!r}; it has {list(var.columns)}")
    keys = var.index if gene_column is None else pd.Index(var[gene_column].astype(str))
    where = "var index" if gene_column is None else f"var column {gene_column!r}"
    dup = keys.duplicated(keep=False)
    ambiguous = sorted(set(genes) & set(keys[dup]))
    if ambiguous:
        raise DataFormatError(f"{source}: genes {ambiguous} match several rows of {where}; ask by identifier")
    unique_pos = np.flatnonzero(~dup)
    hit = keys[unique_pos].get_indexer(pd.Index(genes))
    if (hit < 0).any():
        missing = [g for g, c in zip(genes, hit) if c < 0]
        if obs_index is not None and all(g in obs_index for g in missing):
            raise DataFormatError(f"{source}: genes {missing[:5]} are row labels, not columns: the matrix looks stored "
                                  "genes x cells; Allen files are cells x genes (transpose it, e.g. adata.T, and save again)")
        known = list(dict.fromkeys(keys.astype(str)))
        hint = did_you_mean(missing, known)
        other = var.index.astype(str) if gene_column is not None else (
            pd.Index(var["gene_symbol"].astype(str)) if "gene_symbol" in var.columns else None)
        if other is not None and all(g in set(other) for g in missing):  # identifiers given as symbols, or the reverse
            kind = "gene identifiers (the var index): pass gene_column=None" if gene_column is not None else \
                "gene symbols: pass gene_column='gene_symbol'"
            hint = f"{missing[:3]} are {kind}"
        raise DataFormatError(f"{source}: genes not found in {where}: {missing[:10]}" + (f" ({hint})" if hint else ""))
    return unique_pos[hit]


def _row_runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Split sorted row indices into (start_row, stop_row, position) runs of consecutive rows."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [rows.size]])
    return [(int(rows[a]), int(rows[b - 1]) + 1, int(a)) for a, b in zip(starts, stops)]


def read_h5ad_subset(
    path: str | os.PathLike,
    cells: Sequence[str] | pd.Index | None = None,
    genes: Sequence[str] | None = None,
    *,
    gene_column: str | None = None,
    missing_cells: str = "raise",
) -> ad.AnnData:
    """Read selected cells and genes of a CSR h5ad into memory as AnnData.

    Parameters
    ----------
    path
        An Allen-style ``*-raw.h5ad`` or ``*-log2.h5ad``.
    cells
        ``cell_label`` values to read, in the order wanted; ``None`` reads every cell.
        Labels absent from the file raise :class:`~hmba_toolkit.errors.DataFormatError`.
    genes
        Gene identifiers (``var`` index) or, with ``gene_column="gene_symbol"``,
        symbols; ``None`` keeps every gene.
    gene_column
        ``var`` column to match ``genes`` against; the index when ``None``.
    missing_cells
        ``"raise"`` (default) or ``"skip"``: leave out requested cells that the file does not
        hold (Allen's matrices and ``cell_metadata`` do not always list the same cells).

    Returns
    -------
    anndata.AnnData
        ``X`` as CSR with the file's dtype, ``obs``/``var`` restricted to the selection.

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> p = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> a = read_h5ad_subset(p, genes=["DRD1", "DRD2"], gene_column="gene_symbol")
    >>> a.n_vars
    2
    """
    path = Path(path)
    with open_h5ad(path) as f:
        X = _check_csr(path, f)
        obs = read_elem(f["obs"])
        var = read_elem(f["var"])
        n_obs, n_var = (int(v) for v in X.attrs["shape"])
        if cells is None:
            rows = np.arange(n_obs)
        else:
            if missing_cells not in ("raise", "skip"):
                raise DataFormatError(f"missing_cells must be 'raise' or 'skip', not {missing_cells!r}")
            pos = obs.index.get_indexer(pd.Index(cells))
            if (pos < 0).any() and missing_cells == "raise":
                missing = list(pd.Index(cells)[pos < 0][:5])
                raise DataFormatError(f"{path}: {int((pos < 0).sum())} requested cells are not in the file, e.g. {missing}")
            rows = pos[pos >= 0]
        cols = np.arange(n_var) if genes is None else gene_positions(var, genes, gene_column, path, obs_index=obs.index)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        indptr = X["indptr"]
        data_ds, idx_ds = X["data"], X["indices"]
        col_map = np.full(n_var, -1, dtype=np.int64)
        col_map[cols] = np.arange(cols.size)
        pieces_data, pieces_idx = [], []
        for start, stop, at in _row_runs(sorted_rows):
            ptr = indptr[start : stop + 1].astype(np.int64)
            d = data_ds[ptr[0] : ptr[-1]]
            j = idx_ds[ptr[0] : ptr[-1]].astype(np.int64)
            row_of = np.repeat(np.arange(stop - start), np.diff(ptr))
            keep = col_map[j] >= 0
            pieces_data.append(d[keep])
            pieces_idx.append(np.stack([row_of[keep] + at, col_map[j[keep]]]))
        dtype = data_ds.dtype
    if pieces_data:
        data = np.concatenate(pieces_data)
        ij = np.concatenate(pieces_idx, axis=1)
    else:
        data, ij = np.zeros(0, dtype=dtype), np.zeros((2, 0), dtype=np.int64)
    # rows were read in sorted order: the k-th sorted row is the order[k]-th row asked for
    mat = sp.csr_matrix((data, (order[ij[0]], ij[1])), shape=(rows.size, cols.size), dtype=dtype)
    mat.sort_indices()
    out = ad.AnnData(X=mat, obs=obs.iloc[rows].copy(), var=var.iloc[cols].copy())
    out.obs.index.name = obs.index.name
    out.var.index.name = var.index.name
    return out
