"""Spatial sections of the HMBA-BG release: region polygons and cell-to-region assignment.

Each slab plane of a MERSCOPE/Xenium set has a GeoJSON file (``image_volumes`` kind) of
manually drawn region polygons (``properties.label`` = ``STR``, ``GPe``, ``GPi``, ``VeP``,
``SN``, ``STH``...) in the slab-plane coordinate system (millimetres), the same system as
``x_slab_mm`` / ``y_slab_mm`` of ``slab_plane_coordinates.csv``.

Reference: Allen Institute, HMBA-BG spatial description and ``hmba_bg_spatial_slabs_and_taxonomy``
notebook (the polygons "should be used as cellular groupings"); Hewitt et al. 2026, Cell.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.path import Path as MplPath

from .errors import DataFormatError

__all__ = ["read_region_polygons", "assign_cells_to_regions", "PARCELLATION_ORDER"]

#: The release's column order of ``cell_anatomical_annotations``; a cell in several regions
#: takes the last one in this order that contains it (Allen's single-label rule).
PARCELLATION_ORDER = ("Basal ganglia and adjacent", "STR", "GP", "GPe", "GPi", "VeP", "SN", "STH")


def read_region_polygons(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a slab plane's GeoJSON: ``{label: [ring (n x 2 array), ...]}`` (outer rings only).

    Accepts ``Polygon``, ``MultiPolygon`` and ``GeometryCollection`` geometries.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid GeoJSON ({exc})") from exc
    if doc.get("type") != "FeatureCollection":
        raise DataFormatError(f"{path}: expected a FeatureCollection, got {doc.get('type')!r}")
    out: dict[str, list[np.ndarray]] = {}

    def rings(geom):
        kind = geom.get("type")
        if kind == "Polygon":
            yield np.asarray(geom["coordinates"][0], dtype=float)
        elif kind == "MultiPolygon":
            for poly in geom["coordinates"]:
                yield np.asarray(poly[0], dtype=float)
        elif kind == "GeometryCollection":
            for g in geom.get("geometries", []):
                yield from rings(g)
        else:
            raise DataFormatError(f"{path}: unsupported geometry {kind!r}")

    for n, feat in enumerate(doc.get("features", [])):
        label = (feat.get("properties") or {}).get("label")
        if label is None:
            raise DataFormatError(f"{path}: feature {n} has no properties.label")
        out.setdefault(str(label), []).extend(rings(feat["geometry"]))
    return out


def assign_cells_to_regions(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    polygons: dict[str, list[np.ndarray]],
    *,
    outside: str = "Basal ganglia and adjacent",
    order: Sequence[str] = PARCELLATION_ORDER,
) -> pd.DataFrame:
    """Which region polygon(s) contain each cell, and one label per cell.

    Parameters
    ----------
    x, y
        Cell coordinates in the polygons' system (``x_slab_mm``, ``y_slab_mm``).
    polygons
        From :func:`read_region_polygons`.
    outside
        Label of cells in no polygon.
    order
        Precedence for cells in several polygons: the last label in ``order`` wins (``GPe``
        over ``GP``), as in the release's ``parcellation_term_symbol``.

    Returns
    -------
    pandas.DataFrame
        One boolean column per polygon label and ``parcellation_term_symbol``.

    Examples
    --------
    >>> polys = {"STR": [np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])]}
    >>> assign_cells_to_regions([0.5, 2.0], [0.5, 2.0], polys)["parcellation_term_symbol"].tolist()
    ['STR', 'Basal ganglia and adjacent']
    """
    pts = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    flags = {}
    for label, rs in polygons.items():
        inside = np.zeros(len(pts), bool)
        for ring in rs:
            inside |= MplPath(ring).contains_points(pts)
        flags[label] = inside
    out = pd.DataFrame(flags)
    rank = {lab: i for i, lab in enumerate(order)}
    labels = np.full(len(pts), outside, dtype=object)
    best = np.full(len(pts), -1)
    for label in sorted(flags, key=lambda lab: rank.get(lab, len(rank))):
        r = rank.get(label, len(rank))
        take = flags[label] & (r >= best)
        labels[take] = label
        best[take] = r
    out["parcellation_term_symbol"] = labels
    return out
