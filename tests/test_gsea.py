"""Gene-set enrichment: libraries, ORA and prerank against gseapy, null calibration, planted recovery."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.datasets import demo_ground_truth
from hmba_toolkit.errors import DataFormatError, HmbaToolkitError
from hmba_toolkit.gsea import ENRICHMENT_COLUMNS, go_biological_process, hmba_marker_sets, ora, prerank, read_gmt, sample_scores


def test_libraries(fixtures_dir, tmp_path):
    hallmark = read_gmt(fixtures_dir / "gene_sets" / "h.all.v7.0.symbols.gmt")
    assert len(hallmark) == 50 and "HALLMARK_APOPTOSIS" in hallmark
    go = go_biological_process()
    assert len(go) == 6036 and all(len(v) == len(set(v)) for v in go.values())
    groups = hmba_marker_sets("Group")
    assert groups["STRd D1 Matrix MSN"] == ["DRD1", "STXBP6"]
    assert {"DRD1", "DRD2", "KCNIP1"} <= set(hmba_marker_sets("Subclass")["STR D1 MSN"]) | set(hmba_marker_sets("Subclass")["STR D2 MSN"])
    bad = tmp_path / "bad.gmt"
    bad.write_text("SET_A\tdesc\tG1\tG2\nSET_B only-two-fields\n")
    with pytest.raises(DataFormatError, match="bad.gmt: line 2"):
        read_gmt(bad)


def _gseapy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gseapy as gp
    return gp


def test_ora_equals_hypergeometric_oracle_and_uses_background():
    gp = _gseapy()
    rng = np.random.default_rng(3)
    universe = [f"G{i}" for i in range(2000)]
    sets = {f"S{j}": list(rng.choice(universe + [f"X{i}" for i in range(300)], 60, replace=False)) for j in range(30)}
    query = list(rng.choice(universe, 150, replace=False)) + list(sets["S0"][:20])
    ours = ora(query, sets, background=universe, min_size=5)
    assert list(ours.columns) == ENRICHMENT_COLUMNS
    assert ours.attrs["background_size"] == 2000 and ours.attrs["sets_tested"] == 30
    assert ours.iloc[0]["term"] == "S0"
    # gseapy's offline enrich with the same background is the oracle for the hypergeometric p-value
    g = gp.enrich(gene_list=query, gene_sets=sets, background=universe, outdir=None, no_plot=True, cutoff=1.0, verbose=False)
    theirs = g.results.set_index("Term")["P-value"]
    m = ours.set_index("term")["pvalue"]
    common = m.index.intersection(theirs.index)
    assert len(common) >= 25
    np.testing.assert_allclose(m[common], theirs[common], rtol=1e-6)
    # genes outside the background never count; size limits are applied within the background
    with pytest.raises(HmbaToolkitError, match="no gene set"):
        ora(query, sets, background=universe, min_size=100)


def test_prerank_es_equals_gseapy_and_pvalues_are_never_zero():
    gp = _gseapy()
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(3000)]
    rank = pd.Series(rng.normal(size=3000), index=genes)
    sets = {f"S{j}": list(rng.choice(genes, int(rng.integers(15, 80)), replace=False)) for j in range(30)}
    sets["planted"] = list(rank.sort_values(ascending=False).index[:150][:40])
    ours = prerank(rank, sets, n_permutations=500, seed=1).set_index("term")
    g = gp.prerank(rnk=rank, gene_sets=sets, permutation_num=100, seed=1, threads=1, outdir=None, no_plot=True, verbose=False)
    theirs = g.res2d.set_index("Term")["ES"].astype(float)
    np.testing.assert_allclose(ours["effect"], theirs.loc[ours.index], atol=1e-10)
    assert (ours["pvalue"] >= 1 / 501).all() and ours.loc["planted", "pvalue"] == pytest.approx(ours["pvalue"].min())
    assert ours.attrs["smallest_possible_pvalue"] == pytest.approx(1 / 501)


def test_null_false_positive_rates():
    """Random rankings and random sets: both tests reject at about alpha, not more."""
    rng = np.random.default_rng(11)
    genes = [f"G{i}" for i in range(2000)]
    sets = {f"S{j}": list(rng.choice(genes, int(rng.integers(15, 60)), replace=False)) for j in range(300)}
    rank = pd.Series(rng.normal(size=2000), index=genes)
    fpr_pre = (prerank(rank, sets, n_permutations=400, seed=2)["pvalue"] < 0.05).mean()
    fpr_ora = np.mean([(ora(rng.choice(genes, 100, replace=False), sets, genes)["pvalue"] < 0.05).mean() for _ in range(5)])
    assert 0.02 <= fpr_pre <= 0.08, fpr_pre
    assert fpr_ora <= 0.06, fpr_ora


def test_planted_programs_are_recovered_from_demo_de(demo_root):
    from hmba_toolkit.de import wilcoxon
    from hmba_toolkit.io import AbcCache

    cache = AbcCache.from_demo()
    cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
    sel = cells[cells["Subclass"].isin(["STR D1 MSN", "STR D2 MSN"])]
    x = cache.read_expression("HMBA-10xMultiome-BG-Aligned", cells=sel.index)
    x.obs["Subclass"] = sel["Subclass"].to_numpy()
    de = wilcoxon(x, "Subclass", reference="STR D2 MSN", groups=["STR D1 MSN"])
    prog = pd.read_csv(demo_ground_truth() / "programs.csv")
    library = {f"{lvl}: {name}": list(g["gene_symbol"]) for (lvl, name), g in prog.groupby(["level", "name"])}
    measured = de.loc[(de["frac_in"] + de["frac_out"]) > 0, "gene"]
    ranking = de.set_index("gene").loc[measured, "statistic"]
    res = prerank(ranking, library, n_permutations=2000, seed=0, min_size=3)
    tax = cache.taxonomy().drop_duplicates("Group")
    # a side: its Subclass and the Groups of that Subclass, or of any MSN Subclass with the receptor in its name
    # (STRv D1 NUDAP MSN is a D1 Group of the Hybrid Subclass)
    side = {sub: {f"Subclass: {sub}"} | {f"Group: {g}" for g, s in zip(tax["Group"], tax["Subclass"])
                                         if s == sub or (f" {sub[4:6]} " in f" {g} " and "MSN" in s)}
            for sub in ("STR D1 MSN", "STR D2 MSN")}
    top = res.head(8)
    assert set(top["term"]) <= side["STR D1 MSN"] | side["STR D2 MSN"]
    assert set(top.loc[top["statistic"] > 0, "term"]) <= side["STR D1 MSN"]
    assert set(top.loc[top["statistic"] < 0, "term"]) <= side["STR D2 MSN"]
    assert (top.head(4)["padj"] < 0.05).all() and (res["pvalue"] > 0).all()  # the D1 and D2 Subclass and Matrix programmes
    sig = de[(de["padj"] < 0.01) & (de["log2_fold_change"] > 1)]["gene"]
    o = ora(sig, library, background=measured, min_size=3)
    assert o.iloc[0]["term"] in side["STR D1 MSN"] and o.iloc[0]["padj"] < 0.01


def test_sample_scores_tidy():
    rng = np.random.default_rng(5)
    genes = [f"G{i}" for i in range(300)]
    expr = pd.DataFrame(rng.normal(size=(6, 300)), index=[f"r{i}" for i in range(6)], columns=genes)
    expr.loc["r0", genes[:20]] += 4
    out = sample_scores(expr, {"up": genes[:20], "rand": genes[100:130]}, method="ssgsea")
    assert list(out.columns) == ["sample", "term", "score"] and len(out) == 12
    up = out[out["term"] == "up"].set_index("sample")["score"]
    assert up.idxmax() == "r0"
    with pytest.raises(HmbaToolkitError, match="method='plage'"):
        sample_scores(expr, {"up": genes[:20]}, method="plage")


def test_prerank_does_not_depend_on_the_order_of_tied_genes():
    """Never-expressed genes tie at 0: the same sets get the same ES, NES and p-value in any input order."""
    rng = np.random.default_rng(11)
    genes = [f"G{i}" for i in range(400)]
    scores = np.r_[rng.normal(0, 2, 250), np.zeros(150)]  # 150 genes tied at 0
    ranking = pd.Series(scores, index=genes)
    sets = {"in_ties": genes[250:280], "mixed": genes[:10] + genes[300:320], "top": genes[:25]}
    with pytest.warns(UserWarning, match="only genes of score 0"):
        ref = prerank(ranking, sets, n_permutations=500, seed=1, min_size=5).set_index("term")
    for order in (ranking.index[::-1], rng.permutation(ranking.index)):
        with pytest.warns(UserWarning, match="only genes of score 0"):
            got = prerank(ranking.loc[order], sets, n_permutations=500, seed=1, min_size=5).set_index("term").loc[ref.index]
        np.testing.assert_allclose(got[["effect", "statistic", "pvalue"]].to_numpy(float),
                                   ref[["effect", "statistic", "pvalue"]].to_numpy(float))
    # a set made only of zero-weight (score 0) genes has no running sum: NaN with a warning, never a small p-value
    assert ref.loc["in_ties", ["effect", "statistic", "pvalue", "padj"]].isna().all()
    assert ref.loc["mixed", "pvalue"] > 0 and np.isfinite(ref.loc["top", "statistic"])


def test_prerank_says_when_genes_have_no_score():
    ranking = pd.Series([2.0, np.nan, 1.0, 0.5, -1.0, np.nan], index=list("ABCDEF"))
    with pytest.warns(UserWarning, match="2 genes of the ranking have no score"):
        res = prerank(ranking, {"S": ["A", "B", "C"]}, min_size=2, n_permutations=50)
    assert res.set_index("term").at["S", "n_overlap"] == 2  # B is not counted
