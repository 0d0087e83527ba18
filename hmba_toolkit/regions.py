"""Summaries of 3-D expression volumes by brain structure.

A structure's value is the mean over every voxel annotated with the structure or any of
its descendants in the ontology, ignoring voxels without data (NaN), the way the Allen
"StructureUnionize" summaries pool a structure's subtree.

Reference: Lein et al. 2007; Allen Mouse Brain Atlas API, "Quantified data by structures".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import DataFormatError
from .io.ontology import StructureTree

__all__ = ["structure_means"]


def structure_means(
    volumes: np.ndarray | dict[str, np.ndarray],
    annotation: np.ndarray,
    ontology: StructureTree,
    structures: Sequence[int | str],
) -> pd.DataFrame:
    """Mean expression per structure (subtree-pooled) for one or many grids.

    Parameters
    ----------
    volumes
        One grid, or ``{gene: grid}``; each shaped like ``annotation`` with NaN = no data.
    annotation
        The annotation grid of structure ids (uint32), indexed [x, y, z].
    ontology
        The structure tree the annotation ids belong to.
    structures
        Structure ids or acronyms.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``gene, structure_id, acronym, mean, n_voxels`` (voxels with data).

    Examples
    --------
    >>> structure_means({"Pdyn": grid}, annotation, tree, ["CP", "ACB"])  # doctest: +SKIP
    """
    if not isinstance(volumes, dict):
        volumes = {"value": volumes}
    rows = []
    masks = {s: ontology.mask(annotation, s) for s in structures}
    for gene, grid in volumes.items():
        if grid.shape != annotation.shape:
            raise DataFormatError(f"grid {gene!r} has shape {grid.shape}, the annotation {annotation.shape}")
        for s, m in masks.items():
            vals = grid[m]
            vals = vals[~np.isnan(vals)]
            rows.append({
                "gene": gene, "structure_id": ontology.id_of(s), "acronym": str(ontology.get(s)["acronym"]),
                "mean": float(vals.mean()) if vals.size else np.nan, "n_voxels": int(vals.size),
            })
    return pd.DataFrame(rows)
