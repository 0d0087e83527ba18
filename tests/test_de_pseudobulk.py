"""Pseudobulk: aggregation equals scanpy's, planted genes recovered, donor-level null calibrated."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from hmba_toolkit.datasets import demo_ground_truth
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
    ours = aggregate_counts(a, ["donor", "cell_type"], chunk_size=123)
    theirs = sc.get.aggregate(a, by=["donor", "cell_type"], func=["sum", "count_nonzero"])
    theirs_idx = theirs.obs["donor"].astype(str) + "|" + theirs.obs["cell_type"].astype(str)
    order = pd.Index(theirs_idx).get_indexer(ours.obs_names)
    np.testing.assert_allclose(ours.X, np.asarray(theirs.layers["sum"])[order])
    np.testing.assert_allclose(ours.layers["n_expressing"], np.asarray(theirs.layers["count_nonzero"])[order])
    assert ours.obs["n_cells"].sum() == X.shape[0]
    a.write_h5ad(tmp_path / "c.h5ad")
    backed = ad.read_h5ad(tmp_path / "c.h5ad", backed="r")
    np.testing.assert_allclose(aggregate_counts(backed, ["donor", "cell_type"], chunk_size=100).X, ours.X)
    backed.file.close()


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
