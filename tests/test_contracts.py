"""The input contract of every public function family, checked by hypothesis over careless inputs.

Each family is a public function with a well-formed input built from a seed. Hypothesis draws the
input and one way of spoiling it (a NaN or infinite value injected, no rows, a single row, text
where numbers are expected, the main argument replaced by another type, rows shuffled). The
contract, for every draw:

- the call returns, or raises an ``HmbaToolkitError``: never a raw numpy/pandas/scipy/h5py error;
- a result holding NaN where the well-formed input gave none comes with a warning (never silently);
- rows in another order give the same answer, realigned (where a row order has no meaning).
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmba_toolkit import (ahba, autocorrelation, coexpression, cross_species, de, get, gsea, mapping, mouse, normalize, nulls,
                          patchseq, pl, spatial, stream, variograms, weights)
from hmba_toolkit.errors import HmbaToolkitError
from hmba_toolkit.io import read_ontology
from hmba_toolkit.io.abc_cache import read_abc_csv

CONTRACT = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ----------------------------------------------------------------------------- well-formed inputs
def _coords(rng, n=40):
    return rng.random((n, 2)) * 10


def _regions(rng, n=12, genes=30):
    idx = pd.Index([f"R{i}" for i in range(n)], name="region")
    return pd.DataFrame(rng.normal(size=(n, genes)), index=idx, columns=[f"G{j}" for j in range(genes)])


def _cells(rng, n=60, genes=12):
    X = sp.csr_matrix(rng.poisson(1.5, (n, genes)).astype(np.float32))
    obs = pd.DataFrame({"Class": np.repeat(["X", "X", "Y"], n // 3), "Group": np.repeat(["A", "B", "C"], n // 3),
                        "donor_label": [f"d{i % 3}" for i in range(n)]}, index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(genes)]))


def _patchseq(rng, n=30):
    return pd.DataFrame({"Group": np.repeat(["A", "B", "C"], n // 3), "donor_label": np.tile(["d1", "d2"], n // 2),
                         "tau": rng.normal(20, 5, n), "rheobase": rng.normal(100, 20, n)}, index=[f"c{i}" for i in range(n)])


def _profiles(rng):
    base = _regions(rng, n=6, genes=40)
    base.index = pd.Index(list("ABCDEF"))
    return base


# One entry per public function family: (build the primary input from a generator, call on it, row-order invariant).
# The call receives the (possibly spoiled) primary input; the other arguments are well formed and fixed by the seed.
FAMILIES = {
    "weights.knn_weights": (_coords, lambda c, rng: weights.knn_weights(c, k=4), False),
    "weights.exponential_weights": (_coords, lambda c, rng: weights.exponential_weights(c, d0=2.0), False),
    "autocorrelation.morans_i": (lambda rng: rng.normal(size=40),
                                 lambda x, rng: autocorrelation.morans_i(x, weights.knn_weights(_coords(np.random.default_rng(0)), 4)),
                                 False),
    "autocorrelation.gearys_c": (lambda rng: rng.normal(size=(40, 2)),
                                 lambda x, rng: autocorrelation.gearys_c(x, weights.knn_weights(_coords(np.random.default_rng(0)), 4)),
                                 False),
    "nulls.moran": (lambda rng: rng.normal(size=40),
                    lambda x, rng: nulls.moran(x, _coords(np.random.default_rng(0)), n_permutations=5), False),
    "nulls.spatial_lag": (lambda rng: rng.normal(size=40),
                          lambda x, rng: nulls.spatial_lag(x, _coords(np.random.default_rng(0)), n_permutations=5), False),
    "nulls.variogram": (lambda rng: rng.normal(size=40),
                        lambda x, rng: nulls.variogram(x, _coords(np.random.default_rng(0)), n_permutations=5), False),
    "nulls.variogram (coords spoiled)": (_coords, lambda c, rng: nulls.variogram(rng.normal(size=len(c)) if len(c) else [], c,
                                                                                n_permutations=5), False),
    "nulls.correlate": (lambda rng: rng.normal(size=40),
                        lambda x, rng: nulls.correlate(x, np.random.default_rng(1).normal(size=40),
                                                       np.random.default_rng(2).normal(size=(9, 40))), False),
    "variograms.smoothed_variogram": (lambda rng: rng.normal(size=40),
                                      lambda x, rng: variograms.smoothed_variogram(x, _coords(np.random.default_rng(0))), False),
    "coexpression.gene_correlation": (_regions, lambda e, rng: coexpression.gene_correlation(e, method="spearman"), True),
    "coexpression.cge": (_regions, lambda e, rng: coexpression.cge(e), False),
    "ahba.normalize": (_regions, lambda e, rng: ahba.normalize(e, "srs"), True),
    "gsea.prerank": (lambda rng: pd.Series(rng.normal(size=60), index=[f"G{j}" for j in range(60)]),
                     lambda r, rng: gsea.prerank(r, {"S": [f"G{j}" for j in range(10)]}, n_permutations=50, min_size=5), True),
    "gsea.ora": (lambda rng: pd.Series([f"G{j}" for j in range(8)]),
                 lambda g, rng: gsea.ora(list(g), {"S": [f"G{j}" for j in range(10)]}, [f"G{j}" for j in range(60)], min_size=5),
                 True),
    "gsea.gene_map_correlations": (_regions, lambda e, rng: gsea.gene_map_correlations(
        e, pd.Series(np.sin(np.arange(12.0)), index=[f"R{i}" for i in range(12)])), True),
    "cross_species.profile_correlation": (_profiles, lambda p, rng: cross_species.profile_correlation(
        p, _profiles(np.random.default_rng(3))), True),
    "patchseq.features_by_group": (_patchseq, lambda c, rng: patchseq.features_by_group(c, ["tau", "rheobase"]), True),
    "patchseq.compare_groups": (_patchseq, lambda c, rng: patchseq.compare_groups(c, ["tau"], n_permutations=20), True),
    "de.wilcoxon": (_cells, lambda a, rng: de.wilcoxon(a, "Group"), True),
    "stream.aggregate": (_cells, lambda a, rng: stream.aggregate(a, ["Group", "donor_label"]), True),
    "normalize.log2_cpm": (_cells, lambda a, rng: normalize.log2_cpm(a), False),
    "mapping.precompute_stats": (_cells, lambda a, rng: mapping.precompute_stats(a, ["Class", "Group"]), True),
    "get.obs_df": (_cells, lambda a, rng: get.obs_df(a, ["G1", "G2"], obs_keys=["Group"]), True),
    "mouse.unionize": (lambda rng: rng.random((67, 41, 58)).astype(np.float32),
                       lambda g, rng: mouse.unionize(g, structures=["CP", "ACB", "MOp"]), False),
    "pl.format_pvalues": (lambda rng: pd.DataFrame({"gene": [f"G{j}" for j in range(8)], "pvalue": rng.random(8)}),
                          lambda t, rng: pl.format_pvalues(t), True),
    "spatial.neighborhood_enrichment": (
        lambda rng: pd.DataFrame({"x": rng.random(80), "y": rng.random(80), "Group": rng.choice(["A", "B", "C"], 80),
                                  "section": np.repeat(["s1", "s2"], 40)}, index=[f"c{i}" for i in range(80)]),
        lambda c, rng: spatial.neighborhood_enrichment(c, "Group", section_key="section"), True),
    "spatial.assign_cells_by_plane": (
        lambda rng: pd.DataFrame({"slab_plane_label": "P1", "x_slab_mm": rng.random(20) * 4, "y_slab_mm": rng.random(20) * 4},
                                 index=[f"c{i}" for i in range(20)]),
        lambda c, rng: spatial.assign_cells_by_plane(c, {"P1": {"STR": [np.array([[0, 0], [2, 0], [2, 2], [0, 2.0]])]}}), True),
}

SPOILERS = ["none", "nan", "inf", "empty", "single", "text", "wrong type", "shuffle"]


# ----------------------------------------------------------------------------- spoiling an input
def _numeric_positions(obj):
    if isinstance(obj, ad.AnnData):
        return obj.X.nnz
    if isinstance(obj, pd.DataFrame):
        return int(obj.select_dtypes("number").size)
    if isinstance(obj, pd.Series):
        return obj.size if pd.api.types.is_numeric_dtype(obj) else 0
    return np.asarray(obj).size


def _spoil(obj, how: str, rng):
    if how == "none":
        return obj
    if how in ("nan", "inf"):
        value = np.nan if how == "nan" else np.inf
        if _numeric_positions(obj) == 0:
            return obj
        if isinstance(obj, ad.AnnData):
            out = obj.copy()
            out.X = out.X.astype(np.float32)
            out.X.data[rng.integers(out.X.nnz)] = value
            return out
        if isinstance(obj, pd.DataFrame):
            out = obj.copy()
            cols = list(out.select_dtypes("number").columns)
            out.iloc[rng.integers(len(out)), out.columns.get_loc(cols[rng.integers(len(cols))])] = value
            return out
        if isinstance(obj, pd.Series):
            out = obj.astype(float)
            out.iloc[rng.integers(len(out))] = value
            return out
        out = np.array(obj, dtype=float)
        out.flat[rng.integers(out.size)] = value
        return out
    if how == "empty":
        return obj[:0]
    if how == "single":
        return obj[:1]
    if how == "text":
        if isinstance(obj, ad.AnnData):
            return obj.X.toarray().astype(str)
        if isinstance(obj, (pd.DataFrame, pd.Series)):
            return obj.astype(str)
        return np.asarray(obj).astype(str)
    if how == "wrong type":
        return "data.h5ad"
    if how == "shuffle":
        order = rng.permutation(len(obj) if not isinstance(obj, ad.AnnData) else obj.n_obs)
        if isinstance(obj, ad.AnnData):
            return obj[order].copy()
        if isinstance(obj, (pd.DataFrame, pd.Series)):
            return obj.iloc[order]
        return np.asarray(obj)[order]
    raise AssertionError(how)


def _has_nan(result) -> bool:
    if isinstance(result, ad.AnnData):  # the variance of a one-cell group is NaN by definition (documented in aggregate)
        return any(_has_nan(v) for k, v in [("X", result.X), *result.layers.items()] if k != "var")
    if sp.issparse(result):
        return bool(np.isnan(result.data).any())
    if isinstance(result, pd.Series):
        return pd.api.types.is_numeric_dtype(result) and bool(result.isna().any())
    if isinstance(result, pd.DataFrame):
        return bool(result.select_dtypes("number").isna().to_numpy().any())
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        return bool(np.isnan(result).any())
    if hasattr(result, "__dataclass_fields__"):
        return any(_has_nan(getattr(result, f)) for f in result.__dataclass_fields__ if not f.startswith("_"))
    return False


def _call(call, primary, seed):
    """(result or None, the HmbaToolkitError or None, warnings said)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            return call(primary, np.random.default_rng(seed)), None, [w for w in said if not issubclass(w.category, DeprecationWarning)]
        except HmbaToolkitError as exc:
            return None, exc, said


def _comparable(result):
    """A result as a frame in a canonical order, to compare answers across row orders."""
    if isinstance(result, ad.AnnData):
        X = result.layers.get("sum", result.X)
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        return pd.DataFrame(X, index=result.obs_names, columns=result.var_names).sort_index()
    if hasattr(result, "r") and isinstance(getattr(result, "r"), pd.Series):  # MapCorrelations
        return result.r.sort_index().to_frame()
    if hasattr(result, "n_cells") and hasattr(result, "sums"):  # ReferenceStats
        return pd.DataFrame(np.asarray(result.sums), index=list(result.tree.leaves)).sort_index()
    if isinstance(result, pd.Series):
        return result.sort_index().to_frame()
    if isinstance(result, pd.DataFrame):
        out = result.copy()
        if not isinstance(out.index, pd.RangeIndex):  # labelled rows (cells, genes, regions): by label
            out = out.sort_index()
            return out[sorted(out.columns)] if set(out.columns) == set(out.index) else out
        keys = [c for c in ("gene", "group", "term", "feature", "Group", "cluster_a") if c in out.columns]
        return out.sort_values(keys, kind="stable").reset_index(drop=True)
    return result


@pytest.mark.parametrize("family", sorted(FAMILIES))
@CONTRACT
@given(spoiler=st.sampled_from(SPOILERS), seed=st.integers(0, 2**16))
def test_a_careless_input_gets_an_answer_or_a_named_error(family, spoiler, seed):
    build, call, invariant = FAMILIES[family]
    rng = np.random.default_rng(seed)
    clean = build(rng)
    reference, ref_error, _ = _call(call, clean, seed)
    assert ref_error is None, f"{family}: the well-formed input is refused: {ref_error}"
    spoiled = _spoil(clean, spoiler, np.random.default_rng(seed + 1))
    try:
        result, error, said = _call(call, spoiled, seed)
    except Exception as exc:  # anything but an HmbaToolkitError reaching the user breaks the contract
        pytest.fail(f"{family} with {spoiler!r} input raised {type(exc).__name__}: {exc}")
    if error is not None:
        assert str(error), f"{family}: an empty error message"
        return
    if _has_nan(result) and not _has_nan(reference):
        assert said, f"{family} with {spoiler!r} input returned NaN without a warning"
    if spoiler == "shuffle" and invariant:
        a, b = _comparable(reference), _comparable(result)
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12, check_like=True)


# ----------------------------------------------------------------------------- readers of text formats
TEXTS = st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                  st.sampled_from(["", "\n", "id,acronym\n1,A\n", "{\"msg\": 3}", "[1, 2]", "a,b\n\"unterminated\n",
                                   "id,acronym,name,parent_structure_id\n1,A,a,\n2,B,b,1\n"]))


@CONTRACT
@given(text=TEXTS, suffix=st.sampled_from([".csv", ".json"]))
def test_ontology_reader_parses_or_names_the_file(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("onto") / f"tree{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        tree = read_ontology(path)
    except HmbaToolkitError as exc:
        assert path.name in str(exc) or "column" in str(exc)
        return
    assert len(tree.table) >= 1


#: Readers of text formats: (the reader, the file name it is given, what a parse must return)
TEXT_READERS = {
    "ABC CSV": (read_abc_csv, "cell_metadata.csv", lambda table: isinstance(table, pd.DataFrame)),
    "GMT": (gsea.read_gmt, "sets.gmt", lambda sets: sets and all(isinstance(v, list) and v for v in sets.values())),
    "GeoJSON": (spatial.read_region_polygons, "plane.geojson", lambda polygons: isinstance(polygons, dict)),
}


@pytest.mark.parametrize("fmt", sorted(TEXT_READERS))
@CONTRACT
@given(text=TEXTS)
def test_text_reader_parses_or_names_the_file(tmp_path_factory, fmt, text):
    reader, filename, parsed = TEXT_READERS[fmt]
    path = tmp_path_factory.mktemp("reader") / filename
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    try:
        result = reader(path)
    except HmbaToolkitError as exc:
        assert filename in str(exc)
        return
    assert parsed(result)


#: Public modules whose contract lives elsewhere: the readers of binary formats (io: MetaImage, h5ad, GMT, ABC
#: tables in test_properties.py and above), the fetchers of shipped data (datasets: no user input but a folder),
#: the error classes and the session report.
ELSEWHERE = {"io", "datasets", "errors", "session_info", "__version__"}


def test_the_contract_covers_every_public_module():
    """Every public module of the package has at least one family in the contract."""
    import hmba_toolkit

    covered = {name.split(".")[0] for name in FAMILIES}
    assert not (set(hmba_toolkit.__all__) - covered - ELSEWHERE), sorted(set(hmba_toolkit.__all__) - covered - ELSEWHERE)
