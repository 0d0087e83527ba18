"""hmba_toolkit.stream on the demo release: equality with in-memory results, the index, Dask."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hmba_toolkit import stream
from hmba_toolkit.errors import DataFormatError, HmbaToolkitError
from hmba_toolkit.io import gene_index, read_genes

DIR = "HMBA-10xMultiome-BG"
HUMAN = "HMBA-10xMultiome-BG-Human"


@pytest.fixture(scope="module", autouse=True)
def index_dir(tmp_path_factory):
    """Gene indexes of this module go to a temporary folder, not the user's data home."""
    old = os.environ.get(gene_index.INDEX_DIR_ENV)
    os.environ[gene_index.INDEX_DIR_ENV] = str(tmp_path_factory.mktemp("indexes"))
    yield
    if old is None:
        del os.environ[gene_index.INDEX_DIR_ENV]
    else:
        os.environ[gene_index.INDEX_DIR_ENV] = old


@pytest.fixture(scope="module")
def human(cache, tmp_path_factory):
    """The demo human raw and log2 files copied aside."""
    d = tmp_path_factory.mktemp("h5ad")
    raw = shutil.copy(cache.get_file_path(DIR, f"{HUMAN}/raw"), d / "human-raw.h5ad")
    log2 = shutil.copy(cache.get_file_path(DIR, f"{HUMAN}/log2"), d / "human-log2.h5ad")
    cells = cache.cell_table(DIR)
    return {"raw": d / "human-raw.h5ad", "log2": d / "human-log2.h5ad", "cells": cells, "raw_path": raw, "log2_path": log2}


def _indicator_sums(X: sp.csr_matrix, keys: pd.Series, names) -> np.ndarray:
    """Group sums by an explicit indicator-matrix product (scipy), independent of the toolkit's kernel."""
    codes = pd.Categorical(keys, categories=list(names)).codes
    keep = np.flatnonzero(codes >= 0)
    ind = sp.csr_matrix((np.ones(keep.size), (codes[keep], keep)), shape=(len(names), X.shape[0]))
    return (ind @ sp.csr_matrix(X, dtype=np.float64)).toarray()


@pytest.mark.parametrize("chunk_nnz", [10_000, 10**9])
def test_aggregate_equals_in_memory_pseudobulk(human, chunk_nnz):
    by = ["Group", "donor_label"]
    got = stream.aggregate(human["raw"], by, obs=human["cells"], chunk_nnz=chunk_nnz, progress=False)
    mem = ad.read_h5ad(human["raw"])
    labelled = human["cells"].reindex(mem.obs_names)[by]
    keys = labelled.astype(str).agg("|".join, axis=1).where(labelled.notna().all(axis=1))
    np.testing.assert_array_equal(got.layers["sum"], _indicator_sums(mem.X, keys, got.obs_names))
    nonzero = mem.X.copy()
    nonzero.data = (nonzero.data != 0).astype(np.float64)
    np.testing.assert_array_equal(got.layers["count_nonzero"], _indicator_sums(nonzero, keys, got.obs_names))
    assert (got.obs["n_obs_aggregated"].to_numpy() == keys.value_counts().reindex(got.obs_names).to_numpy()).all()
    # in memory: the same function on the AnnData gives the same numbers
    in_memory = stream.aggregate(ad.AnnData(mem.X, obs=labelled), by)
    for layer in ("sum", "count_nonzero"):
        np.testing.assert_array_equal(in_memory.layers[layer], got.layers[layer])
    # means and variances against dense numpy per group
    X = mem.X.toarray().astype(np.float64)
    for k, name in enumerate(got.obs_names[:5]):
        rows = (keys == name).to_numpy()
        np.testing.assert_allclose(got.layers["mean"][k], X[rows].mean(0))
        if rows.sum() > 1:
            np.testing.assert_allclose(got.layers["var"][k], X[rows].var(0, ddof=1), atol=1e-9)
    assert got.uns["cells_left_out"] == int(human["cells"].reindex(mem.obs_names)[by].isna().any(axis=1).sum())


def test_aggregate_log2cpm_on_the_fly_equals_the_released_log2_file(human):
    by = ["Subclass"]
    from_raw = stream.aggregate(human["raw"], by, obs=human["cells"], normalization="log2cpm", chunk_nnz=50_000, progress=False)
    from_log2 = stream.aggregate(human["log2"], by, obs=human["cells"], progress=False)
    np.testing.assert_allclose(from_raw.layers["sum"], from_log2.layers["sum"], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(from_raw.layers["count_nonzero"], from_log2.layers["count_nonzero"])


def test_aggregate_bad_input_names_it(human, tmp_path):
    with pytest.raises(HmbaToolkitError, match="no column"):
        stream.aggregate(human["raw"], ["NoSuchColumn"], obs=human["cells"], progress=False)
    with pytest.raises(HmbaToolkitError, match="normalization"):
        stream.aggregate(human["raw"], ["Group"], obs=human["cells"], normalization="cpm", progress=False)
    with pytest.raises(HmbaToolkitError, match="obs="):
        stream.aggregate(human["raw"], ["Group"], progress=False)
    with pytest.raises(DataFormatError, match="does not exist"):
        stream.aggregate(tmp_path / "missing.h5ad", ["Group"], obs=human["cells"], progress=False)
    dense = tmp_path / "dense.h5ad"
    ad.AnnData(np.ones((3, 2), dtype=np.float32)).write_h5ad(dense)
    with pytest.raises(DataFormatError, match="dense.h5ad.*csr_matrix"):
        stream.aggregate(dense, ["g"], obs=pd.DataFrame({"g": ["a"] * 3}, index=["0", "1", "2"]), progress=False)
    with pytest.raises(HmbaToolkitError, match="chunk_nnz"):
        stream.aggregate(human["raw"], ["Group"], obs=human["cells"], chunk_nnz=0, progress=False)


def test_gene_index_reads_equal_the_stream_and_the_file(human):
    genes = ["DRD1", "TAC1", "PPP1R1B", "SLC17A6"]  # in the human per-species gene table
    streamed = read_genes(human["raw"], genes, gene_column="gene_symbol", index=False, progress=False)
    assert streamed.attrs["source"] == "stream"
    mem = ad.read_h5ad(human["raw"])
    sym = mem.var["gene_symbol"].astype(str)
    expect = mem[:, sym.isin(genes)].to_df()
    expect.columns = sym[sym.isin(genes)]
    pd.testing.assert_frame_equal(streamed, expect[genes].astype(np.float32), check_names=False)
    idx = stream.build_gene_index(human["raw"], memory_gb=0.0005, chunk_nnz=20_000, progress=False)  # many buckets
    meta = json.loads((idx / "meta.json").read_text())
    assert meta["value_dtype"] == "uint16" and meta["nnz"] == mem.X.nnz
    fast = read_genes(human["raw"], genes, gene_column="gene_symbol", progress=False)
    assert fast.attrs["source"] == "gene_index"
    pd.testing.assert_frame_equal(fast, streamed)
    # the whole index is the transpose of the file
    gi = stream.GeneIndex.open(idx)
    csc = sp.csc_matrix((np.asarray(gi.values, dtype=np.float32), np.asarray(gi.cells), gi.gene_ptr), shape=mem.shape)
    assert (csc != mem.X.astype(np.float32)).nnz == 0
    np.testing.assert_allclose(gi.cell_totals, np.asarray(mem.X.sum(axis=1)).ravel())
    # log2 CPM through the index equals the released log2 file
    log2 = read_genes(human["log2"], genes, gene_column="gene_symbol", index=False, progress=False)
    np.testing.assert_allclose(read_genes(human["raw"], genes, gene_column="gene_symbol", normalization="log2cpm", progress=False),
                               log2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(read_genes(human["raw"], genes, gene_column="gene_symbol", normalization="log2cpm", index=False,
                                          progress=False), log2, rtol=1e-5, atol=1e-5)
    assert stream.build_gene_index(human["raw"], progress=False) == idx  # up to date: not rebuilt
    assert idx.parent == Path(os.environ[gene_index.INDEX_DIR_ENV]) and not list(human["raw"].parent.glob("*index*"))


def test_a_gene_query_through_the_index_never_reopens_the_h5ad(human, tmp_path, monkeypatch):
    src = tmp_path / "q-raw.h5ad"
    shutil.copy(human["raw"], src)
    idx = stream.build_gene_index(src, progress=False)
    stored = (idx / gene_index.OBS_NAMES_FILE).read_text().split("\n")
    assert stored == list(ad.read_h5ad(src, backed="r").obs_names)  # the cell labels live in the index
    first = read_genes(src, ["DRD1", "TAC1"], gene_column="gene_symbol", progress=False)
    def refuse(*args, **kwargs):
        raise AssertionError("the h5ad was opened")
    for name in ("read_h5ad_obs_names", "read_h5ad_var", "open_csr"):
        monkeypatch.setattr(gene_index, name, refuse)
    again = read_genes(src, ["TAC1", "PPP1R1B"], gene_column="gene_symbol", progress=False)  # cell names and var cached
    pd.testing.assert_frame_equal(again[["TAC1"]], first[["TAC1"]])
    assert again.index.equals(first.index) and again.index.name == first.index.name
    monkeypatch.undo()
    # an index built before the cell labels were kept still works (reading them from the h5ad)
    (idx / gene_index.OBS_NAMES_FILE).unlink()
    meta = json.loads((idx / "meta.json").read_text())
    meta.pop("obs_names")
    (idx / "meta.json").write_text(json.dumps(meta))
    older = read_genes(src, ["DRD1", "TAC1"], gene_column="gene_symbol", index=True, progress=False)
    pd.testing.assert_frame_equal(older, first)


def test_gene_index_detects_a_changed_source(human, tmp_path):
    src = tmp_path / "x-raw.h5ad"
    shutil.copy(human["raw"], src)
    stream.build_gene_index(src, progress=False)
    os.utime(src, ns=(1, 1))  # touched, same bytes: md5 says the index still holds
    assert read_genes(src, ["DRD1"], gene_column="gene_symbol", progress=False).attrs["source"] == "gene_index"
    a = ad.read_h5ad(src)
    a.X = a.X * 2
    a.write_h5ad(src, compression="gzip")
    with pytest.warns(UserWarning, match="another version"):
        got = read_genes(src, ["DRD1"], gene_column="gene_symbol", progress=False)
    assert got.attrs["source"] == "stream"
    with pytest.raises(DataFormatError, match="another version"):
        read_genes(src, ["DRD1"], gene_column="gene_symbol", index=True, progress=False)
    with pytest.raises(DataFormatError, match="genes not found"):
        read_genes(src, ["NOPE"], gene_column="gene_symbol", progress=False)
    rebuilt = stream.build_gene_index(src, progress=False)
    assert read_genes(src, ["DRD1"], gene_column="gene_symbol", progress=False).attrs["source"] == "gene_index"
    assert not rebuilt.with_name(f".{rebuilt.name}.partial").exists()


def test_aggregate_on_a_two_worker_dask_cluster_equals_one_process(human):
    import distributed  # in the locked environment (the "scale" extra)

    by = ["Group", "donor_label"]
    one = stream.aggregate(human["raw"], by, obs=human["cells"], chunk_nnz=20_000, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        two = stream.aggregate(human["raw"], by, obs=human["cells"], chunk_nnz=20_000, client=client, n_tasks=5)
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(two.layers["sum"], one.layers["sum"])
    np.testing.assert_array_equal(two.layers["count_nonzero"], one.layers["count_nonzero"])
    np.testing.assert_allclose(two.layers["var"], one.layers["var"], equal_nan=True)


def test_get_gene_data_uses_the_index_when_present(cache, tmp_path, monkeypatch):
    monkeypatch.setenv(gene_index.INDEX_DIR_ENV, str(tmp_path / "idx"))
    aligned = "HMBA-10xMultiome-BG-Aligned"
    cells = cache.cell_table(aligned).iloc[::3]
    genes_table = cache.get_metadata_dataframe(aligned, "gene").set_index("gene_identifier")
    without = cache.get_gene_data(cells, genes_table, ["DRD1", "PENK"], data_type="raw")
    stream.build_gene_index(cache.get_file_path(aligned, f"{aligned}/raw"), progress=False)
    calls = []
    monkeypatch.setattr("hmba_toolkit.io.abc_cache.read_h5ad_subset", lambda *a, **k: calls.append(a))
    with_index = cache.get_gene_data(cells, genes_table, ["DRD1", "PENK"], data_type="raw")
    assert calls == []  # the matrices were not read
    pd.testing.assert_frame_equal(with_index, without)


def test_aggregate_with_obs_not_indexed_by_cell_label_is_an_error(human):
    """It used to return 0 groups, every cell 'left out', without a word."""
    with pytest.raises(HmbaToolkitError, match="use obs.set_index\\('cell_label'\\)"):
        stream.aggregate(human["raw"], ["Subclass"], obs=human["cells"].reset_index(), progress=False)
