"""Map query cells onto a taxonomy: hierarchical correlation mapping with bootstrapping, flat correlation mapping.

Every correlation is Pearson's, between a cell's log2(CPM + 1) and a leaf cluster's mean log2(CPM + 1)
(``sum / n_cells`` of the reference statistics), over marker genes measured in the query.

- **Hierarchical** (default): from the root down, at each parent node the cell is correlated with every leaf
  descending from it over a random ``bootstrap_factor`` share of the node's markers; the best leaf votes for the child
  it descends from. After ``bootstrap_iteration`` draws the child with most votes is assigned, with
  ``bootstrapping_probability`` = votes / draws, ``avg_correlation`` = mean correlation of the winning draws and up to
  ``n_runners_up`` runners-up; ``aggregate_probability`` multiplies the probabilities down the levels. A node with
  fewer than ``min_markers`` markers in the query borrows those of its ancestors.
- **Flat** (``flatten=True``): the same vote over all leaves at once, with the markers of every node.
- **HANN** (``algorithm="hann"``, hierarchical approximate nearest neighbours): ``bootstrap_iteration`` whole descents
  from the root to a leaf, each node drawing a fresh ``bootstrap_factor`` share of its markers in every descent; a
  descent votes for the leaf it ends in. A node is assigned top-down, the child with most descents through it;
  ``bootstrapping_probability`` is the share of all descents through the assigned node (so it is also the
  ``aggregate_probability``) and ``avg_correlation`` the mean correlation of those descents with the leaf they ended in.
  The leaf votes and correlations (cells x clusters) are kept in :attr:`MappingResult.leaf_votes`.
- ``bootstrap_factor=1.0, bootstrap_iteration=1`` makes either mode deterministic.

The marker subsets of a node are drawn from a generator seeded by ``seed`` and the node, and shared by all cells
at that node: every cell's result depends on its own expression only, never on the other cells, their order or the
chunking. (Allen's implementation shares one draw per chunk of cells.)

References
----------
cell_type_mapper ``docs/algorithms/hierarchical_mapping.md`` (Allen Institute); Daniel SF et al. (2026) bioRxiv
10.64898/2026.03.06.710160 (MapMyCells); Yao Z et al. (2023) Nature 624:317 (hierarchical correlation mapping).
"""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anndata as ad
import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._log2cpm import CPM, LOG2CPM_MAX, log2_per_total_jit
from ..errors import DataFormatError, MissingFileError, ParameterError, ParameterTypeError
from ..io._csr_blocks import csr_rows
from ._tree import ROOT, TaxonomyTree
from .stats import ReferenceStats, check_mapping_normalization

__all__ = ["map_cells", "MappingResult"]

ALGORITHMS = ("hierarchical", "hann")


@dataclass
class MappingResult:
    """Assignments of query cells, with everything Allen's CSV and extended JSON hold.

    Attributes
    ----------
    assignments : DataFrame
        One row per cell (index ``cell_id``), columns in Allen's CSV order: per level ``<level>_label``,
        ``<level>_name`` (``<leaf>_alias`` after the leaf's name), ``<level>_bootstrapping_probability``,
        ``<level>_aggregate_probability``, ``<level>_correlation_coefficient``.
    runners_up : DataFrame
        Tidy: ``cell_id``, ``level``, ``rank`` (1 = best runner-up), ``label``, ``probability``, ``correlation``.
    directly_assigned : DataFrame
        Cells x levels, True where the level was voted on (False where inferred from a lower level).
    marker_genes : dict
        Markers used at each parent node (after borrowing), keyed as the lookup.
    tree : TaxonomyTree
    config : dict
    log : list of str
    leaf_votes : DataFrame or None
        HANN only: tidy ``cell_id``, ``cluster``, ``votes`` (descents ending in the cluster) and ``correlation`` (their
        mean correlation with it), one row per cell and cluster with votes.
    """

    assignments: pd.DataFrame
    runners_up: pd.DataFrame
    directly_assigned: pd.DataFrame
    marker_genes: dict
    tree: TaxonomyTree
    config: dict
    log: list = field(default_factory=list)
    n_unmapped_genes: int = 0
    leaf_votes: pd.DataFrame | None = None

    @property
    def algorithm(self) -> str:
        return self.config.get("algorithm", "correlation" if self.config.get("flatten") else "hierarchical")

    def labels(self, level: str) -> pd.Series:
        """The assigned label of every cell at ``level``."""
        self.tree._check_level(level)
        return self.assignments[f"{level}_label"]

    def to_csv(self, path, **kwargs):
        """Write Allen's CSV (see :func:`hmba_toolkit.mapping.write_csv`)."""
        from .results import write_csv

        return write_csv(self, path, **kwargs)

    def to_extended_json(self, path):
        """Write Allen's extended JSON (see :func:`hmba_toolkit.mapping.write_extended_json`)."""
        from .results import write_extended_json

        return write_extended_json(self, path)

    def __repr__(self) -> str:
        return f"MappingResult({len(self.assignments)} cells, {self.algorithm}, levels {self.tree.hierarchy})"


@dataclass
class _Node:
    key: str
    markers: np.ndarray          # columns of the query marker matrix
    leaves: np.ndarray           # rows of the profile matrix
    child_of_leaf: np.ndarray    # child index of every candidate leaf
    children: list[str]


def map_cells(
    query: ad.AnnData | str | os.PathLike,
    stats: ReferenceStats,
    markers: dict[str, list[str]],
    *,
    normalization: str = "raw",
    flatten: bool = False,
    algorithm: str = "hierarchical",
    drop_level: str | None = None,
    bootstrap_factor: float = 0.5,
    bootstrap_iteration: int = 100,
    seed: int = 11235813,
    n_runners_up: int = 5,
    min_markers: int = 10,
    chunk_size: int = 10_000,
    query_gene_id_col: str | None = None,
    reference_symbols: pd.Series | dict | None = None,
) -> MappingResult:
    """Assign every query cell to the taxonomy of a reference (MapMyCells-compatible).

    Parameters
    ----------
    query
        Cells x genes: an AnnData (in memory or backed) or an h5ad path, read ``chunk_size`` cells at a time.
    stats
        Reference statistics (:func:`~hmba_toolkit.mapping.read_stats` of Allen's ``precomputed_stats.*.h5`` or
        :func:`~hmba_toolkit.mapping.precompute_stats`).
    markers
        Query markers by parent node (:func:`~hmba_toolkit.mapping.read_query_markers` of Allen's
        ``query_markers.*.json``, or :func:`~hmba_toolkit.mapping.query_markers`).
    normalization
        ``"raw"`` (counts: each cell becomes log2(CPM + 1) over all its genes) or ``"log2CPM"``.
    flatten
        Correlation mapping against all leaves at once instead of level by level.
    algorithm
        ``"hierarchical"`` (a vote at every node) or ``"hann"`` (``bootstrap_iteration`` whole descents, each voting
        for a leaf: see the module's description).
    drop_level
        A level to skip while mapping (its assignment is inferred from the level below).
    bootstrap_factor, bootstrap_iteration
        Share of markers drawn per iteration and number of iterations (1.0 and 1: deterministic).
    seed
        Seed of the marker draws (Allen's ``rng_seed``; the same default).
    n_runners_up
        Runners-up reported per level.
    min_markers
        A node with fewer markers in the query borrows its ancestors'.
    chunk_size
        Cells processed at once (memory ~ chunk_size x markers x 8 bytes).
    query_gene_id_col
        A ``var`` column holding the reference's gene identifiers, when ``var_names`` hold something else.
    reference_symbols
        The symbol of each reference gene identifier (a Series or dict, e.g. the release's gene table
        ``genes.set_index("gene_identifier")["gene_symbol"]``): query genes are then matched by symbol, for a query
        that has no identifiers. A symbol shared by several identifiers matches none of them (counted in the log).

    Returns
    -------
    MappingResult

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from hmba_toolkit.mapping import precompute_stats, reference_markers, query_markers
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(1.0, (90, 60)).astype(float)
    >>> for k in range(3): X[30 * k:30 * (k + 1), 10 * k:10 * (k + 1)] += 20
    >>> obs = pd.DataFrame({"Class": ["AB"] * 60 + ["C"] * 30, "Type": ["a"] * 30 + ["b"] * 30 + ["c"] * 30},
    ...                    index=[f"c{i}" for i in range(90)])
    >>> ref = ad.AnnData(X, obs=obs)
    >>> stats = precompute_stats(ref, ["Class", "Type"])
    >>> lookup = query_markers(reference_markers(stats), stats.tree, n_per_utility=5)
    >>> result = map_cells(ref[::10].copy(), stats, lookup, bootstrap_iteration=20, seed=1)
    >>> result.labels("Type").tolist()
    ['a', 'a', 'a', 'b', 'b', 'b', 'c', 'c', 'c']
    >>> hann = map_cells(ref[::10].copy(), stats, lookup, algorithm="hann", bootstrap_iteration=20, seed=1)
    >>> hann.labels("Type").tolist() == result.labels("Type").tolist(), sorted(hann.leaf_votes.columns)
    (True, ['cell_id', 'cluster', 'correlation', 'votes'])

    References
    ----------
    cell_type_mapper ``docs/algorithms/hierarchical_mapping.md``; Daniel SF et al. (2026) bioRxiv
    10.64898/2026.03.06.710160.
    """
    normalization = check_mapping_normalization(normalization)
    if not isinstance(stats, ReferenceStats):
        raise ParameterTypeError(f"stats must be a ReferenceStats (read_stats(path)), not {type(stats).__name__}")
    if not isinstance(markers, dict) or ROOT not in markers:
        raise ParameterTypeError("markers must be a marker lookup {'None': [...], '<level>/<node>': [...]} "
                                 "(read_query_markers(path))")
    if algorithm not in ALGORITHMS:
        raise ParameterError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "hann" and flatten:
        raise ParameterError("algorithm='hann' descends the taxonomy: it cannot be combined with flatten=True")
    if not 0 < bootstrap_factor <= 1:
        raise ParameterError(f"bootstrap_factor must lie in (0, 1], got {bootstrap_factor}")
    for name, v in (("bootstrap_iteration", bootstrap_iteration), ("chunk_size", chunk_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ParameterError(f"{name} must be a positive integer, got {v!r}")
    if n_runners_up < 0 or min_markers < 0:
        raise ParameterError(f"n_runners_up and min_markers must be >= 0, got {n_runners_up} and {min_markers}")
    _check_lookup(markers, stats)
    full_tree = stats.tree
    tree = full_tree
    if drop_level is not None:
        tree = tree.drop_level(drop_level)
    lookup = _lookup_for(markers, full_tree, drop_level, flatten)
    if flatten:
        tree = tree.flatten()

    source = _open_query(query)
    qgenes = _query_genes(source, query_gene_id_col)
    log: list[str] = []
    if reference_symbols is not None:
        qgenes = _symbols_to_identifiers(qgenes, reference_symbols, stats.genes, log)
    ref_pos = {g: i for i, g in enumerate(stats.genes)}
    marker_set = sorted({g for v in lookup.values() for g in v}, key=ref_pos.get)
    qpos = {}
    for i, g in enumerate(qgenes):
        qpos.setdefault(g, i)
    used = [g for g in marker_set if g in qpos]
    if not used:
        raise ParameterError(
            f"none of the {len(marker_set)} marker genes is in the query (query genes look like {qgenes[:3]}, markers "
            f"like {marker_set[:3]}): the query must use the reference's gene identifiers and species"
            + _matching_hint(query_gene_id_col, reference_symbols))
    missing = len(marker_set) - len(used)
    if missing:
        log.append(f"WARNING: {missing} marker genes were not present in the query dataset. They have been ignored")
    if len(used) < 0.5 * len(marker_set):
        warnings.warn(f"only {len(used)} of the {len(marker_set)} marker genes are in the query: the mapping rests on "
                      f"few genes (check the species and identifier type of the query)", stacklevel=2)
    col_of = {g: k for k, g in enumerate(used)}
    query_cols = np.array([qpos[g] for g in used])
    profiles = stats.mean[:, [ref_pos[g] for g in used]]
    nodes, used_markers = _prepare_nodes(tree, lookup, col_of, stats, min_markers, log)

    levels = full_tree.hierarchy
    chunks = []
    run = partial(_hann_chunk, leaf_names=list(stats.clusters)) if algorithm == "hann" else _map_chunk
    for cell_ids, Q in _chunks(source, query_cols, normalization, chunk_size):
        chunks.append(run(cell_ids, Q, profiles, nodes, tree, full_tree, bootstrap_factor, bootstrap_iteration, seed,
                          n_runners_up))
    if not chunks:
        raise ParameterError("the query has no cells")
    assign = pd.concat([c[0] for c in chunks])
    runners = pd.concat([c[1] for c in chunks], ignore_index=True)
    direct = pd.concat([c[2] for c in chunks])
    leaf_votes = pd.concat([c[3] for c in chunks], ignore_index=True) if algorithm == "hann" else None
    if assign.index.duplicated().any():
        raise DataFormatError(f"the query repeats cell labels, e.g. {list(assign.index[assign.index.duplicated()][:3])}")
    columns = ["cell_id"]
    for lv in levels:
        columns += [f"{lv}_label", f"{lv}_name"] + ([f"{lv}_alias"] if lv == full_tree.leaf_level else []) + [
            f"{lv}_bootstrapping_probability", f"{lv}_aggregate_probability", f"{lv}_correlation_coefficient"]
    assign = assign.reset_index()[columns].set_index("cell_id")
    silent = np.zeros(len(assign), bool)
    for lv in levels:
        silent |= (assign[f"{lv}_bootstrapping_probability"] == 0).to_numpy()
    if silent.any():
        msg = (f"{int(silent.sum())} query cell(s) express none of a node's drawn markers in any draw (e.g. "
               f"{list(assign.index[silent][:3])}): below that node their labels are arbitrary and their "
               f"bootstrapping probability is 0")
        log.append(f"WARNING: {msg}")
        warnings.warn(msg, stacklevel=2)
    config = {"normalization": normalization, "flatten": bool(flatten), "drop_level": drop_level,
              "bootstrap_factor": bootstrap_factor, "bootstrap_iteration": int(bootstrap_iteration),
              "rng_seed": int(seed), "n_runners_up": int(n_runners_up), "min_markers": int(min_markers),
              "chunk_size": int(chunk_size), "query_gene_id_col": query_gene_id_col,
              "matched_by": "symbol" if reference_symbols is not None else "identifier",
              "algorithm": algorithm if not flatten else "correlation"}
    return MappingResult(assign, runners, direct, used_markers, full_tree, config, log, n_unmapped_genes=missing,
                         leaf_votes=leaf_votes)


# ---- inputs ---------------------------------------------------------------------------------------------------------
def measured_genes(
    query: ad.AnnData | str | os.PathLike,
    stats: ReferenceStats,
    *,
    query_gene_id_col: str | None = None,
    reference_symbols: pd.Series | dict | None = None,
) -> list[str]:
    """The reference genes a query measures, matched as :func:`map_cells` matches them.

    A query that measures few genes (a spatial panel, a targeted Patch-seq library) maps best with markers chosen
    among those genes: pass the result to :func:`~hmba_toolkit.mapping.query_markers` as ``genes=`` (Allen's
    ``query_markers`` step takes the query for the same purpose).

    Parameters
    ----------
    query
        Cells x genes: an AnnData or an h5ad path (only ``var`` is read).
    stats
        Reference statistics.
    query_gene_id_col, reference_symbols
        As in :func:`map_cells`.

    Returns
    -------
    list of str
        Reference gene identifiers, in the statistics file's order.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from hmba_toolkit.mapping import precompute_stats
    >>> obs = pd.DataFrame({"Class": ["A"] * 4, "Type": ["a", "a", "b", "b"]}, index=list("wxyz"))
    >>> ref = ad.AnnData(np.ones((4, 3)), obs=obs, var=pd.DataFrame(index=["G1", "G2", "G3"]))
    >>> stats = precompute_stats(ref, ["Class", "Type"])
    >>> panel = ad.AnnData(np.ones((2, 2)), var=pd.DataFrame(index=["Gene3", "Gene9"]))
    >>> measured_genes(panel, stats, reference_symbols={"G1": "Gene1", "G2": "Gene2", "G3": "Gene3"})
    ['G3']

    Raises
    ------
    ParameterError
        When the query measures none of the reference genes (another species or identifier type).

    References
    ----------
    cell_type_mapper ``query_markers_from_reference_markers`` (``--query_path``), Allen Institute.
    """
    if not isinstance(stats, ReferenceStats):
        raise ParameterTypeError(f"stats must be a ReferenceStats (read_stats(path)), not {type(stats).__name__}")
    qgenes = _query_genes(_open_query(query), query_gene_id_col)
    if reference_symbols is not None:
        qgenes = _symbols_to_identifiers(qgenes, reference_symbols, stats.genes, [])
    present = set(qgenes)
    found = [g for g in stats.genes if g in present]
    if not found:
        raise ParameterError(
            f"measured_genes: none of the query's {len(qgenes)} genes is a reference gene (query genes look like "
            f"{qgenes[:3]}, reference genes like {list(stats.genes[:3])}): the query must use the reference's gene "
            "identifiers and species" + _matching_hint(query_gene_id_col, reference_symbols))
    return found


def _matching_hint(query_gene_id_col, reference_symbols) -> str:
    """How to match a query's genes another way, when neither way was asked for."""
    if query_gene_id_col or reference_symbols is not None:
        return ""
    return "; name a var column holding them with query_gene_id_col=, or match symbols with reference_symbols="


def _check_lookup(markers: dict, stats: ReferenceStats) -> None:
    """The lookup's nodes must be the taxonomy's and its genes the statistics file's."""
    keys = set(stats.tree.parent_keys())
    nodes = [k for k in markers if k not in ("log", "metadata")]
    alien = [k for k in nodes if k not in keys]
    if alien:
        raise ParameterError(f"the marker lookup and the statistics file do not belong together: nodes {alien[:3]} "
                             f"are not in the taxonomy ({stats.tree!r}, e.g. {sorted(keys)[:3]})")
    genes = set(stats.genes)
    strangers = sorted({g for k in nodes for g in markers[k] if g not in genes})
    if strangers:
        raise ParameterError(f"the marker lookup and the statistics file do not belong together: {len(strangers)} "
                             f"marker genes are not in the statistics file (e.g. {strangers[:3]})")


def _lookup_for(markers: dict, tree: TaxonomyTree, drop_level: str | None, flatten: bool) -> dict[str, list[str]]:
    """The marker lookup of the tree actually mapped (a dropped level's markers join its parent's; flat: all)."""
    nodes = {k: list(v) for k, v in markers.items() if k not in ("log", "metadata")}
    if flatten:
        ref = [g for v in nodes.values() for g in v]
        return {ROOT: list(dict.fromkeys(ref))}
    if drop_level is None:
        return nodes
    out = {k: v for k, v in nodes.items() if not k.startswith(f"{drop_level}/")}
    for node in tree.nodes(drop_level):
        parent_key = tree.parent_key(drop_level, node)
        out[parent_key] = list(dict.fromkeys(out.get(parent_key, []) + nodes.get(f"{drop_level}/{node}", [])))
    return out


def _prepare_nodes(tree: TaxonomyTree, lookup: dict, col_of: dict, stats: ReferenceStats, min_markers: int,
                   log: list) -> tuple[dict, dict]:
    """Candidate leaves, child of each leaf and marker columns of every parent node (borrowing when short)."""
    leaf_row = {c: i for i, c in enumerate(stats.clusters)}
    nodes, used = {}, {}
    for key in tree.parent_keys():
        if key == ROOT:
            child_level = tree.hierarchy[0]
            children = tree.nodes(child_level)
        else:
            level, node = key.split("/", 1)
            child_level = tree.hierarchy[tree.hierarchy.index(level) + 1]
            children = tree.children(level, node)
        leaves, child_of = [], []
        for k, child in enumerate(children):
            under = [child] if child_level == tree.leaf_level else tree.leaves_under(child_level, child)
            leaves += [leaf_row[c] for c in under]
            child_of += [k] * len(under)
        genes = [g for g in lookup.get(key, []) if g in col_of]
        borrowed, up = [], key
        while len(genes) < min_markers and up != ROOT:
            up_level, up_node = up.split("/", 1)
            up = tree.parent_key(up_level, up_node)
            borrowed.append(up)
            genes = list(dict.fromkeys(genes + [g for g in lookup.get(up, []) if g in col_of]))
        if borrowed:
            log.append(f"WARNING: parent node '{key}' had too few markers in query set; augmenting with markers from "
                       f"{borrowed}")
        if not genes and len(children) > 1:
            raise ParameterError(f"no marker gene of node {key!r} or of its ancestors is in the query: it cannot be mapped")
        cols = np.array(sorted(col_of[g] for g in genes), dtype=np.int64)
        nodes[key] = _Node(key, cols, np.array(leaves), np.array(child_of), list(children))
        used[key] = sorted(genes)
    return nodes, used


def _open_query(query):
    if isinstance(query, ad.AnnData):
        return query
    if isinstance(query, (str, os.PathLike)):
        path = Path(query)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such query h5ad")
        try:
            return ad.read_h5ad(path, backed="r")
        except (OSError, KeyError, ValueError) as exc:
            raise DataFormatError(f"{path}: cannot be read as an h5ad ({exc})") from None
    raise ParameterTypeError(f"query must be an AnnData or an h5ad path, not {type(query).__name__}")


def _query_genes(source: ad.AnnData, column: str | None) -> list[str]:
    if source.n_obs == 0:
        raise ParameterError("the query has no cells")
    if column is None:
        return [str(g) for g in source.var_names]
    if column not in source.var.columns:
        raise ParameterError(f"query_gene_id_col={column!r} is not a var column; columns: {list(source.var.columns)}")
    return [str(g) for g in source.var[column]]


def _symbols_to_identifiers(qgenes: list[str], symbols, reference_genes: list[str], log: list) -> list[str]:
    """Each query symbol replaced by the one reference identifier that has it ('' when none or several do)."""
    if isinstance(symbols, dict):
        symbols = pd.Series(symbols, dtype=object)
    if not isinstance(symbols, pd.Series):
        raise ParameterTypeError(f"reference_symbols must map gene identifiers to symbols (a Series or dict), not "
                                 f"{type(symbols).__name__}")
    symbols = symbols[symbols.index.isin(reference_genes)].dropna().astype(str)
    if symbols.empty:
        raise ParameterError(f"reference_symbols: none of its identifiers is a gene of the statistics file (e.g. "
                             f"{list(reference_genes[:3])}); pass the gene table of the reference")
    shared = symbols[symbols.duplicated(keep=False)]
    unique = symbols[~symbols.index.isin(shared.index)]
    by_symbol = pd.Series(unique.index, index=unique.to_numpy())
    if len(shared):
        log.append(f"WARNING: {shared.nunique()} symbols name several reference genes and match none of them "
                   f"(e.g. {sorted(shared.unique())[:3]})")
    return [by_symbol.get(g, "") for g in qgenes]


@numba.njit(cache=True, nogil=True)
def _marker_block(data, indices, indptr, keep, raw, out):
    """Fill ``out`` (cells x markers, zeros) with each cell's marker values, as log2(CPM + 1) when ``raw``.

    One pass over the stored values. Returns the cell totals and flags: 1 NaN or infinite, 2 negative, 4 a
    non-integer marker count, 8 a cell without counts; and the largest value.
    """
    n = indptr.size - 1
    totals = np.zeros(n)
    flags = 0
    largest = 0.0
    for r in range(n):
        t = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            v = np.float64(data[k])
            if not np.isfinite(v):
                flags |= 1
            elif v < 0:
                flags |= 2
            t += v
            if v > largest:
                largest = v
        totals[r] = t
        if raw and t == 0.0:
            flags |= 8
            continue
        for k in range(indptr[r], indptr[r + 1]):
            j = keep[indices[k]]
            if j < 0:
                continue
            v = np.float64(data[k])
            if raw:
                if v != np.floor(v):
                    flags |= 4
                out[r, j] = log2_per_total_jit(v, t, CPM)
            else:
                out[r, j] = v
    return totals, flags, largest


def _rows(X, a: int, b: int):
    """data, indices and row pointer of rows [a, b) of a matrix (views of an in-memory CSR; else read)."""
    if sp.issparse(X) and X.format == "csr":
        return csr_rows(X, a, b)
    block = X[a:b]
    block = block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
    return block.data, block.indices, block.indptr


def _chunks(source: ad.AnnData, cols: np.ndarray, normalization: str, chunk_size: int) -> Iterator:
    """(cell ids, cells x markers log2(CPM+1)) for each block of ``chunk_size`` cells."""
    keep = np.full(source.n_vars, -1, dtype=np.int64)
    keep[cols] = np.arange(cols.size)
    raw = normalization == "raw"
    for a in range(0, source.n_obs, chunk_size):
        b = min(a + chunk_size, source.n_obs)
        data, indices, indptr = _rows(source.X, a, b)
        M = np.zeros((b - a, cols.size))
        totals, flags, largest = _marker_block(data, indices, indptr.astype(np.int64), keep, raw, M)
        where = f"query cells {a}-{b}"
        if flags & 1:
            raise DataFormatError(f"{where}: the expression holds NaN or infinite values")
        if flags & 2:
            raise DataFormatError(f"{where}: negative values ({data.min():g}); counts and log2(CPM+1) are >= 0")
        if flags & 4:
            raise ParameterError("normalization='raw' but the query holds non-integer values: pass "
                                 "normalization='log2CPM' for log2(CPM+1) data")
        if flags & 8:
            empty = totals == 0
            raise ParameterError(f"{int(empty.sum())} query cells have no counts at all (e.g. "
                                 f"{list(source.obs_names[a:b][empty][:3])}): remove them before mapping")
        if not raw and largest > LOG2CPM_MAX + 1e-6:
            raise ParameterError(f"normalization='log2CPM' but query values reach {largest:g}, above "
                                 f"log2(1e6 + 1) = 19.93: these look like counts; pass normalization='raw'")
        yield pd.Index(source.obs_names[a:b].astype(str), name="cell_id"), M


# ---- the vote -------------------------------------------------------------------------------------------------------
def _unit_profiles(P: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (rows without variance become zeros)."""
    Pc = P - P.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", Pc, Pc))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm[:, None] > 0, Pc / norm[:, None], 0.0)


#: Leaves whose float32 scores come within this share of the cell's norm of the best one are compared again in
#: float64, so that rounding (which can differ with the number of cells in a matrix product) never picks the winner.
_NEAR_TIE = 1e-4
#: A cell whose centred sum of squares over the drawn genes is below this share of its sum of squares is constant
_CONSTANT = 1e-5
#: Leaves whose float64 correlations with a cell differ by less than this are tied (profiles that are equal up to
#: scale and shift over the drawn genes, frequent when a draw holds few genes): the first leaf wins, whatever the
#: rounding of the BLAS kernel at hand
_TIE = 1e-10


def _first_best(scores: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Per row, the first column within ``_TIE * norm`` of the row's largest float64 score."""
    top = scores.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.argmax(scores >= top - _TIE * norm[:, None], axis=1)


def _top_two(scores: np.ndarray):
    """Per row: the column of the largest value (the first one on ties), the largest and the second largest value.

    ``scores`` is a scratch array: the winners are overwritten while the second largest is found.
    """
    rows = np.arange(scores.shape[0])
    best = np.argmax(scores, axis=1)
    top = scores[rows, best].astype(np.float64)
    scores[rows, best] = -np.inf
    second = scores.max(axis=1).astype(np.float64) if scores.shape[1] > 1 else np.full(len(rows), -np.inf)
    return best, top, second


@numba.njit(cache=True, nogil=True)
def _column_sums(GT):
    """Sum and sum of squares of every column, accumulated in float64 in row order."""
    k, n = GT.shape
    sums = np.zeros(n)
    squares = np.zeros(n)
    for i in range(k):
        for j in range(n):
            v = np.float64(GT[i, j])
            sums[j] += v
            squares[j] += v * v
    return sums, squares


@numba.njit(cache=True, nogil=True)
def _winner_scores(source, genes, unit, best):
    """Per cell (row of ``source``) over its values at ``genes``: the dot product with its winning unit profile
    (row ``best`` of ``unit``), the sum and the sum of squares, in float64 and in gene order, so that the reported
    correlation is the same whatever BLAS kernel, thread count or memory alignment computed the float32 scores."""
    n, k = best.size, genes.size
    top = np.empty(n)
    sums = np.empty(n)
    squares = np.empty(n)
    for i in range(n):
        b = best[i]
        t = 0.0
        s = 0.0
        q = 0.0
        for j in range(k):
            v = source[i, genes[j]]
            t += v * unit[b, j]
            s += v
            q += v * v
        top[i] = t
        sums[i] = s
        squares[i] = q
    return top, sums, squares


def _exact_correlation(source: np.ndarray, genes: np.ndarray, unit: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Each cell's correlation with its winning profile, from the float64 values (see :func:`_winner_scores`)."""
    genes = np.asarray(genes, dtype=np.int64)
    top, sums, squares = _winner_scores(np.ascontiguousarray(source, dtype=np.float64), genes,
                                        np.ascontiguousarray(unit, dtype=np.float64), best)
    norm = np.sqrt(np.maximum(squares - sums * sums / genes.size, 0.0))
    return _correlation(top, norm, squares)


def _settle(scores: np.ndarray, norm: np.ndarray, exact) -> np.ndarray:
    """Best column of each row of ``scores``; near ties settled by ``exact(rows)`` (float64 scores)."""
    best, top, second = _top_two(scores)
    with np.errstate(invalid="ignore"):
        near = top - second <= _NEAR_TIE * norm
    if near.any():
        idx = np.flatnonzero(near)
        again = exact(idx)
        best[idx] = _first_best(again, norm[idx])
    return best


def _cell_norms(GT: np.ndarray) -> np.ndarray:
    """Norm of each cell's centred values over the genes (rows) of GT (the scale of the tie tolerances)."""
    sums, squares = _column_sums(GT)
    return np.sqrt(np.maximum(squares - sums * sums / GT.shape[0], 0.0))


def _correlation(top: np.ndarray, norm: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """The winner's correlation from its score and the cell's norm; NaN for a cell constant over the genes."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = top / norm
    # constant over the genes: float64 sums leave a residue of about 1e-16 of the sum of squares, while one gene that
    # differs among even 10,000 leaves 1e-4 of it
    corr[~(norm * norm > _CONSTANT * np.maximum(squares, 1e-300))] = np.nan
    return corr


def _best_leaf(GT: np.ndarray, P: np.ndarray, exact_source: tuple | None = None):
    """Best-correlated row of P for every column (cell) of GT (genes x cells), and that correlation.

    With the profiles centred and of unit norm, a cell's correlation with a profile is its dot product with it divided
    by the norm of the cell's centred values, the same for every profile: the best profile comes from one matrix
    product and only the winner's correlation is divided out, recomputed in float64 in a fixed order
    (:func:`_winner_scores`) so that it never depends on the kernel of the product. NaN for a cell constant over the
    genes. ``exact_source = (cells x all genes float64, genes)`` settles near ties of a float32 ``GT``.
    """
    unit = _unit_profiles(P)
    scores = GT.T @ unit.T.astype(GT.dtype, copy=False)
    norm = _cell_norms(GT)
    if exact_source is None:
        best = _first_best(scores, norm)
        source, genes = GT.T, np.arange(GT.shape[0])
    else:
        source, genes = exact_source
        best = _settle(scores, norm, lambda idx: source[np.ix_(idx, genes)] @ unit.T)
    corr = _exact_correlation(source, genes, unit, best)
    best[np.isnan(corr)] = -1  # a cell constant over the genes correlates with nothing: it abstains
    return best, corr


#: Nodes whose draws leave out fewer genes x leaves than this compute all draws in one matrix product instead of a
#: loop (the loop's per-draw overhead dominates). A property of the node, never of the cells or the chunk, so that a
#: cell's result does not depend on which cells are mapped with it.
_BATCH_BELOW = 10_000
#: Scores held at once by the one-product path (cells x draws x leaves).
_BATCH_SCORES = 20_000_000


def _draws(node: _Node, factor: float, iterations: int, seed: int) -> list[np.ndarray]:
    """The gene draws of a node: positions among its markers, from a generator seeded by the seed and the node."""
    m = node.markers.size
    k = m if factor >= 1 else max(1, int(round(factor * m)))
    rng = np.random.default_rng([seed, zlib.crc32(node.key.encode())])
    return [np.arange(m) if k == m else np.sort(rng.choice(m, size=k, replace=False)) for _ in range(iterations)]


def _vote(Q, profiles, node: _Node, factor, iterations, seed):
    """Votes and summed winning correlations of each child, over ``iterations`` draws of the node's markers."""
    n, n_children = Q.shape[0], len(node.children)
    votes = np.zeros((n, n_children))
    csum = np.zeros((n, n_children))
    m = node.markers.size
    if n_children == 1:  # nothing to choose: every draw goes to the only child
        votes[:, 0] = iterations
        csum[:, 0] = np.nan if m == 0 else iterations * _best_leaf(Q[:, node.markers].T,
                                                                   profiles[node.leaves][:, node.markers])[1]
        return votes, csum
    draws = _draws(node, factor, iterations, seed)
    # in C order (indexing columns can leave F order, whose row means and the draws' reads of a cell's row differ)
    sub = Q if m == Q.shape[1] and (node.markers == np.arange(m)).all() else np.ascontiguousarray(Q[:, node.markers])
    P = profiles[node.leaves][:, node.markers]
    if iterations == 1:
        S = draws[0]  # one draw (all markers at factor 1.0), one exact pass in float64
        best, corr = _best_leaf(sub[:, S].T if S.size < m else sub.T, P[:, S] if S.size < m else P)
        _add_votes(votes, csum, node.child_of_leaf, best, corr)
        return votes, csum
    # each cell shifted by its mean over the node's markers: correlations ignore the shift, and it keeps float32 sums
    # of squares accurate
    sub = sub - sub.mean(axis=1, keepdims=True)
    if (m - draws[0].size) * len(node.leaves) < _BATCH_BELOW:
        G = sub.astype(np.float32)
        step = max(1, _BATCH_SCORES // (iterations * len(node.leaves)))
        parts = [_best_leaf_all_draws(G[a:a + step], P, draws, sub[a:a + step]) for a in range(0, n, step)]
        best, corr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        for it in range(iterations):
            _add_votes(votes, csum, node.child_of_leaf, best[:, it], corr[:, it])
        return votes, csum
    QT = np.ascontiguousarray(sub.T, dtype=np.float32)  # genes x cells: a draw of genes is a contiguous copy
    for S in draws:
        best, corr = _best_leaf(QT[S], P[:, S], exact_source=(sub, S))
        _add_votes(votes, csum, node.child_of_leaf, best, corr)
    return votes, csum


def _add_votes(votes, csum, child_of_leaf, best, corr) -> None:
    """Each cell's best leaf votes for its child (cells that abstain, best = -1, do not vote)."""
    ok = np.flatnonzero(best >= 0)
    child = child_of_leaf[best[ok]]
    votes[ok, child] += 1
    csum[ok, child] += corr[ok]


def _best_leaf_all_draws(G: np.ndarray, P: np.ndarray, draws: list[np.ndarray], exact_source: np.ndarray):
    """:func:`_best_leaf` for every draw at once (cells x draws): the draws' unit profiles, zero outside their genes,
    stacked into one matrix product; sums and sums of squares over each draw from the draw indicator matrix."""
    n_leaves, m = P.shape
    W = np.zeros((len(draws), m), dtype=np.float32)
    units = [_unit_profiles(P[:, S]) for S in draws]
    stacked = np.zeros((len(draws), n_leaves, m), dtype=np.float32)
    for it, S in enumerate(draws):
        W[it, S] = 1.0
        stacked[it][:, S] = units[it]
    scores = (G @ stacked.reshape(-1, m).T).reshape(G.shape[0], len(draws), n_leaves)
    G64 = exact_source.astype(np.float64, copy=False)
    sums = G64 @ W.T.astype(np.float64)
    squares = (G64 * G64) @ W.T.astype(np.float64)
    norm = np.sqrt(np.maximum(squares - sums * sums / W.sum(axis=1), 0.0))
    best = np.empty((G.shape[0], len(draws)), dtype=np.int64)
    corr = np.empty((G.shape[0], len(draws)))
    for it, S in enumerate(draws):
        best[:, it] = _settle(scores[:, it], norm[:, it], lambda idx: exact_source[idx][:, S] @ units[it].T)
        corr[:, it] = _exact_correlation(exact_source, S, units[it], best[:, it])
    best[np.isnan(corr)] = -1
    return best, corr


def _mean_correlation(votes: np.ndarray, csum: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes > 0, csum / votes, np.nan)


def _winner(votes: np.ndarray, csum: np.ndarray) -> np.ndarray:
    """Most votes; ties go to the higher mean correlation (a term < 1 never outweighs a vote)."""
    score = votes + (np.nan_to_num(_mean_correlation(votes, csum), nan=-1.0) + 1.0) / 4.0
    return np.argmax(score, axis=1)


def _runners_up(votes: np.ndarray, csum: np.ndarray, win: np.ndarray, n: int, total: int | None = None):
    """Up to ``n`` other candidates with votes, best first: (indexes, probabilities, mean correlations, valid).

    Probabilities are votes over ``total`` (default: each cell's votes cast)."""
    avg = _mean_correlation(votes, csum)
    score = votes + (np.nan_to_num(avg, nan=-1.0) + 1.0) / 4.0
    score[np.arange(len(win)), win] = -np.inf
    ru = np.argsort(-score, axis=1, kind="stable")[:, :min(n, max(votes.shape[1] - 1, 0))]
    ru_votes = np.take_along_axis(votes, ru, axis=1)
    iterations = votes.sum(axis=1, keepdims=True) if total is None else total
    with np.errstate(invalid="ignore", divide="ignore"):  # a cell that abstained in every draw has no runners-up
        return ru, ru_votes / iterations, np.take_along_axis(avg, ru, axis=1), ru_votes > 0


def _map_chunk(cell_ids, Q, profiles, nodes, tree, full_tree, factor, iterations, seed, n_runners_up):
    n = Q.shape[0]
    levels = full_tree.hierarchy
    label = {lv: np.empty(n, dtype=object) for lv in levels}
    prob = {lv: np.full(n, np.nan) for lv in levels}
    corr = {lv: np.full(n, np.nan) for lv in levels}
    direct = {lv: np.zeros(n, bool) for lv in levels}
    runner_rows = []
    current = np.full(n, ROOT, dtype=object)
    mapped = tree.hierarchy
    for depth, child_level in enumerate(mapped):
        upper = None if depth == 0 else mapped[depth - 1]
        # levels of the full taxonomy between the mapped parent and the mapped child are inferred from the child
        inferred = levels[(levels.index(upper) + 1) if upper else 0: levels.index(child_level)]
        for key in pd.unique(current):
            node = nodes[key]
            idx = np.flatnonzero(current == key)
            votes, csum = _vote(Q if idx.size == n else Q[idx], profiles, node, factor, iterations, seed)
            win = _winner(votes, csum)
            rows = np.arange(len(idx))
            children = np.array(node.children, dtype=object)
            label[child_level][idx] = children[win]
            prob[child_level][idx] = votes[rows, win] / iterations
            corr[child_level][idx] = _mean_correlation(votes, csum)[rows, win]
            direct[child_level][idx] = True
            runner_rows.append(_runners(cell_ids[idx], child_level, children,
                                        *_runners_up(votes, csum, win, n_runners_up)))
            for lv in inferred:
                # the inferred node is the winner's ancestor; its probability counts the draws of all its children
                anc = np.array([full_tree.ancestors(_a_leaf(tree, child_level, ch))[lv] for ch in node.children],
                               dtype=object)
                groups, inv, gv, gc = _pool_votes(votes, csum, anc)
                w = inv[win]
                label[lv][idx] = groups[w]
                prob[lv][idx] = gv[rows, w] / iterations
                corr[lv][idx] = _mean_correlation(gv, gc)[rows, w]
                runner_rows.append(_runners(cell_ids[idx], lv, groups, *_runners_up(gv, gc, w, n_runners_up)))
            current[idx] = [f"{child_level}/{x}" for x in children[win]]
    aggregate, running = {}, np.ones(n)
    for lv in levels:
        # the product of the voted probabilities down to this level (an inferred level: times its own)
        aggregate[lv] = running * prob[lv]
        if direct[lv].all():
            running = aggregate[lv]
    return _assemble(cell_ids, full_tree, label, prob, aggregate, corr, direct, runner_rows)


def _pool_votes(votes: np.ndarray, csum: np.ndarray, group_of: np.ndarray):
    """Votes and summed correlations of the columns pooled by their group (``group_of``, one label per column):
    the sorted groups, each column's group index, and the pooled votes and sums (cells x groups)."""
    groups, inv = np.unique(group_of, return_inverse=True)
    agg = sp.csr_matrix((np.ones(inv.size), (np.arange(inv.size), inv)), shape=(inv.size, len(groups)))
    return groups, inv, votes @ agg, csum @ agg


def _assemble(cell_ids, full_tree, label, prob, aggregate, corr, direct, runner_rows):
    """A chunk's assignments (Allen's columns), runners-up and directly-assigned flags."""
    out = {}
    for lv in full_tree.hierarchy:
        out[f"{lv}_label"] = label[lv]
        out[f"{lv}_name"] = [full_tree.name(lv, x) for x in label[lv]]
        if lv == full_tree.leaf_level:
            out[f"{lv}_alias"] = [full_tree.alias(lv, x) for x in label[lv]]
        out[f"{lv}_bootstrapping_probability"] = prob[lv]
        out[f"{lv}_aggregate_probability"] = aggregate[lv]
        out[f"{lv}_correlation_coefficient"] = corr[lv]
    frame = pd.DataFrame(out, index=cell_ids)
    directly = pd.DataFrame(direct, index=cell_ids)
    runner_rows = [r for r in runner_rows if len(r)] or [_runners([], "", [], np.zeros((0, 0), dtype=np.int64),
                                                                  *([np.zeros((0, 0))] * 3))]
    return frame, pd.concat(runner_rows, ignore_index=True), directly


def _hann_chunk(cell_ids, Q, profiles, nodes, tree, full_tree, factor, iterations, seed, n_runners_up, *,
                leaf_names):
    """HANN: ``iterations`` descents, each drawing fresh markers at every node, vote for the leaf they end in."""
    n, n_leaves = Q.shape[0], profiles.shape[0]
    keys = list(nodes)
    key_id = {k: i for i, k in enumerate(keys)}
    mapped = tree.hierarchy
    # the parent node each child of a node leads to (-1 below the last mapped level)
    child_ids = {}
    for key, node in nodes.items():
        level = mapped[0] if key == ROOT else mapped[mapped.index(key.split("/", 1)[0]) + 1]
        child_ids[key] = np.array([key_id.get(f"{level}/{c}", -1) for c in node.children])
    draws = {key: _draws(node, factor, iterations, seed) for key, node in nodes.items()}
    votes = np.zeros((n, n_leaves))
    csum = np.zeros((n, n_leaves))
    for t in range(iterations):
        current = np.full(n, key_id[ROOT])
        leaf = np.full(n, -1)
        corr = np.full(n, np.nan)
        for _ in mapped:
            for k in np.unique(current[current >= 0]):
                key = keys[k]
                node = nodes[key]
                idx = np.flatnonzero(current == k)
                if len(node.children) == 1 and node.markers.size == 0:
                    best, c = np.zeros(idx.size, dtype=np.int64), np.full(idx.size, np.nan)
                else:
                    S = draws[key][t]
                    # each cell shifted by its mean over the node's markers (as in the vote): keeps float32 sums of
                    # squares accurate
                    sub = Q[np.ix_(idx, node.markers)]
                    sub -= sub.mean(axis=1, keepdims=True)
                    best, c = _best_leaf(np.ascontiguousarray(sub[:, S].T, dtype=np.float32),
                                         profiles[np.ix_(node.leaves, node.markers[S])], exact_source=(sub, S))
                    if len(node.children) == 1:
                        best[best < 0] = 0  # nothing to choose: the descent goes on
                ok = best >= 0
                nxt = np.full(idx.size, -1)
                nxt[ok] = child_ids[key][node.child_of_leaf[best[ok]]]
                leaf[idx[ok]] = node.leaves[best[ok]]
                leaf[idx[~ok]] = -1  # constant over the drawn markers: this descent ends without a vote
                corr[idx] = c
                current[idx] = np.where(ok, nxt, -1)
        done = np.flatnonzero(leaf >= 0)
        np.add.at(votes, (done, leaf[done]), 1.0)
        np.add.at(csum, (done, leaf[done]), corr[done])
    levels = full_tree.hierarchy
    label, prob, corr_of, direct, runner_rows = {}, {}, {}, {}, []
    chosen, upper = None, None  # the node chosen at the level above, and each leaf's ancestor there
    rows = np.arange(n)
    for lv in levels:
        anc = np.array([full_tree.ancestors(x)[lv] for x in leaf_names], dtype=object)
        groups, inv, gv, gc = _pool_votes(votes, csum, anc)
        if chosen is not None:  # only the children of the node chosen at the level above
            parent = np.empty(len(groups), dtype=object)
            parent[inv] = upper
            allowed = parent[None, :] == chosen[:, None]
            gv, gc = np.where(allowed, gv, 0.0), np.where(allowed, gc, 0.0)
        win = _winner(gv, gc)
        label[lv] = groups[win]
        prob[lv] = gv[rows, win] / iterations
        corr_of[lv] = _mean_correlation(gv, gc)[rows, win]
        direct[lv] = np.full(n, lv in mapped)
        runner_rows.append(_runners(cell_ids, lv, groups, *_runners_up(gv, gc, win, n_runners_up, total=iterations)))
        chosen, upper = groups[win], anc
    r, c = np.nonzero(votes)
    tidy = pd.DataFrame({"cell_id": np.asarray(cell_ids, dtype=object)[r],
                         "cluster": np.asarray(leaf_names, dtype=object)[c], "votes": votes[r, c].astype(np.int64),
                         "correlation": csum[r, c] / votes[r, c]})
    return (*_assemble(cell_ids, full_tree, label, prob, prob, corr_of, direct, runner_rows), tidy)


def _a_leaf(tree: TaxonomyTree, level: str, node: str) -> str:
    return node if level == tree.leaf_level else tree.leaves_under(level, node)[0]


def _runners(cells, level, labels, ru, ru_p, ru_c, ok) -> pd.DataFrame:
    r, k = np.nonzero(ok)
    return pd.DataFrame({"cell_id": np.asarray(cells, dtype=object)[r], "level": level, "rank": k + 1,
                         "label": np.asarray(labels, dtype=object)[ru[r, k]], "probability": ru_p[r, k],
                         "correlation": ru_c[r, k]})
