"""Pseudobulk: aggregation equals scanpy's, planted genes recovered, donor-level null calibrated."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from hmba_toolkit.datasets import demo_ground_truth
from hmba_toolkit import stream
from hmba_toolkit.de import aggregate_counts, pseudobulk
from hmba_toolkit.errors import HmbaToolkitError

ALIGNED = "HMBA-10xMultiome-BG-Aligned"


@pytest.fixture(scope="module")
def cells(cache):
    return cache.cell_table(ALIGNED)


def _raw(cache, cells, mask):
    sel = cells[mask]
    x = cache.read_expression(ALIGNED, cells=sel.index, normalization="raw")
    x.obs = x.obs.join(sel[["Group", "Subclass", "Cluster", "donor_label", "species_genus"]])
    return x


def test_aggregate_equals_scanpy_and_backed(tmp_path, fixtures_dir):
    z = np.load(fixtures_dir / "scrna" / "10x_pbmc68k_reduced_counts.npz")
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    labels = sc.read_h5ad(fixtures_dir / "scrna" / "10x_pbmc68k_reduced.h5ad").obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"cell_type": labels, "donor": rng.choice(["d1", "d2", "d3"], X.shape[0])}, index=[f"c{i}" for i in range(X.shape[0])])
    a = ad.AnnData(X=X, obs=obs)
    ours = stream.aggregate(a, ["donor", "cell_type"], chunk_nnz=5_000)
    theirs = sc.get.aggregate(a, by=["donor", "cell_type"], func=["sum", "mean", "var", "count_nonzero"])
    theirs_idx = theirs.obs["donor"].astype(str) + "|" + theirs.obs["cell_type"].astype(str)
    order = pd.Index(theirs_idx).get_indexer(ours.obs_names)
    for layer in ("sum", "mean", "var", "count_nonzero"):  # scanpy's layer names and values
        np.testing.assert_allclose(ours.layers[layer], np.asarray(theirs.layers[layer])[order], rtol=1e-9, atol=1e-12,
                                   err_msg=layer)
    assert ours.obs["n_obs_aggregated"].sum() == X.shape[0]
    a.write_h5ad(tmp_path / "c.h5ad")
    backed = ad.read_h5ad(tmp_path / "c.h5ad", backed="r")
    np.testing.assert_allclose(stream.aggregate(backed, ["donor", "cell_type"], chunk_nnz=1_000, progress=False).layers["sum"],
                               ours.layers["sum"])
    backed.file.close()
    with pytest.warns(FutureWarning, match="stream.aggregate"):
        old = aggregate_counts(a, ["donor", "cell_type"])
    np.testing.assert_array_equal(old.layers["n_expressing"], ours.layers["count_nonzero"])


def test_planted_genes_recovered_with_paired_design(cache, cells):
    a, b = "STRd D1 Matrix MSN", "STRd D2 Matrix MSN"
    x = _raw(cache, cells, cells["Group"].isin([a, b]))
    res = pseudobulk(x, "Group", reference=b, groups=[a], min_cells=5)
    assert res.attrs["design"] == {a: "~replicate + condition"}
    prog = pd.read_csv(demo_ground_truth() / "programs.csv")
    d1 = set(prog.query("name in ['STR D1 MSN', @a]")["gene_symbol"])
    d2 = set(prog.query("name in ['STR D2 MSN', @b]")["gene_symbol"])
    planted = d1 ^ d2
    tested = res.dropna(subset=["pvalue"])
    truth = tested["gene"].isin(planted).to_numpy()
    from scipy.stats import rankdata

    r = rankdata(np.abs(tested["statistic"].to_numpy()))
    auc = (r[truth].sum() - truth.sum() * (truth.sum() + 1) / 2) / (truth.sum() * (~truth).sum())
    assert auc >= 0.95, auc
    hits = res[(res["padj"] < 0.05)]
    assert hits["gene"].isin(planted).mean() >= 0.7  # most discoveries are planted genes
    sig = res.set_index("gene")
    assert sig.at["DRD1", "log2_fold_change"] > 1 and sig.at["PENK", "log2_fold_change"] < -1


def test_false_positive_rate_under_donor_level_null(cache, cells):
    """Random donor-level labels on one cell type: no gene truly differs; FPR at 0.05 <= 0.06."""
    x = _raw(cache, cells, cells["Group"] == "Oligo OPALIN")
    donors = sorted(x.obs["donor_label"].unique())
    rng = np.random.default_rng(2025)
    fpr = []
    for _ in range(5):
        half = rng.permutation(["A"] * (len(donors) // 2) + ["B"] * (len(donors) - len(donors) // 2))
        x.obs["condition"] = x.obs["donor_label"].map(dict(zip(donors, half)))
        res = pseudobulk(x, "condition", reference="B", min_cells=5)
        assert res.attrs["design"] == {"A": "~condition"}
        p = res["pvalue"].dropna()
        assert len(p) > 500
        fpr.append(float((p < 0.05).mean()))
    assert np.mean(fpr) <= 0.06, fpr


def test_cross_species_guard_and_errors(cache, cells):
    x = _raw(cache, cells, cells["Subclass"].isin(["STR D1 MSN", "STR D2 MSN"]))
    with pytest.raises(HmbaToolkitError, match="finer than the Group level"):
        pseudobulk(x, "Cluster")
    with pytest.raises(HmbaToolkitError, match="need at least 2 replicates"):
        pseudobulk(x, "Group", groups=["STRd D1 Matrix MSN"], reference="STRd D2 Matrix MSN", min_cells=10_000)
    with pytest.raises(HmbaToolkitError, match="no column 'batch'"):
        pseudobulk(x, "Group", replicate="batch")


def test_wilcoxon_has_the_same_cross_species_guard(cache, cells):
    from hmba_toolkit.de import wilcoxon

    x = _raw(cache, cells, cells["Subclass"].isin(["STR D1 MSN", "STR D2 MSN"]))
    with pytest.raises(HmbaToolkitError, match="finer than the Group level"):
        wilcoxon(x, "Cluster")
    one = x[x.obs["species_genus"] == "Human"].copy()
    assert len(wilcoxon(one, "Cluster")) > 0  # within one species, clusters are fine


def _objective(t, y, mu, X, prior=None):
    """DESeq2's dispersion objective written out directly (NB negative log-likelihood + Cox-Reid + prior)."""
    from scipy.special import gammaln

    a = np.exp(t)
    r = 1 / a
    nll = -np.sum(gammaln(y + r) - gammaln(r) - gammaln(y + 1) + r * np.log(r / (r + mu)) + y * np.log(mu / (r + mu)))
    w = mu / (1 + mu * a)
    out = nll + 0.5 * np.linalg.slogdet((X.T * w) @ X)[1]
    if prior is not None:
        out += (t - prior[0]) ** 2 / (2 * prior[1])
    return out


def test_exact_dispersions_are_the_objective_minimum():
    """The bisection solver ends at the minimum of the objective (checked on a fine grid), boundaries included."""
    import sys

    pb_module = sys.modules["hmba_toolkit.de._pseudobulk"]
    rng = np.random.default_rng(3)
    n, genes = 12, 40
    X = np.column_stack([np.ones(n), np.repeat([0.0, 1.0], n // 2)])
    mu = rng.uniform(2, 200, size=(n, genes))
    alpha = np.r_[np.full(10, 1e-6), rng.uniform(0.01, 1.0, genes - 10)]  # Poisson-like genes: optimum at the bound
    Y = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu)).astype(float)
    lo, hi = np.log(1e-8), np.log(10.0)
    for prior in (None, (np.log(np.full(genes, 0.1)), 0.5)):
        t = pb_module._exact_log_dispersions(Y, mu, X, lo, hi, True, prior)
        grid = np.linspace(lo, hi, 4001)
        for g in range(genes):
            p = None if prior is None else (prior[0][g], prior[1])
            f = np.array([_objective(u, Y[:, g], mu[:, g], X, p) for u in grid])
            # near alpha = 0 the log-gamma difference loses ~1e-6 to cancellation, so the flat Poisson-like genes
            # are compared at that precision; the others exactly
            tolerance = 1e-5 if g < 10 else 1e-9 * abs(f.min())
            assert _objective(t[g], Y[:, g], mu[:, g], X, p) <= f.min() + tolerance, g
        assert np.isfinite(t).all() and (t >= lo).all() and (t <= hi).all()


def test_pseudobulk_is_the_same_under_another_blas_kernel(tmp_path, demo_root):
    """DESeq2 statistics agree to 1e-9 whichever OpenBLAS kernel computes them (x86-64; elsewhere the variable is
    ignored and the two runs trivially agree)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, warnings; warnings.filterwarnings('ignore')\n"
        "from hmba_toolkit.io import AbcCache\nfrom hmba_toolkit.de import pseudobulk\n"
        "c = AbcCache.from_demo(); cells = c.cell_table('HMBA-10xMultiome-BG-Aligned')\n"
        "m = cells[cells['Group'].isin(['STRd D1 Matrix MSN', 'STRd D2 Matrix MSN'])]\n"
        "x = c.read_expression('HMBA-10xMultiome-BG-Aligned', cells=m.index, normalization='raw')\n"
        "x.obs = x.obs.join(m[['Group', 'donor_label', 'species_genus']])\n"
        "pb = pseudobulk(x, 'Group', replicate='donor_label', reference='STRd D2 Matrix MSN', min_cells=5)\n"
        "pb.set_index('gene')[['log2_fold_change', 'statistic', 'pvalue']].to_csv(sys.argv[1], float_format='%.17g')\n"
    )
    runs = {}
    for kernel in (None, "SandyBridge"):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if kernel:
            env["OPENBLAS_CORETYPE"] = kernel
        out = tmp_path / f"{kernel}.csv"
        subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, capture_output=True)
        runs[kernel] = pd.read_csv(out, index_col=0)
    a, b = runs[None], runs["SandyBridge"].loc[runs[None].index]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12)


def test_a_design_that_loses_its_pairing_says_so():
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for donor in ["d1", "d2", "d3", "d4"]:
        for group in ["A", "B"]:
            n = 3 if (donor, group) == ("d4", "A") else 30  # d4 has too few A cells for min_cells=10
            rows.append(rng.poisson(5, (n, 40)))
            labels += [(donor, group)] * n
    obs = pd.DataFrame(labels, columns=["donor_label", "g"], index=[f"c{i}" for i in range(len(labels))])
    adata = ad.AnnData(sp.csr_matrix(np.vstack(rows).astype(np.float32)), obs=obs)
    with pytest.warns(UserWarning, match=r"drops the samples \['d4 \(in, 3 cells\)'\], so the design changes from paired"):
        res = pseudobulk(adata, "g", groups=["A"], reference="B", min_cells=10)
    assert res.attrs["design"] == {"A": "~condition"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # still paired: no warning
        assert pseudobulk(adata, "g", groups=["A"], reference="B", min_cells=2).attrs["design"] == {"A": "~replicate + condition"}
