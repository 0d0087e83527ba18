"""Reference statistics per leaf cluster: Allen's ``precomputed_stats.h5``, built in one streaming pass.

For every leaf cluster of the taxonomy and every gene the file holds the number of cells (``n_cells``), the sum and
sum of squares of log2(CPM + 1) (``sum``, ``sumsq``), and how many cells express the gene (``gt0``: log2(CPM+1) > 0,
``gt1``: CPM > 1, ``ge1``: CPM >= 1). Mean profiles (``sum / n_cells``) are what query cells are correlated with;
the rest feeds marker selection. The layout is cell_type_mapper's
(``docs/input_data_files/precomputed_stats_file.md``): datasets ``metadata``, ``taxonomy_tree``, ``cluster_to_row``
and ``col_names`` (JSON strings), ``n_cells`` and the leaves x genes arrays.

References
----------
MapMyCells, Allen Institute (2024), https://portal.brain-map.org/atlases-and-data/bkp/mapmycells;
Daniel SF et al. (2026) bioRxiv 10.64898/2026.03.06.710160.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numba
import numpy as np
import pandas as pd

from .. import __version__
from .._checks import check_layer
from .._files import atomic_path
from .._log2cpm import CPM, LOG2CPM_MAX, log2_per_total_jit, row_totals
from ..errors import DataFormatError, MissingFileError, ParameterError, ParameterTypeError
from ..io._csr_blocks import iter_blocks, memory_blocks, open_csr, row_blocks
from ..io.h5ad import read_h5ad_obs_names, read_h5ad_var
from ._tree import TaxonomyTree

__all__ = ["ReferenceStats", "precompute_stats", "read_stats", "check_mapping_normalization"]

_ARRAYS = ("sum", "sumsq", "gt0", "gt1", "ge1")


def check_mapping_normalization(value) -> str:
    """``"raw"`` or ``"log2CPM"`` (Allen's spellings; ``"log2cpm"`` accepted), else a ParameterError."""
    if isinstance(value, str) and value.lower() in ("raw", "log2cpm"):
        return "raw" if value.lower() == "raw" else "log2CPM"
    raise ParameterError(f"normalization must be 'raw' (counts) or 'log2CPM' (log2(CPM+1)), not {value!r}")


@dataclass
class ReferenceStats:
    """Per-leaf statistics of a reference (the content of ``precomputed_stats.h5``).

    Attributes
    ----------
    tree : TaxonomyTree
    genes : list of str
        Gene identifiers (columns of the arrays).
    clusters : list of str
        Leaf clusters in row order.
    n_cells : ndarray (leaves,)
    sum, sumsq : ndarray (leaves, genes), float64
        Sums of log2(CPM + 1) and of its square.
    gt0, gt1, ge1 : ndarray (leaves, genes), int64
        Cells with log2(CPM + 1) > 0, CPM > 1 and CPM >= 1.
    metadata : dict
    """

    tree: TaxonomyTree
    genes: list[str]
    clusters: list[str]
    n_cells: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    gt0: np.ndarray
    gt1: np.ndarray
    ge1: np.ndarray
    metadata: dict = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        """Mean log2(CPM + 1) of every leaf (NaN for a leaf without cells)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.n_cells[:, None]

    def profiles(self) -> pd.DataFrame:
        """Mean log2(CPM + 1) as a leaves x genes DataFrame."""
        return pd.DataFrame(self.mean, index=pd.Index(self.clusters, name=self.tree.leaf_level),
                            columns=pd.Index(self.genes, name="gene_identifier"))

    def write(self, path: str | os.PathLike) -> Path:
        """Write Allen's ``precomputed_stats.h5`` (atomically: nothing under ``path`` unless complete)."""
        path = Path(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("metadata", data=json.dumps(self.metadata).encode())
            f.create_dataset("taxonomy_tree", data=self.tree.to_json().encode())
            f.create_dataset("cluster_to_row", data=json.dumps({c: i for i, c in enumerate(self.clusters)}).encode())
            f.create_dataset("col_names", data=json.dumps(list(self.genes)).encode())
            f.create_dataset("n_cells", data=self.n_cells.astype(np.int64))
            for name in _ARRAYS:
                f.create_dataset(name, data=getattr(self, name), chunks=True, compression="gzip")
        return path

    def __repr__(self) -> str:
        return f"ReferenceStats({len(self.clusters)} clusters x {len(self.genes)} genes, {self.tree!r})"


def read_stats(path: str | os.PathLike) -> ReferenceStats:
    """Read a ``precomputed_stats.h5`` (Allen's, e.g. ``precomputed_stats.HMBA.BG.2025-08-04.h5``, or ours).

    Examples
    --------
    >>> import tempfile, anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"Class": ["A"] * 4 + ["B"] * 4, "Type": ["a1", "a1", "a2", "a2", "b1", "b1", "b2", "b2"]},
    ...                    index=[f"cell{i}" for i in range(8)])
    >>> ref = ad.AnnData(np.arange(1, 49, dtype=float).reshape(8, 6), obs=obs)
    >>> out = Path(tempfile.mkdtemp()) / "precomputed_stats.h5"
    >>> _ = precompute_stats(ref, ["Class", "Type"], output_path=out)
    >>> read_stats(out).n_cells.tolist()
    [2, 2, 2, 2]
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such precomputed stats file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("taxonomy_tree", "cluster_to_row", "col_names", "n_cells", "sum") if k not in f]
            if missing:
                raise DataFormatError(f"{path}: not a precomputed_stats file (no {missing}); "
                                      f"build one with hmba_toolkit.mapping.precompute_stats")
            tree = TaxonomyTree.from_json(f["taxonomy_tree"][()])
            rows = json.loads(f["cluster_to_row"][()])
            genes = [str(g) for g in json.loads(f["col_names"][()])]
            meta = json.loads(f["metadata"][()]) if "metadata" in f else {}
            arrays = {k: f[k][()] for k in (*_ARRAYS, "n_cells") if k in f}
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be read as HDF5 ({exc})") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataFormatError(f"{path}: a JSON dataset is damaged ({exc})") from None
    clusters = sorted(rows, key=rows.get)
    if sorted(clusters) != sorted(tree.leaves):
        extra = sorted(set(clusters) ^ set(tree.leaves))[:5]
        raise DataFormatError(f"{path}: cluster_to_row and the taxonomy tree's leaves differ (e.g. {extra})")
    n = len(clusters)
    for k in _ARRAYS:
        if k not in arrays:
            arrays[k] = np.zeros((n, len(genes)))
        if arrays[k].shape != (n, len(genes)):
            raise DataFormatError(f"{path}: {k} has shape {arrays[k].shape}, expected {(n, len(genes))} (clusters x col_names)")
    order = np.array([rows[c] for c in clusters])
    return ReferenceStats(tree, genes, clusters, arrays["n_cells"][order].astype(np.int64),
                          *(arrays[k][order] for k in _ARRAYS), metadata=meta)


@numba.njit(cache=True, nogil=True)
def _accumulate(data, indices, ptr, codes, log_input, out_sum, out_sumsq, gt0, gt1, ge1):
    totals = row_totals(data, ptr)
    for r in range(ptr.size - 1):
        g = codes[r]
        if g < 0:
            continue
        for k in range(ptr[r], ptr[r + 1]):
            x = np.float64(data[k])
            if log_input:
                v = x
                cpm = 2.0 ** x - 1.0
            else:
                cpm = x / totals[r] * CPM
                v = log2_per_total_jit(x, totals[r], CPM)
            j = indices[k]
            out_sum[g, j] += v
            out_sumsq[g, j] += v * v
            if v > 0.0:
                gt0[g, j] += 1
            if cpm > 1.0:
                gt1[g, j] += 1
            if cpm >= 1.0:
                ge1[g, j] += 1


def precompute_stats(
    data: ad.AnnData | str | os.PathLike | Sequence[str | os.PathLike],
    hierarchy: Sequence[str],
    *,
    obs: pd.DataFrame | None = None,
    normalization: str = "raw",
    layer: str | None = None,
    output_path: str | os.PathLike | None = None,
    chunk_nnz: int = 20_000_000,
) -> ReferenceStats:
    """Per-leaf statistics of a labelled reference, in one pass over its expression (Allen's ``precomputed_stats``).

    Parameters
    ----------
    data
        An AnnData whose ``obs`` holds the taxonomy levels; or the path of a cells x genes h5ad (CSR, read block by
        block, never whole), or a list of such paths with the same genes (an ABC release's per-library matrices),
        with ``obs`` the release's cell table.
    hierarchy
        The level columns from the root down, e.g. ``["Class", "Subclass", "Group", "Cluster"]`` (or Allen's JSON
        string ``'["Class","Subclass"]'``).
    obs
        Cell table indexed by cell label holding the ``hierarchy`` columns (needed for paths; defaults to
        ``data.obs``). Cells missing from it or unlabelled at some level are left out.
    normalization
        ``"raw"`` (counts; each cell normalised to log2(CPM + 1) over all its genes) or ``"log2CPM"`` (values are
        log2(CPM + 1) already, as Allen's ``-log2.h5ad``).
    layer
        A layer instead of ``X``.
    output_path
        Also write ``precomputed_stats.h5`` there (atomically).
    chunk_nnz
        Stored values read per block of a file.

    Returns
    -------
    ReferenceStats

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"Class": ["A", "A", "B", "B"], "Type": ["a1", "a1", "b1", "b1"]}, index=list("wxyz"))
    >>> ref = ad.AnnData(np.array([[9.0, 1.0], [8.0, 2.0], [0.0, 5.0], [1.0, 4.0]]), obs=obs)
    >>> stats = precompute_stats(ref, ["Class", "Type"])
    >>> stats.clusters, stats.n_cells.tolist(), stats.gt0.tolist()
    (['a1', 'b1'], [2, 2], [[2, 2], [1, 2]])

    References
    ----------
    cell_type_mapper ``precompute_stats_scrattch`` (Allen Institute); Tasic B et al. (2018) Nature 563:72.
    """
    normalization = check_mapping_normalization(normalization)
    if isinstance(data, ad.AnnData):
        paths = None
        obs = data.obs if obs is None else obs
        cells = data.obs_names
        genes = [str(g) for g in data.var_names]
        check_layer(data, layer, "data")
        if data.n_obs == 0 or data.n_vars == 0:
            raise ParameterError(f"the reference is empty ({data.n_obs} cells x {data.n_vars} genes)")
    elif isinstance(data, (str, os.PathLike)) or (isinstance(data, Sequence) and not isinstance(data, str)):
        paths = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(p) for p in data]
        if not paths:
            raise ParameterError("data: an empty list of files")
        if obs is None:
            raise ParameterError("precompute_stats(path, ...) needs the cell table with the taxonomy levels as obs=")
        for p in paths:
            if not p.is_file():
                raise MissingFileError(f"{p}: no such h5ad file")
        genes = [str(g) for g in read_h5ad_var(paths[0]).index]
        for p in paths[1:]:
            other = [str(g) for g in read_h5ad_var(p).index]
            if other != genes:
                raise DataFormatError(f"{p}: its genes differ from those of {paths[0]}; all matrices must share one gene list")
        cells = None
    else:
        raise ParameterTypeError(f"data must be an AnnData or h5ad path(s), not {type(data).__name__}")
    if not isinstance(obs, pd.DataFrame):
        raise ParameterTypeError(f"obs must be a DataFrame of cells, not {type(obs).__name__}")
    if obs.index.duplicated().any():
        raise ParameterError(f"obs has duplicated cell labels, e.g. {list(obs.index[obs.index.duplicated()][:3])}")
    tree = TaxonomyTree.from_obs(obs, hierarchy)
    clusters = tree.leaves
    leaf_of = obs[tree.leaf_level].astype("string")
    code_of = pd.Series(np.arange(len(clusters)), index=clusters)
    n_var = len(genes)
    acc = {"sum": np.zeros((len(clusters), n_var)), "sumsq": np.zeros((len(clusters), n_var)),
           **{k: np.zeros((len(clusters), n_var), dtype=np.int64) for k in ("gt0", "gt1", "ge1")}}
    labelled = obs[tree.hierarchy].notna().all(axis=1)

    def codes_for(index):
        lab = leaf_of.reindex(index)
        ok = labelled.reindex(index, fill_value=False).to_numpy()
        out = np.full(len(index), -1, dtype=np.int64)
        out[ok] = code_of.reindex(lab[ok].to_numpy()).to_numpy()
        return out

    log_input = normalization == "log2CPM"
    n_cells = np.zeros(len(clusters), dtype=np.int64)
    if paths is None:
        X = data.layers[layer] if layer else data.X
        codes = codes_for(cells)
        for a, b, vals, idx, ptr in memory_blocks(X, chunk_nnz):
            _check_values(vals, normalization, "the reference")
            _accumulate(vals, idx, ptr, codes[a:b], log_input, *acc.values())
        n_cells += np.bincount(codes[codes >= 0], minlength=len(clusters))
    else:
        found = 0
        counted = np.zeros(len(obs), dtype=bool)  # the obs rows of the cells the files hold
        for p in paths:
            csr = open_csr(p, layer)
            names = read_h5ad_obs_names(p)
            codes = codes_for(names)
            found += int((codes >= 0).sum())
            counted[obs.index.get_indexer(names[codes >= 0])] = True
            for a, b, vals, idx, ptr in iter_blocks(csr, row_blocks(csr.indptr, chunk_nnz)):
                _check_values(vals, normalization, str(p))
                _accumulate(vals, idx, ptr, codes[a:b], log_input, *acc.values())
            n_cells += np.bincount(codes[codes >= 0], minlength=len(clusters))
        if found == 0:
            raise ParameterError(f"none of the cells of {[p.name for p in paths]} is in obs's index "
                                 f"(e.g. {list(obs.index[:2])}); obs must be indexed by cell label")
    if paths is not None:  # the leaf level lists the obs rows of the cells counted (Allen's tool requires lists)
        tree.data[tree.leaf_level] = {c: np.asarray(rows)[counted[rows]].tolist()
                                      for c, rows in tree.data[tree.leaf_level].items()}
    meta = {"config": {"hierarchy": tree.hierarchy, "normalization": normalization, "layer": layer or "X",
                       "h5ad_path": [str(p) for p in paths] if paths else None},
            "timestamp": _dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S"), "module": "hmba_toolkit.mapping.stats",
            "version": __version__, "codebase": "https://github.com/hmba-toolkit/hmba_toolkit"}
    stats = ReferenceStats(tree, genes, list(clusters), n_cells, acc["sum"], acc["sumsq"], acc["gt0"], acc["gt1"],
                           acc["ge1"], metadata=meta)
    if output_path is not None:
        stats.write(output_path)
    return stats


def _check_values(vals: np.ndarray, normalization: str, source: str) -> None:
    """Counts must be whole and non-negative; log2(CPM+1) values non-negative and below log2(1e6 + 1)."""
    if vals.size == 0:
        return
    if not np.isfinite(vals).all():
        raise DataFormatError(f"{source}: the expression holds NaN or infinite values")
    if vals.min() < 0:
        raise DataFormatError(f"{source}: the expression holds negative values ({vals.min():g}); "
                              f"neither counts nor log2(CPM+1) can be negative")
    if normalization == "raw" and (np.asarray(vals) % 1 != 0).any():
        raise ParameterError(f"{source}: normalization='raw' but the values are not whole counts "
                             f"(e.g. {vals[np.asarray(vals) % 1 != 0][0]:g}); pass normalization='log2CPM' for "
                             f"log2(CPM+1) data")
    if normalization == "log2CPM" and vals.max() > LOG2CPM_MAX + 1e-6:
        raise ParameterError(f"{source}: normalization='log2CPM' but values reach {vals.max():g}, above "
                             f"log2(1e6 + 1) = 19.93: these look like counts; pass normalization='raw'")
