"""hmba_toolkit.mapping against Allen's own cell_type_mapper 1.7.1 outputs (tests/data/mapmycells, README there)."""

from __future__ import annotations

import json
import subprocess
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hmba_toolkit import mapping
from hmba_toolkit.errors import DataFormatError, HmbaToolkitError, ParameterError

LEVELS = ["Subclass", "Group", "Cluster"]
#: Allen's CSV holds 4 decimals: a correlation equal to 1e-6 differs from it by at most half a unit of the 4th.
CSV_TOL = 5e-5 + 1e-6


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return fixtures_dir / "mapmycells"


@pytest.fixture(scope="module")
def allen_stats(golden):
    return mapping.read_stats(golden / "precomputed_stats.h5")


@pytest.fixture(scope="module")
def allen_lookup(golden):
    return mapping.read_query_markers(golden / "query_markers.json")


@pytest.fixture(scope="module")
def query(golden):
    return ad.read_h5ad(golden / "query.h5ad")


@pytest.fixture(scope="module")
def ours(golden):
    """Our whole pipeline on Allen's reference: statistics, reference markers, query markers."""
    ref = ad.read_h5ad(golden / "reference.h5ad")
    stats = mapping.precompute_stats(ref, LEVELS)
    markers = mapping.reference_markers(stats)
    return stats, markers, mapping.query_markers(markers, stats.tree)


def _allen(golden, name):
    return pd.read_csv(golden / f"result_{name}.csv", comment="#").set_index("cell_id")


@pytest.mark.parametrize("name, kwargs", [
    ("flat", dict(flatten=True, bootstrap_factor=1.0, bootstrap_iteration=1)),
    ("hier_det", dict(bootstrap_factor=1.0, bootstrap_iteration=1)),
])
def test_deterministic_modes_reproduce_allen_cell_for_cell(golden, allen_stats, allen_lookup, query, name, kwargs):
    allen = _allen(golden, name)
    result = mapping.map_cells(query, allen_stats, allen_lookup, **kwargs).assignments.loc[allen.index]
    for level in LEVELS:
        assert (result[f"{level}_label"] == allen[f"{level}_label"]).all(), level
        np.testing.assert_allclose(result[f"{level}_correlation_coefficient"], allen[f"{level}_correlation_coefficient"],
                                   atol=CSV_TOL, rtol=0)
        np.testing.assert_array_equal(result[f"{level}_bootstrapping_probability"],
                                      allen[f"{level}_bootstrapping_probability"])


def test_bootstrapped_mode_agrees_with_allen_as_well_as_allen_agrees_with_itself(golden, allen_stats, allen_lookup,
                                                                                  query):
    seed1, seed2 = _allen(golden, "hier_boot"), _allen(golden, "hier_boot_seed2").loc[_allen(golden, "hier_boot").index]
    result = mapping.map_cells(query, allen_stats, allen_lookup).assignments.loc[seed1.index]
    for level in LEVELS:
        allen_vs_allen = (seed1[f"{level}_label"] == seed2[f"{level}_label"]).mean()
        ours_vs_allen = (result[f"{level}_label"] == seed1[f"{level}_label"]).mean()
        assert ours_vs_allen >= allen_vs_allen - 0.01, (level, ours_vs_allen, allen_vs_allen)
        # the probabilities are the same statistic: their distributions agree
        diff = np.abs(result[f"{level}_bootstrapping_probability"] - seed1[f"{level}_bootstrapping_probability"])
        allen_diff = np.abs(seed2[f"{level}_bootstrapping_probability"] - seed1[f"{level}_bootstrapping_probability"])
        assert diff.mean() <= allen_diff.mean() * 1.5 + 1e-3, level


def test_statistics_equal_allens_to_float_precision(allen_stats, ours):
    stats = ours[0]
    assert stats.clusters == allen_stats.clusters and stats.genes == allen_stats.genes
    np.testing.assert_array_equal(stats.n_cells, allen_stats.n_cells)
    for name in ("sum", "sumsq"):
        np.testing.assert_allclose(getattr(stats, name), getattr(allen_stats, name), rtol=1e-6, atol=1e-4)
    for name in ("gt0", "gt1", "ge1"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(allen_stats, name))
    assert stats.tree.data["Group"] == allen_stats.tree.data["Group"]


def test_markers_equal_allens_gene_for_gene(golden, allen_stats, allen_lookup, ours):
    _, markers, lookup = ours
    theirs = mapping.read_reference_markers(golden / "reference_markers.h5")
    assert theirs.clusters == markers.clusters
    assert (markers.up != theirs.up).nnz == 0 and (markers.down != theirs.down).nnz == 0
    assert markers.up.nnz + markers.down.nnz == 18580
    assert sorted(lookup) == sorted(allen_lookup)
    for key in allen_lookup:
        assert sorted(lookup[key]) == sorted(allen_lookup[key]), key


def test_own_pipeline_is_as_accurate_as_allens(golden, query, ours):
    stats, _, lookup = ours
    truth = pd.read_csv(golden / "query_truth.csv").set_index("cell_id")
    allen = _allen(golden, "hier_boot").loc[truth.index]
    result = mapping.map_cells(query, stats, lookup).assignments.loc[truth.index]
    for level in LEVELS:
        acc = (result[f"{level}_label"] == truth[level]).mean()
        allen_acc = (allen[f"{level}_label"] == truth[level]).mean()
        assert acc >= allen_acc - 0.01, (level, acc, allen_acc)
    assert (result["Group_label"] == truth["Group"]).mean() == 1.0


def test_results_ignore_cell_order_chunking_and_container(allen_stats, allen_lookup, query):
    base = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=20, chunk_size=5000).assignments
    order = np.random.default_rng(3).permutation(query.n_obs)
    shuffled = query[order].copy()
    shuffled.X = sp.csc_matrix(shuffled.X)
    other = mapping.map_cells(shuffled, allen_stats, allen_lookup, bootstrap_iteration=20, chunk_size=97).assignments
    pd.testing.assert_frame_equal(other.loc[base.index], base, check_exact=True)  # bit for bit
    dense = query.copy()
    dense.X = query.X.toarray()
    again = mapping.map_cells(dense, allen_stats, allen_lookup, bootstrap_iteration=20).assignments
    pd.testing.assert_frame_equal(again, base, check_exact=True)


def test_log2cpm_queries_give_the_raw_result(allen_stats, allen_lookup, query):
    counts = query.X.toarray().astype(np.float64)
    logged = ad.AnnData(np.log2(counts / counts.sum(1, keepdims=True) * 1e6 + 1), obs=query.obs, var=query.var)
    a = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=1, bootstrap_factor=1.0).assignments
    b = mapping.map_cells(logged, allen_stats, allen_lookup, normalization="log2CPM", bootstrap_iteration=1,
                          bootstrap_factor=1.0).assignments
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def test_files_have_allens_layout(golden, allen_stats, allen_lookup, query, tmp_path):
    result = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=10)
    result.to_csv(tmp_path / "r.csv", verbose=True, metadata_path=tmp_path / "r.json")
    result.to_extended_json(tmp_path / "r.json")
    ours_lines = (tmp_path / "r.csv").read_text().splitlines()
    allen_lines = (golden / "result_hier_boot.csv").read_text().splitlines()
    assert ours_lines[0] == "# metadata = r.json" and ours_lines[1] == allen_lines[1]
    assert ours_lines[2].startswith("# algorithm: 'hierarchical'; codebase: ")
    assert ours_lines[3] == allen_lines[3]  # the column header, byte for byte
    back = pd.read_csv(tmp_path / "r.csv", comment="#")
    assert list(back.columns) == list(pd.read_csv(golden / "result_hier_boot.csv", comment="#").columns)
    assert len(back) == query.n_obs
    theirs = json.loads((golden / "result_hier_boot.head.json").read_text())
    mine = json.loads((tmp_path / "r.json").read_text())
    assert set(mine) == set(theirs)
    assert mine["results"][0].keys() == theirs["results"][0].keys()
    for level in LEVELS:
        assert mine["results"][0][level].keys() == theirs["results"][0][level].keys()
    cell = next(c for c in mine["results"] if c["Cluster"]["runner_up_assignment"])
    ru = cell["Cluster"]
    assert ru["runner_up_probability"] == sorted(ru["runner_up_probability"], reverse=True)
    assert ru["bootstrapping_probability"] + sum(ru["runner_up_probability"]) <= 1 + 1e-9
    # statistics files written by us read back unchanged
    out = allen_stats.write(tmp_path / "stats.h5")
    again = mapping.read_stats(out)
    np.testing.assert_array_equal(again.sum, allen_stats.sum)
    with h5py.File(out) as f:
        assert {"metadata", "taxonomy_tree", "cluster_to_row", "col_names", "n_cells", "sum", "sumsq", "gt0", "gt1",
                "ge1"} <= set(f)


def test_reference_markers_file_round_trips(ours, tmp_path):
    markers = ours[1]
    back = mapping.read_reference_markers(markers.write(tmp_path / "m.h5"))
    assert (back.up != markers.up).nnz == 0 and (back.down != markers.down).nnz == 0


def test_flatten_and_drop_level_fill_every_level_from_the_tree(allen_stats, allen_lookup, query):
    tree = allen_stats.tree
    for kwargs in (dict(flatten=True), dict(drop_level="Group"), dict(drop_level="Group", algorithm="hann")):
        result = mapping.map_cells(query[:200].copy(), allen_stats, allen_lookup, bootstrap_iteration=10, **kwargs)
        a = result.assignments
        for leaf, sub, grp in zip(a["Cluster_label"], a["Subclass_label"], a["Group_label"]):
            assert tree.ancestors(leaf) == {"Subclass": sub, "Group": grp, "Cluster": leaf}
        inferred = "Subclass" if kwargs.get("flatten") else "Group"
        assert not result.directly_assigned[inferred].any() and result.directly_assigned["Cluster"].all()
        # an inferred level is at least as certain as the level below it
        assert (a[f"{inferred}_bootstrapping_probability"] >= a["Cluster_bootstrapping_probability"] - 1e-12).all()


def test_command_lines_take_allens_argument_names(golden, tmp_path):
    run = [sys.executable, "-m", "hmba_toolkit.mapping.pipeline", "--h5ad_path", str(golden / "reference.h5ad"),
           "--hierarchy", json.dumps(LEVELS), "--normalization", "raw", "--output_dir", str(tmp_path / "ref")]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    run = [sys.executable, "-m", "hmba_toolkit.mapping", "--query_path", str(golden / "query.h5ad"),
           "--precomputed_stats.path", str(tmp_path / "ref" / "precomputed_stats.h5"),
           "--query_markers.serialized_lookup", str(tmp_path / "ref" / "query_markers.json"),
           "--csv_result_path", str(tmp_path / "r.csv"), "--extended_result_path", str(tmp_path / "r.json"),
           "--flatten", "True", "--verbose_csv", "True", "--type_assignment.normalization", "raw",
           "--type_assignment.bootstrap_iteration", "1", "--type_assignment.bootstrap_factor", "1.0",
           "--type_assignment.n_processors", "1", "--type_assignment.chunk_size", "5000", "--max_gb", "10"]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ours = pd.read_csv(tmp_path / "r.csv", comment="#").set_index("cell_id")
    allen = _allen(golden, "flat")
    assert (ours.loc[allen.index, "Cluster_label"] == allen["Cluster_label"]).all()
    bad = subprocess.run(run[:4] + ["/nonexistent.h5ad"] + run[5:], capture_output=True, text=True)
    assert bad.returncode == 1 and "nonexistent.h5ad" in bad.stderr and "Traceback" not in bad.stderr
    # a query measuring a third of the genes (a panel): its markers are chosen among them
    panel = ad.read_h5ad(golden / "query.h5ad")
    panel = panel[:, panel.var_names[::3]].copy()
    panel.write_h5ad(tmp_path / "panel.h5ad")
    run = [sys.executable, "-m", "hmba_toolkit.mapping.pipeline", "--h5ad_path", str(golden / "reference.h5ad"),
           "--hierarchy", json.dumps(LEVELS), "--normalization", "raw", "--output_dir", str(tmp_path / "panel"),
           "--query_path", str(tmp_path / "panel.h5ad"), "--n_per_utility", "3"]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    chosen = mapping.read_query_markers(tmp_path / "panel" / "query_markers.json")
    tree = mapping.read_stats(tmp_path / "ref" / "precomputed_stats.h5").tree
    everywhere = mapping.query_markers(mapping.read_reference_markers(tmp_path / "ref" / "reference_markers.h5"), tree,
                                       n_per_utility=3)
    measured = set(panel.var_names)
    assert {g for v in chosen.values() for g in v} <= measured
    # every node keeps at least the panel genes among its markers chosen from all genes
    assert all(len(chosen[k]) >= len(measured & set(everywhere[k])) for k in everywhere)
    assert sum(len(chosen[k]) > len(measured & set(everywhere[k])) for k in everywhere) > 0


# ---- bad input ------------------------------------------------------------------------------------------------------
def test_query_with_symbols_or_another_species_is_refused_with_counts(allen_stats, allen_lookup, query):
    wrong = query.copy()
    wrong.var_names = [f"GENE{i}" for i in range(wrong.n_vars)]
    with pytest.raises(ParameterError, match=r"none of the \d+ marker genes is in the query.*query_gene_id_col"):
        mapping.map_cells(wrong, allen_stats, allen_lookup)
    few = query[:, query.var_names[:700]].copy()
    with pytest.warns(UserWarning, match=r"only \d+ of the \d+ marker genes are in the query"):
        mapping.map_cells(few, allen_stats, allen_lookup, bootstrap_iteration=2)
    wrong.var["gene_identifier"] = list(query.var_names)
    ok = mapping.map_cells(wrong, allen_stats, allen_lookup, bootstrap_iteration=1, bootstrap_factor=1.0,
                           query_gene_id_col="gene_identifier")
    assert len(ok.assignments) == query.n_obs


def test_stats_and_markers_that_do_not_belong_together(allen_stats, allen_lookup, query):
    alien = dict(allen_lookup)
    alien["Group/Group_9.9"] = allen_lookup["None"]
    with pytest.raises(ParameterError, match="do not belong together.*Group/Group_9.9"):
        mapping.map_cells(query, allen_stats, alien)
    alien = {k: v + ["ENSG99999999999"] for k, v in allen_lookup.items()}
    with pytest.raises(ParameterError, match="do not belong together.*ENSG99999999999"):
        mapping.map_cells(query, allen_stats, alien)


def test_taxonomy_that_is_not_a_tree():
    obs = pd.DataFrame({"Class": ["A", "A", "B", "B"], "Type": ["t1", "t2", "t2", "t3"]}, index=list("abcd"))
    with pytest.raises(DataFormatError, match=r"not a tree: Type 't2' sits under Class \['A', 'B'\]"):
        mapping.precompute_stats(ad.AnnData(np.ones((4, 3)), obs=obs), ["Class", "Type"])
    with pytest.raises(ParameterError, match="no column.*'Typ'.*did you mean"):
        mapping.precompute_stats(ad.AnnData(np.ones((4, 3)), obs=obs), ["Class", "Typ"])


def test_empty_query_and_wrong_normalisation(allen_stats, allen_lookup, query):
    with pytest.raises(ParameterError, match="no cells"):
        mapping.map_cells(query[:0].copy(), allen_stats, allen_lookup)
    logged = query[:50].copy()
    logged.X = np.log1p(logged.X.toarray())
    with pytest.raises(ParameterError, match="normalization='raw' but the query holds non-integer values"):
        mapping.map_cells(logged, allen_stats, allen_lookup)
    with pytest.raises(ParameterError, match="normalization='log2CPM' but query values reach .* look like counts"):
        mapping.map_cells(query[:50].copy(), allen_stats, allen_lookup, normalization="log2CPM")
    with pytest.raises(ParameterError, match="normalization must be 'raw'"):
        mapping.map_cells(query, allen_stats, allen_lookup, normalization="log1p")
    empty_cell = query[:5].copy()
    empty_cell.X = sp.csr_matrix(empty_cell.X.shape)
    with pytest.raises(ParameterError, match="5 query cells have no counts"):
        mapping.map_cells(empty_cell, allen_stats, allen_lookup)


def test_damaged_or_foreign_files_are_named(tmp_path, golden):
    bad = tmp_path / "stats.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match="stats.h5"):
        mapping.read_stats(bad)
    with pytest.raises(DataFormatError, match="not a precomputed_stats file"):
        mapping.read_stats(golden / "reference_markers.h5")
    with pytest.raises(HmbaToolkitError, match="no such query markers file"):
        mapping.read_query_markers(tmp_path / "missing.json")
    (tmp_path / "m.json").write_text('{"a": 1}')
    with pytest.raises(DataFormatError, match="'None' \\(root\\) entry"):
        mapping.read_query_markers(tmp_path / "m.json")


# ---- the demo release's mapping files and the evaluation helpers --------------------------------------------------
@pytest.fixture(scope="module")
def released(cache):
    """The demo release's mapping files, read: statistics, query markers, the reference markers of the statistics,
    and the aligned set's gene symbols by identifier (for queries with symbols)."""
    files = {p.name.split(".")[0]: p for p in cache.get_directory_mapmycells("HMBA-BG-taxonomy-CCN20250428")}
    stats = mapping.read_stats(files["precomputed_stats"])
    genes = cache.get_metadata_dataframe("HMBA-10xMultiome-BG-Aligned", "gene")
    return {"stats": stats, "lookup": mapping.read_query_markers(files["query_markers"]),
            "reference_markers": mapping.reference_markers(stats),
            "symbols": genes.set_index("gene_identifier")["gene_symbol"]}


def test_demo_release_carries_mapping_files_built_by_this_module(cache, released):
    names = cache.list_mapmycells_files("HMBA-BG-taxonomy-CCN20250428")
    assert names == ["precomputed_stats.HMBA.BG.2025-08-04", "query_markers.HMBA.BG.2025-08-04"]
    stats, lookup = released["stats"], released["lookup"]
    assert stats.tree.hierarchy == [f"CCN20250428_LEVEL_{i}" for i in range(4)]
    assert sorted(lookup) == sorted(stats.tree.parent_keys())
    cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
    groups = cells.drop_duplicates("Group_label").set_index("Group_label")["Group"]
    assert {label: stats.tree.name("CCN20250428_LEVEL_3", label) for label in stats.clusters} == groups.to_dict()
    n = cells.groupby("Group_label").size()
    np.testing.assert_array_equal(stats.n_cells, n.loc[stats.clusters].to_numpy())
    raw = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    result = mapping.map_cells(raw, stats, lookup, bootstrap_iteration=20)
    table = mapping.agreement(result, cells, {"CCN20250428_LEVEL_0": "Neighborhood_label",
                                              "CCN20250428_LEVEL_1": "Class_label",
                                              "CCN20250428_LEVEL_3": "Group_label"}).set_index("level")
    # published self-projection (macaque, marmoset): Neighborhood 0.99, Class 0.99
    assert table.loc["CCN20250428_LEVEL_0", "agreement"] >= 0.99
    assert table.loc["CCN20250428_LEVEL_1", "agreement"] >= 0.98
    assert table.loc["CCN20250428_LEVEL_3", "agreement"] >= 0.85


def test_demo_patchseq_mapping_comes_from_this_mapper_and_is_reproduced_from_the_released_files(cache, released):
    """The demo's Patch-seq ``mmc_results`` are HANN results of this module (as the release's are Allen's HANN): the
    membership names the mapped Group, the probabilities are vote shares, and a user who maps the released log2
    matrix with the released mapping files (markers restricted to the measured genes) gets the same labels."""
    from hmba_toolkit.datasets import demo_ground_truth

    d = "HMBA-Macaque-PatchSeq"
    mmc = cache.get_metadata_dataframe(d, "mmc_results").set_index("cell_label")
    cells = cache.cell_table(d)
    assert (cells.loc[mmc.index, "cluster_alias"] == mmc["cluster_alias"]).all()
    assert (cells.loc[mmc.index, "Group_label"] == mmc["Group_label"]).all()
    levels = ["Neighborhood", "Class", "Subclass", "Group"]
    for level in levels:  # HANN: a level's probability is the share of the 100 descents through it
        p = mmc[f"{level}_bootstrapping_probability"]
        np.testing.assert_allclose(p * 100, np.round(p * 100), atol=1e-9)
        np.testing.assert_array_equal(p, mmc[f"{level}_aggregate_probability"])
    assert (mmc["Neighborhood_name"] != "Nonneuron").all()  # mapped without the non-neuronal types, as the release
    assert mmc[["Cluster_bootstrapping_probability", "Cluster_correlation_coefficient"]].isna().all().all()
    planted = pd.read_csv(demo_ground_truth() / "patchseq_cells.csv", index_col="cell_label")["Group"]
    correct = (mmc["Group_name"] == planted.loc[mmc.index]).mean()
    assert 0.85 <= correct < 1.0, correct  # mapping with its errors, not the planted labels copied

    stats, symbols = released["stats"], released["symbols"]
    query = ad.read_h5ad(cache.get_file_path(d, "HMBA-Macaque-PatchSeq-BG/log2"))
    measured = mapping.measured_genes(query, stats, query_gene_id_col="gene_symbol", reference_symbols=symbols)
    assert 250 <= len(measured) <= query.n_vars
    with pytest.raises(ParameterError, match="none of the query's 300 genes is a reference gene"):
        mapping.measured_genes(query, stats)  # NCBI Gene ids against the aligned set's identifiers
    lookup = mapping.query_markers(released["reference_markers"], stats.tree, genes=measured)
    result = mapping.map_cells(query, stats, lookup, normalization="log2CPM", algorithm="hann",
                               query_gene_id_col="gene_symbol", reference_symbols=symbols)
    ours = result.assignments.loc[mmc.index]
    same = [(ours[f"CCN20250428_LEVEL_{i}_name"] == mmc[f"{level}_name"]).mean() for i, level in enumerate(levels)]
    # the released files also hold the non-neuronal types, which the release's Patch-seq mapping leaves out: a sample
    # with many off-target glial transcripts can go to a glial type with them
    assert same[0] >= 0.99 and min(same) >= 0.95, same


def test_agreement_tables_count_what_they_say(golden, allen_stats, allen_lookup, query):
    truth = pd.read_csv(golden / "query_truth.csv").set_index("cell_id")
    result = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=20)
    table = mapping.agreement(result, truth, {lv: lv for lv in LEVELS}).set_index("level")
    right = result.assignments.loc[truth.index, "Cluster_label"] == truth["Cluster"]
    assert table.loc["Cluster", "agreement"] == pytest.approx(right.mean())
    assert table.loc["Cluster", "n_cells"] == len(truth)
    by_p = mapping.agreement_by_probability(result, truth, "Cluster", "Cluster")
    assert by_p["n_cells"].sum() == len(truth)
    assert by_p["correct_kept"].iloc[0] == 1.0 and by_p["correct_kept"].is_monotonic_decreasing
    by_aggregate = mapping.agreement_by_probability(result, truth, "Cluster", "Cluster", probability="aggregate")
    aggregate = result.assignments.loc[truth.index, "Cluster_aggregate_probability"]
    binned = pd.cut(aggregate, [0, 0.5, 0.7, 0.9, 1], include_lowest=True)
    assert by_aggregate["n_cells"].tolist() == binned.value_counts(sort=False).tolist()
    assert (aggregate <= result.assignments.loc[truth.index, "Cluster_bootstrapping_probability"] + 1e-12).all()
    wrong = mapping.confusions(result, truth, "Cluster", "Cluster")
    assert (wrong["known"] != wrong["mapped"]).all() and wrong["n_cells"].sum() == (~right).sum()
    with pytest.raises(ParameterError, match="no column 'Clust'"):
        mapping.agreement(result, truth, {"Cluster": "Clust"})
    with pytest.raises(ParameterError, match="not a level"):
        mapping.agreement(result, truth, {"Type": "Cluster"})
    with pytest.raises(ParameterError, match="no mapped cell is in the reference's index"):
        mapping.agreement(result, truth.reset_index(), {"Cluster": "Cluster"})
    with pytest.raises(ParameterError, match="bins must increase"):
        mapping.agreement_by_probability(result, truth, "Cluster", "Cluster", bins=[0.5, 0.2])
    with pytest.raises(ParameterError, match="probability must be 'bootstrapping' or 'aggregate'"):
        mapping.agreement_by_probability(result, truth, "Cluster", "Cluster", probability="correlation")


def test_one_draw_maps_on_the_drawn_markers_alone(allen_stats, allen_lookup, query):
    """bootstrap_factor < 1 with one iteration (Allen's tool accepts it): each node draws its share of markers once and
    the cell goes where the deterministic mapping on the drawn markers alone sends it."""
    from hmba_toolkit.mapping.assign import _draws, _Node

    one = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_factor=0.5, bootstrap_iteration=1, seed=7,
                            min_markers=1).assignments
    position = {g: i for i, g in enumerate(allen_stats.genes)}
    in_query = set(query.var_names)
    drawn = {}
    for key, genes in allen_lookup.items():
        if key in ("log", "metadata"):
            continue
        genes = sorted((g for g in genes if g in in_query), key=position.get)
        node = _Node(key, np.arange(len(genes)), np.array([]), np.array([]), [])
        drawn[key] = [genes[i] for i in _draws(node, 0.5, 1, 7)[0]] if genes else []
    assert sum(map(len, drawn.values())) < 0.6 * sum(len(v) for k, v in allen_lookup.items() if k not in ("log", "metadata"))
    alone = mapping.map_cells(query, allen_stats, drawn, bootstrap_factor=1.0, bootstrap_iteration=1,
                              min_markers=1).assignments
    pd.testing.assert_frame_equal(one, alone, check_exact=True)
    full = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_factor=1.0, bootstrap_iteration=1,
                             min_markers=1).assignments
    leaf = [c for c in one.columns if c.endswith("_label")][-1]
    assert 0.5 < (one[leaf] == full[leaf]).mean() < 1.0  # half the markers: mostly, not always, the same leaf


def test_a_node_with_one_child_is_assigned_directly():
    rng = np.random.default_rng(5)
    X = rng.poisson(1.0, (90, 40)).astype(float)
    for k in range(3):
        X[30 * k:30 * (k + 1), 10 * k:10 * (k + 1)] += 25
    obs = pd.DataFrame({"Class": ["A"] * 60 + ["B"] * 30, "Type": ["a1"] * 30 + ["a2"] * 30 + ["b1"] * 30},
                       index=[f"c{i}" for i in range(90)])
    ref = ad.AnnData(X, obs=obs)
    stats = mapping.precompute_stats(ref, ["Class", "Type"])
    lookup = mapping.query_markers(mapping.reference_markers(stats), stats.tree, n_per_utility=5)
    assert lookup["Class/B"] == []  # one child: nothing to separate
    result = mapping.map_cells(ref, stats, lookup, bootstrap_iteration=10, seed=2).assignments
    b = result[obs["Class"] == "B"]
    assert (b["Type_label"] == "b1").all() and (b["Type_bootstrapping_probability"] == 1.0).all()
    assert (result["Type_label"] == obs["Type"]).mean() == 1.0


def test_a_query_with_symbols_maps_through_the_reference_gene_table(allen_stats, allen_lookup, query):
    symbols = pd.Series([f"SYM{i}" for i in range(len(allen_stats.genes))], index=allen_stats.genes)
    named = query.copy()
    named.var_names = symbols.loc[query.var_names].to_numpy()
    kwargs = dict(bootstrap_iteration=1, bootstrap_factor=1.0)
    by_id = mapping.map_cells(query, allen_stats, allen_lookup, **kwargs).assignments
    by_symbol = mapping.map_cells(named, allen_stats, allen_lookup, reference_symbols=symbols, **kwargs)
    pd.testing.assert_frame_equal(by_symbol.assignments, by_id)
    assert by_symbol.config["matched_by"] == "symbol"
    clash = symbols.copy()
    clash.iloc[:2] = "SAME"  # a symbol of two identifiers matches neither
    out = mapping.map_cells(named, allen_stats, allen_lookup, reference_symbols=clash, **kwargs)
    assert any("symbols name several reference genes" in line for line in out.log)
    with pytest.raises(ParameterError, match="reference_symbols: none of its identifiers"):
        mapping.map_cells(named, allen_stats, allen_lookup, reference_symbols={"X": "Y"})
    with pytest.raises(ParameterError, match="or match symbols with reference_symbols="):
        mapping.map_cells(named, allen_stats, allen_lookup)


def test_results_ignore_gene_order_and_whether_the_query_is_a_file(allen_stats, allen_lookup, query, tmp_path):
    base = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=10).assignments
    order = np.random.default_rng(9).permutation(query.n_vars)
    shuffled = query[:, order].copy()
    pd.testing.assert_frame_equal(mapping.map_cells(shuffled, allen_stats, allen_lookup, bootstrap_iteration=10).assignments,
                                  base, check_exact=False, rtol=1e-6, atol=1e-7)
    shuffled.write_h5ad(tmp_path / "q.h5ad")
    from_file = mapping.map_cells(tmp_path / "q.h5ad", allen_stats, allen_lookup, bootstrap_iteration=10, chunk_size=300)
    pd.testing.assert_frame_equal(from_file.assignments, base, check_exact=False, rtol=1e-6, atol=1e-7)
    # the same seed gives the same draws; another seed other draws (the statistic, not the noise, is reproducible)
    again = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=10).assignments
    pd.testing.assert_frame_equal(again, base)
    other = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=10, seed=1).assignments
    assert not other["Cluster_bootstrapping_probability"].equals(base["Cluster_bootstrapping_probability"])


# ---- HANN -----------------------------------------------------------------------------------------------------------
def test_hann_descents_vote_for_leaves_and_agree_with_the_hierarchical_vote(golden, allen_stats, allen_lookup, query):
    hann = mapping.map_cells(query, allen_stats, allen_lookup, algorithm="hann", bootstrap_iteration=30, seed=5)
    hier = mapping.map_cells(query, allen_stats, allen_lookup, bootstrap_iteration=30, seed=5)
    allen = _allen(golden, "hier_boot")
    a = hann.assignments.loc[allen.index]
    for level in LEVELS:
        # the same marker draws, voted on per descent instead of per node: Allen's labels as often as the vote finds them
        ours = (a[f"{level}_label"] == allen[f"{level}_label"]).mean()
        theirs = (hier.assignments.loc[allen.index, f"{level}_label"] == allen[f"{level}_label"]).mean()
        assert ours >= theirs - 0.02, (level, ours, theirs)
    votes = hann.leaf_votes
    per_cell = votes.groupby("cell_id")["votes"].sum()
    assert (per_cell <= 30).all() and per_cell.median() == 30
    # the leaf assigned is (chosen top-down) nearly always the one most descents ended in, and its probability is its
    # share of the descents
    top = votes.sort_values(["cell_id", "votes", "correlation"], ascending=[True, False, False]).drop_duplicates("cell_id")
    top = top.set_index("cell_id").loc[hann.assignments.index]
    assert (top["cluster"] == hann.assignments["Cluster_label"]).mean() > 0.99
    chosen = votes.set_index(["cell_id", "cluster"])["votes"].reindex(
        list(zip(hann.assignments.index, hann.assignments["Cluster_label"]))).fillna(0).to_numpy()
    assert np.allclose(chosen / 30, hann.assignments["Cluster_bootstrapping_probability"])
    # every level is the ancestor of the leaf, and a level's probability never falls below the level beneath
    tree = allen_stats.tree
    for cell, row in hann.assignments.head(200).iterrows():
        up = tree.ancestors(row["Cluster_label"])
        assert all(row[f"{lv}_label"] == up[lv] for lv in LEVELS)
        p = [row[f"{lv}_bootstrapping_probability"] for lv in LEVELS]
        assert p[0] >= p[1] >= p[2]
    assert hann.algorithm == "hann"


def _hann_votes(path):
    with h5py.File(path, "r") as f:
        cells = f["cell_identifiers"][()].astype(str)
        clusters = f["cluster_identifiers"][()].astype(str)
        return (pd.DataFrame(f["votes"][()].astype(float), index=cells, columns=clusters),
                pd.DataFrame(f["correlation"][()], index=cells, columns=clusters))


def test_hann_agrees_with_allens_hann_as_well_as_allen_agrees_with_itself(golden, allen_stats, allen_lookup, query,
                                                                          tmp_path):
    seed1, corr1 = _hann_votes(golden / "result_hann.h5")
    seed2, corr2 = _hann_votes(golden / "result_hann_seed2.h5")
    result = mapping.map_cells(query, allen_stats, allen_lookup, algorithm="hann")
    mapping.write_hann_hdf5(result, tmp_path / "hann.h5")
    ours, ours_corr = _hann_votes(tmp_path / "hann.h5")
    # Allen's layout: the same datasets, cells, clusters and types
    with h5py.File(golden / "result_hann.h5", "r") as a, h5py.File(tmp_path / "hann.h5", "r") as b:
        assert set(a) == set(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and a[name].shape[1:] == b[name].shape[1:], name
    assert list(ours.columns) == list(seed1.columns) and set(ours.index) == set(seed1.index)
    ours, ours_corr = ours.loc[seed1.index], ours_corr.loc[seed1.index]

    def compare(a, b, ca, cb):
        top = a.to_numpy().argmax(axis=1)
        rows = np.arange(len(a))
        voted = (a.to_numpy() > 0) & (b.to_numpy() > 0)
        return ((top == b.to_numpy().argmax(axis=1)).mean(),
                np.abs(a.to_numpy()[rows, top] - b.to_numpy()[rows, top]).mean(),
                np.abs(ca.to_numpy()[voted] - cb.to_numpy()[voted]).mean())

    agree, share, corr = compare(seed1, ours, corr1, ours_corr)
    allen_agree, allen_share, allen_corr = compare(seed1, seed2, corr1, corr2)
    assert agree >= allen_agree - 0.01, (agree, allen_agree)
    assert share <= allen_share * 1.25 + 0.5, (share, allen_share)  # votes out of 100
    assert corr <= allen_corr * 1.25 + 1e-3, (corr, allen_corr)
    with pytest.raises(ParameterError, match="HANN"):
        mapping.write_hann_hdf5(mapping.map_cells(query[:20].copy(), allen_stats, allen_lookup, bootstrap_iteration=2),
                                tmp_path / "no.h5")


def test_hann_results_ignore_cell_order_and_chunking(allen_stats, allen_lookup, query):
    base = mapping.map_cells(query, allen_stats, allen_lookup, algorithm="hann", bootstrap_iteration=10)
    order = np.random.default_rng(4).permutation(query.n_obs)
    other = mapping.map_cells(query[order].copy(), allen_stats, allen_lookup, algorithm="hann", bootstrap_iteration=10,
                              chunk_size=113)
    pd.testing.assert_frame_equal(other.assignments.loc[base.assignments.index], base.assignments, check_exact=True)
    key = ["cell_id", "cluster"]
    a = base.leaf_votes.sort_values(key).reset_index(drop=True)
    b = other.leaf_votes.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_hann_is_refused_where_it_means_nothing(allen_stats, allen_lookup, query, golden, tmp_path):
    with pytest.raises(ParameterError, match="flatten"):
        mapping.map_cells(query, allen_stats, allen_lookup, algorithm="hann", flatten=True)
    with pytest.raises(ParameterError, match="'nearest'"):
        mapping.map_cells(query, allen_stats, allen_lookup, algorithm="nearest")
    result = mapping.map_cells(query[:50].copy(), allen_stats, allen_lookup, algorithm="hann", bootstrap_iteration=5)
    result.to_csv(tmp_path / "h.csv")
    assert "# algorithm: 'hann'; codebase: " in (tmp_path / "h.csv").read_text()


def test_hann_from_the_command_line(golden, tmp_path):
    run = [sys.executable, "-m", "hmba_toolkit.mapping", "--query_path", str(golden / "query.h5ad"),
           "--precomputed_stats.path", str(golden / "precomputed_stats.h5"),
           "--query_markers.serialized_lookup", str(golden / "query_markers.json"),
           "--csv_result_path", str(tmp_path / "h.csv"), "--hdf5_result_path", str(tmp_path / "h.h5"),
           "--type_assignment.algorithm", "hann", "--type_assignment.bootstrap_iteration", "5"]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "# algorithm: 'hann'" in (tmp_path / "h.csv").read_text()
    votes, _ = _hann_votes(tmp_path / "h.h5")
    assert votes.shape == (1199, 46) and votes.sum(axis=1).max() == 5
    bad = subprocess.run(run[:-4] + ["--type_assignment.algorithm", "nearest"], capture_output=True, text=True)
    assert bad.returncode == 1 and "'nearest'" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(run[:-4] + ["--type_assignment.algorithm", "hierarchical"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--hdf5_result_path" in bad.stderr and "Traceback" not in bad.stderr


def test_tied_leaves_go_to_the_first_whatever_the_rounding():
    """Profiles equal up to scale and shift over the drawn genes (frequent when a draw holds a handful of genes, most
    of them zero) correlate equally with every cell; their float scores differ only by rounding, which depends on the
    BLAS kernel (this made the demo's Patch-seq mapping differ between CPUs). The first leaf must win."""
    from hmba_toolkit.mapping.assign import _best_leaf

    rng = np.random.default_rng(3)
    base = np.zeros(6)
    base[5] = 1.0
    other = rng.normal(size=6)
    P = np.stack([other, 0.7 * base, 1.3 * base])  # rows 1 and 2: the same profile up to scale, not bit for bit
    G = rng.normal(size=(6, 500))
    G[5] += 8.0  # most cells prefer the tied profile
    for exact in (False, True):
        source = (G.T.copy(), np.arange(6)) if exact else None
        best, corr = _best_leaf(G.astype(np.float32) if exact else G, P, exact_source=source)
        tied = corr > np.corrcoef(np.vstack([other, G.T]))[0, 1:] + 1e-6
        assert tied.sum() > 400 and (best[tied] == 1).all()
        best, _ = _best_leaf(G.astype(np.float32) if exact else G, P[[0, 2, 1]], exact_source=source)
        assert (best[tied] == 1).all()


def test_reported_correlations_are_float64_whatever_the_product_computing_the_scores():
    """The winner is found from a float32 matrix product, whose rounding depends on the BLAS kernel, the thread count
    and the machine; the correlation reported for it must not (rounded to 4 decimals as the release rounds them, a
    float32 score near a rounding boundary changes a digit of the demo's spatial mmc_results)."""
    from hmba_toolkit.mapping.assign import _best_leaf

    rng = np.random.default_rng(5)
    P = rng.gamma(2.0, 1.0, size=(30, 200))
    cells = P[rng.integers(0, 30, 2000)] * rng.lognormal(0, 0.3, (2000, 1)) + rng.gamma(1.0, 1.0, (2000, 200))
    cells -= cells.mean(axis=1, keepdims=True)
    genes = np.sort(rng.choice(200, 120, replace=False))
    best, corr = _best_leaf(np.ascontiguousarray(cells[:, genes].T, dtype=np.float32), P[:, genes],
                            exact_source=(cells, genes))
    exact = np.array([np.corrcoef(c, P[b, genes])[0, 1] for c, b in zip(cells[:, genes], best)])
    assert np.abs(corr - exact).max() < 1e-12
    assert (best == np.argmax(np.corrcoef(cells[:, genes], P[:, genes])[:2000, 2000:], axis=1)).all()
    _, corr64 = _best_leaf(cells[:, genes].T, P[:, genes])  # the float64 path reports the same numbers
    assert np.abs(corr64 - exact).max() < 1e-12


def test_statistics_from_files_list_the_counted_cells_at_the_leaf_level(golden, tmp_path):
    """Allen's tool reads the leaf level of the tree as lists of cell rows (a count there stops it with a TypeError):
    statistics built from h5ad files list, per leaf, the obs rows of the cells the files hold."""
    obs = ad.read_h5ad(golden / "reference.h5ad", backed="r").obs
    extra = pd.DataFrame({c: [obs[c].iloc[0]] for c in LEVELS}, index=["not_in_the_files"])
    stats = mapping.precompute_stats(golden / "reference.h5ad", LEVELS, obs=pd.concat([extra, obs[LEVELS]]))
    leaf = stats.tree.data["Cluster"]
    assert all(isinstance(rows, list) for rows in leaf.values())
    np.testing.assert_array_equal([len(leaf[c]) for c in stats.clusters], stats.n_cells)
    assert 0 not in {i for rows in leaf.values() for i in rows}  # the row of the cell no file holds
    stats.write(tmp_path / "s.h5")
    again = mapping.read_stats(tmp_path / "s.h5").tree.data["Cluster"]
    assert again == leaf


SPATIAL_SETS = {"human": "HMBA-MERSCOPE-H22.30.001-BG", "macaque": "HMBA-MERSCOPE-QM23.50.001-BG",
                "marmoset": "HMBA-Xenium-CJ23.56.004-BG"}


@pytest.mark.parametrize("species", sorted(SPATIAL_SETS))
def test_demo_spatial_mapping_comes_from_this_mapper(cache, released, species):
    """The demo's spatial ``mmc_results`` are this module's hierarchical mapping (0.5 x 100) of each section's counts
    onto the demo's 10X Groups extended with an Adjacent branch, as the release maps its cells: the membership names
    the mapped cluster, cells mapped Adjacent are ``Adjacent`` at every level with a cluster outside the taxonomy, the
    calls hold errors at a rate an aggregate-probability cut lowers, and a user who maps the released counts with
    the released mapping files (which have no Adjacent branch) gets the same Groups for the other cells."""
    from hmba_toolkit.datasets import demo_ground_truth

    d = SPATIAL_SETS[species]
    tax = cache.taxonomy()
    levels = ["Neighborhood", "Class", "Subclass", "Group"]
    mmc = cache.get_metadata_dataframe(d, "mmc_results").set_index("cell_label")
    membership = cache.get_metadata_dataframe(d, "cell_to_cluster_membership").set_index("cell_label")
    assert (membership["cluster_alias"] == mmc.loc[membership.index, "cluster_alias"]).all()
    adjacent = mmc["Neighborhood_name"] == "Adjacent"
    assert 0.05 < adjacent.mean() < 0.5
    named = [f"{level}_{kind}" for level in levels for kind in ("label", "name")]
    assert (mmc.loc[adjacent, named] == "Adjacent").all().all()
    assert not mmc.loc[adjacent, "cluster_alias"].isin(tax.index).any()
    bg = mmc[~adjacent]
    assert (tax.loc[bg["cluster_alias"], "Group"].to_numpy() == bg["Group_name"].to_numpy()).all()
    for level in levels:  # bootstrapping: a level's probability is a vote share of 100 draws
        p = mmc[f"{level}_bootstrapping_probability"]
        np.testing.assert_allclose(p * 100, np.round(p * 100), atol=1e-9)
    cells = cache.get_metadata_dataframe(d, "cell_metadata").set_index("cell_label")
    truth = pd.read_csv(demo_ground_truth() / "spatial" / f"{species}_cells.csv", index_col="cell_label")
    planted = truth["planted_cluster"]
    qc = cells.index[cells["qc_pass"]]
    right = {level: mmc.loc[qc, f"{level}_name"] == planted.loc[qc].map(tax[level]).fillna("Adjacent")
             for level in levels}
    assert right["Neighborhood"].mean() >= 0.85, right["Neighborhood"].mean()
    assert 0.6 <= right["Group"].mean() < 0.95, right["Group"].mean()  # a mapping with errors, not the truth copied
    # the aggregate probability (the product down the levels) separates right from wrong calls; a Group's own
    # bootstrapping probability is 1 wherever its Subclass has no other Group, however the cell got there
    sure = mmc.loc[qc, "Group_aggregate_probability"] >= 0.5
    assert 0.2 < sure.mean() < 0.9 and right["Group"][sure].mean() > right["Group"].mean() + 0.05
    # the user's mapping with the released files
    stats, symbols = released["stats"], released["symbols"]
    query = cache.read_expression(d, normalization="raw", gene_column=None)
    query = query[bg.index.intersection(qc)]
    measured = mapping.measured_genes(query, stats, query_gene_id_col="gene_symbol", reference_symbols=symbols)
    lookup = mapping.query_markers(released["reference_markers"], stats.tree, genes=measured)
    result = mapping.map_cells(query, stats, lookup, query_gene_id_col="gene_symbol", reference_symbols=symbols)
    ours = result.assignments.loc[query.obs_names, "CCN20250428_LEVEL_3_name"]
    same = (ours == bg.loc[query.obs_names, "Group_name"]).mean()
    assert same >= 0.85, same
