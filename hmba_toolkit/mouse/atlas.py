"""The shipped 200 um mouse reference: the P56 annotation grid and the structure ontology.

Both are real Allen files, shipped with attribution (``hmba_toolkit/datasets/data/README.md``):
the annotation grid ``P56_Mouse_gridAnnotation`` (uint32 structure ids, 67 x 41 x 58 voxels
of 200 um, the grid every ISH energy volume is resampled to) and the adult mouse structure
graph 1 as a flat table (1,327 structures with ``structure_id_path``, ``graph_order`` and
colours). Grids are indexed [x, y, z] as :func:`hmba_toolkit.io.read_ish_grid` returns them:
x anterior -> posterior, y superior -> inferior, z left -> right (ReferenceSpace 9, coronal).

References
----------
Lein ES et al. (2007) Genome-wide atlas of gene expression in the adult mouse brain. Nature
445:168-176. Allen Mouse Brain Atlas API, "Atlas drawings and ontologies"; technical white
paper "Informatics data processing" (grid resampling at 200 um).
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from ..errors import ParameterError, ParameterTypeError
from ..io.mouse_ish import _decode, _parse_header
from ..io.ontology import StructureTree

__all__ = ["GRID_SHAPE", "SPACING_UM", "HEMISPHERES", "MAJOR_DIVISIONS", "load_annotation", "load_ontology", "hemisphere_mask", "relabel"]

#: Shape of the 200 um grids, [x (AP), y (DV), z (LR)].
GRID_SHAPE = (67, 41, 58)
#: Voxel size of the grids in micrometres.
SPACING_UM = 200.0
#: Hemisphere names accepted by :func:`hemisphere_mask` and the unionize functions.
HEMISPHERES = ("both", "left", "right")


def _data_bytes(name: str) -> bytes:
    return resources.files("hmba_toolkit.datasets").joinpath("data", name).read_bytes()


@lru_cache(maxsize=1)
def _annotation() -> np.ndarray:
    header = _parse_header(_data_bytes("P56_Mouse_gridAnnotation.mhd").decode("ascii"), "P56_Mouse_gridAnnotation.mhd")
    grid = _decode(header, gzip.decompress(_data_bytes("P56_Mouse_gridAnnotation.raw.gz")), "P56_Mouse_gridAnnotation.raw")
    grid.setflags(write=False)
    return grid


def load_annotation() -> np.ndarray:
    """The real 200 um P56 annotation grid (uint32 structure ids, 0 outside the brain).

    Returns
    -------
    numpy.ndarray
        Shape (67, 41, 58), indexed [x, y, z] like :func:`hmba_toolkit.io.read_ish_grid`;
        62,529 brain voxels carrying 649 structure ids of the adult mouse ontology. A fresh
        writable copy on every call.

    Examples
    --------
    >>> ann = load_annotation()
    >>> ann.shape, int((ann > 0).sum())
    ((67, 41, 58), 62529)

    References
    ----------
    Allen Institute, ``informatics-archive/current-release/mouse_annotation/P56_Mouse_gridAnnotation.zip``.
    """
    return _annotation().copy()


@lru_cache(maxsize=1)
def load_ontology() -> StructureTree:
    """The adult mouse structure ontology (Allen structure graph 1, 1,327 structures).

    Examples
    --------
    >>> tree = load_ontology()
    >>> tree.get("CP")["name"]
    'Caudoputamen'
    """
    table = pd.read_csv(resources.files("hmba_toolkit.datasets").joinpath("data", "allen_structure_tree.csv"))
    return StructureTree(table, source="hmba_toolkit mouse ontology (allen_structure_tree.csv)")


def hemisphere_mask(shape: tuple[int, int, int], hemisphere: str) -> np.ndarray:
    """Boolean mask of one hemisphere of a coronal-space grid (z is left -> right).

    The midline lies between z = 28 and z = 29 of the 58 columns, so ``"left"`` is
    z < 29 and ``"right"`` is z >= 29; ``"both"`` is everything.

    Examples
    --------
    >>> int(hemisphere_mask((67, 41, 58), "left").sum()) == 67 * 41 * 29
    True
    """
    if hemisphere not in HEMISPHERES:
        raise ParameterError(f"hemisphere must be one of {HEMISPHERES}, not {hemisphere!r}")
    mask = np.ones(shape, dtype=bool)
    if hemisphere != "both":
        mid = shape[2] // 2
        if hemisphere == "left":
            mask[:, :, mid:] = False
        else:
            mask[:, :, :mid] = False
    return mask


#: The twelve major divisions of the adult mouse brain in ontology order (the 200 um grid annotation
#: labels no fiber tracts).
MAJOR_DIVISIONS = ("Isocortex", "OLF", "HPF", "CTXsp", "STR", "PAL", "TH", "HY", "MB", "P", "MY", "CB")


def check_ontology(ontology) -> None:
    """Refuse anything but a :class:`~hmba_toolkit.io.ontology.StructureTree` as ``ontology``."""
    if not isinstance(ontology, StructureTree):
        raise ParameterTypeError(f"ontology must be a StructureTree (load_ontology, io.read_ontology), not {type(ontology).__name__}")


def relabel(
    annotation: np.ndarray | None = None,
    ontology: StructureTree | None = None,
    structures=MAJOR_DIVISIONS,
) -> np.ndarray:
    """Map every voxel to the listed structure whose subtree contains it (0 elsewhere).

    Useful for outlines and coarse maps: ``relabel()`` gives the major divisions. When the
    listed structures nest, the deeper one wins.

    Returns
    -------
    numpy.ndarray
        Same shape as ``annotation``, int64 structure ids of ``structures`` or 0.

    Examples
    --------
    >>> div = relabel()
    >>> tree = load_ontology()
    >>> int(div[load_annotation() == tree.id_of("CP")][0]) == tree.id_of("STR")
    True
    """
    annotation = load_annotation() if annotation is None else np.asarray(annotation)
    ontology = load_ontology() if ontology is None else ontology
    check_ontology(ontology)
    ids = [ontology.id_of(s) for s in structures]
    out = np.zeros(annotation.shape, dtype=np.int64)
    for sid in sorted(ids, key=lambda s: len(ontology.ancestors(s))):
        out[ontology.mask(annotation, sid)] = sid
    return out
