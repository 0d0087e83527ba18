"""Co-expression at cell, pseudobulk and region level; CGE and its distance decay."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

from hmba_toolkit import coexpression, pl
from hmba_toolkit.errors import HmbaToolkitError


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    n = 600
    base = rng.poisson(2.0, n)
    X = np.c_[rng.poisson(base), rng.poisson(base * 2), rng.poisson(1.0, n), rng.poisson(0.1, n), np.zeros(n)]
    obs = pd.DataFrame({"donor": np.repeat(["d1", "d2", "d3"], n // 3), "type": np.tile(["a", "b", "c", "d"], n // 4)},
                       index=[f"c{i}" for i in range(n)])
    return ad.AnnData(sp.csr_matrix(X.astype(np.float32)), obs=obs, var=pd.DataFrame(index=["G1", "G2", "G3", "G4", "G5"]))


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_cell_level_sparse_equals_dense(cells, method):
    got = coexpression.gene_correlation(cells, ["G1", "G2", "G3", "G4"], method=method)
    dense = pd.DataFrame(cells[:, :4].X.toarray(), columns=["G1", "G2", "G3", "G4"])
    want = dense.corr(method=method)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), atol=1e-10)
    assert got.attrs["level"] == "cells" and got.attrs["n_observations"] == 600
    assert got.loc["G1", "G2"] > 0.5 and abs(got.loc["G1", "G3"]) < 0.15
    assert sp.issparse(cells.X)  # input untouched


def test_constant_gene_gives_nan_not_an_error(cells):
    got = coexpression.gene_correlation(cells)
    assert np.isnan(got.loc["G5", "G5"]) and np.isnan(got.loc["G1", "G5"])


def test_pseudobulk_level(cells):
    got = coexpression.gene_correlation(cells, ["G1", "G2", "G3"], groupby=["donor", "type"])
    assert got.attrs["level"] == "pseudobulk" and got.attrs["n_observations"] == 12
    sums = pd.DataFrame(cells.X.toarray(), columns=cells.var_names).groupby([cells.obs["donor"].to_numpy(), cells.obs["type"].to_numpy()]).sum()
    logcpm = np.log2(sums.div(sums.sum(axis=1), axis=0) * 1e6 + 1)
    np.testing.assert_allclose(got.to_numpy(), logcpm[["G1", "G2", "G3"]].corr().to_numpy(), atol=1e-6)


def test_unknown_gene_gets_suggestions(cells):
    with pytest.raises(HmbaToolkitError, match=r"genes not in the AnnData's genes: \['G11'\].*G1"):
        coexpression.gene_correlation(cells, ["G1", "G11"])
    with pytest.raises(HmbaToolkitError, match="method='kendall'"):
        coexpression.gene_correlation(cells, method="kendall")
    with pytest.raises(HmbaToolkitError, match="duplicated"):
        coexpression.gene_correlation(cells, ["G1", "G1"])
    with pytest.raises(HmbaToolkitError, match="layer 'counts' is not in data.layers"):
        coexpression.gene_correlation(cells, layer="counts")


def test_top_pairs_is_tidy_and_stable():
    c = pd.DataFrame([[1, 0.9, -0.95], [0.9, 1, 0.1], [-0.95, 0.1, 1]], index=list("ABC"), columns=list("ABC"))
    t = coexpression.top_pairs(c, 2)
    assert t.to_dict("list") == {"gene_a": ["A", "A"], "gene_b": ["C", "B"], "r": [-0.95, 0.9]}
    assert coexpression.top_pairs(c, 1, absolute=False)["r"].tolist() == [0.9]


def _regions(n=60, n_genes=300, length=20.0, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.random((n, 3)) * 100
    D = np.sqrt(((xyz[:, None] - xyz[None]) ** 2).sum(-1))
    L = np.linalg.cholesky(np.exp(-D / length) + 1e-8 * np.eye(n))
    E = L @ rng.standard_normal((n, n_genes)) + 0.5 * rng.standard_normal((n, n_genes))
    names = [f"R{i}" for i in range(n)]
    return pd.DataFrame(E, index=names), pd.DataFrame(xyz, index=names, columns=["x", "y", "z"])


def test_cge_is_correlation_of_region_profiles():
    expr, _ = _regions()
    expr.iloc[3, 5] = np.nan
    c = coexpression.cge(expr, method="spearman")
    assert c.attrs["dropped_regions"] == ["R3"] and c.shape == (59, 59)
    want = stats.spearmanr(expr.loc["R0"], expr.loc["R1"])[0]
    assert c.loc["R0", "R1"] == pytest.approx(want, abs=1e-12)


def test_distance_decay_recovers_the_exponential():
    expr, xyz = _regions(n=80, n_genes=2000, length=20.0)
    c = coexpression.cge(expr.sub(expr.mean(axis=0), axis=1))  # genes centred, as normalised AHBA data are
    fit = coexpression.fit_distance_decay(c, xyz)
    assert 12 < fit.params["lambda"] < 30, fit.params  # generated with length 20
    assert fit.r2 > 0.5
    lin = coexpression.fit_distance_decay(c, xyz, model="linear")
    assert fit.r2 > lin.r2  # the line leaves distance structure in the residuals
    resid = fit.pairs
    near = resid["distance"] < resid["distance"].quantile(0.1)
    assert abs(resid.loc[near, "residual"].mean()) < abs(lin.pairs.loc[near, "residual"].mean())
    R = fit.residuals
    assert R.shape == c.shape and np.isnan(np.diag(R)).all() and np.allclose(R, R.T, equal_nan=True)
    assert "exp(-d /" in fit.label()
    import matplotlib

    matplotlib.use("Agg")
    ax = pl.cge_distance(fit)
    assert ax.get_xlabel() == "distance between regions (mm)"
    with pytest.raises(HmbaToolkitError, match=r"coords has no row for \d+ locations of cge_matrix"):
        coexpression.fit_distance_decay(c, xyz.iloc[:10])
    with pytest.raises(HmbaToolkitError, match="model='power'"):
        coexpression.fit_distance_decay(c, xyz, model="power")


def test_constant_gene_has_nan_correlations_with_a_warning():
    """A gene that never varies has no correlation: NaN (not +-1 from rounding) and a warning naming it."""
    import warnings

    X = np.random.default_rng(0).poisson(2, (50, 4)).astype(float)
    X[:, 0] = 3.0
    for matrix in (X, sp.csr_matrix(X)):
        a = ad.AnnData(matrix, var=pd.DataFrame(index=list("ABCD")))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = coexpression.gene_correlation(a, method="pearson")
        assert r.loc["A"].isna().all() and r["A"].isna().all()
        assert np.isfinite(r.loc[["B", "C", "D"], ["B", "C", "D"]].to_numpy()).all()
        assert any("['A']" in str(w.message) for w in caught)
