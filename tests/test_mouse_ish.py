"""Mouse ISH grids and the ontology on the real Allen fixture files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.datasets import demo_ground_truth, fetch_demo_mouse_ish
from hmba_toolkit.errors import DataFormatError
from hmba_toolkit.io import read_ish_grid, read_ontology, write_ish_grid
from hmba_toolkit.mouse import unionize_genes


@pytest.fixture(scope="module")
def mouse(fixtures_dir):
    d = fixtures_dir / "mouse_ish"
    return {
        "nrp1": read_ish_grid(d / "Nrp1_P56_coronal_74272479_200um" / "energy.mhd"),
        "pdyn": read_ish_grid(d / "Pdyn_P56_coronal_71717084_200um" / "energy.mhd"),
        "ann": read_ish_grid(d / "P56_Mouse_gridAnnotation" / "gridAnnotation.mhd"),
        "tree": read_ontology(d / "allen_structure_tree.csv"),
        "dir": d,
    }


def test_grid_shapes_types_and_missing_values(mouse):
    nrp1, ann = mouse["nrp1"], mouse["ann"]
    assert nrp1.shape == ann.shape == (67, 41, 58)
    assert nrp1.dtype == np.float32 and ann.dtype == np.uint32
    # counts documented for the real Nrp1 file: 54,982 no-data voxels, 8,187 zeros, max 25.9
    assert int(np.isnan(nrp1).sum()) == 54982
    assert int((nrp1 == 0).sum()) == 8187
    assert np.nanmax(nrp1) == pytest.approx(25.9, abs=0.05)
    assert int((ann > 0).sum()) == 62529 and len(np.unique(ann[ann > 0])) == 649
    # x is the file's fastest axis: element 1 of the raw file is grid[1, 0, 0]
    raw = np.fromfile(mouse["dir"] / "Nrp1_P56_coronal_74272479_200um" / "energy.raw", "<f4")
    k = 1 + 67 * 2 + 67 * 41 * 3
    expect = raw[k] if raw[k] != -1 else np.nan
    np.testing.assert_equal(nrp1[1, 2, 3], expect)
    # the brain is left-right symmetric across z, not across x (x is anterior-posterior)
    brain = ann > 0
    assert (brain == brain[:, :, ::-1]).mean() > 0.97
    assert (brain == brain[::-1, :, :]).mean() < 0.9


def test_ontology_queries(mouse):
    tree = mouse["tree"]
    cp = tree.id_of("CP")
    assert tree.get("CP")["name"] == "Caudoputamen"
    assert tree.id_of("STR") in tree.ancestors("CP") and tree.ancestors("CP")[0] == 997
    assert cp in tree.descendants("STR") and cp not in tree.descendants("Isocortex")
    assert tree.parent("root") is None and "XYZ" not in tree


def test_header_validation_names_the_file(tmp_path, mouse):
    src = mouse["dir"] / "Nrp1_P56_coronal_74272479_200um"
    (tmp_path / "energy.raw").write_bytes((src / "energy.raw").read_bytes()[:-4])
    (tmp_path / "energy.mhd").write_text((src / "energy.mhd").read_text())
    with pytest.raises(DataFormatError, match="energy.mhd.*bytes"):
        read_ish_grid(tmp_path / "energy.mhd")
    (tmp_path / "bad.mhd").write_text("NDims = 3\nDimSize = 67 41 58\n")
    with pytest.raises(DataFormatError, match="bad.mhd.*lacks"):
        read_ish_grid(tmp_path / "bad.mhd")


def test_write_round_trip_and_zip(tmp_path, mouse):
    for target in (tmp_path / "energy.mhd", tmp_path / "grid.zip"):
        write_ish_grid(target, mouse["nrp1"])
        np.testing.assert_array_equal(read_ish_grid(target), mouse["nrp1"])
    write_ish_grid(tmp_path / "ann.mhd", mouse["ann"])
    np.testing.assert_array_equal(read_ish_grid(tmp_path / "ann.mhd"), mouse["ann"])


def test_demo_grids_plant_striatal_genes(mouse):
    root = fetch_demo_mouse_ish()
    sds = pd.read_csv(root / "section_data_sets.csv")
    assert len(sds) >= 200 and {74272479, 71717084} <= set(sds["id"])
    ann = read_ish_grid(root / "P56_Mouse_gridAnnotation" / "gridAnnotation.mhd")
    np.testing.assert_array_equal(ann, mouse["ann"])
    tree = read_ontology(root / "structure_tree.csv")
    striatal = set(pd.read_csv(demo_ground_truth().parent.parent / "mouse_ish" / "ground_truth" / "mouse_ish_striatal_genes.csv")["gene_acronym"])
    grids = {r.gene_acronym: read_ish_grid(root / "grids" / f"{r.id}.zip") for r in sds.itertuples()}
    m = unionize_genes(grids, ann, tree, structures=["CP", "Isocortex"])
    contrast = m.loc["CP"] - m.loc["Isocortex"]
    top = set(contrast.sort_values(ascending=False).index[: len(striatal)])
    assert len(top & striatal) >= len(striatal) - 1


def test_demo_grids_are_continuous_and_vary_within_structures(mouse):
    """Not blocky: many distinct values, structures of one division differ, left and right differ a little."""
    root = fetch_demo_mouse_ish()
    sds = pd.read_csv(root / "section_data_sets.csv")
    ann = mouse["ann"]
    tree = read_ontology(root / "structure_tree.csv")
    grid = read_ish_grid(root / "grids" / f"{sds['id'].iloc[0]}.zip").astype(np.float64)
    valid = np.isfinite(grid) & (grid >= 0) & (ann > 0)
    assert np.unique(grid[valid]).size > 200  # the old blocky demo had a few dozen
    ca1, dg = tree.mask(ann, "CA1") & valid, tree.mask(ann, "DG") & valid
    assert abs(grid[ca1].mean() - grid[dg].mean()) > 1e-3
    assert grid[ca1].std() > 0.05 * grid[ca1].mean()  # within-structure variation
    half = ann.shape[2] // 2
    left, right = grid[:, :, :half], grid[:, :, ann.shape[2] - half:][:, :, ::-1]
    both = np.isfinite(left) & np.isfinite(right) & (left >= 0) & (right >= 0)
    assert not np.allclose(left[both], right[both])
