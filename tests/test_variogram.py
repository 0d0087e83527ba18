"""Variograms and variogram-matching surrogates (Burt et al. 2020), checked against the formulas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist

from hmba_toolkit import nulls
from hmba_toolkit.autocorrelation import morans_i
from hmba_toolkit.errors import HmbaToolkitError
from hmba_toolkit.spatial import Geometry
from hmba_toolkit.variograms import VariogramGeometry, smoothed_variogram
from hmba_toolkit.weights import knn_weights, row_standardize


def _field(n=400, length=0.2, seed=0, dim=2):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, dim))
    D = cdist(xy, xy)
    x = linalg.cholesky(np.exp(-D / length) + 1e-8 * np.eye(n), lower=True) @ rng.standard_normal(n)
    return xy, D, x


def _direct_variogram(x, D, pv=25, nh=25):
    """Burt et al. (2020) Eq. 2-3 written out over every pair (the oracle)."""
    iu, ju = np.triu_indices(len(x), 1)
    u = D[iu, ju]
    keep = u <= np.percentile(u, pv)
    u, v = u[keep], 0.5 * (x[iu[keep]] - x[ju[keep]]) ** 2
    h = np.linspace(u.min(), u.max(), nh)
    b = 3 * (h[1] - h[0])
    w = np.exp(-0.5 * (2.68 * np.abs(u[None] - h[:, None]) / b) ** 2)
    return h, (w @ v) / w.sum(axis=1)


@pytest.mark.parametrize("n", [120, 600])
def test_smoothed_variogram_matches_the_formula(n):
    xy, D, x = _field(n, seed=n)
    h, want = _direct_variogram(x, D)
    got = smoothed_variogram(x, xy)
    np.testing.assert_allclose(got["distance"], h, rtol=1e-12)
    np.testing.assert_allclose(got["gamma"], want, rtol=2e-3)  # fine distance bins: ~1e-4 typical
    from_matrix = smoothed_variogram(x, distances=D)
    np.testing.assert_allclose(from_matrix["gamma"], got["gamma"], rtol=1e-9)
    two = smoothed_variogram(np.c_[x, 2 * x], xy)
    np.testing.assert_allclose(two["gamma_1"], 4 * two["gamma_0"], rtol=1e-12)


def test_neighbour_smoothing_matches_a_dense_computation():
    xy, D, x = _field(300, seed=4)
    g = VariogramGeometry.of(Geometry(xy))
    X = np.c_[x, x**2]
    for k in (5, 40, 250):  # sparse numba path below 32 neighbours, dense above
        order = np.argsort(D, axis=1)[:, 1 : k + 1]
        d = np.take_along_axis(D, order, axis=1)
        w = np.exp(-d / d[:, -1:])
        want = (w[:, :, None] * X[order]).sum(1) / w.sum(1)[:, None]
        np.testing.assert_allclose(g.smooth(X, k), want, rtol=1e-10)


def test_surrogates_match_the_variogram_and_keep_autocorrelation():
    xy, _, x = _field(500, length=0.25, seed=1)
    with pytest.warns(FutureWarning, match="return_fit"):  # the generation fit (k, alpha, beta) of the deprecated flag
        surr, fit = nulls.variogram(x, xy, n_permutations=60, seed=3, return_fit=True)
    assert nulls.variogram_fit(x, surr, xy)["r2"].median() > 0.85
    assert surr.shape == (60, 500) and np.isfinite(surr).all()
    assert list(fit.columns) == ["surrogate", "k", "alpha", "beta", "r2"]
    assert fit["r2"].median() > 0.85, fit["r2"].describe()
    np.testing.assert_allclose(surr.mean(axis=1), x.mean(), atol=1e-9)
    W = row_standardize(knn_weights(xy, 8))
    i_obs = morans_i(x, W)["statistic"].iat[0]
    i_var = morans_i(surr.T, W)["statistic"].median()
    i_naive = morans_i(nulls.naive(x, n_permutations=60, seed=3).T, W)["statistic"].median()
    assert abs(i_var - i_obs) < 0.25 * i_obs and abs(i_naive) < 0.05  # shuffling destroys what surrogates keep
    # an independent judge of fit gives the same figure
    again = nulls.variogram_fit(x, surr, xy)
    np.testing.assert_allclose(again["r2"], fit["r2"], rtol=1e-9)
    # naive permutations do not fit the variogram
    assert nulls.variogram_fit(x, nulls.naive(x, n_permutations=60, seed=3), xy)["r2"].median() < 0


def test_seeded_and_independent_of_batch_size():
    xy, D, x = _field(200, seed=2)
    a = nulls.variogram(x, xy, n_permutations=25, seed=11)
    b = nulls.variogram(x, xy, n_permutations=25, seed=11, batch_size=4)
    c = nulls.variogram(x, distances=D, n_permutations=25, seed=11)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)  # BLAS blocking differs with the batch width
    np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
    assert not np.allclose(a, nulls.variogram(x, xy, n_permutations=25, seed=12))
    np.testing.assert_allclose(a[:5], nulls.variogram(x, xy, n_permutations=5, seed=11), rtol=1e-9, atol=1e-12)


def test_resample_keeps_the_value_distribution():
    xy, _, x = _field(200, seed=5)
    x = np.exp(x)  # skewed values
    surr = nulls.variogram(x, xy, n_permutations=20, seed=0, resample=True)
    np.testing.assert_array_equal(np.sort(surr, axis=1), np.tile(np.sort(x), (20, 1)))


def test_sampled_variant_on_a_large_point_cloud():
    rng = np.random.default_rng(7)
    xy = rng.random((6000, 3)) * 10
    x = np.sin(xy[:, 0]) + np.cos(0.7 * xy[:, 1]) + 0.3 * rng.standard_normal(6000)
    with pytest.warns(FutureWarning, match="return_fit"):
        surr, fit = nulls.variogram(x, xy, n_permutations=8, seed=1, knn=300, ns=400, return_fit=True)
    assert fit.attrs["sampled"] and fit.attrs["knn"] == 300
    assert surr.shape == (8, 6000)
    assert fit["r2"].median() > 0.7, fit["r2"].describe()
    assert set(fit["k"]) <= {90, 150, 210, 270}


def test_fpr_of_variogram_nulls_on_a_3d_point_cloud():
    """Independent autocorrelated maps on 3-D points (a subcortical volume): naive lies, variogram does not."""
    rng = np.random.default_rng(9)
    xyz = rng.random((200, 3))
    D = cdist(xyz, xyz)
    L = linalg.cholesky(np.exp(-D / (0.3 * np.median(D))) + 1e-8 * np.eye(200), lower=True)
    geom = Geometry(xyz)
    naive = var = 0
    reps = 100
    for rep in range(reps):
        x, y = L @ rng.standard_normal(200), L @ rng.standard_normal(200)
        naive += nulls.correlate(x, y, nulls.naive(x, n_permutations=200, seed=rep)).pvalue < 0.05
        var += nulls.correlate(x, y, nulls.variogram(x, geom, n_permutations=200, seed=rep)).pvalue < 0.05
    assert naive / reps > 0.15, naive
    assert var / reps <= 0.08, var


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": np.r_[np.nan, np.ones(49)]}, "x has 1 NaN or infinite"),
        ({"x": np.ones(50)}, "x is constant"),
        ({"x": np.arange(49.0)}, "x has 49 values for 50 locations"),
        ({"deltas": [0.5, 1.5]}, "deltas must be fractions"),
        ({"kernel": "cubic"}, "kernel='cubic'"),
        ({"n_permutations": 0}, "n_permutations must be a positive number"),
        ({"knn": 1}, "knn must be between 2 and N - 1 = 49"),
        ({"pv": 0}, "pv must be a percentile"),
        ({"coords": np.zeros((50, 2))}, "duplicated locations"),
        ({"coords": np.r_[np.full((1, 2), np.nan), np.random.default_rng(0).random((49, 2))]}, "coords has 1 locations with NaN"),
        ({"coords": np.random.default_rng(0).random((8, 2)), "x": np.arange(8.0)}, "at least 10 locations"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    args = {"x": np.arange(50.0), "coords": np.random.default_rng(0).random((50, 2)), "n_permutations": 3}
    args.update(kwargs)
    with pytest.raises(HmbaToolkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        nulls.variogram(args.pop("x"), args.pop("coords"), **args)
