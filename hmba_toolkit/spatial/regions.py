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

from ..errors import DataFormatError, MissingFileError, ParameterTypeError

__all__ = ["read_region_polygons", "read_section_polygons", "assign_cells_to_regions", "assign_cells_by_plane", "PARCELLATION_ORDER"]

#: The release's column order of ``cell_anatomical_annotations``; a cell in several regions
#: takes the last one in this order that contains it (Allen's single-label rule).
PARCELLATION_ORDER = ("Basal ganglia and adjacent", "STR", "GP", "GPe", "GPi", "VeP", "SN", "STH")


def read_region_polygons(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a slab plane's GeoJSON: ``{label: [ring (n x 2 array), ...]}`` (outer rings only).

    Accepts ``Polygon``, ``MultiPolygon`` and ``GeometryCollection`` geometries.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist (a slab plane's region polygons, GeoJSON)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not valid GeoJSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise DataFormatError(f"{path}: expected a FeatureCollection, got {kind!r}")
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

    try:
        for n, feat in enumerate(doc.get("features", [])):
            label = (feat.get("properties") or {}).get("label")
            if label is None:
                raise DataFormatError(f"{path}: feature {n} has no properties.label")
            out.setdefault(str(label), []).extend(rings(feat["geometry"]))
    except (AttributeError, KeyError, TypeError, IndexError, ValueError) as exc:
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(f"{path}: a feature is not a labelled polygon ({type(exc).__name__}: {exc})") from None
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


def read_section_polygons(cache, directory: str, planes: Sequence[str] | None = None) -> dict[str, dict[str, list[np.ndarray]]]:
    """The region polygons of every slab plane of a spatial set: ``{slab_plane_label: {label: rings}}``.

    ``cache`` is an :class:`hmba_toolkit.io.AbcCache`; ``planes`` defaults to every GeoJSON file the set lists
    among its image volumes.

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> polygons = read_section_polygons(cache, "HMBA-MERSCOPE-H22.30.001-BG")
    >>> len(polygons), "STR" in next(iter(polygons.values()))
    (5, True)
    """
    names = list(planes) if planes is not None else sorted(cache.list_image_volume_files(directory))
    return {name: read_region_polygons(cache.get_file_path(directory, name)) for name in names}


def assign_cells_by_plane(
    cells: pd.DataFrame,
    polygons: dict[str, dict[str, list[np.ndarray]]],
    *,
    plane_column: str = "slab_plane_label",
    x: str = "x_slab_mm",
    y: str = "y_slab_mm",
    outside: str = "Basal ganglia and adjacent",
) -> pd.Series:
    """One region label per cell of a spatial cell table, each cell tested against its own plane's polygons.

    Parameters
    ----------
    cells
        A spatial cell table (e.g. ``AbcCache.cell_table("HMBA-MERSCOPE-H22.30.001-BG")``) with the plane and
        slab-coordinate columns.
    polygons
        ``{plane: {label: rings}}`` from :func:`read_section_polygons`.

    Returns
    -------
    pandas.Series
        Indexed like ``cells``, named ``parcellation_term_symbol``; ``outside`` for cells in no polygon, NaN for
        cells of a plane without polygons.

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> cells = cache.cell_table("HMBA-MERSCOPE-H22.30.001-BG")
    >>> assigned = assign_cells_by_plane(cells, read_section_polygons(cache, "HMBA-MERSCOPE-H22.30.001-BG"))
    >>> bool((assigned == cells["parcellation_term_symbol"]).mean() > 0.95)
    True
    """
    if not isinstance(cells, pd.DataFrame):
        raise ParameterTypeError(f"cells must be a cell table (DataFrame), not {type(cells).__name__}")
    missing = [c for c in (plane_column, x, y) if c not in cells.columns]
    if missing:
        raise DataFormatError(f"cells has no column(s) {missing}; pass plane_column=, x=, y= for other names")
    out = pd.Series(np.nan, index=cells.index, dtype=object, name="parcellation_term_symbol")
    for plane, rows in cells.groupby(plane_column, sort=True, observed=True):
        if plane in polygons:
            got = assign_cells_to_regions(rows[x], rows[y], polygons[plane], outside=outside)
            out.loc[rows.index] = got["parcellation_term_symbol"].to_numpy()
    return out
