"""The embedded demo release: real layout, verifiable manifest, planted ground truth."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit._files import md5sum
from hmba_toolkit.datasets import demo_ground_truth
from hmba_toolkit.io import read_h5ad_obs_names, read_h5ad_subset
from hmba_toolkit.io.manifest import Manifest

ALIGNED = "HMBA-10xMultiome-BG-Aligned"
HUMAN_SPATIAL = "HMBA-MERSCOPE-H22.30.001-BG"


def test_every_file_passes_its_manifest_md5(demo_root, cache):
    listed = set()
    for name in cache.list_all_downloaded_manifests:
        entries = Manifest.from_path(demo_root / name).entries()
        assert len(entries) > 60
        for e in entries:
            p = demo_root / e.relative_path
            assert p.stat().st_size == e.size, e.relative_path
            assert md5sum(p) == e.md5, e.relative_path
        listed |= {e.relative_path for e in entries}
    on_disk = {p.relative_to(demo_root).as_posix() for kind in ("metadata", "expression_matrices", "image_volumes", "mapmycells")
               for p in (demo_root / kind).rglob("*") if p.is_file()}
    assert on_disk == listed  # every file belongs to a release, and every listed file exists


def test_covers_every_hmba_directory(cache, demo_root):
    assert cache.current_manifest == "releases/20260228/manifest.json"
    assert cache.list_directories == sorted([
        "HMBA-10xMultiome-BG", ALIGNED, "HMBA-BG-taxonomy-CCN20250428", "HMBA-Macaque-PatchSeq",
        HUMAN_SPATIAL, "HMBA-MERSCOPE-QM23.50.001-BG", "HMBA-Xenium-CJ23.56.004-BG",
    ])
    assert cache.list_metadata_files(ALIGNED) == ["cell_metadata", "donor", "example_gene_expression", "gene", "library", "value_sets"]
    assert cache.list_metadata_files("HMBA-BG-taxonomy") == [
        "abbreviation_term", "cell_2d_embedding_coordinates", "cell_to_cluster_membership", "cluster",
        "cluster_annotation_term", "cluster_annotation_term_set", "cluster_annotation_to_abbreviation_map",
        "cluster_to_cluster_annotation_membership",
    ]
    spatial_tables = ["cell_anatomical_annotations", "cell_metadata", "cell_supplemental_metadata",
                      "cell_to_cluster_membership", "donor", "example_gene_expression", "gene", "mmc_results",
                      "slab_plane_coordinates", "specimen_metadata", "value_sets", "visualization"]
    for directory in (HUMAN_SPATIAL, "HMBA-MERSCOPE-QM23.50.001-BG", "HMBA-Xenium-CJ23.56.004-BG"):
        assert cache.list_metadata_files(directory) == spatial_tables
    assert cache.list_expression_matrix_files(HUMAN_SPATIAL) == ["MERSCOPE-H22.30.001-BG/log2", "MERSCOPE-H22.30.001-BG/raw"]
    assert cache.manifest.directory_versions(HUMAN_SPATIAL) == {
        "metadata": "20260228", "expression_matrices": "20250930", "image_volumes": "20250630"}
    assert cache.list_metadata_files("HMBA-10xMultiome-BG") == [
        "cell_metadata", "donor", "example_human_gene_expression", "example_macaque_gene_expression",
        "example_marmoset_gene_expression", "human_gene", "library", "macaque_gene", "marmoset_gene", "value_sets"]
    assert cache.list_metadata_files("HMBA-Macaque-PatchSeq") == [
        "ap_features", "cell_metadata", "cell_to_cluster_membership", "chirp_features", "cross_sweep_long_square_features",
        "donor", "gene", "library", "mmc_results", "morphology_features", "sweep_features", "value_sets"]
    assert cache.list_expression_matrix_files("HMBA-Macaque-PatchSeq") == ["HMBA-Macaque-PatchSeq-BG/log2"]
    # the older public release lacks Patch-seq; the later one renames two directories
    old = Manifest.from_path(demo_root / "releases/20251031/manifest.json")
    assert "HMBA-Macaque-PatchSeq" not in old.directories
    later = Manifest.from_path(demo_root / "releases/20261031/manifest.json")
    assert {"HMBA-10xMultiome-BG-Cross-Species", "HMBA-BG-taxonomy"} <= set(later.directories)
    assert not {ALIGNED, "HMBA-BG-taxonomy-CCN20250428"} & set(later.directories)


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
    # every cell of cell_metadata has an annotated cluster; marmoset libraries are whole-brain 'Br'
    assert cells["Cluster"].notna().all()
    assert set(cells["donor_age_unit"]) == {"years"}
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
    polygons = json.loads(cache.get_file_path(HUMAN_SPATIAL, "H22.30.001.CX.19.Plane.07").read_text())
    assert {f["properties"]["label"] for f in polygons["features"]} == {"STR", "GPe", "GPi", "VeP"}
    # Adjacent cells are encoded as the release encodes them: a cluster outside the taxonomy, or no row at all
    membership = cache.get_metadata_dataframe(HUMAN_SPATIAL, "cell_to_cluster_membership").set_index("cell_label")
    adjacent = cells.index[cells["Neighborhood"] == "Adjacent"]
    has_row = adjacent.isin(membership.index)
    assert 0 < has_row.mean() < 1
    assert not membership.loc[adjacent[has_row], "cluster_alias"].isin(cache.taxonomy().index).any()
    assert (cells.loc[adjacent, "cluster_alias"] != "").all() and cells.loc[adjacent, "cluster_alias"].notna().all()


def test_generation_is_deterministic(tmp_path, demo_root):
    """Generated again in a fresh process (on x86-64 under another BLAS kernel than the cached demo's), every file of
    every release is the same byte for byte. A failure names the files and the first line that differs (on CI the
    macaque MERSCOPE set once differed between the two processes of one run)."""
    env = dict(os.environ)
    if platform.machine().lower() in ("x86_64", "amd64"):
        env["OPENBLAS_CORETYPE"] = "Prescott" if env.get("OPENBLAS_CORETYPE") != "Prescott" else "Haswell"
    code = ("import sys, pathlib; from hmba_toolkit.datasets import _abc_demo; "
            "_abc_demo.generate(*map(pathlib.Path, sys.argv[1:]))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "abc"), str(tmp_path / "truth")], env=env, check=True)
    differing = []
    md5s = lambda root, release: {e.relative_path: e.md5  # noqa: E731
                                  for e in Manifest.from_path(root / f"releases/{release}/manifest.json").entries()}
    for release in ("20251031", "20260228", "20261031"):
        ours, shipped = md5s(tmp_path / "abc", release), md5s(demo_root, release)
        assert sorted(ours) == sorted(shipped)
        differing += [path for path in sorted(ours) if ours[path] != shipped[path]]
    first_lines = {}
    for path in differing[:5]:
        if path.endswith(".csv"):
            a = (tmp_path / "abc" / path).read_text().splitlines()
            b = (demo_root / path).read_text().splitlines()
            first_lines[path] = next(((i, x, y) for i, (x, y) in enumerate(zip(a, b)) if x != y), (len(a), len(b)))
    assert not differing, (differing, first_lines)


def test_labels_allen_notebooks_use_literally(cache):
    """Slab planes, section label forms and value sets as Allen's HMBA notebooks address them."""
    planes = {
        HUMAN_SPATIAL: ["H22.30.001.CX.16.Plane.07", "H22.30.001.CX.17.Plane.07", "H22.30.001.CX.19.Plane.07",
                        "H22.30.001.CX.20.Plane.03", "H22.30.001.CX.20.Plane.05"],
        "HMBA-MERSCOPE-QM23.50.001-BG": ["QM23.50.001.CX.42.Plane.03", "QM23.50.001.CX.43.Plane.07",
                                         "QM23.50.001.CX.44.Plane.05", "QM23.50.001.CX.45.Plane.05", "QM23.50.001.CX.46.Plane.05"],
        "HMBA-Xenium-CJ23.56.004-BG": ["CJ23.56.004.CX.42.Plane.05", "CJ23.56.004.CX.42.Plane.13",
                                       "CJ23.56.004.CX.43.Plane.05", "CJ23.56.004.CX.43.Plane.15", "CJ23.56.004.CX.44.Plane.03"],
    }
    for directory, labels in planes.items():
        for label in labels:
            assert cache.get_file_path(directory, label).suffix == ".geojson"
        coords = cache.get_metadata_dataframe(directory, "slab_plane_coordinates")
        assert sorted(coords["slab_plane_label"].unique()) == sorted(labels)
        spec = cache.get_metadata_dataframe(directory, "specimen_metadata")
        pattern = r"^CJ23\.56\.004\.CX\.\d\d\.\d\d\.\d\d$" if "Xenium" in directory else r"^[HQ]\w+\.\d\d\.\d{3}\.CX\.\d\d\.\d\d\.\d\d\.\d\d$"
        assert spec["brain_section_label"].str.match(pattern).all(), spec["brain_section_label"].tolist()
        if "Xenium" in directory:
            assert (spec["brain_block_label"] == spec["brain_slab_label"]).all()
            assert set(spec["brain_section_plane_of_section"]) == {"coronal (rostral to caudal)"}
        else:
            assert spec["brain_block_label"].str.match(r"^.*\.CX\.\d\d\.\d\d$").all()
        meta = cache.get_metadata_dataframe(directory, "cell_metadata")
        assert (meta["feature_matrix_label"] == directory.removeprefix("HMBA-")).all()
    vs = cache.get_metadata_dataframe(ALIGNED, "value_sets")
    regions = vs[vs["field"] == "region_of_interest_label"].set_index("label")
    assert len(regions) == 20 and regions.loc["GPe", "order"] == 15
    species = set(vs.loc[vs["field"] == "species_scientific_name", "label"])
    assert species == {"Homo sapiens", "Macaca mulatta", "Macaca nemestrina", "Callithrix jacchus"}


def test_taxonomy_term_order_as_released(cache):
    terms = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cluster_annotation_term")
    order = terms.set_index(["cluster_annotation_term_set_name", "name"])["term_order"]
    assert [order["Neighborhood", n] for n in ("Nonneuron", "Glut Sero Dopa", "Subpallium GABA", "Subpallium GABA-Glut")] == [1, 2, 3, 4]
    assert order["Class", "Astro-Epen"] == 1 and order["Class", "CN LGE GABA"] == 10 and order["Class", "Vascular"] == 4
    assert order["Subclass", "STR D2 MSN"] == 32 and order["Subclass", "Pericyte"] == 11
    assert order["Group", "STRd D2 Striosome MSN"] == 55 and order["Group", "Pericyte"] == 15
    clusters = order["Cluster"]
    assert clusters["Human-143"] == 0 and clusters["Human-145"] == 1 and clusters.min() == 0
    assert sorted(clusters) == list(range(1435))


def test_membership_rows_without_annotation_are_outside_cell_metadata(cache):
    """As in the release: the 10X membership holds clusters the taxonomy does not annotate (Allen filters them with
    ``isin``); every cell of cell_metadata is in an annotated cluster."""
    membership = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cell_to_cluster_membership")
    terms = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cluster_annotation_term")
    annotated = membership["cluster_label"].isin(terms["label"])
    assert 0 < (~annotated).sum() < 0.02 * len(membership)
    meta = cache.get_metadata_dataframe(ALIGNED, "cell_metadata")
    assert not membership.loc[~annotated, "cell_label"].isin(meta["cell_label"]).any()
    assert meta["cell_label"].isin(membership.loc[annotated, "cell_label"]).all()


def test_per_species_identifiers(cache):
    tables = {s: cache.get_metadata_dataframe("HMBA-10xMultiome-BG", f"{s}_gene") for s in ("human", "macaque", "marmoset")}
    assert tables["human"]["gene_identifier"].str.match(r"^ENSG\d{11}$").all()
    for s in ("macaque", "marmoset"):
        assert tables[s]["gene_identifier"].str.match(r"^NCBIGene:\d+$").all()
    # the same gene has a different identifier in each species; the symbols link them
    ids = {s: t.set_index("gene_symbol")["gene_identifier"] for s, t in tables.items()}
    shared = set.intersection(*(set(i.index) for i in ids.values()))
    assert {"DRD1", "PPP1R1B", "TAC1", "SLC17A6"} <= shared
    assert len({ids[s]["DRD1"] for s in ids}) == 3
    # each per-species matrix has exactly its gene table's rows, in order (Allen's positional gene mask)
    for s, table in tables.items():
        label = f"HMBA-10xMultiome-BG-{s.capitalize()}"
        x = cache.read_expression("HMBA-10xMultiome-BG", matrix=label, normalization="raw", gene_column=None, cells=None)
        assert x.var_names.tolist() == table["gene_identifier"].tolist()
        meta = cache.get_metadata_dataframe("HMBA-10xMultiome-BG", "cell_metadata")
        assert set(meta.loc[meta["feature_matrix_label"] == label, "cell_label"]) <= set(x.obs_names)


def test_patchseq_tables_and_planted_truth(cache):
    d = "HMBA-Macaque-PatchSeq"
    cells = cache.get_metadata_dataframe(d, "cell_metadata").set_index("cell_label")
    assert cells.index.str.match(r"^Q[MN]\d\d\.\d\d\.\d{3}\.\d\d\.\d\d\.\d\d$").all() and cells.index.is_unique
    assert set(cells["dataset_label"]) == {d} and set(cells["feature_matrix_label"]) == {"HMBA-Macaque-PatchSeq-BG"}
    donors = cache.get_metadata_dataframe(d, "donor")
    assert set(donors["species_scientific_name"]) == {"Macaca mulatta", "Macaca nemestrina"}
    mmc = cache.get_metadata_dataframe(d, "mmc_results")
    assert len(mmc.columns) == 26 and "cluster_alias" in mmc and "Group_bootstrapping_probability" in mmc
    gene = cache.get_metadata_dataframe(d, "gene")
    assert gene["gene_identifier"].str.startswith("NCBIGene:").all()
    assert list(gene.columns[1:]) == ["gene_symbol", "description", "gene_id", "molecular_type", "synonym"]
    ap = cache.get_metadata_dataframe(d, "ap_features").set_index("cell_label")
    morph = cache.get_metadata_dataframe(d, "morphology_features").set_index("cell_label")
    truth = pd.read_csv(demo_ground_truth() / "patchseq_cells.csv", index_col="cell_label")
    j = truth.join(ap).join(morph)
    means = j.groupby("Group")[["width_rheo_ms", "soma_surface_area"]].mean()
    assert means.loc["STR FS PTHLH-PVALB GABA", "width_rheo_ms"] < 0.5 < means.loc["STRd Cholinergic GABA", "width_rheo_ms"]
    assert means.loc["STRd D1 Matrix MSN", "width_rheo_ms"] > means.loc["STRd D2 Matrix MSN", "width_rheo_ms"]
    assert means.loc["STRd D1 Matrix MSN", "soma_surface_area"] > means.loc["STRd D2 Matrix MSN", "soma_surface_area"]
    x = cache.read_expression(d, gene_column="gene_symbol", genes=["DRD1", "DRD2"])
    expr = pd.DataFrame(x.X.toarray(), index=x.obs_names, columns=x.var["gene_symbol"]).join(truth["Group"])
    by = expr.groupby("Group").mean()
    assert by.loc["STRd D1 Matrix MSN", "DRD1"] > by.loc["STRd D2 Matrix MSN", "DRD1"] + 2


def test_spatial_sections_look_like_tissue(cache):
    """Region densities and composition: a dense striatum of MSNs, sparse oligodendrocyte-rich white matter."""
    cells = cache.cell_table(HUMAN_SPATIAL)
    truth = pd.read_csv(demo_ground_truth() / "spatial" / "human_cells.csv", index_col="cell_label")
    j = cells.join(truth[["white_matter"]])
    assert set(j["parcellation_term_symbol"]) >= {"STR", "GPe", "GPi", "VeP", "Basal ganglia and adjacent"}
    msn = j["Subclass"].isin(["STR D1 MSN", "STR D2 MSN"])
    assert msn[j["parcellation_term_symbol"] == "STR"].mean() > 0.5
    assert msn[j["parcellation_term_symbol"] != "STR"].mean() < 0.05
    oligo = j["Subclass"] == "Oligodendrocyte"
    assert oligo[j["white_matter"]].mean() > 0.6
    # GPi appears in the caudal planes only
    per_plane = j.groupby("slab_plane_label")["parcellation_term_symbol"].agg(lambda r: (r == "GPi").any())
    assert per_plane.any() and not per_plane.all()


def test_keys_are_unique(cache):
    for directory, table, key in [(ALIGNED, "cell_metadata", "cell_label"), (ALIGNED, "library", "library_label"),
                                  (ALIGNED, "donor", "donor_label"), ("HMBA-BG-taxonomy-CCN20250428", "cell_to_cluster_membership", "cell_label"),
                                  (HUMAN_SPATIAL, "cell_metadata", "cell_label"), ("HMBA-Macaque-PatchSeq", "cell_metadata", "cell_label")]:
        assert cache.get_metadata_dataframe(directory, table)[key].is_unique, (directory, table)
    assert cache.cell_table(ALIGNED).index.is_unique


def test_the_joins_allen_notebooks_make_are_complete(cache):
    """The joins of Allen's HMBA notebooks, written here in our own code: every key they look up exists.

    10X: cell_metadata + donor + library, then colours and orders looked up in ``value_sets`` for each cell's value
    (a missing value is a KeyError there), then the taxonomy through the membership tables. Spatial: the same for
    ``parcellation_term_symbol``, and a region-polygon file for every slab plane. Patch-seq: cells + donor + library
    + mmc_results + feature tables.
    """
    cells = (cache.get_metadata_dataframe(ALIGNED, "cell_metadata").set_index("cell_label")
             .join(cache.get_metadata_dataframe(ALIGNED, "donor").set_index("donor_label"), on="donor_label")
             .join(cache.get_metadata_dataframe(ALIGNED, "library").set_index("library_label"), on="library_label",
                   rsuffix="_library_table"))
    vs = cache.get_metadata_dataframe(ALIGNED, "value_sets")
    for field in ("region_of_interest_label", "species_genus", "species_scientific_name", "donor_sex"):
        known = set(vs.loc[vs["field"] == field, "label"])
        assert set(cells[field]) <= known, (field, set(cells[field]) - known)
    terms = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cluster_annotation_term")
    membership = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cell_to_cluster_membership").set_index("cell_label")
    membership = membership[membership["cluster_label"].isin(terms["label"])]
    c2c = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cluster_to_cluster_annotation_membership")
    levels = c2c.groupby(["cluster_alias", "cluster_annotation_term_set_name"])["cluster_annotation_term_name"].first().unstack()
    joined = cells.join(membership).join(levels, on="cluster_alias")
    emb = cache.get_metadata_dataframe("HMBA-BG-taxonomy-CCN20250428", "cell_2d_embedding_coordinates").set_index("cell_label")
    assert joined.loc[joined.index.intersection(emb.index), ["Neighborhood", "Class", "Subclass", "Group", "Cluster"]].notna().all().all()
    for directory in (HUMAN_SPATIAL, "HMBA-MERSCOPE-QM23.50.001-BG", "HMBA-Xenium-CJ23.56.004-BG"):
        anat = cache.get_metadata_dataframe(directory, "cell_anatomical_annotations")
        vs = cache.get_metadata_dataframe(directory, "value_sets")
        assert set(anat["parcellation_term_symbol"]) <= set(vs.loc[vs["field"] == "parcellation_term_symbol", "label"])
        coords = cache.get_metadata_dataframe(directory, "slab_plane_coordinates")
        for plane in coords["slab_plane_label"].unique():
            assert cache.get_file_path(directory, plane).is_file()
        spec = cache.get_metadata_dataframe(directory, "specimen_metadata").set_index("brain_section_label")
        meta = cache.get_metadata_dataframe(directory, "cell_metadata")
        assert meta["brain_section_label"].isin(spec.index).all()
    d = "HMBA-Macaque-PatchSeq"
    ps = (cache.get_metadata_dataframe(d, "cell_metadata").set_index("cell_label")
          .join(cache.get_metadata_dataframe(d, "donor").set_index("donor_label"), on="donor_label")
          .join(cache.get_metadata_dataframe(d, "library").set_index("library_label"), on="library_label",
                rsuffix="_library_table")
          .join(cache.get_metadata_dataframe(d, "mmc_results").set_index("cell_label"))
          .join(cache.get_metadata_dataframe(d, "ap_features").set_index("cell_label"))
          .join(cache.get_metadata_dataframe(d, "morphology_features").set_index("cell_label")))
    assert ps["species_genus"].notna().all() and ps["barcoded_cell_sample_technique"].eq("PatchSeq-SmartSeq").all()
    assert ps["cluster_alias"].isin(cache.taxonomy().index).all() and ps["width_rheo"].notna().all()
    assert 0.4 < ps["soma_surface_area"].notna().mean() < 0.8  # morphology for reconstructed cells only


def test_an_unwritable_data_home_is_named(tmp_path, monkeypatch):
    import hmba_toolkit.datasets as datasets
    from hmba_toolkit.errors import HmbaToolkitError

    blocker = tmp_path / "afile"
    blocker.write_text("")
    monkeypatch.setattr(datasets, "data_home", lambda: blocker / "data")  # cannot be created: its parent is a file
    with pytest.raises(HmbaToolkitError, match=r"cannot write the demo data into .*afile/data/demo-v1.*HMBA_TOOLKIT_DATA"):
        datasets.fetch_demo_brainspan()
    monkeypatch.setenv("HMBA_TOOLKIT_DATA", str(blocker))
    from hmba_toolkit._paths import data_home

    with pytest.raises(HmbaToolkitError, match=r"HMBA_TOOLKIT_DATA=.*afile' is a file, not a folder"):
        data_home()


def test_a_damaged_or_missing_local_file_is_named(tmp_path, demo_root):
    import shutil

    from hmba_toolkit.datasets import DEMO_MANIFEST
    from hmba_toolkit.errors import IntegrityError, MissingFileError
    from hmba_toolkit.io import AbcCache

    root = tmp_path / "abc"
    shutil.copytree(demo_root / "releases", root / "releases")
    shutil.copytree(demo_root / "metadata" / "HMBA-BG-taxonomy-CCN20250428", root / "metadata" / "HMBA-BG-taxonomy-CCN20250428")
    local = AbcCache(root, base_url=None, manifest=DEMO_MANIFEST)
    path = root / "metadata" / "HMBA-BG-taxonomy-CCN20250428" / "20250630" / "cluster.csv"  # never verified yet
    data = bytearray(path.read_bytes())
    data[10] ^= 1  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"cluster\.csv: size or md5 does not match .* the local copy is damaged"):
        local.get_metadata_path("HMBA-BG-taxonomy-CCN20250428", "cluster")
    with pytest.raises(MissingFileError, match=r"cell_metadata\.csv is not in the local cache .* local only"):
        local.get_metadata_path("HMBA-10xMultiome-BG-Aligned", "cell_metadata")
