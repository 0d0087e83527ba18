"""Normalization and QC of single-cell and spatial counts, as the Allen release does it.

The HMBA-BG ``-log2.h5ad`` matrices are computed from the ``-raw.h5ad`` counts per cell as
``log2(x / sum(x) * scale + 1)`` in float64 and stored as float32, with ``scale = 1e6``
(counts per million, 10X) or ``scale = 1e3`` (counts per thousand, MERSCOPE/Xenium).
:func:`log2_cpm` and :func:`log2_cpt` reproduce the stored files exactly.

Reference: Allen Institute ``abc_atlas_access`` release builder (``abc_validator/anndata_utils.py``:
``np.log2(x / x.sum(axis=1) * norm_value + 1).astype('float32')``).
"""

from __future__ import annotations


from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._arrays import has_fractions
from ._compat import LegacyTuple, warn
from ._log2cpm import CPM, CPT, LOG2CPM_LABEL, log2_per_total, refuse_normalized
from .errors import DataFormatError, ParameterError, ParameterTypeError

__all__ = ["counts_per", "cpm", "log2_normalize", "log2_cpm", "log2_cpt", "qc_metrics", "QcMetrics"]


def _as_csr(X) -> sp.csr_matrix:
    if sp.issparse(X):
        return sp.csr_matrix(X)
    return sp.csr_matrix(np.asarray(X))


def counts_per(X, scale: float) -> sp.csr_matrix:
    """``x / rowsum(x) * scale`` of a cells x genes count matrix (float64 CSR; empty cells stay zero).

    ``scale=1e6`` gives counts per million (CPM), ``1e3`` counts per thousand (CPT).
    """
    if scale <= 0:
        raise DataFormatError(f"scale must be positive, got {scale}")
    X = _checked_counts(X)
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    vals = X.data.astype(np.float64) / totals[rows] * scale
    return sp.csr_matrix((vals, X.indices.copy(), X.indptr.copy()), shape=X.shape)


def _checked_counts(X) -> sp.csr_matrix:
    X = _as_csr(X)
    if X.nnz and not np.isfinite(X.data).all():
        bad = int((~np.isfinite(X.data)).sum())
        row = int(np.searchsorted(X.indptr, np.flatnonzero(~np.isfinite(X.data))[0], side="right") - 1)
        raise DataFormatError(f"counts hold {bad} NaN or infinite values (first in row {row}); raw counts are finite integers")
    if X.nnz and np.asarray(X.data).min() < 0:
        raise DataFormatError("counts must be non-negative")
    return X


def cpm(adata: ad.AnnData) -> ad.AnnData:
    """A copy of ``adata`` with ``X`` = counts per million (float64, not logged)."""
    _check_counts(adata, "cpm")
    out = adata.copy()
    out.X = counts_per(adata.X, CPM)
    out.uns["normalization"] = "CPM"
    return out


def log2_normalize(X, scale: float) -> sp.csr_matrix:
    """``log2(x / rowsum(x) * scale + 1)`` of a cells x genes count matrix, as float32 CSR.

    Cells with no counts stay all-zero (their rows have no entries). Computed in float64
    on the non-zeros only, then cast, which is bit-for-bit what Allen's release writer does.

    Examples
    --------
    >>> import numpy as np
    >>> log2_normalize(np.array([[1, 3]]), 4).toarray()
    array([[1., 2.]], dtype=float32)
    """
    if scale <= 0:
        raise DataFormatError(f"scale must be positive, got {scale}")
    X = _checked_counts(X)
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    vals = log2_per_total(X.data.astype(np.float64), totals[rows], scale)
    out = sp.csr_matrix((vals.astype(np.float32), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    out.eliminate_zeros()
    return out


def _check_counts(adata: ad.AnnData, what: str) -> None:
    """Refuse data already normalised (``uns['normalization']``); warn on non-integer values."""
    if not isinstance(adata, ad.AnnData):
        raise ParameterTypeError(f"{what} takes an AnnData (cells x genes, raw counts), not {type(adata).__name__}"
                                 + ("; read the file first (io.read_h5ad_subset)" if isinstance(adata, str) else ""))
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ParameterError(f"{what}: the AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes)")
    refuse_normalized(adata.uns, what)
    if has_fractions(adata.X):
        warn(f"{what} expects raw counts; X holds non-integer values (already normalised?)")


def _normalized(adata: ad.AnnData, scale: float, label: str, name: str) -> ad.AnnData:
    _check_counts(adata, name)
    out = adata.copy()
    out.X = log2_normalize(adata.X, scale)
    empty = np.asarray(out.X.getnnz(axis=1) == 0)
    if empty.any():
        warn(f"{name}: {int(empty.sum())} of {adata.n_obs} cells have no counts (e.g. {list(adata.obs_names[empty][:3])}); "
             "their values stay 0: filter them out first")
    out.uns["normalization"] = label
    return out


def log2_cpm(adata: ad.AnnData) -> ad.AnnData:
    """A copy of ``adata`` with ``X`` = log2(CPM + 1) (the 10X ``-log2.h5ad`` convention).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> raw = AbcCache.from_demo().read_expression("HMBA-10xMultiome-BG-Aligned", normalization="raw", genes=None)
    >>> log2_cpm(raw).uns["normalization"]
    'log2(CPM+1)'
    """
    return _normalized(adata, CPM, LOG2CPM_LABEL, "log2_cpm")


def log2_cpt(adata: ad.AnnData) -> ad.AnnData:
    """A copy of ``adata`` with ``X`` = log2(CPT + 1), counts per thousand (the spatial convention)."""
    return _normalized(adata, CPT, "log2(CPT+1)", "log2_cpt")


@dataclass(frozen=True, repr=False)
class QcMetrics(LegacyTuple):
    """Per-cell (``cells``) and per-gene (``genes``) QC tables of :func:`qc_metrics`."""

    cells: pd.DataFrame
    genes: pd.DataFrame
    _legacy_fields = ("cells", "genes")

    def __repr__(self) -> str:
        return f"QcMetrics(cells: {len(self.cells)} rows, genes: {len(self.genes)} rows)"


def qc_metrics(adata: ad.AnnData, blank_prefix: str = "Blank-") -> QcMetrics:
    """Per-cell and per-gene QC summaries of a raw count matrix.

    Returns
    -------
    QcMetrics
        Two tables, ``.cells`` and ``.genes``:

    cells : pandas.DataFrame
        Index ``adata.obs_names``; ``total_counts``, ``n_genes`` (genes with a count),
        ``top_gene_fraction`` (share of the most-counted gene), ``blank_counts`` and
        ``pct_blank`` (MERSCOPE blank codewords, 0 when the panel has none).
    genes : pandas.DataFrame
        Index ``adata.var_names``; ``total_counts``, ``n_cells`` (cells with a count),
        ``fraction_cells``, ``mean_counts``.

    Examples
    --------
    >>> import numpy as np
    >>> raw = ad.AnnData(np.array([[1, 0, 3], [0, 0, 2]]), var=pd.DataFrame(index=["A", "B", "Blank-1"]))
    >>> qc = qc_metrics(raw)
    >>> qc.cells["pct_blank"].tolist(), qc.genes["n_cells"].tolist()
    ([75.0, 100.0], [1, 0, 2])
    """
    if not isinstance(adata, ad.AnnData):
        raise ParameterTypeError(f"qc_metrics takes an AnnData (cells x genes, raw counts), not {type(adata).__name__}")
    if not isinstance(blank_prefix, str):
        raise ParameterTypeError(f"blank_prefix must be a string (the blank codewords' name prefix), not {blank_prefix!r}")
    X = _as_csr(adata.X)
    if X.nnz and not np.allclose(X.data, np.round(X.data)):
        raise DataFormatError("qc_metrics expects raw integer counts (use the '-raw.h5ad' matrix)")
    total = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    n_genes = np.diff(X.indptr)
    top = np.zeros(X.shape[0])
    if X.nnz:
        nonempty = n_genes > 0
        top[nonempty] = np.maximum.reduceat(X.data, X.indptr[:-1][nonempty]) / total[nonempty]
    symbols = adata.var["gene_symbol"].astype(str) if "gene_symbol" in adata.var else pd.Series(adata.var_names, index=adata.var_names)
    blank = (adata.var_names.astype(str).str.startswith(blank_prefix) | symbols.str.startswith(blank_prefix).to_numpy())
    blank_counts = np.asarray(X[:, np.flatnonzero(blank)].sum(axis=1)).ravel() if blank.any() else np.zeros(X.shape[0])
    cells = pd.DataFrame({
        "total_counts": total, "n_genes": n_genes, "top_gene_fraction": np.round(top, 6),
        "blank_counts": blank_counts, "pct_blank": np.round(100 * blank_counts / np.maximum(total, 1), 6),
    }, index=adata.obs_names)
    Xc = X.tocsc()
    gene_total = np.asarray(Xc.sum(axis=0), dtype=np.float64).ravel()
    n_cells = np.diff(Xc.indptr)
    genes = pd.DataFrame({
        "total_counts": gene_total, "n_cells": n_cells,
        "fraction_cells": n_cells / max(X.shape[0], 1), "mean_counts": gene_total / max(X.shape[0], 1),
    }, index=adata.var_names)
    return QcMetrics(cells=cells, genes=genes)
