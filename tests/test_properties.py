"""Property-based tests (hypothesis): readers round-trip what they are given, statistics keep their invariants."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hmba_toolkit import cross_species, de, gsea, nulls
from hmba_toolkit.errors import DataFormatError
from hmba_toolkit.io import read_ish_grid, write_ish_grid
from hmba_toolkit.io.abc_cache import read_abc_csv
from hmba_toolkit.io.mouse_ish import _parse_header

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 4))
dtypes = st.sampled_from([np.float32, np.float64, np.uint8, np.uint16, np.uint32, np.int16, np.int32])


@FAST
@given(data=st.data(), shape=shapes, dtype=dtypes, as_zip=st.booleans())
def test_metaimage_round_trip(tmp_path, data, shape, dtype, as_zip):
    if np.dtype(dtype).kind == "f":
        arr = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-1e6, 1e6, width=np.dtype(dtype).itemsize * 8)
                                   .filter(lambda v: v != -1)))
        arr[data.draw(hnp.arrays(bool, shape))] = np.nan
    else:
        arr = data.draw(hnp.arrays(dtype, shape))
    path = tmp_path / ("g.zip" if as_zip else "g.mhd")
    write_ish_grid(path, arr, overwrite=True)  # hypothesis reuses tmp_path across examples
    got = read_ish_grid(path)
    assert got.shape == arr.shape and got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)


@FAST
@given(extra=st.dictionaries(st.from_regex(r"[A-Z][A-Za-z]{0,10}", fullmatch=True), st.from_regex(r"[\w .]{0,12}", fullmatch=True),
                             max_size=4), blank_lines=st.integers(0, 3), spaces=st.sampled_from([" = ", "=", "  =  "]))
def test_mhd_header_parses_whatever_the_spacing_and_extra_keys(extra, blank_lines, spaces):
    base = {"NDims": "3", "DimSize": "67 41 58", "ElementType": "MET_FLOAT", "ElementDataFile": "energy.raw"}
    items = {**{k: v for k, v in extra.items() if k not in base}, **base}
    text = ("\n" * (1 + blank_lines)).join(f"{k}{spaces}{v}" for k, v in items.items())
    parsed = _parse_header(text, "h.mhd")
    assert {k: parsed[k] for k in base} == base


@FAST
@given(text=st.text(max_size=200))
def test_mhd_header_garbage_is_a_clear_error(text):
    try:
        _parse_header(text, "junk.mhd")
    except DataFormatError as exc:
        assert "junk.mhd" in str(exc)


field = st.from_regex(r"[A-Za-z0-9_\-.:]{1,12}", fullmatch=True)


@FAST
@given(sets=st.dictionaries(field, st.lists(field, min_size=1, max_size=8, unique=True), min_size=1, max_size=6))
def test_gmt_round_trip(tmp_path, sets):
    path = tmp_path / "s.gmt"
    gsea.write_gmt(sets, path, overwrite=True)
    assert gsea.read_gmt(path) == sets


@FAST
@given(text=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300))
def test_gmt_parser_either_parses_or_names_the_file(tmp_path, text):
    path = tmp_path / "x.gmt"
    path.write_text(text, encoding="utf-8")
    try:
        sets = gsea.read_gmt(path)
    except DataFormatError as exc:
        assert "x.gmt" in str(exc)
    else:
        assert all(isinstance(g, list) for g in sets.values())


@FAST
@given(labels=st.lists(st.from_regex(r"[0-9]{1,6}", fullmatch=True), min_size=1, max_size=20))
def test_abc_csv_keeps_label_columns_as_strings(tmp_path, labels):
    path = tmp_path / "t.csv"
    pd.DataFrame({"cell_label": labels, "value": range(len(labels))}).to_csv(path, index=False)
    back = read_abc_csv(path)
    assert back["cell_label"].tolist() == labels  # "007" stays "007"


maps = hnp.arrays(np.float64, st.integers(8, 40), elements=st.floats(-100, 100))


@FAST
@given(x=maps, seed=st.integers(0, 2**16), n=st.integers(1, 30))
def test_correlate_p_values_lie_in_0_1(x, seed, n):
    assume(np.std(x) > 1e-6)
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(x.size)
    res = nulls.correlate(x, y, nulls.naive(x, n_permutations=n, seed=seed))
    assert 1 / (n + 1) - 1e-12 <= res.pvalue <= 1.0 and -1 - 1e-9 <= res.r <= 1 + 1e-9


@FAST
@given(x=hnp.arrays(np.float64, st.integers(12, 40), elements=st.floats(-100, 100)), seed=st.integers(0, 2**16))
def test_variogram_surrogates_keep_the_value_distribution(x, seed):
    assume(np.unique(x).size > 3)
    coords = np.random.default_rng(seed).random((x.size, 2))
    s = nulls.variogram(x, coords, n_permutations=3, seed=seed, resample=True)
    np.testing.assert_array_equal(np.sort(s, axis=1), np.tile(np.sort(x), (3, 1)))


@FAST
@given(seed=st.integers(0, 2**16), scale=st.floats(0.1, 10), power=st.floats(0.3, 3))
def test_wilcoxon_is_unchanged_by_monotone_transforms(seed, scale, power):
    rng = np.random.default_rng(seed)
    X = rng.poisson(1.0, (40, 6)).astype(np.float64)
    obs = pd.DataFrame({"g": np.repeat(["a", "b"], 20)}, index=[f"c{i}" for i in range(40)])
    a = ad.AnnData(sp.csr_matrix(X), obs=obs)
    b = ad.AnnData(sp.csr_matrix(scale * X**power), obs=obs)  # strictly increasing, 0 -> 0
    ra, rb = de.wilcoxon(a, "g"), de.wilcoxon(b, "g")
    np.testing.assert_allclose(ra["statistic"], rb["statistic"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ra["pvalue"], rb["pvalue"], rtol=1e-10, atol=1e-15)
    assert ((ra["pvalue"] >= 0) & (ra["pvalue"] <= 1)).all()


@FAST
@given(seed=st.integers(0, 2**16), n_sets=st.integers(1, 6))
def test_ora_p_values_lie_in_0_1(seed, n_sets):
    rng = np.random.default_rng(seed)
    universe = [f"G{i}" for i in range(60)]
    sets = {f"S{k}": list(rng.choice(universe, 8, replace=False)) for k in range(n_sets)}
    hits = list(rng.choice(universe, int(rng.integers(1, 30)), replace=False))
    res = gsea.ora(hits, sets, universe, min_size=1)
    assert ((res["pvalue"] >= 0) & (res["pvalue"] <= 1) & (res["padj"] >= res["pvalue"] - 1e-15) & (res["padj"] <= 1)).all()


@FAST
@given(seed=st.integers(0, 2**16), n_groups=st.integers(2, 8))
def test_group_matching_p_values_lie_in_0_1(seed, n_groups):
    rng = np.random.default_rng(seed)
    idx = [f"G{i}" for i in range(n_groups)]
    a = pd.DataFrame(rng.standard_normal((n_groups, 10)), index=idx)
    b = pd.DataFrame(rng.standard_normal((n_groups, 10)), index=idx)
    res = cross_species.match_groups(cross_species.profile_correlation(a, b), n_permutations=49, seed=seed)
    assert 1 / 50 - 1e-12 <= res.attrs["pvalue"] <= 1 and 0 <= res.attrs["accuracy"] <= 1


def test_bh_adjust_equals_statsmodels_and_ignores_order():
    """The toolkit's one Benjamini-Hochberg (``_stats.bh_adjust``) against statsmodels' ``fdr_bh``."""
    from statsmodels.stats.multitest import multipletests

    from hmba_toolkit._stats import bh_adjust

    rng = np.random.default_rng(0)
    for size in (1, 2, 17, 500):
        p = rng.random(size) ** 3
        p[rng.random(size) < 0.1] = np.nan  # untested: counted as 1
        p[: size // 5] = p[0]  # ties
        expected = multipletests(np.where(np.isnan(p), 1.0, p), method="fdr_bh")[1]
        np.testing.assert_allclose(bh_adjust(p), expected, rtol=0, atol=1e-15)
        order = rng.permutation(size)
        np.testing.assert_allclose(bh_adjust(p[order]), bh_adjust(p)[order], rtol=0, atol=0)
    assert bh_adjust(np.array([])).size == 0


# -- order and container invariance across function families (issue 19) -------------------------------------------

@FAST
@given(seed=st.integers(0, 2**16), n_zero=st.integers(0, 40))
def test_prerank_ignores_the_order_of_the_ranking(seed, n_zero):
    rng = np.random.default_rng(seed)
    genes = [f"g{i}" for i in range(80)]
    scores = np.concatenate([rng.normal(0, 1, 80 - n_zero), np.zeros(n_zero)])  # many ties at 0, as DE tables have
    ranking = pd.Series(scores, index=genes)
    sets = {"a": genes[:12], "b": genes[30:45], "c": genes[60:75]}
    one = gsea.prerank(ranking, sets, n_permutations=99, seed=seed, min_size=3)
    other = gsea.prerank(ranking.sample(frac=1, random_state=seed), sets, n_permutations=99, seed=seed, min_size=3)
    pd.testing.assert_frame_equal(one, other)


@FAST
@given(seed=st.integers(0, 2**16), dense=st.booleans())
def test_aggregate_ignores_row_order_and_container(seed, dense):
    from hmba_toolkit import stream

    rng = np.random.default_rng(seed)
    X = rng.poisson(0.8, (60, 7)).astype(np.float32)
    obs = pd.DataFrame({"g": rng.choice(["a", "b", "c"], 60)}, index=[f"c{i}" for i in range(60)])
    base = stream.aggregate(ad.AnnData(sp.csr_matrix(X), obs=obs), ["g"])
    order = rng.permutation(60)
    shuffled = ad.AnnData(X[order] if dense else sp.csr_matrix(X[order]), obs=obs.iloc[order])
    again = stream.aggregate(shuffled, ["g"])
    assert list(again.obs_names) == list(base.obs_names)
    for layer in ("sum", "mean", "count_nonzero"):
        np.testing.assert_allclose(np.asarray(again.layers[layer]), np.asarray(base.layers[layer]), rtol=1e-6)


@FAST
@given(seed=st.integers(0, 2**16))
def test_morans_i_ignores_the_order_of_locations(seed):
    from hmba_toolkit import autocorrelation, weights

    rng = np.random.default_rng(seed)
    coords = rng.random((40, 2))
    X = np.column_stack([coords[:, 0] + 0.1 * rng.standard_normal(40), rng.standard_normal(40)])
    order = rng.permutation(40)
    a = autocorrelation.morans_i(X, weights.knn_weights(coords, k=5), ["trend", "noise"])
    b = autocorrelation.morans_i(X[order], weights.knn_weights(coords[order], k=5), ["trend", "noise"])
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-10)


@FAST
@given(seed=st.integers(0, 2**16))
def test_patchseq_tests_ignore_row_order_and_a_monotone_transform(seed):
    from hmba_toolkit import patchseq

    rng = np.random.default_rng(seed)
    n = 60
    cells = pd.DataFrame({"Group": rng.choice(["A", "B", "C"], n), "donor_label": rng.choice(["d1", "d2"], n),
                          "f": rng.standard_normal(n)}, index=[f"c{i}" for i in range(n)])
    cells["f_exp"] = np.exp(cells["f"])  # a monotone transform: a rank-based test must not move
    a = patchseq.compare_groups(cells, ["f"], n_permutations=99, seed=1).drop(columns="feature")
    b = patchseq.compare_groups(cells.sample(frac=1, random_state=seed), ["f_exp"], n_permutations=99, seed=1).drop(columns="feature")
    pd.testing.assert_frame_equal(a, b)


@FAST
@given(seed=st.integers(0, 2**16))
def test_unionize_genes_ignores_the_order_of_grids(seed):
    from hmba_toolkit import mouse

    rng = np.random.default_rng(seed)
    brain = mouse.load_annotation() > 0
    grids = {}
    for k in range(3):
        g = np.where(brain, rng.random(brain.shape), np.nan).astype(np.float32)
        g[rng.integers(0, brain.shape[0])] = np.nan  # a plane without data
        grids[f"e{k}"] = g
    a = mouse.unionize_genes(grids, structures=["CP", "CB", "Isocortex"])
    b = mouse.unionize_genes(dict(reversed(list(grids.items()))), structures=["CP", "CB", "Isocortex"])
    pd.testing.assert_frame_equal(a, b[a.columns])


@FAST
@given(seed=st.integers(0, 2**16), method=st.sampled_from(["pearson", "spearman"]), dense=st.booleans())
def test_gene_correlation_ignores_cell_order_and_container(seed, method, dense):
    from hmba_toolkit import coexpression

    rng = np.random.default_rng(seed)
    X = rng.poisson(1.5, (50, 5)).astype(np.float64)
    X[:, 1] += X[:, 0]  # one correlated pair
    var = pd.DataFrame(index=[f"G{j}" for j in range(5)])
    obs = pd.DataFrame(index=[f"c{i}" for i in range(50)])
    order = rng.permutation(50)
    a = coexpression.gene_correlation(ad.AnnData(sp.csr_matrix(X), obs=obs, var=var), method=method)
    b = coexpression.gene_correlation(ad.AnnData(X[order] if dense else sp.csr_matrix(X[order]), obs=obs.iloc[order], var=var),
                                      method=method)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-10, atol=1e-12)
    frame = pd.DataFrame(X, index=obs.index, columns=var.index)
    c = coexpression.gene_correlation(frame.iloc[order], method=method)
    np.testing.assert_allclose(c.to_numpy(), a.to_numpy(), rtol=1e-10, atol=1e-12)


@FAST
@given(seed=st.integers(0, 2**16))
def test_region_assignment_ignores_cell_order(seed):
    from hmba_toolkit import spatial

    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-0.5, 2.5, 40), rng.uniform(-0.5, 2.5, 40)
    polygons = {"CaB": [np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])], "Pu": [np.array([[1, 0], [2, 0], [2, 2], [1, 2.0]])]}
    order = rng.permutation(40)
    a = spatial.assign_cells_to_regions(x, y, polygons)
    b = spatial.assign_cells_to_regions(x[order], y[order], polygons)
    pd.testing.assert_frame_equal(a.iloc[order].reset_index(drop=True), b.reset_index(drop=True), check_index_type=False)


@FAST
@given(seed=st.integers(0, 2**16), scale=st.floats(0.5, 20))
def test_smoothed_variogram_scales_with_the_square_of_the_map(seed, scale):
    from hmba_toolkit import variograms

    rng = np.random.default_rng(seed)
    coords = rng.random((40, 2))
    x = coords[:, 0] + 0.2 * rng.standard_normal(40)
    a = variograms.smoothed_variogram(x, coords)
    b = variograms.smoothed_variogram(scale * x + 3.0, coords)  # shift-invariant, scales as scale**2
    np.testing.assert_allclose(b["gamma"], scale**2 * a["gamma"], rtol=1e-8, atol=1e-12)
