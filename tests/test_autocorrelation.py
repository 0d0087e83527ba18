"""Spatial weights, Moran's I and Geary's C: moments, null calibration, planted patterns."""

from __future__ import annotations

import numpy as np
import pytest

from hmba_toolkit import autocorrelation as ac
from hmba_toolkit.errors import HmbaToolkitError
from hmba_toolkit.weights import distance_band_weights, exponential_weights, knn_weights, row_standardize

HUMAN = "HMBA-MERSCOPE-H22.30.001-BG"


def test_weights():
    rng = np.random.default_rng(0)
    xy = rng.random((80, 2))
    W = knn_weights(xy, 5)
    assert (np.asarray(W.sum(axis=1)).ravel() == 5).all() and W.diagonal().sum() == 0
    B = distance_band_weights(xy, 0.2)
    assert (B != B.T).nnz == 0
    E = exponential_weights(xy, d0=0.1)
    d = np.linalg.norm(xy[3] - xy[7])
    assert E[3, 7] == pytest.approx(np.exp(-d / 0.1)) and E.diagonal().sum() == 0
    Ec = exponential_weights(xy, d0=0.1, cutoff=0.3)
    assert Ec[3, 7] == (pytest.approx(np.exp(-d / 0.1)) if d <= 0.3 else 0)
    D = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert (exponential_weights(distances=D, d0=0.1) - E).max() < 1e-12
    R = row_standardize(W)
    np.testing.assert_allclose(np.asarray(R.sum(axis=1)).ravel(), 1.0)
    with pytest.raises(HmbaToolkitError, match="k must be"):
        knn_weights(xy, 80)


@pytest.mark.parametrize("which", ["moran", "geary"])
def test_randomization_moments_equal_the_permutation_distribution(which):
    rng = np.random.default_rng(1)
    xy = rng.random((120, 2))
    W = row_standardize(knn_weights(xy, 6))
    x = rng.exponential(size=(120, 3)) ** 2  # skewed, heavy-tailed: kurtosis matters
    fn, stat = (ac.morans_i, ac._moran) if which == "moran" else (ac.gearys_c, ac._geary)
    res = fn(x, W)
    Wc, z, n, S0, *_ = ac._prepare(x, W, None)
    sims = np.array([stat(Wc, z[rng.permutation(n)], n, S0) for _ in range(20000)])
    var_rand = ((res["statistic"] - res["expected"]) / res["z_rand"]) ** 2
    se = np.sqrt(sims.var(axis=0) / len(sims))
    assert (np.abs(sims.mean(axis=0) - res["expected"].to_numpy()) <= 4 * se).all()
    np.testing.assert_allclose(sims.var(axis=0), var_rand, rtol=0.05)


def test_false_positive_rate_without_autocorrelation(cache):
    """Values with no spatial structure on the coordinates of a real-shaped section: p-values hold alpha."""
    cells = cache.cell_table(HUMAN)
    xy = cells.loc[cells["slab_plane_label"] == cells["slab_plane_label"].iloc[0], ["x_slab_mm", "y_slab_mm"]].to_numpy()
    W = row_standardize(knn_weights(xy, 8))
    rng = np.random.default_rng(2)
    X = rng.poisson(1.5, size=(len(xy), 400)).astype(float)  # count-like, no spatial pattern
    res = ac.morans_i(X, W)
    for col in ("pvalue_norm", "pvalue_rand"):
        assert 0.03 <= (res[col] < 0.05).mean() <= 0.07, (col, (res[col] < 0.05).mean())
    perm = ac.morans_i(X[:, :100], W, n_permutations=199, seed=3)
    assert (perm["pvalue_perm"] >= 1 / 200).all()
    assert (perm["pvalue_perm"] < 0.05).mean() <= 0.09
    geary = ac.gearys_c(X, W)
    assert 0.03 <= (geary["pvalue_rand"] < 0.05).mean() <= 0.07


def test_planted_spatial_gradient_is_detected(cache):
    cells = cache.cell_table(HUMAN)
    plane = cells[(cells["slab_plane_label"] == cells["slab_plane_label"].iloc[0]) & cells["qc_pass"]]
    x = cache.read_expression(HUMAN, cells=plane.index, genes=["CNR1", "VCAN"])
    W = row_standardize(knn_weights(plane[["x_slab_mm", "y_slab_mm"]].to_numpy(), 8))
    res = ac.morans_i(x.X, W, genes=["CNR1", "VCAN"], n_permutations=99, seed=0).set_index("gene")
    assert res.at["CNR1", "statistic"] > 0.1 and res.at["CNR1", "pvalue_perm"] == pytest.approx(1 / 100)
    assert res.at["CNR1", "pvalue_rand"] < 1e-6
    c = ac.gearys_c(x.X, W, genes=["CNR1", "VCAN"]).set_index("gene")
    assert c.at["CNR1", "statistic"] < 1 and c.at["CNR1", "pvalue_rand"] < 1e-6
    with pytest.raises(HmbaToolkitError, match="one row of X per location"):
        ac.morans_i(x.X[:10], W)
