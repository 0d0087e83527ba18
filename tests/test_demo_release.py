"""The embedded demo release: real layout, verifiable manifest, planted ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from hmba_toolkit._files import md5sum
from hmba_toolkit.datasets import _abc_demo, demo_ground_truth
from hmba_toolkit.io import read_h5ad_obs_names, read_h5ad_subset

ALIGNED = "HMBA-10xMultiome-BG-Aligned"
HUMAN_SPATIAL = "HMBA-MERSCOPE-H22.30.001-BG"


def test_every_file_passes_its_manifest_md5(demo_root, cache):
    entries = cache.manifest.entries()
    assert len(entries) > 60
    for e in entries:
        p = demo_root / e.relative_path
        assert p.stat().st_size == e.size, e.relative_path
        assert md5sum(p) == e.md5, e.relative_path
    on_disk = {p.relative_to(demo_root).as_posix() for kind in ("metadata", "expression_matrices", "image_volumes")
               for p in (demo_root / kind).rglob("*") if p.is_file()}
    assert on_disk == {e.relative_path for e in entries}


def test_covers_every_hmba_directory(cache):
    assert cache.list_directories == sorted([
        "HMBA-10xMultiome-BG", ALIGNED, "HMBA-BG-taxonomy-CCN20250428",
        HUMAN_SPATIAL, "HMBA-MERSCOPE-QM23.50.001-BG", "HMBA-Xenium-CJ23.56.004-BG",
    ])
    assert cache.list_metadata_files(ALIGNED) == ["cell_metadata", "donor", "example_gene_expression", "gene", "library", "value_sets"]
    assert cache.list_metadata_files("HMBA-BG-taxonomy") == [
        "abbreviation_term", "cell_2d_embedding_coordinates", "cell_to_cluster_membership", "cluster",
        "cluster_annotation_term", "cluster_annotation_term_set", "cluster_annotation_to_abbreviation_map",
        "cluster_to_cluster_annotation_membership",
    ]
    assert cache.list_expression_matrix_files(HUMAN_SPATIAL) == ["MERSCOPE-H22.30.001-BG/log2", "MERSCOPE-H22.30.001-BG/raw"]
    assert cache.manifest.directory_versions(HUMAN_SPATIAL) == {
        "metadata": "20250930", "expression_matrices": "20250930", "image_volumes": "20250630"}


def test_taxonomy_is_the_real_one(cache, fixtures_dir):
    tax = cache.taxonomy()
    assert len(tax) == 1435
    assert tax[["Neighborhood", "Class", "Subclass", "Group"]].nunique().tolist() == [4, 12, 36, 61]
    # the real cells' cluster -> Group assignments of the HMBA release agree with ours
    real = pd.read_csv(fixtures_dir / "hmba_cells" / "Human_taxonomy.csv", usecols=["Cluster", "Group", "Class"])
    merged = real.join(tax, on="Cluster", rsuffix="_ours")
    assert (merged["Group"] == merged["Group_ours"]).all() and len(merged) == 453
    terms = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cluster_annotation_term")
    assert len(terms) == 1548
    assert terms.set_index("name").loc["Nonneuron", "color_hex_triplet"] == "#a8afa5"


def test_joined_cell_table_has_the_real_columns(cache):
    cells = cache.cell_table(ALIGNED)
    for col in ["cell_barcode", "donor_label", "library_label", "alignment_job_id", "feature_matrix_label",
                "dataset_label", "species_genus", "donor_sex", "region_of_interest_label",
                "barcoded_cell_sample_label_library_table", "cluster_alias", "Neighborhood", "Class", "Subclass",
                "Group", "Cluster", "Group_color", "Cluster_order"]:
        assert col in cells.columns, col
    assert cells.index.name == "cell_label"
    assert cells["alignment_job_id"].map(type).eq(str).all()
    assert set(cells["species_genus"]) == {"Human", "Macaque", "Marmoset"}
    assert (cells.index.str.split("-").str[1] == cells["barcoded_cell_sample_label"]).all()
    # some 10X cells have no cluster yet; marmoset libraries are whole-brain 'Br'
    assert 0 < cells["Cluster"].isna().sum() < 0.05 * len(cells)
    assert set(cells.loc[cells["species_genus"] == "Marmoset", "region_of_interest_label"]) == {"Br"}
    # no cross-species cluster: each cluster alias starts with the cell's species
    ok = cells.dropna(subset=["cluster_alias"])
    assert (ok["cluster_alias"].str.split("-").str[0] == ok["species_genus"]).all()


def test_h5ad_holds_more_cells_than_metadata_and_log2_is_exact(cache):
    cells = cache.cell_table(ALIGNED)
    raw_path = cache.get_file_path(ALIGNED, f"{ALIGNED}/raw")
    in_file = read_h5ad_obs_names(raw_path)
    assert set(cells.index) < set(in_file)
    raw = read_h5ad_subset(raw_path, cells=cells.index[:300])
    log2 = cache.read_expression(ALIGNED, cells=cells.index[:300], gene_column=None)
    assert raw.X.dtype == np.int32 and log2.X.dtype == np.float32
    counts = raw.X.toarray().astype(np.float64)
    expected = np.log2(counts / counts.sum(axis=1, keepdims=True) * 1e6 + 1)
    np.testing.assert_allclose(log2.X.toarray(), expected, rtol=1e-6, atol=1e-5)
    sp_raw = cache.read_expression(HUMAN_SPATIAL, normalization="raw", gene_column=None)
    sp_log = cache.read_expression(HUMAN_SPATIAL, gene_column=None)
    c = sp_raw.X.toarray().astype(np.float64)
    np.testing.assert_allclose(sp_log.X.toarray(), np.log2(c / c.sum(1, keepdims=True) * 1000 + 1), rtol=1e-6, atol=1e-5)
    assert sp_raw.var_names.str.startswith("Blank-").sum() == 15


def test_planted_d1_d2_markers_are_recoverable(cache):
    truth = pd.read_csv(demo_ground_truth() / "programs.csv")
    d1 = set(truth.query("level == 'Subclass' and name == 'STR D1 MSN'")["gene_symbol"])
    d2 = set(truth.query("level == 'Subclass' and name == 'STR D2 MSN'")["gene_symbol"])
    assert {"DRD1", "TAC1", "PDYN"} <= d1 and {"DRD2", "PENK", "ADORA2A"} <= d2
    cells = cache.cell_table(ALIGNED)
    msn = cells[cells["Subclass"].isin(["STR D1 MSN", "STR D2 MSN"])]
    x = cache.read_expression(ALIGNED, cells=msn.index, genes=["DRD1", "PDYN", "DRD2", "PENK"])
    df = pd.DataFrame(x.X.toarray(), index=msn.index, columns=x.var["gene_symbol"]).join(msn["Subclass"])
    means = df.groupby("Subclass").mean()
    assert means.loc["STR D1 MSN", "DRD1"] > means.loc["STR D2 MSN", "DRD1"] + 2
    assert means.loc["STR D2 MSN", "PENK"] > means.loc["STR D1 MSN", "PENK"] + 2


def test_spatial_cells_qc_adjacent_and_patches(cache):
    cells = cache.cell_table(HUMAN_SPATIAL)
    assert cells.index.str.endswith("-20250227").all()
    assert 0 < (~cells["qc_pass"]).mean() < 0.1
    assert cells.loc[~cells["qc_pass"], "abc_sample_id"].isna().all()
    assert (cells["Neighborhood"] == "Adjacent").any()
    assert (cells.loc[cells["Neighborhood"] == "Adjacent", "Neighborhood_color"] == "#808080").all()
    for col in ["slab_plane_label", "x_slab_mm", "y_slab_mm", "brain_section_barcode_specimen", "parcellation_term_symbol", "STR", "GPe"]:
        assert col in cells.columns, col
    # striosome MSNs concentrate inside the planted patches
    truth = pd.read_csv(demo_ground_truth() / "spatial" / "human_cells.csv", index_col="cell_label")
    j = cells.join(truth)
    strio = j["Group"].fillna("").str.contains("Striosome")
    assert strio[j["in_patch"]].mean() > 5 * strio[~j["in_patch"] & (j["region"] == "STR")].mean()
    polygons = json.loads(cache.get_file_path(HUMAN_SPATIAL, "H22.30.001.CX.16.Plane.07").read_text())
    assert {f["properties"]["label"] for f in polygons["features"]} == {"STR", "GPe", "GPi", "VeP"}


def test_generation_is_deterministic(tmp_path, demo_root):
    _abc_demo.generate(tmp_path / "abc", tmp_path / "truth")
    ours = json.loads((tmp_path / "abc/releases/20251031/manifest.json").read_text())
    shipped = json.loads((demo_root / "releases/20251031/manifest.json").read_text())
    hashes = lambda m: {d: {k: json.dumps(v, sort_keys=True) for k, v in m["file_listing"][d].items()} for d in m["file_listing"]}  # noqa: E731
    assert hashes(ours) == hashes(shipped)
