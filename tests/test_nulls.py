"""Spatial nulls: the naive permutation test lies on autocorrelated maps, the spatial nulls do not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import linalg

from hmba_toolkit import nulls
from hmba_toolkit.autocorrelation import morans_i
from hmba_toolkit.errors import HmbaToolkitError, ParameterError
from hmba_toolkit.spatial import Geometry
from hmba_toolkit.weights import knn_weights, row_standardize


def _fpr(xy, frac, reps, seed, which):
    rng = np.random.default_rng(seed)
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    C = np.exp(-D / (frac * np.median(D[D > 0])))
    L = linalg.cholesky(C + 1e-8 * np.eye(len(xy)), lower=True)
    V = nulls.moran_eigenvectors(xy).eigenvectors
    geom = Geometry(xy)
    hits = {k: 0 for k in which}
    for rep in range(reps):
        x, y = L @ rng.standard_normal(len(xy)), L @ rng.standard_normal(len(xy))
        for k in which:
            if k == "naive":
                s = nulls.naive(x, n_permutations=300, seed=rep)
            elif k == "variogram":
                s = nulls.variogram(x, geom, n_permutations=300, seed=rep)
            elif k == "moran":
                with warnings.catch_warnings():  # its anti-conservative warning on strong maps: measured here instead
                    warnings.filterwarnings("ignore", message="nulls.moran:")
                    s = nulls.moran(x, n_permutations=300, seed=rep, eigenvectors=V, procedure="pair")
            else:
                s = nulls.spatial_lag(x, xy, n_permutations=300, seed=rep)
            hits[k] += nulls.correlate(x, y, s).pvalue < 0.05
    return {k: v / reps for k, v in hits.items()}


@pytest.mark.parametrize("layout", ["points", "parcel_centroids"])
def test_calibration_of_map_correlation(layout):
    if layout == "points":
        xy = np.random.default_rng(1).random((150, 2)) * 100
    else:
        from hmba_toolkit.ahba import desikan_killiany

        xy = desikan_killiany().centroids.to_numpy()
    strong = _fpr(xy, 0.3, 120, seed=5, which=["naive", "moran", "spatial_lag", "variogram"])
    assert strong["naive"] > 0.12, strong  # naive permutation: several times alpha
    assert strong["spatial_lag"] <= 0.08, strong
    assert strong["variogram"] <= 0.08, strong
    assert strong["moran"] <= 0.1, strong  # MSR pairs: near alpha, somewhat liberal (see the module docs)
    assert strong["naive"] >= 1.5 * max(strong["spatial_lag"], 0.02)


def test_surrogates_keep_what_they_should():
    rng = np.random.default_rng(3)
    xy = rng.random((120, 2))
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    x = linalg.cholesky(np.exp(-D / 0.2) + 1e-8 * np.eye(120), lower=True) @ rng.standard_normal(120)
    W = row_standardize(knn_weights(xy, 6))
    i_obs = morans_i(x, W)["statistic"].iat[0]
    lag = nulls.spatial_lag(x, xy, n_permutations=50, seed=0)
    assert lag.shape == (50, 120)
    np.testing.assert_allclose(np.sort(lag, axis=1), np.tile(np.sort(x), (50, 1)))  # rank-matched to x
    i_lag = morans_i(lag.T, W)["statistic"]
    i_naive = morans_i(nulls.naive(x, n_permutations=50, seed=0).T, W)["statistic"]
    assert abs(i_lag.mean() - i_obs) < abs(i_naive.mean() - i_obs)  # autocorrelation kept, shuffling loses it
    msr = nulls.moran(x, xy, n_permutations=50, seed=0)
    np.testing.assert_allclose(msr.mean(axis=1), x.mean(), atol=1e-9)
    np.testing.assert_allclose(msr.std(axis=1), x.std(), rtol=1e-9)
    V = nulls.moran_eigenvectors(xy).eigenvectors
    np.testing.assert_allclose(np.abs(V.T @ (msr[0] - x.mean())), np.abs(V.T @ (x - x.mean())), atol=1e-8)  # singleton spectrum
    r = nulls.correlate(x, x, lag)
    assert r.r == pytest.approx(1.0) and r.pvalue == pytest.approx(1 / 51)
    with pytest.raises(HmbaToolkitError, match="x has 10 values for 120 locations"):
        nulls.spatial_lag(x[:10], xy)
    with pytest.raises(HmbaToolkitError, match="procedure='triplet'"):
        nulls.moran(x, xy, procedure="triplet")


def test_sparse_spatial_lag_solves_the_dense_model():
    rng = np.random.default_rng(5)
    xy = rng.random((600, 2)) * 10
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    d0, rho = 0.7, 0.9
    Wd = np.exp(-D / d0)
    np.fill_diagonal(Wd, 0)
    Wd /= Wd.sum(axis=1, keepdims=True)
    U = rng.standard_normal((600, 7))
    exact = linalg.solve(np.eye(600) - rho * Wd, U)
    K = nulls._decay_kernel(Geometry(xy), d0, knn=599, reach=40.0)  # nothing truncated
    np.testing.assert_allclose(nulls._sar_solve(K, rho, U), exact, rtol=1e-5, atol=1e-6)
    K6 = nulls._decay_kernel(Geometry(xy), d0, knn=512)  # the default truncation: weights below exp(-6) dropped
    assert K6.nnz < K.nnz / 2 and abs(K6 - K6.T).max() == 0
    from_distances = nulls._decay_kernel(Geometry(distances=D), d0, knn=512)
    assert abs(from_distances - K6).max() < 1e-12


def test_sparse_spatial_lag_is_calibrated_and_fits_like_the_dense_one():
    rng = np.random.default_rng(8)
    N = 1500
    xy = rng.random((N, 2)) * 10
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    L = linalg.cholesky(np.exp(-D / 1.5) + 1e-8 * np.eye(N), lower=True)
    x0 = L @ rng.standard_normal(N)
    rho, d0 = nulls._sar_fit(x0, D)  # the process's parameters, fitted once
    fits = {m: float(nulls.variogram_fit(x0, nulls.spatial_lag(x0, xy, n_permutations=60, seed=0, method=m, rho=rho, d0=d0), xy)["r2"].median())
            for m in ("dense", "sparse")}
    assert abs(fits["sparse"] - fits["dense"]) < 0.1, fits
    hits = {"sparse": [], "naive": []}
    for rep in range(12):
        x = L @ rng.standard_normal(N)
        surr = nulls.spatial_lag(x, xy, n_permutations=199, seed=rep, method="sparse", rho=rho, d0=d0)
        naive = nulls.naive(x, n_permutations=199, seed=rep)
        for _ in range(5):  # independent smooth maps: any rejection is a false positive
            y = L @ rng.standard_normal(N)
            hits["sparse"].append(nulls.correlate(x, y, surr).pvalue < 0.05)
            hits["naive"].append(nulls.correlate(x, y, naive).pvalue < 0.05)
    fpr = {k: float(np.mean(v)) for k, v in hits.items()}
    print("sparse spatial-lag null, false-positive rate at 0.05:", fpr)
    assert fpr["sparse"] <= 0.12, fpr
    assert fpr["naive"] > 3 * max(fpr["sparse"], 0.05), fpr


def test_correlate_refuses_nan_surrogates():
    """All-NaN surrogates used to give p = 1 / (n + 1), a value that looks real."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=30), rng.normal(size=30)
    with pytest.raises(HmbaToolkitError, match="10 of 10 surrogate maps have NaN"):
        nulls.correlate(x, y, np.full((10, 30), np.nan))


def test_moran_surrogates_of_a_strongly_autocorrelated_map_warn_that_they_are_anti_conservative():
    """The measured false-positive rate of Moran spectral randomisation passes 0.08 at strong autocorrelation
    (bench/bench_null_fpr.py); such maps get a warning, weakly autocorrelated ones none."""
    import warnings as _w

    xy = np.random.default_rng(0).random((300, 2))
    eig = nulls.moran_eigenvectors(xy)
    strong, weak = nulls.random_fields(xy, 1, length_scale=0.5, seed=1)[0], nulls.random_fields(xy, 1, length_scale=0.001, seed=1)[0]
    with pytest.warns(UserWarning, match=r"smoothest 5% of Moran eigenvectors .* anti-conservative"):
        nulls.moran(strong, n_permutations=5, eigenvectors=eig)
    with _w.catch_warnings():
        _w.simplefilter("error")
        nulls.moran(weak, n_permutations=5, eigenvectors=eig)
        nulls.false_positive_rate(xy, ["moran"], n_simulations=3, n_permutations=9, length_scale=0.5)


def test_a_labelled_map_keeps_its_labels_through_the_nulls():
    """A map given as a Series picks its locations from the coordinates (a DataFrame, by label) and labels its
    surrogates, which the variogram fit and the correlation test then align by label: a shuffled map or table changes
    nothing, not even the surrogates (they follow the geometry's order, not the map's)."""
    import pandas as pd

    rng = np.random.default_rng(8)
    labels = [f"R{i}" for i in range(60)]
    coords = pd.DataFrame(rng.random((60, 2)), index=labels, columns=["x", "y"])
    x = pd.Series(np.sin(6 * coords["x"].to_numpy()) + 0.3 * rng.standard_normal(60), index=labels)
    y = pd.Series(rng.standard_normal(60), index=labels)
    surr = nulls.variogram(x, coords, n_permutations=40, seed=1)
    assert isinstance(surr, pd.DataFrame) and list(surr.columns) == labels
    order = rng.permutation(60)
    shuffled = nulls.variogram(x.iloc[order], coords, n_permutations=40, seed=1)
    pd.testing.assert_frame_equal(shuffled, surr)
    part = nulls.spatial_lag(x.iloc[order[:45]], coords, n_permutations=20, seed=2)  # a map on some of the regions
    assert sorted(part.columns) == sorted(x.index[order[:45]])
    pd.testing.assert_frame_equal(part, nulls.spatial_lag(x.iloc[order[:45]].sort_index(), coords, n_permutations=20, seed=2))
    fit = nulls.variogram_fit(x, surr, coords)
    fit_shuffled = nulls.variogram_fit(x.iloc[order], surr, coords.iloc[::-1])
    np.testing.assert_allclose(fit["r2"], fit_shuffled["r2"])
    test = nulls.correlate(x, y, surr)
    test_shuffled = nulls.correlate(x.iloc[order], y, surr)
    assert test.pvalue == test_shuffled.pvalue and test.r == pytest.approx(test_shuffled.r)
    with pytest.raises(HmbaToolkitError, match=r"coords has no row for 1 locations of x, e.g. \['R0'\]"):
        nulls.naive(x, coords.iloc[1:], n_permutations=3)


def test_a_correlation_test_reports_how_well_its_surrogates_fit_and_warns_when_poorly():
    rng = np.random.default_rng(9)
    xy = rng.random((200, 2))
    x = np.sin(5 * xy[:, 0]) + 0.3 * rng.standard_normal(200)
    y = rng.standard_normal(200)
    good = nulls.correlate(x, y, nulls.variogram(x, xy, n_permutations=40, seed=1), coords=xy)
    assert good.variogram_r2 > 0.8
    with pytest.warns(UserWarning, match=r"surrogates fit the variogram of x poorly"):
        poor = nulls.correlate(x, y, nulls.naive(x, n_permutations=40, seed=1), coords=xy)
    assert poor.variogram_r2 < 0.5
    assert np.isnan(nulls.correlate(x, y, nulls.naive(x, n_permutations=40, seed=1)).variogram_r2)


def test_correlation_tests_report_each_nulls_fit_when_given_the_locations():
    import pandas as pd

    rng = np.random.default_rng(10)
    xy = rng.random((150, 2))
    x = np.sin(5 * xy[:, 0]) + 0.3 * rng.standard_normal(150)
    table = pd.DataFrame({"g": rng.standard_normal(150)})
    surrogates = {"variogram": nulls.variogram(x, xy, n_permutations=30, seed=1), "naive": nulls.naive(x, n_permutations=30, seed=1)}
    with pytest.warns(UserWarning, match=r"surrogates of \{'naive': .*\} \(median variogram r2\) fit the variogram of x poorly"):
        res = nulls.correlation_tests(x, table, surrogates, coords=xy)
    assert res.attrs["variogram_r2"]["variogram"] > 0.8 > res.attrs["variogram_r2"]["naive"]
    assert nulls.correlation_tests(x, table, surrogates).attrs["variogram_r2"] == {}


def test_knn_weights_refuse_locations_that_share_coordinates():
    xy = np.random.default_rng(11).random((20, 2))
    xy[5] = xy[6]
    with pytest.raises(ParameterError, match=r"coords has 2 locations that share their coordinates with another "
                                             r"\(duplicated locations, e\.g\. \[5, 6\]\)"):
        knn_weights(xy, 3)
