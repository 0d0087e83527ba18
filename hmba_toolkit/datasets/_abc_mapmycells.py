"""The taxonomy directory's MapMyCells files, built by ``hmba_toolkit.mapping`` from the demo's 10X cells, and the
mapping of the demo's Patch-seq and spatial cells with them.

The real ``mapmycells/HMBA-BG-taxonomy-CCN20250428/20250630/`` holds ``precomputed_stats.HMBA.BG.2025-08-04.h5``
(1.03 GB), ``query_markers.HMBA.BG.2025-08-04.json`` (1.68 MB) and ``mmc_gene_mapper.2025-08-04.db`` (15.1 GB, Allen's
gene-identifier database, not mirrored). The demo's two files have the same names, schema and taxonomy labels: levels
``CCN20250428_LEVEL_0..3`` with machine node labels (``CS20250428_NEIGH_0002``, ...) and readable names in the tree's
``name_mapper``, genes by the aligned set's identifiers. They stop at Group (``CCN20250428_LEVEL_3``): the demo's
about 2,250 annotated cells hold one to three cells per cluster, too few for cluster statistics and t-tests.

The release maps its Patch-seq cells with MapMyCells' HANN onto the taxonomy without its non-neuronal types;
:func:`patchseq_mmc_results` does the same with this toolkit's mapper, on the genes the demo's Patch-seq matrix
holds. Its ``mmc_results`` rows are the mapper's output from Neighborhood to Group. The Cluster columns name the cell's
cluster: the generator's cluster when the mapped Group holds it, otherwise the mapped Group's cluster of the species
with the most 10X cells (ties: taxonomy order); their probabilities and correlation are empty, because the demo's
files do not map to clusters.

The release maps its spatial cells onto the taxonomy extended with an "Adjacent" branch of types found around the
basal ganglia; :func:`spatial_mmc_results` maps each demo section's counts (hierarchical, 0.5 x 100) onto the 10X
cells of the Groups that hold the species' clusters and a branch of Adjacent reference cells drawn by the generator
(not released), with markers chosen among the panel's genes. The section's ``cell_to_cluster_membership`` is its
output too, so the spatial cell types are mapped, with the errors of a mapping.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import __version__
from ..io.h5ad import read_h5ad_subset, read_h5ad_var
from ..mapping import (ReferenceStats, map_cells, measured_genes, precompute_stats, query_markers, reference_markers,
                       write_query_markers)
from ._demo_common import LEVELS

STATS_FILE = "precomputed_stats.HMBA.BG.2025-08-04.h5"
MARKERS_FILE = "query_markers.HMBA.BG.2025-08-04.json"
#: the levels the demo's files hold (Neighborhood to Group)
MAPPED_LEVELS = LEVELS[:4]
LEVEL_LABELS = [f"CCN20250428_LEVEL_{i}" for i in range(len(MAPPED_LEVELS))]
#: the seed of every demo mapping (Allen's default ``rng_seed``)
MAPPING_SEED = 11235813
#: the label and name of every level of a cell mapped outside the basal-ganglia taxonomy
ADJACENT = "Adjacent"


def reference_stats(raw_h5ad: Path, cells: pd.DataFrame, clusters: pd.DataFrame, keep: set[str] | None = None,
                    adjacent: ad.AnnData | None = None) -> ReferenceStats:
    """Group-level statistics of the annotated 10X cells of ``raw_h5ad`` (only those of the clusters in ``keep``),
    with the taxonomy's readable names in the tree's ``name_mapper``. ``adjacent`` (raw counts on the same genes, obs
    column ``type``) adds the Adjacent branch: one leaf per type of :data:`_abc_demo.ADJACENT_TYPES`."""
    annotated = cells[cells["in_metadata"]].set_index("cell_label")
    taxonomy = clusters.set_index("Cluster")
    if keep is not None:
        annotated = annotated[annotated["cluster_alias"].isin(keep)]
    obs = pd.DataFrame({label: taxonomy.loc[annotated["cluster_alias"], f"{level}_label"].to_numpy()
                        for level, label in zip(MAPPED_LEVELS, LEVEL_LABELS)}, index=annotated.index)
    names = {label: {row[f"{level}_label"]: {"name": row[level]}
                     for row in clusters[[f"{level}_label", level]].drop_duplicates().to_dict("records")}
             for level, label in zip(MAPPED_LEVELS, LEVEL_LABELS)}
    if adjacent is None:
        stats = precompute_stats(raw_h5ad, LEVEL_LABELS, obs=obs, normalization="raw")
    else:
        reference = read_h5ad_subset(raw_h5ad, obs.index)  # only the reference cells, not the whole file
        branch = pd.DataFrame({label: adjacent_label(label, adjacent.obs["type"]) for label in LEVEL_LABELS},
                              index=adjacent.obs_names)
        both = ad.AnnData(sp.vstack([sp.csr_matrix(reference.X), sp.csr_matrix(adjacent.X)], format="csr"),
                          obs=pd.concat([obs, branch]), var=reference.var)
        stats = precompute_stats(both, LEVEL_LABELS, normalization="raw")
        for label in LEVEL_LABELS:
            names[label] |= {node: {"name": ADJACENT if label != LEVEL_LABELS[-1] else f"{ADJACENT} {kind}"}
                             for kind, node in zip(adjacent.obs["type"], branch[label])}
    stats.tree.data["name_mapper"] = names
    # no timestamp: the demo is generated byte for byte the same
    stats.metadata = {"config": {"hierarchy": LEVEL_LABELS, "normalization": "raw", "h5ad_path": raw_h5ad.name},
                      "module": "hmba_toolkit.mapping.stats", "version": __version__}
    return stats


def adjacent_label(level_label: str, kinds: pd.Series) -> list[str]:
    """Node labels of the Adjacent branch at one level: one node above Group, one Group per Adjacent type."""
    if level_label != LEVEL_LABELS[-1]:
        return [f"{ADJACENT}_{level_label}"] * len(kinds)
    return [f"{ADJACENT}_" + str(k).replace(" ", "_") for k in kinds]


def make_mapmycells(out_dir: Path, raw_h5ad: Path, cells: pd.DataFrame, clusters: pd.DataFrame) -> None:
    """Write the stats and query-marker files for the annotated cells of ``raw_h5ad`` into ``out_dir``."""
    stats = reference_stats(raw_h5ad, cells, clusters)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats.write(out_dir / STATS_FILE)
    lookup = query_markers(reference_markers(stats), stats.tree)
    lookup["metadata"] = {"module": "hmba_toolkit.mapping.markers", "version": __version__,
                          "precomputed_stats": STATS_FILE, "n_per_utility": 30}
    write_query_markers(lookup, out_dir / MARKERS_FILE)


def patchseq_mmc_results(query_h5ad: Path, raw_h5ad: Path, cells: pd.DataFrame, clusters: pd.DataFrame,
                         planted: pd.Series, species: str = "Macaque") -> pd.DataFrame:
    """MapMyCells results of the log2 Patch-seq matrix ``query_h5ad`` (var column ``gene_symbol``) in the release's
    ``mmc_results`` schema: HANN (0.5 x 100, :data:`MAPPING_SEED`) onto the neuronal Groups that hold clusters of
    ``species``, with markers chosen among the query's genes. ``planted`` is the generator's cluster per cell label."""
    of_species = clusters["Cluster"].str.startswith(species + "-")
    groups = set(clusters.loc[of_species, "Group"])
    neuronal = (clusters["Neighborhood"] != "Nonneuron") & clusters["Group"].isin(groups)
    stats = reference_stats(raw_h5ad, cells, clusters, set(clusters.loc[neuronal, "Cluster"]))
    result = _map_on_measured_genes(ad.read_h5ad(query_h5ad), stats, raw_h5ad, normalization="log2CPM",
                                    algorithm="hann")
    out = _mmc_table(result, planted.index)
    alias = _clusters_in_mapped_groups(out["Group_name"], planted, clusters[of_species], cells)
    return _with_clusters(out, alias, clusters.set_index("Cluster").loc[alias, "Cluster_label"].to_numpy())


def spatial_mmc_results(query: ad.AnnData, raw_h5ad: Path, cells: pd.DataFrame, clusters: pd.DataFrame,
                        planted: pd.Series, adjacent: ad.AnnData, adjacent_clusters: pd.DataFrame,
                        species: str) -> pd.DataFrame:
    """MapMyCells results of spatial cells (``query``: raw counts, var column ``gene_symbol``) in the ``mmc_results``
    schema: hierarchical mapping with bootstrapping (0.5 x 100, :data:`MAPPING_SEED`) onto the Groups that hold
    clusters of ``species``, extended with an Adjacent branch built from ``adjacent`` (reference cells of the
    Adjacent types, obs column ``type``), with markers chosen among the panel's genes.

    Cells mapped to the Adjacent branch are ``Adjacent`` at every level (label and name, as Allen's notebooks fill
    them) and get a cluster of ``adjacent_clusters`` (columns ``cluster_alias``, ``cluster_label``, ``type``): the
    planted one when it is of the mapped type, else the type's first. ``planted`` is the generator's cluster per cell.
    """
    of_species = clusters["Cluster"].str.startswith(species + "-")
    groups = set(clusters.loc[of_species, "Group"])
    stats = reference_stats(raw_h5ad, cells, clusters, set(clusters.loc[clusters["Group"].isin(groups), "Cluster"]),
                            adjacent=adjacent)
    with warnings.catch_warnings():  # QC-failed cells (a few transcripts) often express none of a node's markers
        warnings.filterwarnings("ignore", message=r".*express none of a node's drawn markers")
        result = _map_on_measured_genes(query, stats, raw_h5ad, normalization="raw")
    out = _mmc_table(result, planted.index)
    group = result.assignments.loc[planted.index, f"{LEVEL_LABELS[-1]}_label"].to_numpy()
    kinds = adjacent_clusters.assign(node=adjacent_label(LEVEL_LABELS[-1], adjacent_clusters["type"]))
    to_adjacent = np.isin(group, kinds["node"])
    for level in MAPPED_LEVELS:
        out.loc[to_adjacent, [f"{level}_label", f"{level}_name"]] = ADJACENT
    bg_alias = _clusters_in_mapped_groups(out["Group_name"], planted, clusters[of_species], cells)
    first = kinds.drop_duplicates("node").set_index("node")["cluster_alias"]
    same_kind = planted.map(kinds.set_index("cluster_alias")["node"]).to_numpy() == group
    adj_alias = np.where(same_kind, planted.to_numpy(), first.reindex(group).to_numpy())
    alias = np.where(to_adjacent, adj_alias, bg_alias)
    labels = pd.concat([clusters.set_index("Cluster")["Cluster_label"],
                        adjacent_clusters.set_index("cluster_alias")["cluster_label"]])
    return _with_clusters(out, alias, labels.loc[alias].to_numpy())


def _map_on_measured_genes(query: ad.AnnData, stats: ReferenceStats, raw_h5ad: Path, **options):
    """``map_cells`` of a query (var column ``gene_symbol``) with markers chosen among the reference genes it measures
    (matched by symbol through the 10X file's genes), seeded with :data:`MAPPING_SEED`."""
    symbols = read_h5ad_var(raw_h5ad)["gene_symbol"].astype(str)
    measured = measured_genes(query, stats, query_gene_id_col="gene_symbol", reference_symbols=symbols)
    lookup = query_markers(reference_markers(stats), stats.tree, genes=measured)
    return map_cells(query, stats, lookup, seed=MAPPING_SEED, query_gene_id_col="gene_symbol",
                     reference_symbols=symbols, **options)


def _mmc_table(result, cell_labels: pd.Index) -> pd.DataFrame:
    """Label, name and the three scores per mapped level, rounded as the release rounds them."""
    mapped = result.assignments.loc[cell_labels]
    out = pd.DataFrame({"cell_label": cell_labels})
    for level, label in zip(MAPPED_LEVELS, LEVEL_LABELS):
        out[f"{level}_label"] = mapped[f"{label}_label"].to_numpy()
        out[f"{level}_name"] = mapped[f"{label}_name"].to_numpy()
        for score in ("bootstrapping_probability", "aggregate_probability", "correlation_coefficient"):
            out[f"{level}_{score}"] = np.round(mapped[f"{label}_{score}"].to_numpy(dtype=float), 4)
    return out


def _with_clusters(out: pd.DataFrame, alias, cluster_label) -> pd.DataFrame:
    """The Cluster columns: label and alias; empty scores (the demo's files stop at Group)."""
    out["Cluster_label"] = cluster_label
    out["cluster_alias"] = alias
    for score in ("bootstrapping_probability", "aggregate_probability", "correlation_coefficient"):
        out[f"Cluster_{score}"] = np.nan
    return out


def _clusters_in_mapped_groups(group: pd.Series, planted: pd.Series, clusters: pd.DataFrame,
                               cells: pd.DataFrame) -> np.ndarray:
    """The planted cluster where the mapped Group holds it, else the mapped Group's cluster with the most 10X cells."""
    group_of = clusters.set_index("Cluster")["Group"]
    n_cells = cells[cells["in_metadata"]].groupby("cluster_alias").size()
    ranked = clusters.assign(n=clusters["Cluster"].map(n_cells).fillna(0).to_numpy(), order=np.arange(len(clusters)))
    ranked = ranked.sort_values(["n", "order"], ascending=[False, True], kind="stable")
    largest = ranked.drop_duplicates("Group").set_index("Group")["Cluster"]
    same = planted.map(group_of).to_numpy() == group.to_numpy()
    return np.where(same, planted.to_numpy(), largest.reindex(group.to_numpy()).to_numpy())
