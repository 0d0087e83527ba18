"""Patch-seq: the joined cell table, features by type, donor-aware tests (calibrated under a null), correlations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hmba_toolkit import patchseq
from hmba_toolkit.datasets import demo_ground_truth
from hmba_toolkit.errors import NotFoundError, ParameterError

PATCHSEQ = "HMBA-Macaque-PatchSeq"


@pytest.fixture(scope="module")
def cells(cache):
    return cache.cell_table(PATCHSEQ)


def test_the_joined_table_holds_mapping_taxonomy_and_features(cache, cells):
    mmc = cache.get_metadata_dataframe(PATCHSEQ, "mmc_results").set_index("cell_label")
    assert (cells["Group"] == mmc.loc[cells.index, "Group_name"]).all()  # the taxonomy of the membership is the mapping's
    assert cells["Group_color"].str.match(r"^#[0-9A-Fa-f]{6}$").all()
    np.testing.assert_allclose(cells["Group_bootstrapping_probability"], mmc.loc[cells.index, "Group_bootstrapping_probability"])
    morph = cache.get_metadata_dataframe(PATCHSEQ, "morphology_features").set_index("cell_label")
    assert cells["soma_surface_area"].notna().sum() == len(morph)
    np.testing.assert_allclose(cells.loc[morph.index, "soma_surface_area"], morph["soma_surface_area"])
    assert cells["width_rheo_ms"].notna().all() and cells["donor_species"].notna().all()


def test_planted_morpho_electric_differences_are_found(cells):
    truth = pd.read_csv(demo_ground_truth() / "patchseq_features.csv").set_index("Group")
    summary = patchseq.features_by_group(cells, ["width_rheo_ms", "input_resistance", "soma_surface_area"])
    medians = summary.pivot(index="group", columns="feature", values="median")
    # cells are grouped by their mapped Group; Groups that only mapping errors populate have no planted means
    medians = medians.loc[medians.index.intersection(truth.index)]
    assert len(medians) >= 5
    for feature in ("width_rheo_ms", "input_resistance"):
        r = stats.spearmanr(medians[feature], truth.loc[medians.index, feature]).statistic
        assert r > 0.9, feature
    assert medians.at["STRd D1 Matrix MSN", "width_rheo_ms"] > medians.at["STRd D2 Matrix MSN", "width_rheo_ms"]
    measured = summary["n_cells"] > 0  # a Group whose cells lack a feature (a morphology) summarises nothing
    assert summary.loc[measured, "mean_probability"].between(0, 1).all() and (summary.loc[measured, "n_donors"] >= 1).all()
    assert summary.loc[~measured, ["mean", "mean_probability"]].isna().all().all()
    result = patchseq.compare_groups(cells, ["width_rheo_ms", "input_resistance", "soma_surface_area", "sag"],
                                     n_permutations=500).set_index("feature")
    assert (result.loc[["width_rheo_ms", "input_resistance", "soma_surface_area"], "padj"] < 0.01).all()
    assert result.at["sag", "pvalue"] > 0.05  # planted without a type effect
    confident = patchseq.features_by_group(cells, ["width_rheo_ms"], min_probability=0.8)
    assert confident["n_cells"].sum() < summary.query("feature == 'width_rheo_ms'")["n_cells"].sum()


def _confounded_null(rng, n_features: int) -> pd.DataFrame:
    """180 cells of 3 donors whose mix of 7 types differs, donor offsets in every feature, no type effect."""
    donors = np.repeat(["d1", "d2", "d3"], 60)
    mixes = {"d1": [0.5, 0.3, 0.05, 0.05, 0.04, 0.03, 0.03], "d2": [0.05, 0.05, 0.3, 0.3, 0.1, 0.1, 0.1],
             "d3": [0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2]}
    groups = np.concatenate([rng.choice(7, 60, p=mixes[d]) for d in ("d1", "d2", "d3")])
    offset = {"d1": 0.0, "d2": 1.5, "d3": -1.0}
    x = np.array([offset[d] for d in donors])[:, None] + rng.standard_normal((180, n_features))
    table = pd.DataFrame(x, columns=[f"f{k}" for k in range(n_features)], index=[f"c{i}" for i in range(180)])
    table["Group"] = [f"type {g}" for g in groups]
    table["donor_label"] = donors
    return table


def test_compare_groups_holds_its_false_positive_rate_when_donors_confound_types():
    table = _confounded_null(np.random.default_rng(7), 300)
    features = [c for c in table.columns if c.startswith("f")]
    ours = patchseq.compare_groups(table, features, n_permutations=199, seed=1)
    naive = np.array([stats.kruskal(*[g[f].to_numpy() for _, g in table.groupby("Group")]).pvalue for f in features])
    rate, naive_rate = float((ours["pvalue"] < 0.05).mean()), float((naive < 0.05).mean())
    assert rate <= 0.08, rate
    assert naive_rate > 0.5, naive_rate  # the test that ignores donors calls most null features type-specific


def test_gene_feature_correlations_hold_their_rate_and_find_planted_genes(cache, cells):
    rng = np.random.default_rng(3)
    table = _confounded_null(rng, 1)
    genes = pd.DataFrame(np.array([{"d1": 0.0, "d2": 2.0, "d3": -1.0}[d] for d in table["donor_label"]])[:, None]
                         + rng.standard_normal((180, 400)), index=table.index, columns=[f"G{k}" for k in range(400)])
    ours = patchseq.gene_feature_correlations(genes, table, ["f0"], n_permutations=199)
    naive = np.array([stats.spearmanr(genes[g], table["f0"]).pvalue for g in genes.columns])
    assert (ours["pvalue"] < 0.05).mean() <= 0.08 and (naive < 0.05).mean() > 0.3
    expr = cache.read_expression(PATCHSEQ)
    frame = pd.DataFrame(expr.X.toarray(), index=expr.obs_names, columns=expr.var["gene_symbol"].astype(str))
    with pytest.warns(UserWarning, match="do not vary"):
        result = patchseq.gene_feature_correlations(frame, cells, ["width_rheo_ms"], n_permutations=200)
    top = result.dropna().head(20)
    assert "DRD1" in set(top["gene"]) and top.set_index("gene").at["DRD1", "r"] > 0  # D1 MSNs: wider spikes
    # neither the row order of the inputs nor the column order changes a number
    with pytest.warns(UserWarning, match="do not vary"):
        shuffled = patchseq.gene_feature_correlations(frame.sample(frac=1, random_state=0), cells.sample(frac=1, random_state=1),
                                                      ["width_rheo_ms"], n_permutations=200)
    pd.testing.assert_frame_equal(shuffled, result)


def test_results_do_not_depend_on_row_order(cells):
    features = ["width_rheo_ms", "tau"]
    a = patchseq.compare_groups(cells, features, n_permutations=200)
    b = patchseq.compare_groups(cells.sample(frac=1, random_state=5), features, n_permutations=200)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(patchseq.features_by_group(cells, features),
                                  patchseq.features_by_group(cells.iloc[::-1], features))


def test_degenerate_and_bad_input(cells):
    table = cells.assign(constant=1.0)
    with pytest.warns(UserWarning, match=r"\['constant'\].*NaN"):
        result = patchseq.compare_groups(table, ["constant", "width_rheo_ms"], n_permutations=50).set_index("feature")
    assert np.isnan(result.at["constant", "pvalue"]) and np.isnan(result.at["constant", "padj"])
    one_type = cells[cells["Group"] == "STRd D1 Matrix MSN"]
    with pytest.warns(UserWarning, match="fewer than two Group types"):
        assert patchseq.compare_groups(one_type, ["width_rheo_ms"], n_permutations=50)["pvalue"].isna().all()
    with pytest.raises(NotFoundError, match=r"'width_rheo_mss': did you mean \['width_rheo_ms'"):
        patchseq.compare_groups(cells, ["width_rheo_mss"])
    with pytest.raises(TypeError, match="not the string"):
        patchseq.features_by_group(cells, "width_rheo_ms")
    with pytest.raises(ParameterError, match="min_probability"):
        patchseq.features_by_group(cells, ["width_rheo_ms"], min_probability=80)
    with pytest.raises(ParameterError, match="n_permutations"):
        patchseq.compare_groups(cells, ["width_rheo_ms"], n_permutations=0)
    mixed = cells.assign(species_genus=np.where(np.arange(len(cells)) % 2, "Human", "Macaque"))
    with pytest.raises(ParameterError, match="finer than the Group level"):
        patchseq.compare_groups(mixed, ["width_rheo_ms"], groupby="Cluster")  # Clusters are species-specific
    with pytest.raises(NotFoundError, match="no cell of expression"):
        patchseq.gene_feature_correlations(pd.DataFrame({"G": [1.0]}, index=["x"]), cells, ["width_rheo_ms"])
