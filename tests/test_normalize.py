"""Normalization reproduces the release's stored log2 matrices bit for bit; QC summaries."""

from __future__ import annotations

import numpy as np
import pytest

from hmba_toolkit.errors import DataFormatError
from hmba_toolkit.normalize import log2_cpm, log2_cpt, log2_normalize, qc_metrics


@pytest.mark.parametrize("directory, fn", [
    ("HMBA-10xMultiome-BG-Aligned", log2_cpm),
    ("HMBA-MERSCOPE-H22.30.001-BG", log2_cpt),
    ("HMBA-Xenium-CJ23.56.004-BG", log2_cpt),
])
def test_stored_log2_is_reproduced_exactly(cache, directory, fn):
    raw = cache.read_expression(directory, normalization="raw", gene_column=None)
    stored = cache.read_expression(directory, normalization="log2", gene_column=None)
    ours = fn(raw)
    assert ours.X.dtype == np.float32
    assert (ours.X != stored.X).nnz == 0  # bit-for-bit
    # and the same numbers as the textbook formula
    c = raw.X[:50].toarray().astype(np.float64)
    scale = 1e6 if fn is log2_cpm else 1e3
    np.testing.assert_allclose(ours.X[:50].toarray(), np.log2(c / c.sum(1, keepdims=True) * scale + 1), rtol=1e-6)


def test_empty_cells_and_bad_input():
    X = np.array([[0, 0, 0], [2, 0, 2]])
    out = log2_normalize(X, 4).toarray()
    np.testing.assert_array_equal(out, np.array([[0, 0, 0], [np.log2(3), 0, np.log2(3)]], dtype=np.float32))
    with pytest.raises(DataFormatError, match="non-negative"):
        log2_normalize(np.array([[-1, 2]]), 10)
    with pytest.raises(DataFormatError, match="scale"):
        log2_normalize(X, 0)


def test_qc_metrics_against_direct_computation(cache):
    raw = cache.read_expression("HMBA-MERSCOPE-H22.30.001-BG", normalization="raw", gene_column=None)
    qc = qc_metrics(raw)
    cells, genes = qc.cells, qc.genes
    dense = raw.X.toarray()
    np.testing.assert_array_equal(cells["total_counts"], dense.sum(1))
    np.testing.assert_array_equal(cells["n_genes"], (dense > 0).sum(1))
    blank = raw.var_names.str.startswith("Blank-")
    np.testing.assert_array_equal(cells["blank_counts"], dense[:, blank].sum(1))
    has = dense.sum(1) > 0
    np.testing.assert_allclose(cells["top_gene_fraction"][has], (dense.max(1) / np.maximum(dense.sum(1), 1))[has], atol=1e-6)
    np.testing.assert_array_equal(genes["n_cells"], (dense > 0).sum(0))
    # the QC-failed cells of the release are the low-count ones
    meta = cache.cell_table("HMBA-MERSCOPE-H22.30.001-BG")
    j = cells.join(meta["qc_pass"])
    assert j.loc[~j["qc_pass"], "total_counts"].median() < 0.2 * j.loc[j["qc_pass"], "total_counts"].median()
    with pytest.raises(DataFormatError, match="raw integer counts"):
        qc_metrics(log2_cpt(raw))


def test_cpm_sums_to_a_million(cache):
    from hmba_toolkit.normalize import cpm

    raw = cache.read_expression("HMBA-10xMultiome-BG-Aligned", normalization="raw", gene_column=None)
    out = cpm(raw)
    np.testing.assert_allclose(np.asarray(out.X.sum(axis=1)).ravel(), 1e6)
    assert out.uns["normalization"] == "CPM"


def test_normalising_twice_is_refused_and_non_integer_input_warned(cache):
    import warnings

    from hmba_toolkit.normalize import cpm

    stored = cache.read_expression("HMBA-10xMultiome-BG-Aligned", cells=cache.cell_table("HMBA-10xMultiome-BG-Aligned").index[:20])
    assert stored.uns["normalization"] == "log2"
    with pytest.raises(DataFormatError, match="already normalised"):
        log2_cpm(stored)
    with pytest.raises(DataFormatError, match="already normalised"):
        log2_cpm(log2_cpm(cache.read_expression("HMBA-10xMultiome-BG-Aligned", normalization="raw",
                                                cells=stored.obs_names)))
    unlabelled = stored.copy()
    del unlabelled.uns["normalization"]
    with pytest.warns(UserWarning, match="non-integer"):
        cpm(unlabelled)
    raw = cache.read_expression("HMBA-10xMultiome-BG-Aligned", normalization="raw", cells=stored.obs_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log2_cpm(raw)  # raw counts: no warning
