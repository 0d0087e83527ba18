"""Cross-species Group matching: calibrated under the null, powered under shared programmes, on the demo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit import cross_species, stream
from hmba_toolkit.errors import HmbaToolkitError


def _profiles(rng, n_groups=20, n_genes=200, shared=0.0):
    groups = [f"G{i:02d}" for i in range(n_groups)]
    genes = [f"g{j}" for j in range(n_genes)]
    programme = rng.standard_normal((n_groups, n_genes))
    baseline = rng.normal(0, 3, n_genes)  # each gene's overall level, shared by the species
    make = lambda: pd.DataFrame(shared * programme + rng.standard_normal((n_groups, n_genes)) + baseline
                                + rng.normal(0, 0.5, n_genes), index=groups, columns=genes)
    return make(), make()


def test_match_groups_is_calibrated_under_the_null():
    rng = np.random.default_rng(0)
    p = []
    for i in range(300):
        a, b = _profiles(rng)
        p.append(cross_species.match_groups(cross_species.profile_correlation(a, b), n_permutations=199, seed=i).attrs["pvalue"])
    p = np.array(p)
    fpr = float((p <= 0.05).mean())
    assert fpr <= 0.08, fpr  # nominal 5%; 300 replicates (binomial 95% band up to ~0.08)
    assert 0.35 < p.mean() < 0.7  # not piled up near zero


def test_match_groups_finds_shared_programmes():
    rng = np.random.default_rng(1)
    a, b = _profiles(rng, shared=1.0)
    res = cross_species.match_groups(cross_species.profile_correlation(a, b, method="spearman"), n_permutations=199)
    assert res.attrs["accuracy"] >= 0.9 and res.attrs["pvalue"] == pytest.approx(1 / 200)
    assert (res.loc[res["matched"], "rank_self"] == 1).all()
    # without centring, genes' overall levels dominate: every pair of Groups correlates highly
    raw = cross_species.profile_correlation(a, b, center=False)
    assert raw.to_numpy().min() > 0.6


def test_demo_groups_match_across_species(cache):
    path = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
    agg = stream.aggregate(path, ["species_genus", "Group"], obs=cells, normalization="log2cpm", progress=False)
    profiles = cross_species.group_profiles(agg, min_cells=5)
    assert set(profiles) == {"Human", "Macaque", "Marmoset"}
    genes = cross_species.variable_genes(profiles, n=500)
    assert len(genes) == 500 and len(set(genes)) == 500
    res = cross_species.match_groups(cross_species.profile_correlation(profiles["Human"], profiles["Macaque"], genes))
    assert res.attrs["accuracy"] > 5 * res.attrs["chance"] and res.attrs["pvalue"] < 0.01


def test_cross_species_errors():
    rng = np.random.default_rng(2)
    a, b = _profiles(rng, n_groups=4)
    with pytest.raises(HmbaToolkitError, match="method"):
        cross_species.profile_correlation(a, b, method="kendall")
    with pytest.raises(HmbaToolkitError, match="missing"):
        cross_species.profile_correlation(a, b, genes=["nope"])
    with pytest.raises(HmbaToolkitError, match="fewer than 2"):
        cross_species.match_groups(cross_species.profile_correlation(a, b.rename(index=lambda g: "x" + g)))
    import anndata as ad

    with pytest.raises(HmbaToolkitError, match="no column"):
        cross_species.group_profiles(ad.AnnData(np.zeros((2, 2)), obs=pd.DataFrame({"Group": ["a", "b"]}, index=["0", "1"])))


def test_marker_ranks_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    from hmba_toolkit import pl

    a = pd.DataFrame({"G1": [5.0, 1.0, 0.0], "G2": [0.0, 2.0, 3.0], "G3": [1.0, 1.5, 0.5]}, index=["A", "B", "C"])
    b = pd.DataFrame({"G1": [1.0, 4.0, 0.0], "G2": [0.0, 2.0, 3.0], "G3": [2.0, 1.0, 0.5]}, index=["A", "B", "C"])
    res = cross_species.marker_ranks({"Human": a, "Macaque": b}, {"A": ["G1"], "C": ["G2", "NOPE"], "Z": ["G1"]})
    got = {(r.group, r.gene, r.species): r.rank for r in res.itertuples()}
    assert got == {("A", "G1", "Human"): 1, ("A", "G1", "Macaque"): 2, ("C", "G2", "Human"): 1, ("C", "G2", "Macaque"): 1}
    r = cross_species.profile_correlation(a, b, center=False)
    ax = pl.group_correlation(r, order=["C", "B", "A"], colors={"A": "#ff0000"}, labels=("Human", "Macaque"))
    np.testing.assert_allclose(ax.images[0].get_array(), r.loc[["C", "B", "A"], ["C", "B", "A"]].to_numpy())
