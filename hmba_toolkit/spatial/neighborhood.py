"""Which cell types sit next to which: neighbourhood enrichment on a kNN graph built within each section.

For every pair of cell types (a, b) the statistic is the number of directed kNN edges from a cell of type a to a cell
of type b, counted over the sections. Its null is the random relabelling of cells within their section (the
composition of every section kept), the null squidpy's ``nhood_enrichment`` samples by permutation. Here its mean
and variance are computed exactly, from the falling-factorial probabilities of drawing labels without replacement and
five sums over the graph (edges, reciprocal edges, shared sources, shared targets, two-step paths), so the z-score is
the limit of the permutation z-score without permuting; ``n_permutations`` adds Monte Carlo p-values as a check.

References
----------
Cliff AD, Ord JK (1981) Spatial Processes: Models and Applications. Pion (join-count moments under non-free
sampling). Schapiro D et al. (2017) Nat Methods 14:873-876 (histoCAT neighbourhood analysis). Palla G et al. (2022)
Nat Methods 19:171-178 (squidpy ``nhood_enrichment``, ``co_occurrence``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from .._checks import check_column_name, check_count, check_seed
from .._stats import bh_adjust
from ..errors import DataFormatError, ParameterError, ParameterTypeError
from .geometry import Geometry

__all__ = ["neighborhood_graph", "neighborhood_enrichment", "co_occurrence", "NEIGHBORHOOD_COLUMNS", "MIN_EXPECTED"]

#: Expected number of edges below which a pair's normal-approximation p-value is not trusted (counts of rare types
#: are skewed, and reciprocal kNN edges make them come in pairs): such pairs take the Monte Carlo p-value, or NaN.
MIN_EXPECTED = 5.0

#: Columns of :func:`neighborhood_enrichment`'s table.
NEIGHBORHOOD_COLUMNS = ["cluster_a", "cluster_b", "observed", "expected", "zscore", "pvalue", "padj", "n_a", "n_b"]


# ----------------------------------------------------------------------------- inputs
def _cell_table(cells, groupby: str | None, x: str, y: str,
                section_key: str | None) -> tuple[np.ndarray, pd.Categorical | None, np.ndarray, pd.Index | None]:
    """Coordinates (n, 2), cell types (None without ``groupby``), section codes and their names (None without
    ``section_key``), checked once."""
    if not isinstance(cells, pd.DataFrame):
        raise ParameterTypeError(f"cells must be a cell table (DataFrame with coordinates and labels), not {type(cells).__name__}")
    named = ((("groupby", groupby),) if groupby is not None else ()) + (("x", x), ("y", y))
    for name, column in named + ((("section_key", section_key),) if section_key else ()):
        check_column_name(column, name, "column name")
        if column not in cells.columns:
            from .._names import did_you_mean

            hint = did_you_mean([column], cells.columns)
            raise ParameterError(f"cells has no column {column!r} ({name}=){' (' + hint + ')' if hint else ''}")
    if cells.empty:
        raise ParameterError("cells is empty")
    try:
        xy = cells[[x, y]].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ParameterTypeError(f"cells[{x!r}] and cells[{y!r}] must hold numbers ({exc})") from None
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise DataFormatError(f"cells has {int(bad.sum())} cells with NaN or infinite coordinates in {x!r}/{y!r} "
                              f"(e.g. {list(cells.index[bad][:3])}); drop them first")
    types = None
    if groupby is not None:
        labels = cells[groupby]
        if labels.isna().any():
            raise DataFormatError(f"cells[{groupby!r}] has {int(labels.isna().sum())} cells without a label; drop them first")
        types = pd.Categorical(labels.astype(str))
        types = types.reorder_categories(sorted(types.categories))
    if section_key is None:
        return xy, types, np.zeros(len(cells), dtype=np.int64), None
    if cells[section_key].isna().any():
        raise DataFormatError(f"cells[{section_key!r}] has {int(cells[section_key].isna().sum())} cells without a section")
    sections = pd.Categorical(cells[section_key].astype(str))
    return xy, types, sections.codes.astype(np.int64), sections.categories


def neighborhood_graph(cells: pd.DataFrame, *, x: str = "x", y: str = "y", section_key: str | None = None,
                       n_neighbors: int = 6) -> sp.csr_matrix:
    """Directed kNN graph of the cells, built within each section: row i links cell i to its ``n_neighbors`` nearest.

    Cells of different sections are never neighbours. Rows and columns follow ``cells``' row order.

    Examples
    --------
    >>> cells = pd.DataFrame({"x": [0.0, 1, 2, 10, 11, 12], "y": 0.0, "section": list("aaabbb")})
    >>> g = neighborhood_graph(cells, section_key="section", n_neighbors=1)
    >>> g.nonzero()[1].tolist()
    [1, 0, 1, 4, 3, 4]
    """
    xy, _, sections, section_names = _cell_table(cells, None, x, y, section_key)
    return _knn_graph(xy, sections, section_names, check_count(n_neighbors, "n_neighbors"), cells.index)


def _knn_graph(xy: np.ndarray, sections: np.ndarray, section_names: pd.Index | None, k: int,
               cell_labels: pd.Index) -> sp.csr_matrix:
    """The kNN graph of the cells within their sections, from their :class:`~hmba_toolkit.spatial.Geometry`."""
    names = section_names[sections] if section_names is not None else None
    for s, count in enumerate(np.bincount(sections)):
        if 0 < count <= k:
            where = f"section {section_names[s]!r}" if section_names is not None else "cells"
            raise ParameterError(f"{where} has {count} cells, too few for n_neighbors={k}: every cell needs {k} "
                                 f"neighbours in its section (drop the section or lower n_neighbors)")
    return Geometry(xy, labels=cell_labels, sections=names, name="cells").knn_graph(k)


# ----------------------------------------------------------------------------- counts and exact moments
@numba.njit(cache=True)
def _pair_counts(indptr, indices, weights, types, n_types):  # pragma: no cover - compiled
    """Sum of edge weights from a cell of type a to a cell of type b, for every (a, b)."""
    out = np.zeros((n_types, n_types))
    for i in range(indptr.size - 1):
        a = types[i]
        for p in range(indptr[i], indptr[i + 1]):
            out[a, types[indices[p]]] += weights[p]
    return out


def _falling(m: np.ndarray, r: int) -> np.ndarray:
    """m (m-1) ... (m-r+1), elementwise (0 when m < r)."""
    out = np.ones_like(m, dtype=float)
    for t in range(r):
        out = out * np.clip(m - t, 0, None)
    return out


def _graph_sums(A: sp.csr_matrix) -> dict[str, float]:
    """The five sums over the graph that the second moment of a pair count needs (A has a zero diagonal)."""
    out_deg = np.asarray(A.sum(axis=1)).ravel()
    in_deg = np.asarray(A.sum(axis=0)).ravel()
    s0 = float(A.sum())
    s_sq = float(A.multiply(A).sum())
    recip = float(A.multiply(A.T).sum())
    same_source = float((out_deg**2).sum() - s_sq)
    same_target = float((in_deg**2).sum() - s_sq)
    chain = float((in_deg * out_deg).sum() - recip)
    four = s0**2 - s_sq - recip - same_source - same_target - 2 * chain
    return {"s0": s0, "s_sq": s_sq, "recip": recip, "same_source": same_source, "same_target": same_target,
            "chain": chain, "four": four}


def _moments(g: dict[str, float], counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and variance of every pair count under a uniform relabelling of the n cells of one section."""
    m = counts.astype(float)
    K = m.size
    n2, n3, n4 = _falling(np.array(float(n)), 2), _falling(np.array(float(n)), 3), _falling(np.array(float(n)), 4)
    f1 = m
    f2 = _falling(m, 2)
    same = np.eye(K, dtype=bool)
    # E[x_i^a x_j^b], i != j
    p2 = np.where(same, f2[:, None] * np.ones(K), np.outer(f1, f1)) / n2
    mean = g["s0"] * p2
    # three distinct positions: a at (i), b at (j, l) -> n_a n_b (n_b - 1); a at (i, k), b at (j) -> n_a (n_a - 1) n_b
    ab_b = np.outer(f1, f2) / n3 if n >= 3 else np.zeros((K, K))
    aa_b = np.outer(f2, f1) / n3 if n >= 3 else np.zeros((K, K))
    aaa = _falling(m, 3) / n3 if n >= 3 else np.zeros(K)
    four_ab = np.outer(f2, f2) / n4 if n >= 4 else np.zeros((K, K))
    four_aa = _falling(m, 4) / n4 if n >= 4 else np.zeros(K)
    second = g["s_sq"] * p2 + g["same_source"] * ab_b + g["same_target"] * aa_b + g["four"] * four_ab
    # a == b: every position carries label a; reciprocal edges and two-step paths count too
    diag = (g["s_sq"] + g["recip"]) * np.diag(p2) + (g["same_source"] + g["same_target"] + 2 * g["chain"]) * aaa \
        + g["four"] * four_aa
    second[same] = diag
    return mean, second - mean**2


@numba.njit(cache=True)
def _permuted_counts(indptr, indices, weights, types, starts, n_types, n_permutations, seeds):  # pragma: no cover - compiled
    """Pair counts after relabelling cells within their section (rows sorted by section; starts = section bounds)."""
    out = np.empty((n_permutations, n_types, n_types))
    lab = types.copy()
    for p in range(n_permutations):
        np.random.seed(seeds[p])
        for s in range(starts.size - 1):
            lab[starts[s]:starts[s + 1]] = np.random.permutation(types[starts[s]:starts[s + 1]])
        out[p] = _pair_counts(indptr, indices, weights, lab, n_types)
    return out


# ----------------------------------------------------------------------------- public
def neighborhood_enrichment(
    cells: pd.DataFrame,
    groupby: str,
    *,
    x: str = "x",
    y: str = "y",
    section_key: str | None = None,
    n_neighbors: int = 6,
    n_permutations: int = 0,
    seed: int = 0,
    by_section: bool = False,
    graph: sp.spmatrix | None = None,
) -> pd.DataFrame:
    """Are cells of type b found next to cells of type a more (or less) often than by chance?

    Parameters
    ----------
    cells
        One row per cell: coordinates ``x``, ``y``, the cell type ``groupby`` and, for a multi-section set, the
        section ``section_key`` (e.g. the release's ``cell_metadata`` with ``x_section``/``y_section``, or
        ``x_slab_mm``/``y_slab_mm`` and ``slab_plane_label``).
    groupby
        Column of cell types (e.g. ``"Group"``); every pair of its values is tested.
    x, y
        Coordinate columns.
    section_key
        Column of sections: neighbours are searched, and labels relabelled, within each section only.
    n_neighbors
        Neighbours per cell in the kNN graph (squidpy's ``n_neighs``, default 6).
    n_permutations
        0 (default): exact moments only. ``> 0``: also ``pvalue_perm``, a two-sided Monte Carlo p-value from that
        many relabellings within sections (``(1 + #{|N* - E| >= |N - E|}) / (1 + n_permutations)``).
    seed
        Seed of the relabellings.
    by_section
        One set of rows per section (column ``section``) instead of the sum over sections; pairs of a type absent
        from a section are left out of that section's rows.
    graph
        A precomputed cells x cells adjacency (rows and columns in ``cells``' order; binary or weighted), e.g.
        squidpy's ``obsp["spatial_connectivities"]`` or a Delaunay graph, instead of the kNN graph; with
        ``section_key`` it may not link cells of different sections.

    Returns
    -------
    pandas.DataFrame
        One row per ordered pair of types: ``cluster_a, cluster_b`` (edges from a cell of type a to its neighbour of
        type b), ``observed`` (number of such edges), ``expected`` (its exact mean under random relabelling within
        sections), ``zscore`` ((observed - expected) / exact SD; what squidpy's ``nhood_enrichment`` estimates by
        permutation), ``pvalue`` (two-sided, normal approximation of the exact moments when ``expected`` is at least
        :data:`MIN_EXPECTED`; below it the Monte Carlo p-value, or NaN with a warning without permutations; NaN
        with a warning when the variance is 0), ``padj`` (Benjamini-Hochberg over the pairs with a p-value),
        ``n_a``, ``n_b`` (cells of each type); sorted by the pair. ``attrs``: ``n_cells``, ``n_edges``,
        ``n_sections``, ``n_neighbors``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.random((400, 2))
    >>> cells = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "type": np.where(xy[:, 0] < 0.5, "left", "right")})
    >>> res = neighborhood_enrichment(cells, "type")
    >>> bool(res.set_index(["cluster_a", "cluster_b"]).loc[("left", "left"), "zscore"] > 10)
    True

    References
    ----------
    Cliff AD, Ord JK (1981) Spatial Processes. Pion (join-count moments). Palla G et al. (2022) Nat Methods 19:171-178.
    """
    xy, types, sections, section_names = _cell_table(cells, groupby, x, y, section_key)
    k = check_count(n_neighbors, "n_neighbors")
    n_permutations = check_count(n_permutations, "n_permutations", minimum=0, what="(0: exact moments only)")
    check_seed(seed)
    if not isinstance(by_section, bool):
        raise ParameterTypeError(f"by_section must be True or False, not {by_section!r}")
    codes = types.codes.astype(np.int64)
    names = list(types.categories)
    K = len(names)
    A = _knn_graph(xy, sections, section_names, k, cells.index) if graph is None else _checked_graph(graph, sections, len(cells))
    section_names = section_names if section_names is not None else pd.Index(["all"])
    per = []
    for s in np.unique(sections):
        rows = np.flatnonzero(sections == s)
        sub = A[rows][:, rows].tocsr()
        observed = _pair_counts(sub.indptr.astype(np.int64), sub.indices.astype(np.int64), sub.data, codes[rows], K)
        counts = np.bincount(codes[rows], minlength=K)
        mean, var = _moments(_graph_sums(sub), counts, rows.size)
        per.append((section_names[s], observed, mean, var, counts))
    frames = []
    groups = [[p] for p in per] if by_section else [per]
    for group in groups:
        observed = sum(p[1] for p in group)
        mean = sum(p[2] for p in group)
        var = sum(p[3] for p in group)
        counts = sum(p[4] for p in group)
        var = np.where(var > 1e-9 * np.maximum(mean, 1.0), var, 0.0)  # exact zeros, not rounding noise
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(var > 0, (observed - mean) / np.sqrt(var), np.nan)
        frame = pd.DataFrame({"cluster_a": np.repeat(names, K), "cluster_b": np.tile(names, K),
                              "code_a": np.repeat(np.arange(K), K), "code_b": np.tile(np.arange(K), K), "observed": observed.ravel(),
                              "expected": mean.ravel(), "zscore": z.ravel(), "pvalue": 2 * stats.norm.sf(np.abs(z.ravel())),
                              "n_a": np.repeat(counts, K), "n_b": np.tile(counts, K)})
        if by_section:  # a type absent from a section has no pair there: its rows are left out, not NaN
            frame = frame[(frame["n_a"] > 0) & (frame["n_b"] > 0)]
            frame.insert(0, "section", group[0][0])
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    degenerate = out["zscore"].isna()
    if degenerate.any():
        warnings.warn(f"neighborhood_enrichment: {int(degenerate.sum())} type pairs have no variance under relabelling "
                      f"(a type with a single cell in every section, or one filling a section): their z-scores are NaN, e.g. "
                      f"{list(zip(out.loc[degenerate, 'cluster_a'], out.loc[degenerate, 'cluster_b']))[:3]}", UserWarning,
                      stacklevel=2)
    keys = ["section"] if by_section else []
    rare = (out["expected"] < MIN_EXPECTED).to_numpy() & ~degenerate.to_numpy()
    if n_permutations:
        out["pvalue_perm"] = _permutation_pvalues(A, codes, sections, K, n_permutations, seed, out, by_section, section_names)
        out.loc[rare, "pvalue"] = out.loc[rare, "pvalue_perm"]
    elif rare.any():
        out.loc[rare, "pvalue"] = np.nan
        warnings.warn(f"neighborhood_enrichment: {int(rare.sum())} type pairs expect fewer than {MIN_EXPECTED:g} edges "
                      "(rare types), where the normal approximation is not reliable: their p-values are NaN (their "
                      "z-scores are exact); pass n_permutations=999 for Monte Carlo p-values", UserWarning, stacklevel=2)
    tested = out["pvalue"].notna()
    out["padj"] = np.nan
    for _, idx in (out[tested].groupby(keys).groups.items() if keys else [(None, out.index[tested])]):
        out.loc[idx, "padj"] = bh_adjust(out.loc[idx, "pvalue"].to_numpy())
    out = out[keys + NEIGHBORHOOD_COLUMNS + (["pvalue_perm"] if n_permutations else [])]
    out.attrs.update({"n_cells": int(len(cells)), "n_edges": int(A.nnz), "n_sections": int(len(np.unique(sections))),
                      "n_neighbors": k})
    return out


def _checked_graph(graph, sections: np.ndarray, n: int) -> sp.csr_matrix:
    if not sp.issparse(graph) and not isinstance(graph, np.ndarray):
        raise ParameterTypeError(f"graph must be a cells x cells sparse matrix, not {type(graph).__name__}")
    A = sp.csr_matrix(graph, dtype=float)
    if A.shape != (n, n):
        raise ParameterError(f"graph is {A.shape[0]} x {A.shape[1]}, cells has {n} rows: one row and column per cell")
    if not np.isfinite(A.data).all() or (A.data < 0).any():
        raise ParameterError("graph has negative, NaN or infinite weights")
    A.setdiag(0)
    A.eliminate_zeros()
    rows, cols = A.nonzero()
    if (sections[rows] != sections[cols]).any():
        raise ParameterError(f"graph links {int((sections[rows] != sections[cols]).sum())} pairs of cells of different "
                             "sections; build it within sections (neighborhood_graph) or leave section_key=None")
    return A


def _exceedance_pvalues(null: np.ndarray, table: pd.DataFrame, rows: np.ndarray, K: int) -> np.ndarray:
    """Two-sided Monte Carlo p-values of the table's ``rows`` from permuted K x K pair counts ``null``."""
    cell = table["code_a"].to_numpy()[rows] * K + table["code_b"].to_numpy()[rows]  # the rows' (a, b) entries
    expected = table["expected"].to_numpy()[rows]
    dev = np.abs(null.reshape(len(null), -1)[:, cell] - expected)
    obs = np.abs(table["observed"].to_numpy()[rows] - expected)
    return (1 + (dev >= obs - 1e-9).sum(axis=0)) / (1 + len(null))


def _permutation_pvalues(A, codes, sections, K, n_permutations, seed, table, by_section, section_names) -> np.ndarray:
    order = np.argsort(sections, kind="stable")
    P = A[order][:, order].tocsr()
    starts = np.r_[0, np.flatnonzero(np.diff(sections[order])) + 1, order.size].astype(np.int64)
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_permutations)
    if not by_section:
        null = _permuted_counts(P.indptr.astype(np.int64), P.indices.astype(np.int64), P.data, codes[order], starts, K,
                                n_permutations, seeds)
        return _exceedance_pvalues(null, table, np.arange(len(table)), K)
    out = np.empty(len(table))
    for s in range(starts.size - 1):
        a, b = starts[s], starts[s + 1]
        sub = P[a:b][:, a:b].tocsr()
        null = _permuted_counts(sub.indptr.astype(np.int64), sub.indices.astype(np.int64), sub.data, codes[order][a:b],
                                np.array([0, b - a], dtype=np.int64), K, n_permutations, seeds)
        rows = np.flatnonzero(table["section"].to_numpy() == section_names[sections[order][a]])
        out[rows] = _exceedance_pvalues(null, table, rows, K)
    return out


def co_occurrence(
    cells: pd.DataFrame,
    groupby: str,
    *,
    x: str = "x",
    y: str = "y",
    section_key: str | None = None,
    distances: Sequence[float] = (25.0, 50.0, 100.0, 200.0),
) -> pd.DataFrame:
    """Co-occurrence ratio by distance: how much likelier a cell of type b is within ``d`` of a cell of type a than anywhere.

    For each distance bin ``(d_prev, d]`` and ordered pair (a, b): ``P(b | a neighbour at that distance) / P(b)``,
    counted over the pairs of cells of the same section (squidpy's ``co_occurrence`` ratio). 1 means no
    association; above 1, b gathers around a at that distance.

    Parameters
    ----------
    distances
        Upper edges of the distance bins, in the coordinates' unit, increasing. Memory grows with the number of
        cell pairs of one section closer than the largest distance (sections are counted one at a time).

    Returns
    -------
    pandas.DataFrame
        Tidy ``cluster_a, cluster_b, distance`` (the bin's upper edge), ``n_pairs`` (pairs of a and b cells in the
        bin), ``ratio``; sorted by pair and distance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.random((300, 2)) * 100
    >>> cells = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "type": np.where(xy[:, 0] < 50, "left", "right")})
    >>> res = co_occurrence(cells, "type", distances=[5, 50])
    >>> bool(res.query("cluster_a == 'left' and cluster_b == 'left'")["ratio"].iloc[0] > 1.5)
    True
    """
    xy, types, sections, section_names = _cell_table(cells, groupby, x, y, section_key)
    edges = np.asarray(distances, dtype=float)
    if edges.ndim != 1 or edges.size == 0 or not np.isfinite(edges).all() or (edges <= 0).any() or (np.diff(edges) <= 0).any():
        raise ParameterError(f"distances must be positive, increasing distance bin edges, got {list(np.atleast_1d(edges))}")
    codes = types.codes.astype(np.int64)
    names = list(types.categories)
    K = len(names)
    pair_counts = np.zeros((edges.size, K, K))
    names_of = section_names[sections] if section_names is not None else None
    where = Geometry(xy, labels=cells.index, sections=names_of, name="cells")
    for _, rows in where.sections():  # one section's pairs at a time: memory follows the largest section
        pairs = where.subset(rows).pairs_within(edges[-1])
        bins = np.searchsorted(edges, pairs.distances, side="left")
        a, b = codes[rows[pairs.i]], codes[rows[pairs.j]]
        for first, second in ((a, b), (b, a)):  # both directions of each unordered pair
            pair_counts += np.bincount((bins * K + first) * K + second, minlength=pair_counts.size).reshape(pair_counts.shape)
    overall = np.bincount(codes, minlength=K) / len(codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        conditional = pair_counts / pair_counts.sum(axis=2, keepdims=True)
        ratio = conditional / overall[None, None, :]
    out = pd.DataFrame({"cluster_a": np.tile(np.repeat(names, K), edges.size), "cluster_b": np.tile(names, K * edges.size),
                        "distance": np.repeat(edges, K * K), "n_pairs": pair_counts.ravel().astype(np.int64),
                        "ratio": ratio.ravel()})
    return out.sort_values(["cluster_a", "cluster_b", "distance"], kind="stable", ignore_index=True)
