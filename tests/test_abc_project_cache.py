"""The drop-in for Allen's client: the calls Allen's HMBA notebooks make, against a loopback mirror of the demo bucket.

The calls below are the ones Allen's notebooks make (constructors, listings, metadata tables with their pandas
keywords, get_gene_data, a slab polygon file), written here in this project's own code.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.errors import DataFormatError, ManifestError, MissingFileError, ParameterError
from hmba_toolkit.io import AbcCache, AbcProjectCache, get_gene_data
from hmba_toolkit.io import abc_project_cache as apc

ALIGNED, TAXONOMY = "HMBA-10xMultiome-BG-Aligned", "HMBA-BG-taxonomy-CCN20250428"
LATEST, TUTORIAL, OLDEST = ("releases/20261031/manifest.json", "releases/20260228/manifest.json",
                            "releases/20251031/manifest.json")


@pytest.fixture
def mirror(bucket, monkeypatch):
    monkeypatch.setenv(apc.ABC_URL_ENV, bucket.url)
    return bucket


def _downloads(server) -> int:
    return sum(1 for path, _ in server.requests if not path.startswith("releases") and "list-type" not in path)


def test_the_10x_notebook_calls_run_on_the_drop_in(mirror, tmp_path):
    abc_cache = AbcProjectCache.from_cache_dir(tmp_path / "abc_atlas")  # a new folder: download on demand
    assert abc_cache.current_manifest == LATEST  # the newest release on first use, as Allen's client
    assert isinstance(abc_cache, AbcCache)
    cell = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="cell_metadata", dtype={"cell_label": str})
    cell = cell.set_index("cell_label")
    donor = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="donor").set_index("donor_label")
    library = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="library").set_index("library_label")
    value_sets = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="value_sets")
    embedding = abc_cache.get_metadata_dataframe(directory=TAXONOMY, file_name="cell_2d_embedding_coordinates")
    membership = abc_cache.get_metadata_dataframe(directory=TAXONOMY, file_name="cell_to_cluster_membership")
    terms = abc_cache.get_metadata_dataframe(directory=TAXONOMY, file_name="cluster_annotation_term").set_index("label")
    term_sets = abc_cache.get_metadata_dataframe(directory=TAXONOMY, file_name="cluster_annotation_term_set")
    pivot = abc_cache.get_metadata_dataframe(directory=TAXONOMY, file_name="cluster_to_cluster_annotation_membership")
    assert {"Neighborhood", "Class", "Subclass", "Group", "Cluster"} <= set(term_sets["name"])
    assert cell.index.isin(membership["cell_label"]).mean() > 0.5 and cell.index.isin(embedding["cell_label"]).mean() > 0.5
    assert set(pivot["cluster_annotation_term_label"]) <= set(terms.index)
    joined = cell.join(donor, on="donor_label").join(library, on="library_label", rsuffix="_library_table")
    assert joined["species_genus"].notna().all() and len(value_sets)
    # the toolkit's additions work on the same object
    table = abc_cache.cell_table(ALIGNED)
    assert table.index.equals(cell.index) and {"Group", "Group_color", "species_genus"} <= set(table.columns)
    assert "gene" in abc_cache.list_metadata_files(ALIGNED) and abc_cache.list_expression_matrix_files(ALIGNED)
    gene = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="gene").set_index("gene_identifier")
    with pytest.warns(UserWarning, match=r"'Drd1': did you mean \['DRD1'"):
        data = get_gene_data(abc_atlas_cache=abc_cache, all_cells=cell, all_genes=gene,
                             selected_genes=["PPP1R1B", "Drd1", "DRD2", "GAD1"], data_type="log2")
    # genes in gene-table order, named by symbol, the file's dtype, every cell of all_cells
    in_table_order = [s for s in gene["gene_symbol"] if s in {"PPP1R1B", "DRD2", "GAD1"}]
    assert list(data.columns) == in_table_order and data.columns.name == "gene_symbol"
    assert data.index.equals(cell.index) and (data.dtypes == "float32").all()
    expected = abc_cache.read_expression(ALIGNED, genes=in_table_order).to_df()
    expected.columns = in_table_order
    common = expected.index.intersection(data.index, sort=False)
    assert len(common) == data.notna().all(axis=1).sum() > 0.9 * len(data)  # cells in no matrix are NaN
    pd.testing.assert_frame_equal(data.loc[common], expected.loc[common], check_names=False)


def test_spatial_and_patchseq_calls(mirror, tmp_path):
    abc_cache = AbcProjectCache.from_cache_dir(tmp_path / "abc_atlas")
    for name in abc_cache.list_directories:
        abc_cache.list_metadata_files(name)
    section = "HMBA-MERSCOPE-H22.30.001-BG"
    cells = abc_cache.get_metadata_dataframe(directory=section, file_name="cell_metadata",
                                             dtype={"cell_label": str, "brain_section_barcode": str})
    coords = abc_cache.get_metadata_dataframe(directory=section, file_name="slab_plane_coordinates")
    assert set(coords["cell_label"]) <= set(cells["cell_label"])
    polygons = abc_cache.get_file_path(directory=section, file_name="H22.30.001.CX.19.Plane.07")
    assert polygons.is_file() and polygons.is_relative_to(tmp_path / "abc_atlas" / "image_volumes")
    assert len(abc_cache.get_directory_image_volumes(section)) == len(abc_cache.list_image_volume_files(section))
    for kind_size in (abc_cache.get_directory_metadata_size, abc_cache.get_directory_expression_matrix_size,
                      abc_cache.get_directory_image_volume_size):
        value, unit = kind_size(section).split(" ")
        assert unit in ("MB", "GB") and float(value) > 0
    patchseq = "HMBA-Macaque-PatchSeq"
    features = abc_cache.get_metadata_dataframe(directory=patchseq, file_name="ap_features")
    patch_cells = abc_cache.get_metadata_dataframe(directory=patchseq, file_name="cell_metadata")
    assert len(patch_cells) and set(features.columns) & set(patch_cells.columns)
    assert [p.name for p in abc_cache.get_directory_metadata(patchseq, skip_hash_check=True)]


def test_releases_are_never_switched_silently(mirror, tmp_path):
    folder = tmp_path / "abc_atlas"
    first = AbcProjectCache.from_cache_dir(folder)
    first.load_manifest(OLDEST)
    with pytest.warns(UserWarning, match=r"loading 'releases/20251031/manifest.json'.*newer one, 'releases/20261031"):
        again = AbcProjectCache.from_cache_dir(folder)
    assert again.current_manifest == OLDEST  # the release this folder used last, as Allen's load_last_manifest
    # a directory missing from this release names the releases that have it, and close names
    with pytest.raises(ManifestError, match=r"'HMBA-Macaque-PatchSeq' is not in release 20251031; it is in release\(s\) 20261031"):
        again.list_metadata_files("HMBA-Macaque-PatchSeq")
    again.load_latest_manifest()
    with pytest.raises(ManifestError, match=r"did you mean \['HMBA-Macaque-PatchSeq'\]"):
        again.list_metadata_files("HMBA-Macaque-PatchSq")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # on the newest release now: no warning
        latest = AbcProjectCache.from_cache_dir(folder)
    assert latest.current_manifest == LATEST
    diff = latest.compare_manifests(LATEST, OLDEST)
    assert set(diff) == {"directory_changes", "metadata_changes", "expression_matrix_file_changes", "image_volume_file_changes",
                         "mapmycells_file_changes"}
    assert "HMBA-Macaque-PatchSeq" in diff["directory_changes"]["new_dirs"]
    assert set(diff["metadata_changes"]) == {"new_metadata", "removed_metadata", "changed_metadata", "manifest_error_metadata"}
    with pytest.raises(ParameterError, match="newer release first"):
        latest.compare_manifests(OLDEST, LATEST)
    with pytest.raises(ManifestError, match=r"no file 'cell_metadat' .*did you mean \['cell_metadata'\]"):
        latest.get_file_path(ALIGNED, "cell_metadat")


def test_downloads_force_and_read_only_folders(mirror, tmp_path, monkeypatch):
    folder = tmp_path / "abc_atlas"
    abc_cache = AbcProjectCache.from_cache_dir(folder)
    abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="donor")
    n = _downloads(mirror)
    abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="donor")
    assert _downloads(mirror) == n  # cached and verified
    abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="donor", force_download=True)
    assert _downloads(mirror) == n + 1
    # a folder the user cannot write is opened local-only: nothing is downloaded
    monkeypatch.setattr(apc.os, "access", lambda path, mode: False)
    local = AbcProjectCache.from_cache_dir(folder)
    assert local.base_url is None
    with pytest.raises(MissingFileError, match="library.csv is not in the local cache and this cache is local only"):
        local.get_file_path(ALIGNED, "library")


def test_bad_constructor_and_gene_data_arguments(mirror, tmp_path):
    with pytest.raises(ParameterError, match="auth_required=True is not supported"):
        AbcProjectCache.from_s3_cache(tmp_path, auth_required=True)
    with pytest.raises(ParameterError, match="not an S3 bucket name"):
        AbcProjectCache.from_s3_cache(tmp_path, s3_bucket="Not A Bucket")
    abc_cache = AbcProjectCache.from_cache_dir(tmp_path / "abc_atlas")
    cell = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="cell_metadata").set_index("cell_label")
    gene = abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="gene").set_index("gene_identifier")
    with pytest.raises(DataFormatError, match=r"all_cells has no column\(s\) \['feature_matrix_label'\]"):
        get_gene_data(abc_cache, cell.drop(columns="feature_matrix_label"), gene, ["DRD1"])
    with pytest.raises(TypeError, match="not the string 'DRD1'"):
        get_gene_data(abc_cache, cell, gene, "DRD1")
    with pytest.raises(ParameterError, match="data_type must be"):
        get_gene_data(abc_cache, cell, gene, ["DRD1"], data_type="cpm")
    with pytest.raises(ParameterError, match=r"pandas.read_csv\(cell_metadata.csv"):
        abc_cache.get_metadata_dataframe(directory=ALIGNED, file_name="cell_metadata", usecols=["no_such_column"])


def test_per_species_matrices_are_read_with_their_own_identifiers(cache):
    # human: Ensembl ids; macaque and marmoset: NCBI Gene ids (the per-species gene tables of HMBA-10xMultiome-BG)
    per_species = "HMBA-10xMultiome-BG"
    cells = cache.get_metadata_dataframe(per_species, "cell_metadata").set_index("cell_label")
    human_cells = cells[cells["feature_matrix_label"] == "HMBA-10xMultiome-BG-Human"]
    human_genes = cache.get_metadata_dataframe(per_species, "human_gene").set_index("gene_identifier")
    assert human_genes.index.str.startswith("ENSG").all()
    data = get_gene_data(cache, human_cells, human_genes, ["DRD1", "PPP1R1B"], data_type="raw")
    expected = cache.read_expression(per_species, matrix="HMBA-10xMultiome-BG-Human", normalization="raw",
                                     genes=["DRD1", "PPP1R1B"]).to_df()
    expected.columns = ["DRD1", "PPP1R1B"]
    common = expected.index.intersection(data.index, sort=False)  # the matrix also holds cells without metadata rows
    assert len(common) == len(human_cells)
    np.testing.assert_array_equal(data.loc[common].to_numpy(), expected.loc[common].to_numpy())
    # the human table applied to macaque cells is refused, naming the matrix and the table to use instead
    with pytest.raises(DataFormatError, match=r"HMBA-10xMultiome-BG-Macaque matrix .*NCBIGene.*macaque_gene"):
        get_gene_data(cache, cells, human_genes, ["DRD1"], data_type="raw")


def test_an_unknown_release_names_the_releases_there_are(mirror, tmp_path):
    abc_cache = AbcProjectCache.from_cache_dir(tmp_path / "abc_atlas")
    with pytest.raises(ManifestError, match=r"release 'releases/20990101/manifest.json' is not in the bucket .*20251031"):
        abc_cache.load_manifest("releases/20990101/manifest.json")
    assert abc_cache.current_manifest == LATEST  # nothing switched
