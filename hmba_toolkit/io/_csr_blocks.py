"""Row blocks of an Allen-style CSR h5ad, read as contiguous ranges of ``data``/``indices``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._checks import check_count
from ..errors import DataFormatError
from ..io.h5ad import open_h5ad


@dataclass(frozen=True)
class CsrFile:
    """Shape, layout and row pointer of a CSR matrix in an h5ad file (read once, cheap)."""

    path: Path
    key: str
    n_obs: int
    n_var: int
    indptr: np.ndarray
    dtype: np.dtype

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])


def open_csr(path: str | os.PathLike, layer: str | None = None) -> CsrFile:
    """Inspect the CSR ``X`` (or ``layers/<layer>``) of an h5ad without reading its values."""
    path = Path(path)
    key = "X" if layer is None else f"layers/{layer}"
    with open_h5ad(path) as f:
        if key not in f:
            raise DataFormatError(f"{path}: no {key!r} matrix")
        g = f[key]
        enc = g.attrs.get("encoding-type", "") if isinstance(g, h5py.Group) else "array"
        if enc != "csr_matrix":
            raise DataFormatError(f"{path}: {key} is stored as {enc!r}; streaming needs 'csr_matrix' (cells x genes), as Allen writes")
        n_obs, n_var = (int(v) for v in g.attrs["shape"])
        indptr = g["indptr"][:].astype(np.int64)
        dtype = g["data"].dtype
    if indptr.size != n_obs + 1 or (np.diff(indptr) < 0).any():
        raise DataFormatError(f"{path}: {key}/indptr is not a valid row pointer for {n_obs} rows")
    return CsrFile(path, key, n_obs, n_var, indptr, dtype)


def row_blocks(indptr: np.ndarray, chunk_nnz: int, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
    """Split rows [start, stop) into consecutive ranges holding at most ``chunk_nnz`` values each.

    A single row with more values than ``chunk_nnz`` forms its own block.
    """
    chunk_nnz = check_count(chunk_nnz, "chunk_nnz")
    stop = len(indptr) - 1 if stop is None else stop
    blocks, a = [], start
    while a < stop:
        b = int(np.searchsorted(indptr, indptr[a] + chunk_nnz, side="right")) - 1
        b = min(max(b, a + 1), stop)
        blocks.append((a, b))
        a = b
    return blocks


def iter_blocks(csr: CsrFile, blocks) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(start, stop, data, indices, local_ptr)`` for each row block, one file handle."""
    with h5py.File(csr.path, "r") as f:
        g = f[csr.key]
        data_ds, idx_ds = g["data"], g["indices"]
        for a, b in blocks:
            lo, hi = int(csr.indptr[a]), int(csr.indptr[b])
            yield a, b, data_ds[lo:hi], idx_ds[lo:hi].astype(np.int64, copy=False), csr.indptr[a:b + 1] - lo


def csr_rows(X, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``data``, ``indices`` and the row pointer (from 0) of rows [a, b) of an in-memory CSR matrix, as views."""
    lo, hi = int(X.indptr[a]), int(X.indptr[b])
    return X.data[lo:hi], X.indices[lo:hi], X.indptr[a:b + 1] - lo


def memory_blocks(X, chunk_nnz: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Row blocks of an in-memory matrix (any sparse format or dense) in the layout of :func:`iter_blocks`."""
    X = X if sp.isspmatrix_csr(X) or isinstance(X, sp.csr_array) else sp.csr_matrix(X)
    for a, b in row_blocks(X.indptr, chunk_nnz):
        data, indices, ptr = csr_rows(X, a, b)
        yield a, b, data, indices.astype(np.int64, copy=False), ptr


def describe(path: str | os.PathLike, layer: str | None = None) -> pd.Series:
    """What a streaming pass over an h5ad will cost, read from its headers in a second.

    Returns
    -------
    pandas.Series
        ``n_obs, n_var, nnz, density, data_dtype, index_dtype, chunk_values, compression,
        file_gb, uncompressed_gb`` (data + indices), ``bytes_per_value`` (on disk).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> p = AbcCache.from_demo().get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> describe(p)["compression"]
    'gzip'

    References
    ----------
    Allen Institute ``cell_type_mapper`` ``amalgamate_csr_to_x`` (gzip level 4, 20,000-value chunks).
    """
    csr = open_csr(path, layer)
    with h5py.File(csr.path, "r") as f:
        g = f[csr.key]
        data, idx = g["data"], g["indices"]
        uncompressed = csr.nnz * (data.dtype.itemsize + idx.dtype.itemsize)
        info = {
            "n_obs": csr.n_obs, "n_var": csr.n_var, "nnz": csr.nnz,
            "density": csr.nnz / max(1, csr.n_obs * csr.n_var),
            "data_dtype": str(data.dtype), "index_dtype": str(idx.dtype),
            "chunk_values": int(data.chunks[0]) if data.chunks else 0,
            "compression": str(data.compression) if data.compression else "none",
            "file_gb": csr.path.stat().st_size / 1e9, "uncompressed_gb": uncompressed / 1e9,
            "bytes_per_value": csr.path.stat().st_size / max(1, csr.nnz),
        }
    return pd.Series(info, name=csr.path.name, dtype=object)
