"""A gene-major copy of a cells x genes h5ad, so a few genes across all cells cost milliseconds.

Allen's matrices are cell-major (CSR, gzip chunks): one gene's values are scattered through every
row, so reading it means inflating the whole file (minutes for the 16 GB human file). The index
is a one-time transpose into uncompressed NumPy arrays (``.npy``, memory-mapped on read):

``gene_ptr`` (int64, genes + 1), ``cells`` (uint32 row of each value, sorted within a gene),
``values`` (uint16 when every value is an integer <= 65,535, as raw counts usually are, else
float32), ``cell_totals`` (per-cell sums, the log2 CPM size factors) and ``obs_names.txt`` (the cell
labels, so that a query never re-reads them from the h5ad; an opened index is reused within a process).
About 6 bytes per value for raw counts. The transpose is bucketed: one streaming pass appends each block's values to
per-gene-range bucket files, then each bucket is ordered in memory and written once, so memory
stays near ``memory_gb`` whatever the file's size. The index records the source's md5, size and
modification time; a changed source is detected and the index is ignored (or rebuilt).

References
----------
anndata issue 1430 (ivirshup: choose cell-major or gene-major for random access); cellxgene issue
739 (column slicing usable only on CSC); BPCells (Parks & Greenleaf, feature-major bit-packed
storage).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from tqdm import tqdm

from .._files import atomic_dir, md5sum
from .._log2cpm import CPM, LOG2CPM, check_normalization, log2_per_total, row_totals
from .._paths import data_home
from .._compat import renamed_parameters, warn
from ..errors import DataFormatError, ParameterError, ParameterTypeError
from .h5ad import gene_positions, read_h5ad_obs_names, read_h5ad_var
from ._csr_blocks import iter_blocks, open_csr, row_blocks

__all__ = ["build_gene_index", "GeneIndex", "default_index_path", "has_gene_index", "read_genes"]

INDEX_FORMAT = "hmba_toolkit.GeneIndex"
_VERSION = 1


#: Environment variable naming the folder of gene indexes (default ``<data home>/gene_indexes``).
INDEX_DIR_ENV = "HMBA_TOOLKIT_INDEX_DIR"


def default_index_path(path: str | os.PathLike, layer: str | None = None) -> Path:
    """Where the index of ``path`` lives unless told otherwise.

    ``$HMBA_TOOLKIT_INDEX_DIR/<file name>[.<layer>]-<hash of the file's absolute path>``, by default
    under the toolkit's data home, never inside the download cache (whose folders mirror the
    release manifest and are checked against it).

    Examples
    --------
    >>> default_index_path("/data/HMBA-10xMultiome-BG-Human-raw.h5ad").name
    'HMBA-10xMultiome-BG-Human-raw.h5ad-78c9301f481b'
    """
    path = Path(path).expanduser().absolute()
    root = os.environ.get(INDEX_DIR_ENV)
    if root:
        base = Path(root).expanduser()
    else:
        base = data_home() / "gene_indexes"
    key = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:12]
    layer_part = "" if layer is None else f".{layer}"
    return base / f"{path.name}{layer_part}-{key}"


@numba.njit(cache=True, nogil=True)
def _bucket_block(indices, data, ptr, first_row, per, n_buckets, cells_out, genes_out, values_out, totals):
    """Counting sort of one block's values by gene bucket (stable: rows stay in order); row totals too."""
    counts = np.zeros(n_buckets + 1, dtype=np.int64)
    for k in range(indices.size):
        counts[indices[k] // per + 1] += 1
    for b in range(n_buckets):
        counts[b + 1] += counts[b]
    pos = counts[:-1].copy()
    for r in range(ptr.size - 1):
        s = 0.0
        for k in range(ptr[r], ptr[r + 1]):
            j = indices[k]
            b = j // per
            p = pos[b]
            cells_out[p] = first_row + r
            genes_out[p] = j
            values_out[p] = data[k]
            pos[b] = p + 1
            s += data[k]
        totals[r] = s
    return counts


@numba.njit(cache=True, nogil=True)
def _order_bucket(genes, cells, values, first_gene, n_genes, cells_out, values_out):
    """Stable counting sort of one bucket by gene: each gene's cells stay in row order."""
    counts = np.zeros(n_genes + 1, dtype=np.int64)
    for k in range(genes.size):
        counts[genes[k] - first_gene + 1] += 1
    for g in range(n_genes):
        counts[g + 1] += counts[g]
    for k in range(genes.size):
        g = genes[k] - first_gene
        p = counts[g]
        cells_out[p] = cells[k]
        values_out[p] = values[k]
        counts[g] = p + 1


#: The cell labels of the source, one per line (UTF-8), so a query never re-reads them from the h5ad.
OBS_NAMES_FILE = "obs_names.txt"
_OPEN: OrderedDict[str, tuple[int, GeneIndex]] = OrderedDict()  # indexes opened in this process, newest last
_OPEN_MAX = 8


def _write_obs_names(names: pd.Index, path: Path) -> None:
    labels = names.astype(str)
    if labels.str.contains("\n", regex=False).any():
        return  # a label with a line break cannot be stored one per line: queries read the h5ad instead
    path.write_text("\n".join(labels), encoding="utf-8")


def _read_obs_names(path: Path, name: str | None) -> pd.Index:
    text = path.read_text(encoding="utf-8")
    labels = np.array(text.split("\n") if text else [], dtype=object)
    return pd.Index(labels, dtype=object, copy=False, name=name)


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class GeneIndex:
    """An opened gene-major index (arrays memory-mapped, nothing read yet).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from hmba_toolkit.io import AbcCache
    >>> p = AbcCache.from_demo().get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> out = build_gene_index(p, pathlib.Path(tempfile.mkdtemp()) / "aligned.index", progress=False)
    >>> idx = GeneIndex.open(out)
    >>> cells, values = idx.column(0)  # the cells with a count of gene 0, and the counts
    >>> bool(idx.matches(p)), cells.size == values.size
    (True, True)
    """

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self.gene_ptr = np.load(path / "gene_ptr.npy")
        self.cells = np.load(path / "cells.npy", mmap_mode="r")
        self.values = np.load(path / "values.npy", mmap_mode="r")
        self.cell_totals = np.load(path / "cell_totals.npy", mmap_mode="r")
        self._obs_names: pd.Index | None = None
        self._var: pd.DataFrame | None = None
        self._md5_checked: dict[tuple[str, int, int], bool] = {}

    def obs_names(self, source: str | os.PathLike) -> pd.Index:
        """The source's ``cell_label`` index: kept in the index (read once per process), else read from ``source``."""
        if self._obs_names is None:
            stored = self.path / OBS_NAMES_FILE
            names = _read_obs_names(stored, self.meta.get("obs_index_name")) if stored.is_file() else read_h5ad_obs_names(source)
            if len(names) != self.meta["n_obs"]:
                raise DataFormatError(f"{stored}: {len(names)} cell labels, the index has {self.meta['n_obs']} cells; rebuild it")
            self._obs_names = names
        return self._obs_names

    def var(self, source: str | os.PathLike) -> pd.DataFrame:
        """The source's ``var`` table (read once per process)."""
        if self._var is None:
            self._var = read_h5ad_var(source)
        return self._var

    @classmethod
    def open(cls, path: str | os.PathLike) -> GeneIndex:
        """Open an index; an index opened before in this process (and unchanged since) is reused with its caches."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise DataFormatError(f"{path}: not a gene index (no meta.json)")
        stamp = meta_path.stat().st_mtime_ns
        key = str(path.resolve())
        cached = _OPEN.get(key)
        if cached is not None and cached[0] == stamp:
            _OPEN.move_to_end(key)
            return cached[1]
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != INDEX_FORMAT:
            raise DataFormatError(f"{meta_path}: format {meta.get('format')!r}, expected {INDEX_FORMAT!r}")
        index = cls(path, meta)
        _OPEN[key] = (stamp, index)
        while len(_OPEN) > _OPEN_MAX:
            _OPEN.popitem(last=False)
        return index

    def matches(self, source: str | os.PathLike) -> bool:
        """Whether the index was built from this file as it is now (size and mtime, else md5, once per file state)."""
        source = Path(source)
        now = _stat(source)
        if now["size"] != self.meta["source_size"]:
            return False
        if now["mtime_ns"] == self.meta["source_mtime_ns"]:
            return True
        key = (str(source.resolve()), now["size"], now["mtime_ns"])
        if key not in self._md5_checked:  # touched but maybe identical: hash it once, not on every query
            self._md5_checked[key] = md5sum(source) == self.meta["source_md5"]
        return self._md5_checked[key]

    def column(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and values of gene (column) ``j``."""
        a, b = int(self.gene_ptr[j]), int(self.gene_ptr[j + 1])
        return np.asarray(self.cells[a:b]), np.asarray(self.values[a:b])


def _bucket_pass(csr, chunk_nnz, per, n_buckets, handles, counts, totals, flags, progress, name) -> None:
    """The one streaming pass of the index build: each block's values appended to their gene bucket."""
    bar = tqdm(total=csr.nnz, unit="value", unit_scale=True, desc=f"indexing {name}", disable=not progress, leave=False)
    with bar:
        for a, b, data, indices, ptr in iter_blocks(csr, row_blocks(csr.indptr, chunk_nnz)):
            n = indices.size
            cells_b, genes_b, vals_b = np.empty(n, np.uint32), np.empty(n, np.uint32), np.empty(n, np.float32)
            row_tot = np.zeros(b - a)
            edges = _bucket_block(indices, data, ptr, a, per, n_buckets, cells_b, genes_b, vals_b, row_tot)
            totals[a:b] = row_tot
            counts += np.bincount(indices, minlength=csr.n_var)
            if n:
                flags["integer"] = flags["integer"] and bool(np.all(vals_b == np.round(vals_b)))
                flags["vmax"] = max(flags["vmax"], float(vals_b.max()))
                flags["vmin"] = min(flags["vmin"], float(vals_b.min()))
            for k in range(n_buckets):
                lo, hi = int(edges[k]), int(edges[k + 1])
                if hi > lo:
                    h = handles[k]
                    cells_b[lo:hi].tofile(h[0])
                    genes_b[lo:hi].tofile(h[1])
                    vals_b[lo:hi].tofile(h[2])
            bar.update(int(ptr[-1]))


def build_gene_index(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    layer: str | None = None,
    chunk_nnz: int = 20_000_000,
    memory_gb: float = 1.0,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Transpose a cells x genes h5ad once into a gene-major index (see the module notes).

    Parameters
    ----------
    path
        An Allen-style CSR h5ad.
    out
        The index folder; default :func:`default_index_path` (what :func:`read_genes` looks for).
    layer
        Index ``layers/<layer>`` instead of ``X``.
    chunk_nnz
        Values read per block of the streaming pass.
    memory_gb
        Target memory of the second phase (sets the number of buckets).
    overwrite
        Rebuild even if an up-to-date index exists.

    Returns
    -------
    pathlib.Path
        The index folder (built under ``.<name>.partial`` beside it and renamed when complete).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> p = AbcCache.from_demo().get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> idx = build_gene_index(p, progress=False)
    >>> idx.name.startswith("HMBA-10xMultiome-BG-Aligned-raw.h5ad-")
    True

    References
    ----------
    anndata issue 1430; Parks B & Greenleaf W, BPCells (feature-major storage).
    """
    path = Path(path)
    out = default_index_path(path, layer) if out is None else Path(out)
    if out.exists() and not overwrite:
        try:
            if GeneIndex.open(out).matches(path):
                return out
        except DataFormatError:
            pass
    csr = open_csr(path, layer)
    if csr.n_obs >= 2**32:
        raise ParameterError(f"{path}: {csr.n_obs} cells exceed the index's uint32 cell ids")
    source = {**_stat(path), "md5": md5sum(path)}
    entry = 4 + 4 + 4  # cell, gene, value while bucketing
    # 3 open files per bucket: at most 256 buckets keeps well under the usual limit of 1,024 descriptors
    n_buckets = int(max(1, min(csr.n_var, 256, np.ceil(csr.nnz * entry * 2 / (memory_gb * 1e9)))))
    per = int(np.ceil(csr.n_var / n_buckets))
    counts = np.zeros(csr.n_var, dtype=np.int64)
    totals = np.zeros(csr.n_obs)
    flags = {"integer": True, "vmin": 0.0, "vmax": 0.0}
    with atomic_dir(out) as partial:
        (partial / "buckets").mkdir()
        with contextlib.ExitStack() as files:
            handles = [[files.enter_context(open(partial / "buckets" / f"{b}.{kind}", "ab")) for kind in ("cell", "gene", "value")]
                       for b in range(n_buckets)]
            _bucket_pass(csr, chunk_nnz, per, n_buckets, handles, counts, totals, flags, progress, path.name)
        integer, vmin, vmax = flags["integer"], flags["vmin"], flags["vmax"]
        value_dtype = np.uint16 if integer and vmin >= 0 and vmax <= np.iinfo(np.uint16).max else np.float32
        gene_ptr = np.concatenate([[0], np.cumsum(counts)])
        np.save(partial / "gene_ptr.npy", gene_ptr)
        np.save(partial / "cell_totals.npy", totals)
        # buckets are gene ranges in order, so the final arrays are written front to back, sequentially
        with open(partial / "cells.npy", "wb") as cells_fh, open(partial / "values.npy", "wb") as values_fh:
            for fh, dtype in ((cells_fh, np.uint32), (values_fh, value_dtype)):
                np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                          "fortran_order": False, "shape": (csr.nnz,)})
            for k in range(n_buckets):
                g = np.fromfile(partial / "buckets" / f"{k}.gene", dtype=np.uint32)
                if not g.size:
                    continue
                c = np.fromfile(partial / "buckets" / f"{k}.cell", dtype=np.uint32)
                v = np.fromfile(partial / "buckets" / f"{k}.value", dtype=np.float32)
                first = k * per
                c_sorted, v_sorted = np.empty_like(c), np.empty_like(v)
                _order_bucket(g, c, v, first, min(per, csr.n_var - first), c_sorted, v_sorted)
                c_sorted.tofile(cells_fh)
                v_sorted.astype(value_dtype).tofile(values_fh)
                del g, c, v, c_sorted, v_sorted
        shutil.rmtree(partial / "buckets")
        obs_names = read_h5ad_obs_names(path)
        _write_obs_names(obs_names, partial / OBS_NAMES_FILE)
        meta = {"format": INDEX_FORMAT, "version": _VERSION, "source": path.name, "source_size": source["size"],
                "source_mtime_ns": source["mtime_ns"], "source_md5": source["md5"], "layer": layer,
                "n_obs": csr.n_obs, "n_var": csr.n_var, "nnz": csr.nnz, "value_dtype": np.dtype(value_dtype).name,
                "source_dtype": np.dtype(csr.dtype).name, "obs_names": OBS_NAMES_FILE,
                "obs_index_name": obs_names.name}
        (partial / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


@renamed_parameters(normalize="normalization")
def read_genes(
    path: str | os.PathLike,
    genes: Sequence[str],
    *,
    gene_column: str | None = None,
    layer: str | None = None,
    normalization: str | None = None,
    index: str | bool | os.PathLike = "auto",
    chunk_nnz: int = 20_000_000,
    progress: bool = True,
) -> pd.DataFrame:
    """A few genes across every cell of an h5ad, as a dense cells x genes table.

    Parameters
    ----------
    path
        An Allen-style CSR h5ad.
    genes
        Identifiers (``var`` index) or, with ``gene_column="gene_symbol"``, symbols.
    normalization
        None, or ``"log2cpm"`` to turn raw counts into log2(count / total * 1e6 + 1) (each cell's
        total over all genes, from the index or from the pass).
    index
        ``"auto"``: use the index at :func:`default_index_path` when it exists and matches the file, else one
        streaming pass; ``True``: require it (build it with :func:`build_gene_index`);
        ``False``: always stream; or the path of an index folder.

    Returns
    -------
    pandas.DataFrame
        float32, index ``cell_label`` (file order), columns the requested genes; ``attrs["source"]``
        says ``"gene_index"`` or ``"stream"``.

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> p = AbcCache.from_demo().get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> df = read_genes(p, ["DRD1", "DRD2"], gene_column="gene_symbol", index=False, progress=False)
    >>> list(df.columns), df.dtypes.iloc[0]
    (['DRD1', 'DRD2'], dtype('float32'))

    References
    ----------
    Allen Institute ``abc_atlas_access`` ``get_gene_data`` (the streaming path it replaces).
    """
    normalization = check_normalization(normalization, "normalization")
    if isinstance(genes, str):
        raise ParameterTypeError("genes must be a list, not one string")
    genes = list(genes)
    if not genes:
        raise ParameterError("genes is empty: name at least one gene")
    repeated = sorted(set(pd.Index(genes)[pd.Index(genes).duplicated()]))
    if repeated:
        raise ParameterError(f"genes names {repeated[:5]} more than once")
    path = Path(path)
    gi = _usable_index(path, layer, index)
    if gi is not None:  # the h5ad is not opened: cell labels and var come from the index's per-process cache
        obs_names = gi.obs_names(path)
        cols = gene_positions(gi.var(path), genes, gene_column, path)
        out = np.zeros((int(gi.meta["n_obs"]), len(cols)), dtype=np.float32)
        for k, j in enumerate(cols):
            c, v = gi.column(int(j))
            if normalization == LOG2CPM:
                out[c, k] = log2_per_total(v.astype(np.float64), np.asarray(gi.cell_totals[c], dtype=np.float64), CPM)
            else:
                out[c, k] = v
        source = "gene_index"
    else:
        csr = open_csr(path, layer)
        obs_names = read_h5ad_obs_names(path)
        cols = gene_positions(read_h5ad_var(path), genes, gene_column, path)
        out = np.zeros((csr.n_obs, len(cols)), dtype=np.float32)
        col_map = np.full(csr.n_var, -1, dtype=np.int64)
        col_map[cols] = np.arange(len(cols))
        bar = tqdm(total=csr.nnz, unit="value", unit_scale=True, desc=path.name, disable=not progress, leave=False)
        with bar:
            for a, b, data, indices, ptr in iter_blocks(csr, row_blocks(csr.indptr, chunk_nnz)):
                hit = np.flatnonzero(col_map[indices] >= 0)
                if hit.size:
                    rows = np.searchsorted(ptr, hit, side="right") - 1
                    v = data[hit].astype(np.float64)
                    if normalization == LOG2CPM:
                        v = log2_per_total(v, row_totals(data, ptr)[rows], CPM)
                    out[a + rows, col_map[indices[hit]]] = v
                bar.update(int(ptr[-1]))
        source = "stream"
    df = pd.DataFrame(out, index=obs_names, columns=pd.Index(list(genes)), copy=False)
    df.attrs["source"] = source
    return df


def has_gene_index(path: str | os.PathLike, layer: str | None = None) -> bool:
    """Whether an up-to-date gene index of ``path`` exists at :func:`default_index_path`."""
    where = default_index_path(path, layer)
    try:
        return where.exists() and GeneIndex.open(where).matches(path)
    except DataFormatError:
        return False


def _usable_index(path: Path, layer, index) -> GeneIndex | None:
    if index is False:
        return None
    where = default_index_path(path, layer) if index in ("auto", True) else Path(index)
    if not where.exists():
        if index is True or index not in ("auto", True):
            raise DataFormatError(f"{where}: no gene index; build it with hmba_toolkit.stream.build_gene_index({path.name!r})")
        return None
    gi = GeneIndex.open(where)
    if not gi.matches(path):
        msg = f"{where} was built from another version of {path.name}; rebuild it with build_gene_index(..., overwrite=True)"
        if index == "auto":
            warn(msg + "; reading by a full pass instead")
            return None
        raise DataFormatError(msg)
    return gi
