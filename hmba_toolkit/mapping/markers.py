"""Marker genes for mapping: reference markers per pair of leaf clusters, query markers per parent node.

1. **Reference markers** (:func:`reference_markers`): for every pair of leaf clusters (A, B) a gene is a marker when
   Welch's t-test on mean log2(CPM + 1), computed from the statistics file's sums and sums of squares, passes
   ``p_th`` after Holm's correction over the genes, and its penetrance is different enough: with P_A, P_B the
   fractions of cells above 1 CPM, q1 = max(P_A, P_B), qdiff = abs(P_A - P_B) / q1 and the absolute log2 fold change
   of the means, a gene passes exactly when q1 >= ``q1_th``, qdiff >= ``qdiff_th`` and fold >= ``log2_fold_th``.
   By default (``exact_penetrance=False``) the filter is relaxed: with each gene's distance short of the exact
   thresholds in (q1, qdiff, fold) space (0 for a gene passing them all), the genes that pass the t-test and lie
   above the floors (``q1_min_th``, ``qdiff_min_th``, ``log2_fold_min_th``) are kept within the smallest sphere
   holding ``n_valid`` of all genes; if that keeps fewer than ``n_valid_min``, the sphere grows to hold ``n_valid``
   of the candidates themselves. A marker is "up" for (A, B) when it is higher in B. On Allen's golden case this
   reproduces cell_type_mapper's reference markers gene for gene.
2. **Query markers** (:func:`query_markers`): at every parent node, the pairs of leaves descending from different
   children must be told apart. Genes are taken greedily by utility (the number of (pair, direction) combinations they
   mark that still have fewer than ``n_per_utility`` markers) until every combination has ``n_per_utility`` markers
   or no gene adds any.

Files: reference markers in cell_type_mapper's HDF5 layout (``pair_to_idx``, ``sparse_by_pair`` and
``sparse_by_gene`` up/down indices, ``gene_names``, ``n_pairs``, ``metadata``); query markers as its JSON
(``{"None": [...], "<level>/<node>": [...], "log": ..., "metadata": ...}``).

References
----------
Tasic B et al. (2018) Nature 563:72-78 (pairwise markers with penetrance filters); Holm S (1979) Scand J Stat
6:65-70; cell_type_mapper ``docs/algorithms/marker_gene_selection.md`` (Allen Institute).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from scipy import special as _special
from scipy import stats as _st

from .. import __version__
from .._files import atomic_path, write_text_atomic
from ..errors import DataFormatError, MissingFileError, ParameterError
from ._tree import ROOT, TaxonomyTree
from .stats import ReferenceStats

__all__ = ["ReferenceMarkers", "reference_markers", "read_reference_markers", "query_markers", "read_query_markers",
           "write_query_markers"]

_NON_NODE_KEYS = ("log", "metadata")


@dataclass
class ReferenceMarkers:
    """Marker genes of every pair of leaf clusters.

    Attributes
    ----------
    clusters : list of str
        Leaf clusters; pair ``k`` is ``pairs[k] = (i, j)`` with ``i < j`` in this order.
    genes : list of str
    up, down : scipy.sparse.csr_matrix (pairs x genes, bool)
        Genes higher in the second (``up``) or the first (``down``) cluster of each pair.
    leaf_level : str
    """

    clusters: list[str]
    genes: list[str]
    up: sp.csr_matrix
    down: sp.csr_matrix
    leaf_level: str
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.clusters)
        self.pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        self._pair_of = {p: k for k, p in enumerate(self.pairs)}

    def _pair_index(self, i: int, j: int) -> tuple[int, bool]:
        """(row of the pair, whether its order is reversed) for clusters ``i`` and ``j``."""
        return (self._pair_of[(i, j)], False) if i < j else (self._pair_of[(j, i)], True)

    def write(self, path: str | os.PathLike) -> Path:
        """Write cell_type_mapper's ``reference_markers.h5`` layout (atomically)."""
        path = Path(path)
        n = len(self.clusters)
        pair_to_idx = {self.leaf_level: {self.clusters[i]: {self.clusters[j]: self._pair_of[(i, j)] for j in range(i + 1, n)}
                                         for i in range(n - 1)}}
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("metadata", data=json.dumps(self.metadata).encode())
            f.create_dataset("gene_names", data=json.dumps(list(self.genes)).encode())
            f.create_dataset("n_pairs", data=len(self.pairs))
            f.create_dataset("pair_to_idx", data=json.dumps(pair_to_idx).encode())
            for name, m in (("up", self.up), ("down", self.down)):
                by_pair, by_gene = m.tocsr(), m.tocsc()
                f.create_dataset(f"sparse_by_pair/{name}_pair_idx", data=by_pair.indptr.astype(np.int64))
                f.create_dataset(f"sparse_by_pair/{name}_gene_idx", data=by_pair.indices.astype(_uint(len(self.genes))))
                f.create_dataset(f"sparse_by_gene/{name}_gene_idx", data=by_gene.indptr.astype(np.int64))
                f.create_dataset(f"sparse_by_gene/{name}_pair_idx", data=by_gene.indices.astype(_uint(len(self.pairs))))
        return path

    def __repr__(self) -> str:
        return (f"ReferenceMarkers({len(self.clusters)} clusters, {len(self.pairs)} pairs, "
                f"{self.up.nnz + self.down.nnz} markers)")


def _uint(n: int):
    return np.uint16 if n < 2**16 else np.uint32 if n < 2**32 else np.int64


def read_reference_markers(path: str | os.PathLike) -> ReferenceMarkers:
    """Read a ``reference_markers.h5`` (cell_type_mapper's or ours)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such reference markers file")
    try:
        with h5py.File(path, "r") as f:
            genes = json.loads(f["gene_names"][()])
            p2i = json.loads(f["pair_to_idx"][()])
            meta = json.loads(f["metadata"][()]) if "metadata" in f else {}
            n_pairs = int(f["n_pairs"][()])
            mats = {}
            for name in ("up", "down"):
                ptr = f[f"sparse_by_pair/{name}_pair_idx"][()].astype(np.int64)
                idx = f[f"sparse_by_pair/{name}_gene_idx"][()].astype(np.int64)
                mats[name] = sp.csr_matrix((np.ones(idx.size, bool), idx, ptr), shape=(n_pairs, len(genes)))
    except KeyError as exc:
        raise DataFormatError(f"{path}: not a reference markers file ({exc})") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be read as HDF5 ({exc})") from None
    (leaf_level, nested), = p2i.items()
    clusters = sorted({a for a in nested} | {b for d in nested.values() for b in d})
    out = ReferenceMarkers(clusters, genes, mats["up"], mats["down"], leaf_level, meta)
    # re-index the file's pairs into our (i < j) order
    order = np.empty(n_pairs, dtype=np.int64)
    pos = {c: i for i, c in enumerate(clusters)}
    flips = np.zeros(n_pairs, bool)
    for a, d in nested.items():
        for b, k in d.items():
            row, flip = out._pair_index(pos[a], pos[b])
            order[row] = k
            flips[row] = flip
    up, down = mats["up"][order], mats["down"][order]
    flips_m = sp.diags(flips.astype(np.int8), dtype=np.int8)
    keep = sp.diags((~flips).astype(np.int8), dtype=np.int8)
    out.up = ((keep @ up) + (flips_m @ down)).astype(bool).tocsr()
    out.down = ((keep @ down) + (flips_m @ up)).astype(bool).tocsr()
    return out


def _holm_passes(t: np.ndarray, df: np.ndarray, se2: np.ndarray, diff: np.ndarray, p_th: float) -> np.ndarray:
    """Genes (columns) passing Welch's two-sided t-test at ``p_th`` after Holm's correction, per row.

    Only genes whose p-value can be below ``p_th`` matter: Holm's adjusted p of the gene ranked i is the running
    maximum of (m - j) p_(j), so a gene passes when it and every gene ranked before it have (m - j) p_(j) < p_th. The
    t distribution's tails are heavier than the normal's, so a gene with abs(t) below the normal's two-sided
    ``p_th`` quantile has p >= p_th and is never computed. Equal to sorting every p-value, without doing it.
    """
    m = t.shape[1]
    with np.errstate(invalid="ignore"):
        # no variance in either cluster: different means are certain (t = inf), equal means carry no evidence
        cand = np.where(se2 > 0, np.abs(t) > _st.norm.isf(p_th / 2), (se2 == 0) & (diff != 0))
    rows, cols = np.nonzero(cand)
    passed = np.zeros(t.shape, bool)
    if rows.size == 0:
        return passed
    tt, dd = np.abs(t[rows, cols]), df[rows, cols]
    p = np.where(np.isfinite(tt), 2 * _special.stdtr(dd, -tt), 0.0)
    p = np.where(np.isnan(p), 1.0, p)
    order = np.lexsort((cols, p, rows))  # by row, then p (ties by gene: the order does not change who passes)
    rows, cols, p = rows[order], cols[order], p[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank = np.arange(rows.size) - np.repeat(starts, np.diff(np.r_[starts, rows.size]))
    fail = p * (m - rank) >= p_th
    first_fail = np.minimum.reduceat(np.where(fail, rank, m), starts)
    ok = rank < np.repeat(first_fail, np.diff(np.r_[starts, rows.size]))
    passed[rows[ok], cols[ok]] = True
    return passed


def reference_markers(
    stats: ReferenceStats,
    *,
    p_th: float = 0.01,
    q1_th: float = 0.5,
    qdiff_th: float = 0.7,
    log2_fold_th: float = 1.0,
    q1_min_th: float = 0.1,
    qdiff_min_th: float = 0.1,
    log2_fold_min_th: float = 0.8,
    n_valid: int = 30,
    n_valid_min: int = 10,
    exact_penetrance: bool = False,
    output_path: str | os.PathLike | None = None,
) -> ReferenceMarkers:
    """Marker genes of every pair of leaf clusters, from the reference statistics (Allen's defaults).

    Parameters
    ----------
    stats
        From :func:`~hmba_toolkit.mapping.precompute_stats` or :func:`~hmba_toolkit.mapping.read_stats`.
    p_th
        Holm-corrected p-value threshold of the t-test.
    q1_th, qdiff_th, log2_fold_th
        Exact penetrance thresholds.
    q1_min_th, qdiff_min_th, log2_fold_min_th
        Floors of the relaxed (approximate) filter.
    n_valid
        Genes (of all genes) the sphere of the relaxed filter holds.
    n_valid_min
        When that sphere holds fewer markers, it grows until it holds ``n_valid`` markers (or all candidates).
    exact_penetrance
        Use the exact thresholds only.
    output_path
        Also write ``reference_markers.h5`` there.

    Returns
    -------
    ReferenceMarkers

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from hmba_toolkit.mapping import precompute_stats
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(1.0, (60, 40)).astype(float); X[:30, :5] += 30; X[30:, 5:10] += 30
    >>> obs = pd.DataFrame({"Class": ["A"] * 60, "Type": ["a"] * 30 + ["b"] * 30}, index=[f"c{i}" for i in range(60)])
    >>> m = reference_markers(precompute_stats(ad.AnnData(X, obs=obs), ["Class", "Type"]))
    >>> sorted(m.down[0].indices.tolist()), sorted(m.up[0].indices.tolist())
    ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])

    References
    ----------
    Tasic B et al. (2018) Nature 563:72; Holm S (1979) Scand J Stat 6:65.
    """
    for name, v in (("p_th", p_th), ("q1_th", q1_th), ("qdiff_th", qdiff_th), ("q1_min_th", q1_min_th),
                    ("qdiff_min_th", qdiff_min_th)):
        if not 0 <= v <= 1:
            raise ParameterError(f"{name} must lie in [0, 1], got {v}")
    if n_valid < 1:
        raise ParameterError(f"n_valid must be >= 1, got {n_valid}")
    n_leaves, n_genes = stats.sum.shape
    if n_leaves < 2:
        raise ParameterError("reference_markers needs at least two leaf clusters")
    n = stats.n_cells.astype(np.float64)
    if (n < 2).any():
        few = [c for c, k in zip(stats.clusters, n) if k < 2][:5]
        raise ParameterError(f"leaf cluster(s) {few} have fewer than 2 cells: a t-test needs at least 2 per cluster")
    mean = stats.sum / n[:, None]
    var = np.maximum((stats.sumsq - n[:, None] * mean**2) / (n[:, None] - 1), 0.0)
    pen = stats.gt1 / n[:, None]
    up_rows, down_rows = [], []
    block = max(1, 2_000_000 // max(n_genes, 1))
    for i in range(n_leaves - 1):
        for j0 in range(i + 1, n_leaves, block):
            js = np.arange(j0, min(j0 + block, n_leaves))
            u, d = _pair_markers(mean[i], var[i], n[i], pen[i], mean[js], var[js], n[js], pen[js], p_th, q1_th,
                                 qdiff_th, log2_fold_th, q1_min_th, qdiff_min_th, log2_fold_min_th, n_valid,
                                 n_valid_min, exact_penetrance)
            up_rows.append(sp.csr_matrix(u))
            down_rows.append(sp.csr_matrix(d))
    meta = {"config": {"p_th": p_th, "q1_th": q1_th, "qdiff_th": qdiff_th, "log2_fold_th": log2_fold_th,
                       "q1_min_th": q1_min_th, "qdiff_min_th": qdiff_min_th, "log2_fold_min_th": log2_fold_min_th,
                       "n_valid": n_valid, "n_valid_min": n_valid_min, "exact_penetrance": exact_penetrance},
            "timestamp": _dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S"), "module": "hmba_toolkit.mapping.markers",
            "version": __version__}
    out = ReferenceMarkers(list(stats.clusters), list(stats.genes), sp.vstack(up_rows).tocsr(), sp.vstack(down_rows).tocsr(),
                           stats.tree.leaf_level, meta)
    if output_path is not None:
        out.write(output_path)
    return out


def _pair_markers(mA, vA, nA, pA, mB, vB, nB, pB, p_th, q1_th, qdiff_th, fold_th, q1_min, qdiff_min, fold_min, n_valid,
                  n_valid_min, exact):
    """Up (higher in B) and down markers of cluster A against the clusters B (rows)."""
    sA, sB = vA / nA, vB / nB[:, None]
    se2 = sA + sB
    diff = mB - mA
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / np.sqrt(se2)
        df = se2**2 / (sA**2 / (nA - 1) + sB**2 / (nB[:, None] - 1))
    passed = _holm_passes(t, df, se2, diff, p_th)
    q1 = np.maximum(pA, pB)
    with np.errstate(divide="ignore", invalid="ignore"):
        qdiff = np.where(q1 > 0, np.abs(pA - pB) / q1, 0.0)
    fold = np.abs(diff)
    if exact:
        keep = passed & (q1 >= q1_th) & (qdiff >= qdiff_th) & (fold >= fold_th)
    else:
        pool = passed & (q1 > q1_min) & (qdiff > qdiff_min) & (fold > fold_min)
        # distance by which a gene falls short of the exact thresholds (0 for genes that pass them all)
        dist = np.sqrt(np.maximum(q1_th - q1, 0) ** 2 + np.maximum(qdiff_th - qdiff, 0) ** 2
                       + np.maximum(fold_th - fold, 0) ** 2)
        k = min(n_valid, dist.shape[1]) - 1
        keep = pool & (dist <= np.partition(dist, k, axis=1)[:, k:k + 1])
        # too few markers in the sphere holding n_valid genes: grow it until it holds n_valid markers (or all)
        short = keep.sum(axis=1) < n_valid_min
        if short.any():
            d = np.where(pool[short], dist[short], np.inf)
            radius = np.partition(d, k, axis=1)[:, k:k + 1]
            keep[short] = pool[short] & (dist[short] <= radius)
    return keep & (diff > 0), keep & (diff < 0)


def query_markers(
    markers: ReferenceMarkers,
    tree: TaxonomyTree,
    *,
    n_per_utility: int = 30,
    genes: Iterable[str] | None = None,
    output_path: str | os.PathLike | None = None,
) -> dict[str, list[str]]:
    """Marker genes for every parent node of the taxonomy, chosen greedily by utility (Allen's ``query_markers``).

    Parameters
    ----------
    markers
        Reference markers (:func:`reference_markers` or :func:`read_reference_markers`).
    tree
        The taxonomy (``stats.tree``).
    n_per_utility
        Markers wanted for every (pair of leaves, direction).
    genes
        Restrict to these genes (e.g. those measured in the query, or a spatial panel).
    output_path
        Also write the JSON lookup there.

    Returns
    -------
    dict
        ``{"None": [...], "<level>/<node>": [...]}``: genes by parent node (the root is ``"None"``).

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from hmba_toolkit.mapping import precompute_stats
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(1.0, (60, 40)).astype(float); X[:30, :5] += 30; X[30:, 5:10] += 30
    >>> obs = pd.DataFrame({"Class": ["A"] * 60, "Type": ["a"] * 30 + ["b"] * 30}, index=[f"c{i}" for i in range(60)])
    >>> stats = precompute_stats(ad.AnnData(X, obs=obs), ["Class", "Type"])
    >>> lookup = query_markers(reference_markers(stats), stats.tree, n_per_utility=3)
    >>> sorted(lookup), len(lookup["Class/A"])
    (['Class/A', 'None'], 6)
    """
    if n_per_utility < 1:
        raise ParameterError(f"n_per_utility must be >= 1, got {n_per_utility}")
    if sorted(markers.clusters) != sorted(tree.leaves):
        raise ParameterError("query_markers: the reference markers and the taxonomy have different leaf clusters "
                             f"(e.g. {sorted(set(markers.clusters) ^ set(tree.leaves))[:3]})")
    allowed = np.ones(len(markers.genes), bool)
    if genes is not None:
        wanted = set(map(str, genes))
        allowed = np.array([g in wanted for g in markers.genes])
        if not allowed.any():
            raise ParameterError(f"query_markers: none of the {len(wanted)} genes given is a reference gene "
                                 f"(e.g. {sorted(wanted)[:3]} vs {markers.genes[:3]})")
    pos = {c: i for i, c in enumerate(markers.clusters)}
    lookup: dict[str, list[str]] = {}
    for key in tree.parent_keys():
        if key == ROOT:
            level, groups = tree.hierarchy[0], [tree.leaves_under(tree.hierarchy[0], n) for n in tree.nodes(tree.hierarchy[0])]
        else:
            level, node = key.split("/", 1)
            nxt = tree.hierarchy[tree.hierarchy.index(level) + 1]
            groups = [tree.leaves_under(nxt, c) for c in tree.children(level, node)]
        lookup[key] = [markers.genes[g] for g in _greedy(markers, groups, pos, n_per_utility, allowed)]
    if output_path is not None:
        write_query_markers(lookup, output_path)
    return lookup


def _greedy(markers: ReferenceMarkers, groups, pos, n_per_utility: int, allowed: np.ndarray) -> list[int]:
    """Genes chosen by utility to separate every pair of leaves from different groups."""
    rows = [markers._pair_index(pos[a], pos[b])[0]
            for gi in range(len(groups)) for gj in range(gi + 1, len(groups)) for a in groups[gi] for b in groups[gj]]
    if not rows:
        return []
    rows = np.asarray(rows)
    # one row per (pair, direction); the direction does not matter for the count, only that both are served
    M = sp.vstack([markers.up[rows], markers.down[rows]]).tocsr().astype(np.int32)
    M = M @ sp.diags(allowed.astype(np.int32), dtype=np.int32)
    M.eliminate_zeros()
    M = M.tocsr()
    Mc = M.tocsc()
    utility = np.asarray(M.sum(axis=0)).ravel().astype(np.int64)
    count = np.zeros(M.shape[0], dtype=np.int64)
    active = np.ones(M.shape[0], bool)
    chosen: list[int] = []
    while True:
        g = int(np.argmax(utility))
        if utility[g] <= 0:
            break
        chosen.append(g)
        utility[g] = np.iinfo(np.int64).min // 2
        hit = Mc.indices[Mc.indptr[g]:Mc.indptr[g + 1]]
        hit = hit[active[hit]]
        count[hit] += 1
        done = hit[count[hit] >= n_per_utility]
        if done.size:
            active[done] = False
            cols = np.concatenate([M.indices[M.indptr[r]:M.indptr[r + 1]] for r in done])
            np.subtract.at(utility, cols, 1)
    return chosen


def write_query_markers(lookup: dict, path: str | os.PathLike) -> Path:
    """Write a query-marker lookup as Allen's JSON (with ``log`` and ``metadata`` entries), atomically."""
    out = {k: list(v) for k, v in lookup.items() if k not in _NON_NODE_KEYS}
    out["log"] = lookup.get("log", [])
    out["metadata"] = lookup.get("metadata", {"module": "hmba_toolkit.mapping.markers", "version": __version__})
    write_text_atomic(path, json.dumps(out, indent=2))
    return Path(path)


def read_query_markers(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a query-marker JSON (Allen's ``query_markers.*.json`` or ours): ``{node key: [genes]}``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such query markers file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a JSON marker lookup ({exc})") from None
    if not isinstance(data, dict) or ROOT not in data:
        raise DataFormatError(f"{path}: a marker lookup is a JSON object with a 'None' (root) entry")
    return {k: [str(g) for g in v] for k, v in data.items() if k not in _NON_NODE_KEYS}
