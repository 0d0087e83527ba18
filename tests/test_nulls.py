"""Spatial nulls: the naive permutation test lies on autocorrelated maps, the spatial nulls do not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from hmba_toolkit import nulls
from hmba_toolkit.autocorrelation import morans_i
from hmba_toolkit.errors import HmbaToolkitError
from hmba_toolkit.variograms import VariogramGeometry
from hmba_toolkit.weights import knn_weights, row_standardize


def _fpr(xy, frac, reps, seed, which):
    rng = np.random.default_rng(seed)
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    C = np.exp(-D / (frac * np.median(D[D > 0])))
    L = linalg.cholesky(C + 1e-8 * np.eye(len(xy)), lower=True)
    _, V = nulls.moran_eigenvectors(xy)
    geom = VariogramGeometry.build(xy)
    hits = {k: 0 for k in which}
    for rep in range(reps):
        x, y = L @ rng.standard_normal(len(xy)), L @ rng.standard_normal(len(xy))
        for k in which:
            if k == "naive":
                s = nulls.naive(x, n=300, seed=rep)
            elif k == "variogram":
                s = nulls.variogram(x, n=300, seed=rep, geometry=geom)
            elif k == "moran":
                s = nulls.moran(x, n=300, seed=rep, eigenvectors=V, procedure="pair")
            else:
                s = nulls.spatial_lag(x, xy, n=300, seed=rep)
            hits[k] += nulls.correlate(x, y, s)["p"] < 0.05
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
    lag = nulls.spatial_lag(x, xy, n=50, seed=0)
    assert lag.shape == (50, 120)
    np.testing.assert_allclose(np.sort(lag, axis=1), np.tile(np.sort(x), (50, 1)))  # rank-matched to x
    i_lag = morans_i(lag.T, W)["statistic"]
    i_naive = morans_i(nulls.naive(x, n=50, seed=0).T, W)["statistic"]
    assert abs(i_lag.mean() - i_obs) < abs(i_naive.mean() - i_obs)  # autocorrelation kept, shuffling loses it
    msr = nulls.moran(x, xy, n=50, seed=0)
    np.testing.assert_allclose(msr.mean(axis=1), x.mean(), atol=1e-9)
    np.testing.assert_allclose(msr.std(axis=1), x.std(), rtol=1e-9)
    _, V = nulls.moran_eigenvectors(xy)
    np.testing.assert_allclose(np.abs(V.T @ (msr[0] - x.mean())), np.abs(V.T @ (x - x.mean())), atol=1e-8)  # singleton spectrum
    r = nulls.correlate(x, x, lag)
    assert r["r"] == pytest.approx(1.0) and r["p"] == pytest.approx(1 / 51)
    with pytest.raises(HmbaToolkitError, match="one value per location"):
        nulls.spatial_lag(x[:10], xy)
    with pytest.raises(HmbaToolkitError, match="procedure='triplet'"):
        nulls.moran(x, xy, procedure="triplet")
