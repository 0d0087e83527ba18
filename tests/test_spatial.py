"""Region polygons of the spatial slabs and cell-to-region assignment."""

from __future__ import annotations

import json

import pytest

from hmba_toolkit.errors import DataFormatError
from hmba_toolkit.spatial import assign_cells_to_regions, read_region_polygons

HUMAN = "HMBA-MERSCOPE-H22.30.001-BG"


def test_assignment_reproduces_the_release_annotations(cache):
    cells = cache.cell_table(HUMAN)
    agree = []
    for plane in sorted(cells["slab_plane_label"].unique()):
        polys = read_region_polygons(cache.get_file_path(HUMAN, plane))
        sub = cells[cells["slab_plane_label"] == plane]
        assert set(polys) == {"STR", "GPe", "VeP"} | ({"GPi"} if (sub["parcellation_term_symbol"] == "GPi").any() else set())
        got = assign_cells_to_regions(sub["x_slab_mm"], sub["y_slab_mm"], polys)
        agree.append((got["parcellation_term_symbol"].to_numpy() == sub["parcellation_term_symbol"].to_numpy()).mean())
    # the polygons are 48-gon approximations of the regions the cells were simulated in
    assert min(agree) >= 0.98, agree


def test_precedence_geometry_types_and_errors(tmp_path):
    square = [[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]
    inner = [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1], [0.5, 0.5]]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "GP"}, "geometry": {"type": "Polygon", "coordinates": [square]}},
        {"type": "Feature", "properties": {"label": "GPe"}, "geometry": {"type": "GeometryCollection", "geometries": [
            {"type": "Polygon", "coordinates": [inner]}]}},
    ]}
    p = tmp_path / "plane.geojson"
    p.write_text(json.dumps(doc))
    polys = read_region_polygons(p)
    out = assign_cells_to_regions([0.7, 1.5, 5.0], [0.7, 1.5, 5.0], polys)
    assert out["parcellation_term_symbol"].tolist() == ["GPe", "GP", "Basal ganglia and adjacent"]
    assert out["GP"].tolist() == [True, True, False] and out["GPe"].tolist() == [True, False, False]
    p.write_text(json.dumps({"type": "Feature"}))
    with pytest.raises(DataFormatError, match="plane.geojson: expected a FeatureCollection"):
        read_region_polygons(p)
