"""Cell-level Wilcoxon: scanpy's statistics, planted-gene recovery, backed files."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from hmba_toolkit.datasets import demo_ground_truth
from hmba_toolkit.de import RESULT_COLUMNS, wilcoxon
from hmba_toolkit.errors import HmbaToolkitError
from hmba_toolkit.io import AbcCache

ALIGNED = "HMBA-10xMultiome-BG-Aligned"


@pytest.fixture(scope="module")
def pbmc(fixtures_dir):
    a = sc.read_h5ad(fixtures_dir / "scrna" / "10x_pbmc68k_reduced.h5ad")
    raw = a.raw.to_adata()
    raw.X = sp.csr_matrix(raw.X)
    raw.obs["bulk_labels"] = a.obs["bulk_labels"].astype(str).to_numpy()
    return raw


@pytest.mark.parametrize("reference", ["rest", "CD14+ Monocyte"])
@pytest.mark.parametrize("tie_correct", [True, False])
def test_equals_scanpy(pbmc, reference, tie_correct):
    ours = wilcoxon(pbmc, "bulk_labels", reference=reference, log_base=np.e, tie_correct=tie_correct)
    assert list(ours.columns) == RESULT_COLUMNS
    ref = pbmc.copy()
    sc.tl.rank_genes_groups(ref, "bulk_labels", method="wilcoxon", reference=reference, tie_correct=tie_correct,
                            use_raw=False, n_genes=ref.n_vars)
    theirs = sc.get.rank_genes_groups_df(ref, None).rename(columns={"names": "gene"})
    m = ours.merge(theirs, on=["group", "gene"], validate="one_to_one")
    assert len(m) == len(ours) == len(theirs)
    np.testing.assert_allclose(m["statistic"], m["scores"], rtol=1e-6, atol=1e-5)  # scanpy stores float32 scores
    np.testing.assert_allclose(m["pvalue"], m["pvals"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(m["padj"], m["pvals_adj"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(m["log2_fold_change"], m["logfoldchanges"], rtol=1e-5, atol=1e-4)


def _auroc(score: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(score)
    n1, n0 = truth.sum(), (~truth).sum()
    return float((r[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_planted_d1_vs_d2_genes_are_recovered(demo_root):
    cache = AbcCache.from_demo()
    cells = cache.cell_table(ALIGNED)
    a, b = "STRd D1 Matrix MSN", "STRd D2 Matrix MSN"
    sel = cells[cells["Group"].isin([a, b])]
    x = cache.read_expression(ALIGNED, cells=sel.index)
    x.obs["Group"] = sel["Group"].to_numpy()
    res = wilcoxon(x, "Group", reference=b, groups=[a])
    # truth: genes whose planted lineage effect differs between the two Groups
    prog = pd.read_csv(demo_ground_truth() / "programs.csv")
    tax = cache.taxonomy().drop_duplicates("Group").set_index("Group", drop=False)

    def effect(group):
        names = {(lvl, tax.at[group, lvl]) for lvl in ("Neighborhood", "Class", "Subclass", "Group")}
        rows = prog[[(lv, nm) in names for lv, nm in zip(prog["level"], prog["name"])]]
        return rows.groupby("gene_symbol")["log2_fold_change"].max()

    diff = effect(a).sub(effect(b), fill_value=0).abs()
    planted = set(diff[diff > 0.5].index)
    assert {"DRD1", "DRD2", "PENK", "TAC1"} <= planted
    truth = res["gene"].isin(planted).to_numpy()
    auc = _auroc(np.abs(res["statistic"].to_numpy()), truth)
    assert auc >= 0.95, auc
    top = res.sort_values("pvalue").head(10)
    assert top["gene"].isin(planted).mean() >= 0.8


def test_backed_file_gives_the_same_answer(tmp_path, pbmc):
    path = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    a = wilcoxon(backed, "bulk_labels", log_base=np.e, gene_block=100)
    b = wilcoxon(pbmc, "bulk_labels", log_base=np.e)
    pd.testing.assert_frame_equal(a, b)
    c = wilcoxon(backed, "bulk_labels", reference="CD14+ Monocyte", log_base=np.e, gene_block=250)
    d = wilcoxon(pbmc, "bulk_labels", reference="CD14+ Monocyte", log_base=np.e)
    pd.testing.assert_frame_equal(c, d)
    backed.file.close()


def test_clear_errors(pbmc):
    with pytest.raises(HmbaToolkitError, match="groupby column 'nope'"):
        wilcoxon(pbmc, "nope")
    with pytest.raises(HmbaToolkitError, match="reference 'B cells'"):
        wilcoxon(pbmc, "bulk_labels", reference="B cells")
    with pytest.raises(HmbaToolkitError, match=r"groups \['X'\]"):
        wilcoxon(pbmc, "bulk_labels", groups=["X"])


def test_negative_values_keep_the_ranks_and_drop_the_fold_changes_with_a_warning():
    import anndata as ad
    import numpy as np
    import pandas as pd
    import pytest

    from hmba_toolkit import de

    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (60, 5))
    X[:30, 0] += 2
    obs = pd.DataFrame({"g": ["a"] * 30 + ["b"] * 30, "r": ["x", "y", "z"] * 20}, index=[f"c{i}" for i in range(60)])
    scaled = ad.AnnData(X, obs=obs)
    for reference in ("rest", "b"):
        with pytest.warns(UserWarning, match="negative values .* log2_fold_change .* is NaN") as record:
            table = de.wilcoxon(scaled, "g", reference, groups=["a"])
        assert len([w for w in record if "negative values" in str(w.message)]) == 1
        assert table["log2_fold_change"].isna().all()
        shifted = de.wilcoxon(ad.AnnData(X + 10, obs=obs), "g", reference, groups=["a"])  # ranks ignore the shift
        np.testing.assert_allclose(table["statistic"], shifted["statistic"])
        assert table.set_index("gene").loc["0", "pvalue"] < 1e-6
