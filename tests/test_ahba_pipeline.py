"""AHBA normalization (abagen as oracle), intensity-based filtering and probe selection."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.ahba import NORMALIZATION_METHODS, filter_probes, normalize, reannotate_probes, select_probes
from hmba_toolkit import datasets
from hmba_toolkit.datasets import fetch_demo_ahba
from hmba_toolkit.errors import HmbaToolkitError
from hmba_toolkit.io import read_ahba_donor

DATA = Path(datasets.__file__).parent / "data"


@pytest.mark.parametrize("method", sorted(NORMALIZATION_METHODS))
def test_normalization_agrees_with_abagen(method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from abagen import correct
    rng = np.random.default_rng(sum(map(ord, method)))
    for _ in range(5):
        x = pd.DataFrame(rng.lognormal(size=(61, 12)) * rng.uniform(0.5, 20, 12))
        x.iloc[rng.choice(61, 3, replace=False)] = np.nan  # all-NaN rows are skipped, as abagen does
        ours = normalize(x, method)
        oracle = np.asarray(correct.normalize_expression(x, norm=method))
        np.testing.assert_array_equal(np.isnan(ours.to_numpy()), np.isnan(oracle))
        np.testing.assert_allclose(ours.to_numpy(), oracle, rtol=0, atol=1e-8, equal_nan=True)


def test_normalize_groups_and_errors():
    x = np.arange(12, dtype=float).reshape(6, 2)
    out = normalize(x, "minmax", groups=np.array(["a", "a", "a", "b", "b", "b"]))
    np.testing.assert_allclose(out[:, 0], [0, 0.5, 1, 0, 0.5, 1])
    assert normalize(x, None) is x
    with pytest.raises(HmbaToolkitError, match="method='bogus'"):
        normalize(x, "bogus")
    with pytest.raises(HmbaToolkitError, match="groups has 2 labels for 6 rows"):
        normalize(x, "zscore", groups=np.array([1, 2]))


@pytest.fixture(scope="module")
def donors():
    root = fetch_demo_ahba()
    return {p.name.removeprefix("normalized_microarray_donor"): read_ahba_donor(p) for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def probes(donors):
    return reannotate_probes(next(iter(donors.values())).probes)


def test_reannotation_and_intensity_filter(donors, probes):
    assert probes.index.name == "probe_id" and probes["entrez_id"].notna().all()
    kept = filter_probes(donors, probes, 0.5)
    # by hand: pooled PA fraction over every donor's samples
    pa = pd.concat([d.pacall.loc[probes.index] for d in donors.values()], axis=1)
    expect = probes.index[(pa.mean(axis=1) >= 0.5).to_numpy()]
    assert kept.index.equals(expect)
    assert len(filter_probes(donors, probes, 0)) == len(probes) > len(kept) > len(filter_probes(donors, probes, 1.0))
    assert len(filter_probes(donors, probes, 7)) == len(filter_probes(donors, probes, 1))  # clipped to [0, 1]


def test_probe_selection_methods(donors, probes):
    root = fetch_demo_ahba()
    truth = pd.read_csv(root.parent / "ground_truth" / "ahba_probes.csv").set_index("probe_id")
    n_per_gene = probes.groupby("gene_symbol").size()
    multi = set(n_per_gene[n_per_gene > 1].index)
    chance = truth.loc[probes.index[probes["gene_symbol"].isin(multi)], "tracks_gene"].mean()
    sel = select_probes(donors, probes, "diff_stability")
    expr, chosen = sel.expression, sel.chosen
    assert set(expr) == set(donors) and all(e.shape[1] == probes["gene_symbol"].nunique() for e in expr.values())
    picked = chosen.drop_duplicates("probe_id")
    picked = picked[picked["gene_symbol"].isin(multi)].join(truth[["tracks_gene", "noise_sd"]], on="probe_id")
    # differential stability prefers probes that follow their gene's regional pattern
    assert picked["tracks_gene"].mean() >= 0.97 > chance
    # max_intensity: the probe with the highest mean over all samples, by hand
    chosen_mi = select_probes(donors, probes, "max_intensity").chosen
    pooled = pd.concat([d.microarray.loc[probes.index] for d in donors.values()], axis=1).mean(axis=1)
    by_hand = pooled.groupby(probes["gene_symbol"]).idxmax()
    got = chosen_mi.drop_duplicates("gene_symbol").set_index("gene_symbol")["probe_id"]
    assert (got.sort_index() == by_hand.sort_index()).all()
    # mean: average of the gene's probes
    mean_expr = select_probes(donors, probes, "mean").expression
    g = next(iter(multi))
    d = donors["9861"]
    np.testing.assert_allclose(mean_expr["9861"][g], d.microarray.loc[probes.index[probes["gene_symbol"] == g]].mean())
    # donor_probes modes
    ind = select_probes(donors, probes, "max_intensity", donor_probes="independent").chosen
    com = select_probes(donors, probes, "max_intensity", donor_probes="common").chosen
    assert ind.groupby("gene_symbol")["probe_id"].nunique().max() > 1
    assert com.groupby("gene_symbol")["probe_id"].nunique().max() == 1
    for m in ("pc_loading", "corr_intensity", "corr_variance", "max_variance"):
        sel = select_probes(donors, probes, m)
        e, c = sel.expression, sel.chosen
        assert c.groupby(["donor", "gene_symbol"]).size().max() == 1 and e["9861"].notna().all().all()
    with pytest.raises(HmbaToolkitError, match="method='best'"):
        select_probes(donors, probes, "best")


@pytest.fixture(scope="module")
def result(donors):
    from hmba_toolkit.ahba import process

    return process(donors)


def test_atlas_assignment_agrees_with_nearest_parcel_labels(donors):
    from hmba_toolkit.ahba import annotate_samples, assign_regions, desikan_killiany

    atlas = desikan_killiany()
    wells = pd.read_csv(DATA / "ahba_wells_desikankilliany.csv").set_index("well_id")
    agree, n = 0, 0
    for d in donors.values():
        annot = annotate_samples(d)
        lab = assign_regions(annot, atlas, tolerance=2)
        ref = wells.loc[annot["well_id"], "dk_id"].to_numpy()
        agree += int((lab.to_numpy() == ref).sum())
        n += len(ref)
    assert agree / n >= 0.9, agree / n
    # a sample far outside the brain is left unassigned; constraints exclude the wrong hemisphere
    far = annot.iloc[:1].copy()
    far[["mni_x", "mni_y", "mni_z"]] = [0.0, 0.0, 200.0]
    assert assign_regions(far, atlas).iat[0] == 0


def test_mirroring_and_hemisphere_check(donors):
    from hmba_toolkit.ahba import annotate_samples, mirror_samples
    from hmba_toolkit.ahba.samples import hemisphere_matches

    d = donors["12876"]  # left hemisphere only
    annot = annotate_samples(d)
    assert set(annot["hemisphere"]) <= {"L", "B"} and hemisphere_matches(annot).all()
    expr = pd.DataFrame(np.arange(len(annot) * 2).reshape(-1, 2), index=annot.index)
    m2 = mirror_samples(annot, expr, "leftright")
    a2, e2 = m2.annotation, m2.expression
    n_left = int((annot["hemisphere"] == "L").sum())
    assert len(e2) == len(a2) and (e2.index == a2.index).all()
    assert len(a2) == len(annot) + n_left and (a2["hemisphere"] == "R").sum() == n_left
    assert (a2.loc[a2["hemisphere"] == "R", "mni_x"] > 0).all() and hemisphere_matches(a2).all()
    bad = annot.copy()
    bad.loc[bad.index[0], "mni_x"] = 30.0
    assert not hemisphere_matches(bad)[0]


def test_pipeline_output_report_and_planted_striatal_genes(result):
    res = result
    assert list(res.report["step"])[:4] == ["read", "reannotate", "intensity filter", "probe selection"]
    assert res.report["samples"].dropna().is_monotonic_decreasing
    e = res.expression.dropna(how="all")
    assert e.index.name == "label" and e.shape[1] == res.report["genes"].iloc[-1]
    assert ((e >= 0) & (e <= 1)).all().all()  # srs output lies in [0, 1]
    assert res.counts.to_numpy().sum() == res.report["samples"].iloc[-1]
    dk = pd.read_csv(DATA / "atlas-desikankilliany.csv").set_index("id")
    stri = e.index.intersection(dk.index[dk["label"].isin(["caudate", "putamen", "accumbensarea"])])
    other = e.index.difference(stri)
    for g in ["PENK", "PPP1R1B", "DRD2"]:
        assert e.loc[stri, g].mean() > e.loc[other, g].mean() + 0.3, g


def test_pipeline_options(donors):
    from hmba_toolkit.ahba import process

    a = process(donors, region_agg="samples", agg_metric="median", probe_selection="max_intensity", lr_mirror="bidirectional")
    assert a.report["step"].str.contains("mirror").any()
    assert a.counts.to_numpy().sum() > 480  # mirrored copies add samples
    with pytest.raises(HmbaToolkitError, match="region_agg='regions'"):
        process(donors, region_agg="regions")


def test_region_group_test_recovers_striatum_and_is_calibrated(result):
    import copy

    from hmba_toolkit.ahba import region_groups
    from hmba_toolkit.de import RESULT_COLUMNS

    stri, other = ["caudate", "putamen", "accumbensarea"], ["pallidum", "thalamusproper", "hippocampus", "amygdala"]
    res = region_groups(result, stri, other)
    assert list(res.columns) == RESULT_COLUMNS and res.attrs["design"] == "~ donor + in_group"
    planted = {"PENK", "PPP1R1B", "DRD1", "DRD2", "ADORA2A", "GPR88", "RGS9", "PDE10A", "TAC1", "FOXP1"}
    top = set(res.head(len(planted))["gene"])
    assert len(top & planted) >= len(planted & set(res["gene"])) - 1
    # null: region labels shuffled within each donor; the t-test's false-positive rate holds
    rng = np.random.default_rng(7)
    fpr = []
    for _ in range(100):
        fake = copy.copy(result)
        fake.samples = {k: s.assign(label=rng.permutation(s["label"].to_numpy())) for k, s in result.samples.items()}
        fpr.append(float((region_groups(fake, stri, other)["pvalue"] < 0.05).mean()))
    assert 0.02 <= np.mean(fpr) <= 0.06, np.mean(fpr)
    with pytest.raises(HmbaToolkitError, match="share regions"):
        region_groups(result, ["caudate"], ["caudate"])
    with pytest.raises(HmbaToolkitError, match="'striatum'"):
        region_groups(result, ["striatum"], ["pallidum"])
