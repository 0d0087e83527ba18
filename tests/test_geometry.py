"""One geometry: every spatial function takes its locations the same way, checked once, cached, labelled, sectioned."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit import autocorrelation, coexpression, gsea, nulls, variograms, weights
from hmba_toolkit.errors import HmbaToolkitError, ParameterError
from hmba_toolkit.spatial import Geometry, as_geometry


def _regions(n=50, seed=0):
    rng = np.random.default_rng(seed)
    labels = [f"R{i:02d}" for i in range(n)]
    return pd.DataFrame(rng.random((n, 3)) * 100, index=labels, columns=["x", "y", "z"]), rng


def test_a_geometry_gives_the_same_answers_as_the_arrays_it_replaces():
    coords, rng = _regions()
    g = Geometry(coords)
    xy = coords.to_numpy()
    x = nulls.random_fields(xy, 1, seed=3)[0]
    assert (weights.knn_weights(g, 5) != weights.knn_weights(xy, 5)).nnz == 0
    assert abs(weights.exponential_weights(g, 20.0, cutoff=60.0) - weights.exponential_weights(xy, 20.0, cutoff=60.0)).max() == 0
    assert (weights.distance_band_weights(g, 30.0) != weights.distance_band_weights(xy, 30.0)).nnz == 0
    np.testing.assert_array_equal(nulls.spatial_lag(x, g, n_permutations=20, seed=1).to_numpy(),
                                  nulls.spatial_lag(x, xy, n_permutations=20, seed=1))
    np.testing.assert_array_equal(nulls.variogram(x, g, n_permutations=20, seed=1).to_numpy(),
                                  nulls.variogram(x, xy, n_permutations=20, seed=1))
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    np.testing.assert_allclose(nulls.variogram(x, distances=D, n_permutations=20, seed=1),
                               nulls.variogram(x, xy, n_permutations=20, seed=1))
    expr = pd.DataFrame(rng.standard_normal((50, 40)) + x[:, None], index=coords.index)
    cge = coexpression.cge(expr)
    a, b = coexpression.fit_distance_decay(cge, g), coexpression.fit_distance_decay(cge, coords.iloc[::-1])
    assert a.params == pytest.approx(b.params)


def test_the_geometry_computes_neighbours_and_variogram_pairs_once():
    coords, _ = _regions(200, seed=1)
    g = Geometry(coords.to_numpy())
    first = g.neighbors(10)
    assert g.neighbors(10) is first and g.neighbors(4).indices.base is first.indices
    x = nulls.random_fields(g, 2, seed=2)
    nulls.variogram(x[0], g, n_permutations=5, seed=0)
    cached = dict(g._variogram_cache)
    nulls.variogram(x[1], g, n_permutations=5, seed=0)
    assert all(g._variogram_cache[k] is v for k, v in cached.items())


def test_sections_are_never_mixed():
    rng = np.random.default_rng(4)
    xy = rng.random((240, 2))
    sections = np.repeat(["s1", "s2", "s3"], 80)
    g = Geometry(xy, sections=sections)
    graph = weights.knn_weights(g, 6).tocoo()
    assert (sections[graph.row] == sections[graph.col]).all()
    assert np.isinf(g.distances[0, 100]) and np.isfinite(g.distances[0, 79])
    x = rng.standard_normal(240) + np.repeat([0.0, 5.0, 10.0], 80)
    for surrogates in (nulls.naive(x, g, n_permutations=10, seed=0), nulls.spatial_lag(x, g, n_permutations=10, seed=0),
                       nulls.variogram(x, g, n_permutations=10, seed=0, resample=True)):
        for s in ("s1", "s2", "s3"):  # each section keeps its own values
            rows = sections == s
            np.testing.assert_allclose(np.sort(surrogates[:, rows], axis=1), np.tile(np.sort(x[rows]), (10, 1)))
    with pytest.raises(ParameterError, match="sectioned Geometry"):
        nulls.moran_eigenvectors(g)
    moran = autocorrelation.morans_i(x, g)  # the geometry as weights: 6 neighbours within sections, row-standardised
    assert moran["statistic"].iat[0] == pytest.approx(
        autocorrelation.morans_i(x, weights.row_standardize(weights.knn_weights(g, 6)))["statistic"].iat[0])


def test_surrogates_follow_a_variogram_that_dips_and_rises_again():
    """A periodic map has a hole-effect variogram (lowest at its period) that smoothed permutations cannot follow;
    refinement by value swaps brings the surrogates' fit up, "auto" does it only when the fit is poor, and the fit is
    then reported by every consumer."""
    rng = np.random.default_rng(5)
    xy = rng.random((300, 2))
    x = np.cos(2 * np.pi * xy[:, 0] / 0.2) + 0.2 * rng.standard_normal(300)
    g = Geometry(xy)
    plain = nulls.variogram(x, g, n_permutations=40, seed=0, refine=False)
    auto = nulls.variogram(x, g, n_permutations=40, seed=0)
    r2_plain = nulls.variogram_fit(x, plain, g)["r2"].median()
    r2_auto = nulls.variogram_fit(x, auto, g)["r2"].median()
    assert r2_plain < variograms.POOR_FIT_R2 and r2_auto >= 0.75, (r2_plain, r2_auto)
    np.testing.assert_allclose(np.sort(auto, axis=1), np.sort(plain, axis=1))  # swaps keep each surrogate's values
    smooth = np.sin(3 * xy[:, 0]) + 0.3 * rng.standard_normal(300)  # a monotone variogram: "auto" leaves it alone
    np.testing.assert_array_equal(nulls.variogram(smooth, g, n_permutations=10, seed=0),
                                  nulls.variogram(smooth, g, n_permutations=10, seed=0, refine=False))
    expr = pd.DataFrame(rng.standard_normal((300, 30)), columns=[f"g{i}" for i in range(30)])
    sets = {"A": [f"g{i}" for i in range(10)]}
    with pytest.warns(UserWarning, match="fit the variogram of brain_map poorly"):
        res = gsea.map_enrichment(expr, x, sets, surrogates=plain, min_size=5, coords=g)
    assert res.attrs["variogram_r2"] == pytest.approx(r2_plain)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gsea.map_enrichment(expr, x, sets, surrogates=auto, min_size=5, coords=g).attrs["variogram_r2"] >= 0.75


def test_refined_variogram_surrogates_hold_their_false_positive_rate():
    rng = np.random.default_rng(6)
    xy = rng.random((150, 2))
    g = Geometry(xy)
    fields = nulls.random_fields(g, 160, length_scale=0.3, seed=7)
    hits = [nulls.correlate(fields[2 * i], fields[2 * i + 1],
                            nulls.variogram(fields[2 * i], g, n_permutations=199, seed=i, refine=True)).pvalue < 0.05
            for i in range(80)]
    assert np.mean(hits) <= 0.08, np.mean(hits)


def test_the_old_entry_points_still_work_with_a_future_warning():
    coords, _ = _regions(60, seed=2)
    xy = coords.to_numpy()
    x = nulls.random_fields(xy, 1, seed=1)[0]
    with pytest.warns(FutureWarning, match="VariogramGeometry.build"):
        old = variograms.VariogramGeometry.build(xy)
    with pytest.warns(FutureWarning, match="geometry=VariogramGeometry"):
        surr = nulls.variogram(x, n_permutations=10, seed=0, geometry=old)
    np.testing.assert_array_equal(surr, nulls.variogram(x, xy, n_permutations=10, seed=0))
    with pytest.warns(FutureWarning, match="geometry=VariogramGeometry"):
        fit = variograms.variogram_fit(x, surr, geometry=variograms.VariogramGeometry.of(Geometry(xy), pv=25.0,
                                                                                          sampled=False, neighbours=False))
    np.testing.assert_allclose(fit["r2"], variograms.variogram_fit(x, surr, xy)["r2"])


@pytest.mark.parametrize("call, message", [
    (lambda c: Geometry(c.assign(x=np.where(np.arange(len(c)) == 2, np.nan, c["x"]))),
     r"coords has 1 locations with NaN or infinite values \(e\.g\. \['R02'\]\)"),
    (lambda c: Geometry(c.iloc[[0, 1, 1, 2]].set_axis(["a", "b", "c", "d"])),
     r"coords has 2 locations that share their coordinates with another \(duplicated locations, e\.g\. \['b', 'c'\]\)"),
    (lambda c: Geometry(c.iloc[[0, 1, 2]].set_axis(["a", "b", "a"])), r"location labels are duplicated, e\.g\. \['a'\]"),
    (lambda c: Geometry(distances=np.triu(np.ones((4, 4)), 1)), r"distances is not symmetric"),
    (lambda c: Geometry(c, distances=np.ones((3, 3))), r"give coords .* or distances .*, not both"),
    (lambda c: as_geometry(Geometry(c), distances=np.ones((3, 3))), r"coords is a Geometry: leave distances out"),
    (lambda c: nulls.naive(pd.Series(1.0, index=["R01", "nowhere"]), c, n_permutations=3),
     r"coords has no row for 1 locations of x, e\.g\. \['nowhere'\]"),
    (lambda c: nulls.variogram_fit(pd.Series(np.arange(50.0), index=c.index), pd.DataFrame(np.ones((3, 49)), columns=c.index[1:]), c),
     r"surrogates has no column for 1 locations of coords, e\.g\. \['R00'\]"),
    (lambda c: nulls.spatial_lag(np.ones(49), Geometry(c), n_permutations=3), r"x has 49 values for 50 locations"),
    (lambda c: weights.knn_weights(Geometry(c, sections=["a"] * 45 + ["b"] * 5), 6),
     r"k=6 neighbours needs more locations: a section of coords has 5"),
    (lambda c: Geometry(c, sections=[None] + ["a"] * 49), r"sections has 1 locations without a section"),
    (lambda c: nulls.spatial_lag(np.ones(50), "coords.csv", n_permutations=3), r"coords must be a Geometry"),
])
def test_bad_locations_get_an_error_naming_the_argument(call, message):
    coords, _ = _regions()
    with pytest.raises(HmbaToolkitError, match=message):
        call(coords)


def test_large_map_approximations_warn_when_the_map_outreaches_them():
    """The sampled variogram and the sparse spatial-lag kernel see only each location's knn neighbours; a map
    correlated beyond them gets anti-conservative surrogates (measured at 10,000 points, bench/README.md): warned."""
    rng = np.random.default_rng(9)
    xy = rng.random((2000, 2))
    g = Geometry(xy)
    smooth, noise = np.sin(3 * xy[:, 0]) + 0.1 * rng.standard_normal(2000), rng.standard_normal(2000)
    with pytest.warns(UserWarning, match="still correlated at the largest distance the sampled variogram sees"):
        nulls.variogram(smooth, g, n_permutations=5, sampled=True, knn=100, ns=200)
    with pytest.warns(UserWarning, match="sparse kernel truncates"):
        nulls.spatial_lag(smooth, g, n_permutations=5, method="sparse", knn=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nulls.variogram(noise, g, n_permutations=5, sampled=True, knn=100, ns=200)
