"""Spatial sections of the HMBA-BG release: where cells are, and which cell types sit next to which.

- :mod:`~hmba_toolkit.spatial.geometry`: :class:`Geometry`, the one object for a set of locations (labels, sections,
  coordinates or distances, checked once, distances and neighbours cached), taken by every function that needs "where".
- :mod:`~hmba_toolkit.spatial.regions`: the slab planes' region polygons and the assignment of cells to regions.
- :mod:`~hmba_toolkit.spatial.neighborhood`: neighbourhood enrichment of cell types on a kNN graph built within
  each section (exact moments of the relabelling null), and co-occurrence by distance.
"""

from __future__ import annotations

from .geometry import Geometry, Neighbors, as_geometry
from .neighborhood import NEIGHBORHOOD_COLUMNS, co_occurrence, neighborhood_enrichment, neighborhood_graph
from .regions import (PARCELLATION_ORDER, assign_cells_by_plane, assign_cells_to_regions, read_region_polygons,
                      read_section_polygons)

__all__ = ["Geometry", "Neighbors", "as_geometry", "read_region_polygons", "read_section_polygons", "assign_cells_to_regions", "assign_cells_by_plane",
           "PARCELLATION_ORDER", "neighborhood_enrichment", "neighborhood_graph", "co_occurrence", "NEIGHBORHOOD_COLUMNS"]
