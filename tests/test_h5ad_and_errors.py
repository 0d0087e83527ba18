"""Subset reads of Allen-style h5ad files, and the messages of bad input."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.errors import DataFormatError, HmbaToolkitError, ManifestError
from hmba_toolkit.io import read_h5ad_subset, read_ontology

ALIGNED = "HMBA-10xMultiome-BG-Aligned"


@pytest.fixture(scope="module")
def raw_path(cache):
    return cache.get_file_path(ALIGNED, f"{ALIGNED}/raw")


def test_subset_equals_anndata_full_read(raw_path):
    full = ad.read_h5ad(raw_path)
    rng = np.random.default_rng(0)
    cells = list(full.obs_names[rng.choice(full.n_obs, 200, replace=False)])  # unsorted, scattered
    genes = ["PPP1R1B", "DRD1", "DRD2", "PLP1", "A1BG"]
    sub = read_h5ad_subset(raw_path, cells=cells, genes=genes, gene_column="gene_symbol")
    assert list(sub.obs_names) == cells and list(sub.var["gene_symbol"]) == genes
    cols = [int(np.flatnonzero(full.var["gene_symbol"] == g)[0]) for g in genes]
    expected = full[cells][:, cols].X.toarray()
    np.testing.assert_array_equal(sub.X.toarray(), expected)
    assert sub.X.dtype == full.X.dtype
    everything = read_h5ad_subset(raw_path)
    assert (everything.X != full.X).nnz == 0 and everything.obs.index.name == "cell_label"


def test_bad_input_names_the_culprit(cache, raw_path):
    with pytest.raises(DataFormatError, match=r"genes not found in var column 'gene_symbol': \['NOTAGENE'\]"):
        read_h5ad_subset(raw_path, genes=["DRD1", "NOTAGENE"], gene_column="gene_symbol")
    with pytest.raises(DataFormatError, match="requested cells are not in the file"):
        read_h5ad_subset(raw_path, cells=["nope"])
    with pytest.raises(HmbaToolkitError, match="normalization"):
        cache.read_expression(ALIGNED, normalization="cpm")
    with pytest.raises(HmbaToolkitError, match="several matrices"):
        cache.read_expression("HMBA-10xMultiome-BG", genes=["DRD1"])
    with pytest.raises(ManifestError, match="no file 'cell_meta'"):
        cache.get_file_path(ALIGNED, "cell_meta")
    with pytest.raises(HmbaToolkitError, match="NOTAGENE"):
        cache.get_gene_data(cache.cell_table(ALIGNED).head(), cache.get_metadata_dataframe(ALIGNED, "gene"), ["NOTAGENE"])


def test_per_species_matrix_and_alias(cache):
    cells = cache.cell_table("HMBA-10xMultiome-BG")
    human = cells[cells["species_genus"] == "Human"].index[:20]
    # the same counts of a gene in the per-species (Ensembl ids) and the aligned (human NCBI Gene ids) matrices;
    # log2 values differ, as in the release, because the two matrices hold different gene sets (different totals)
    x = cache.read_expression("HMBA-10xMultiome-BG", matrix="HMBA-10xMultiome-BG-Human", cells=human, genes=["DRD1"],
                              normalization="raw")
    y = cache.read_expression("HMBA-10xMultiome-BG-Cross-Species", cells=human, genes=["DRD1"], normalization="raw")
    assert x.var_names[0].startswith("ENSG") and y.var_names[0].startswith("NCBIGene:")
    np.testing.assert_array_equal(x.X.toarray(), y.X.toarray())


def test_nested_json_ontology(tmp_path):
    doc = {"msg": [{"id": 997, "acronym": "root", "name": "root", "parent_structure_id": None, "children": [
        {"id": 8, "acronym": "grey", "name": "Basic cell groups", "parent_structure_id": 997, "children": [
            {"id": 477, "acronym": "STR", "name": "Striatum", "parent_structure_id": 8, "children": []}]}]}]}
    p = tmp_path / "1.json"
    p.write_text(json.dumps(doc))
    tree = read_ontology(p)
    assert tree.ancestors("STR") == [997, 8] and tree.descendants("grey") == {8, 477}


def test_symbols_with_unnamed_rows(cache):
    # MERSCOPE blank codewords have no gene_symbol: symbol look-ups still work, ambiguous ones are named
    sp = "HMBA-MERSCOPE-H22.30.001-BG"
    x = cache.read_expression(sp, genes=["CNR1", "KCNIP1"])
    assert list(x.var["gene_symbol"]) == ["CNR1", "KCNIP1"]
    with pytest.raises(DataFormatError, match="match several rows"):
        cache.read_expression(sp, genes=["nan"])


def test_missing_cells_skip_and_get_gene_data_nan(cache, raw_path):
    sub = read_h5ad_subset(raw_path, cells=["not-a-cell"], genes=["DRD1"], gene_column="gene_symbol", missing_cells="skip")
    assert sub.n_obs == 0
    with pytest.raises(DataFormatError, match="missing_cells"):
        read_h5ad_subset(raw_path, cells=["x"], missing_cells="ignore")
    cells = cache.cell_table(ALIGNED).head(5)
    fake = cells.iloc[:1].rename(index=lambda _: "AAAAAAAAAAAAAAAA-0000_A00")
    table = pd.concat([cells, fake])
    got = cache.get_gene_data(table, cache.get_metadata_dataframe(ALIGNED, "gene"), ["DRD1", "PPP1R1B"])
    assert got.loc["AAAAAAAAAAAAAAAA-0000_A00"].isna().all() and got.loc[cells.index].notna().all().all()
