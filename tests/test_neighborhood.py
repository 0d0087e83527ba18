"""Neighbourhood enrichment: exact moments against enumeration and permutation, calibration, planted co-location."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hmba_toolkit import spatial
from hmba_toolkit.errors import DataFormatError, ParameterError, ParameterTypeError
from hmba_toolkit.spatial import neighborhood as nh


def _cells(n=300, seed=0, n_sections=1, p=(0.5, 0.3, 0.2)):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2))
    types = rng.choice([f"T{i}" for i in range(len(p))], size=n, p=p)
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "t": types, "sec": [f"s{i % n_sections}" for i in range(n)]},
                        index=[f"c{i}" for i in range(n)])


def _enumerated_moments(A: sp.csr_matrix, labels: np.ndarray, K: int):
    """Mean and variance of every pair count over all distinct relabellings (each equally likely)."""
    counts = []
    for perm in set(itertools.permutations(labels.tolist())):
        counts.append(nh._pair_counts(A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data, np.array(perm, dtype=np.int64), K))
    counts = np.stack(counts)
    return counts.mean(0), counts.var(0)


@pytest.mark.parametrize("weighted", [False, True])
def test_exact_moments_equal_the_enumeration_of_every_relabelling(weighted):
    rng = np.random.default_rng(3)
    n, K = 8, 3
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    A = sp.random(n, n, density=0.4, random_state=4, format="csr")
    A.data = rng.uniform(0.5, 2, A.nnz) if weighted else np.ones(A.nnz)
    A.setdiag(0)
    A.eliminate_zeros()
    mean, var = nh._moments(nh._graph_sums(A), np.bincount(labels, minlength=K), n)
    e_mean, e_var = _enumerated_moments(A, labels, K)
    np.testing.assert_allclose(mean, e_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, e_var, rtol=1e-10, atol=1e-10)


def test_zscores_equal_a_brute_force_permutation_reference():
    cells = _cells(n=200, seed=1, n_sections=2)
    res = spatial.neighborhood_enrichment(cells, "t", section_key="sec")
    A = spatial.neighborhood_graph(cells, section_key="sec")
    codes = pd.Categorical(cells["t"]).codes.astype(np.int64)
    sec = cells["sec"].to_numpy()
    rng = np.random.default_rng(0)
    null = []
    for _ in range(20000):
        lab = codes.copy()
        for s in np.unique(sec):
            rows = np.flatnonzero(sec == s)
            lab[rows] = rng.permutation(lab[rows])
        null.append(nh._pair_counts(A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data, lab, 3).ravel())
    null = np.asarray(null)
    z_perm = (res["observed"].to_numpy() - null.mean(0)) / null.std(0)
    np.testing.assert_allclose(res["expected"], null.mean(0), rtol=0.01)
    np.testing.assert_allclose(res["zscore"], z_perm, atol=0.05)


def test_planted_colocation_is_found_and_avoidance_too():
    rng = np.random.default_rng(5)
    xy = rng.random((1500, 2))
    patch = np.sqrt(((xy - 0.5) ** 2).sum(1)) < 0.2  # a striosome-like patch of type S in a matrix of type M
    types = np.where(rng.random(1500) < 0.1, "I", np.where(patch, "S", "M"))  # interneurons I scattered everywhere
    cells = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "t": types})
    res = spatial.neighborhood_enrichment(cells, "t").set_index(["cluster_a", "cluster_b"])
    assert res.at[("S", "S"), "zscore"] > 10 and res.at[("S", "S"), "padj"] < 1e-6
    assert res.at[("S", "M"), "zscore"] < -10
    assert abs(res.at[("I", "M"), "zscore"]) < 3  # scattered: no association


def test_shuffled_labels_hold_the_false_positive_rate():
    """200 sets of random labels (four types, one rare) in two sections: p < 0.05 for at most 5% of the pairs."""
    rng = np.random.default_rng(1)
    hits = []
    for sim in range(200):
        xy = rng.random((600, 2))
        cells = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "sec": np.where(xy[:, 0] < 0.5, "s1", "s2"),
                              "t": rng.choice(["A", "B", "C", "rare"], size=600, p=[0.5, 0.3, 0.17, 0.03])})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a rare type absent from a section
            res = spatial.neighborhood_enrichment(cells, "t", section_key="sec")
        hits.append(np.where(res["pvalue"].isna(), np.nan, res["pvalue"] < 0.05))
    hits = np.concatenate(hits)
    fpr = float(np.mean(hits[~np.isnan(hits)]))
    assert 0.02 < fpr <= 0.05, fpr


def test_permutation_pvalues_agree_with_the_exact_moments():
    cells = _cells(n=400, seed=2)
    res = spatial.neighborhood_enrichment(cells, "t", n_permutations=999, seed=1)
    assert res["pvalue_perm"].between(1 / 1000, 1).all()
    assert np.corrcoef(res["pvalue"], res["pvalue_perm"])[0, 1] > 0.9


def test_sections_add_up_and_row_order_does_not_matter():
    cells = _cells(n=600, seed=3, n_sections=3)
    total = spatial.neighborhood_enrichment(cells, "t", section_key="sec")
    per = spatial.neighborhood_enrichment(cells, "t", section_key="sec", by_section=True)
    summed = per.groupby(["cluster_a", "cluster_b"])[["observed", "expected"]].sum().reset_index()
    np.testing.assert_allclose(summed["observed"], total["observed"])
    np.testing.assert_allclose(summed["expected"], total["expected"])
    assert sorted(per["section"].unique()) == ["s0", "s1", "s2"]
    shuffled = spatial.neighborhood_enrichment(cells.sample(frac=1, random_state=0), "t", section_key="sec")
    pd.testing.assert_frame_equal(total, shuffled, check_exact=False, rtol=1e-12)


def test_a_precomputed_graph_gives_the_same_answer():
    cells = _cells(n=300, seed=4)
    graph = spatial.neighborhood_graph(cells, n_neighbors=5)
    a = spatial.neighborhood_enrichment(cells, "t", n_neighbors=5)
    b = spatial.neighborhood_enrichment(cells, "t", graph=graph)
    pd.testing.assert_frame_equal(a, b)


def test_co_occurrence_finds_a_patch_at_short_distance():
    rng = np.random.default_rng(6)
    xy = rng.random((800, 2)) * 100
    types = np.where(np.sqrt(((xy - 50) ** 2).sum(1)) < 20, "S", "M")
    res = spatial.co_occurrence(pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "t": types}), "t", distances=[5, 20, 60])
    ss = res.query("cluster_a == 'S' and cluster_b == 'S'").set_index("distance")["ratio"]
    assert ss[5.0] > 2 and ss[5.0] > ss[60.0]


@pytest.mark.parametrize("change, exc, pattern", [
    (lambda c: c.assign(x=np.where(np.arange(len(c)) == 3, np.nan, c["x"])), DataFormatError, r"1 cells with NaN or infinite coordinates in 'x'/'y'"),
    (lambda c: c.assign(x=np.where(np.arange(len(c)) == 3, c["x"].iat[4], c["x"]), y=np.where(np.arange(len(c)) == 3, c["y"].iat[4], c["y"])),
     ParameterError, r"cells has 2 locations that share their coordinates with another \(duplicated locations, e\.g\. \[3, 4\]|cells has 2 locations that share"),
    (lambda c: c.assign(sec=np.where(np.arange(len(c)) < 4, "tiny", "big")), ParameterError,
     r"section 'tiny' has 4 cells, too few for n_neighbors=6"),
    (lambda c: c.drop(columns="t"), ParameterError, r"cells has no column 't' \(groupby=\)"),
    (lambda c: c.values, ParameterTypeError, r"cells must be a cell table"),
])
def test_bad_input_names_the_argument(change, exc, pattern):
    with pytest.raises(exc, match=pattern):
        spatial.neighborhood_enrichment(change(_cells(n=60)), "t", section_key="sec")


def test_bad_graph_and_parameters_are_named():
    cells = _cells(n=60, n_sections=2)
    with pytest.raises(ParameterError, match=r"graph is 3 x 3, cells has 60 rows"):
        spatial.neighborhood_enrichment(cells, "t", graph=sp.eye(3))
    with pytest.raises(ParameterError, match=r"graph links .* pairs of cells of different sections"):
        spatial.neighborhood_enrichment(cells, "t", section_key="sec", graph=spatial.neighborhood_graph(cells))
    with pytest.raises(ParameterTypeError, match=r"n_neighbors must be a whole number"):
        spatial.neighborhood_enrichment(cells, "t", n_neighbors=2.5)
    with pytest.raises(ParameterError, match=r"distances must be positive, increasing"):
        spatial.co_occurrence(cells, "t", distances=[10, 5])


def test_a_type_missing_from_a_section_gives_nan_with_a_warning():
    cells = _cells(n=120, n_sections=2)
    cells.loc[cells["sec"] == "s0", "t"] = "T0"  # section s0 holds one type only: it fills the section
    with pytest.warns(UserWarning, match=r"no variance under relabelling"):
        res = spatial.neighborhood_enrichment(cells, "t", section_key="sec", by_section=True)
    assert res.query("section == 's0'")["zscore"].isna().all()


def test_per_section_permutations_follow_each_sections_pairs():
    cells = _cells(n=400, seed=7, n_sections=2)
    cells.loc[(cells["sec"] == "s0") & (cells["t"] == "T2"), "t"] = "T1"  # T2 absent from s0: its pairs left out there
    res = spatial.neighborhood_enrichment(cells, "t", section_key="sec", by_section=True, n_permutations=499, seed=0)
    assert set(res.query("section == 's0'")["cluster_a"]) == {"T0", "T1"}
    assert len(res.query("section == 's1'")) == 9
    big = res["expected"] >= 5
    assert np.corrcoef(res.loc[big, "pvalue"], res.loc[big, "pvalue_perm"])[0, 1] > 0.9
