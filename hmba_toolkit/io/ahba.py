"""Readers for the Allen Human Brain Atlas microarray donor folders.

Each donor download (``normalized_microarray_donor<uid>/``) holds ``MicroarrayExpression.csv``
and ``PACall.csv`` (no header; first column probe id, then one column per sample in the
row order of ``SampleAnnot.csv``), ``Probes.csv``, ``SampleAnnot.csv`` and ``Ontology.csv``.
Samples are numbered 1..S in ``SampleAnnot`` order, as abagen does.

Reference: Hawrylycz et al. 2012, Nature 489:391; Allen Human Brain Atlas technical white
paper "Microarray data normalization"; Markello et al. 2021 eLife (abagen).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataFormatError, MissingFileError
from .ontology import StructureTree

__all__ = ["AhbaDonor", "read_ahba_donor", "read_ahba_donors", "PROBE_COLUMNS", "ANNOT_COLUMNS", "ONTOLOGY_COLUMNS"]

PROBE_COLUMNS = ["probe_id", "probe_name", "gene_id", "gene_symbol", "gene_name", "entrez_id", "chromosome"]
ANNOT_COLUMNS = ["structure_id", "slab_num", "well_id", "slab_type", "structure_acronym", "structure_name", "polygon_id",
                 "mri_voxel_x", "mri_voxel_y", "mri_voxel_z", "mni_x", "mni_y", "mni_z"]
ONTOLOGY_COLUMNS = ["id", "acronym", "name", "parent_structure_id", "hemisphere", "graph_order", "structure_id_path", "color_hex_triplet"]


@dataclass
class AhbaDonor:
    """One AHBA donor: probes x samples expression and PA calls with their annotations."""

    donor: str
    microarray: pd.DataFrame  # probes (index probe_id) x samples (columns sample_id 1..S)
    pacall: pd.DataFrame
    probes: pd.DataFrame  # index probe_id
    annotation: pd.DataFrame  # index sample_id 1..S
    ontology: StructureTree

    @property
    def n_samples(self) -> int:
        return self.microarray.shape[1]


def _check_columns(df: pd.DataFrame, expected: list[str], path: Path) -> None:
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing}")


def read_ahba_donor(folder: str | os.PathLike) -> AhbaDonor:
    """Read one ``normalized_microarray_donor<uid>`` folder.

    Returns
    -------
    AhbaDonor
        ``microarray`` and ``pacall`` as probes x samples (``probe_id`` index, sample
        columns numbered from 1), ``probes`` indexed by ``probe_id`` (``entrez_id`` as
        nullable ``Int64``), ``annotation`` indexed by ``sample_id``, and the ontology tree.

    Raises
    ------
    DataFormatError
        Naming the file when a column is missing, or when the expression matrix does not
        have one column per annotated sample and one row per probe.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_ahba
    >>> donor = read_ahba_donor(fetch_demo_ahba() / "normalized_microarray_donor9861")
    >>> donor.microarray.shape[1] == len(donor.annotation)
    True
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: not a directory")
    paths = {n: folder / f"{n}.csv" for n in ("MicroarrayExpression", "PACall", "Probes", "SampleAnnot", "Ontology")}
    for p in paths.values():
        if not p.is_file():
            raise DataFormatError(f"{p}: missing from the donor folder")
    probes = pd.read_csv(paths["Probes"], dtype={"entrez_id": "Int64"})
    _check_columns(probes, PROBE_COLUMNS, paths["Probes"])
    probes = probes.set_index("probe_id")
    annot = pd.read_csv(paths["SampleAnnot"])
    _check_columns(annot, ANNOT_COLUMNS, paths["SampleAnnot"])
    annot.index = pd.RangeIndex(1, len(annot) + 1, name="sample_id")
    ontology = pd.read_csv(paths["Ontology"])
    _check_columns(ontology, ONTOLOGY_COLUMNS, paths["Ontology"])
    frames = {}
    for name in ("MicroarrayExpression", "PACall"):
        df = pd.read_csv(paths[name], header=None, index_col=0)
        if df.shape != (len(probes), len(annot)):
            raise DataFormatError(
                f"{paths[name]}: shape {df.shape}, expected (probes in Probes.csv, samples in SampleAnnot.csv) = "
                f"{(len(probes), len(annot))}"
            )
        if not df.index.equals(probes.index):
            raise DataFormatError(f"{paths[name]}: probe ids (first column) differ from Probes.csv")
        df.index.name = "probe_id"
        df.columns = pd.RangeIndex(1, len(annot) + 1, name="sample_id")
        frames[name] = df
    donor = folder.name.replace("normalized_microarray_donor", "")
    return AhbaDonor(donor, frames["MicroarrayExpression"], frames["PACall"].astype("int8"), probes, annot,
                     StructureTree(ontology, source=str(paths["Ontology"])))


def read_ahba_donors(folder: str | os.PathLike) -> dict[str, AhbaDonor]:
    """Read every ``normalized_microarray_donor<uid>`` folder under ``folder``: ``{uid: AhbaDonor}``, sorted by uid.

    The mapping is what :func:`hmba_toolkit.ahba.process` takes.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_ahba
    >>> donors = read_ahba_donors(fetch_demo_ahba())
    >>> list(donors)[:2], len(donors)
    (['10021', '12876'], 6)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: not a directory (expected a folder of normalized_microarray_donor*/ folders)")
    found = sorted(p for p in folder.glob("normalized_microarray_donor*") if p.is_dir())
    if not found:
        raise MissingFileError(f"{folder} holds no normalized_microarray_donor*/ folder; download them with "
                               "hmba_toolkit.io.fetch_ahba(data_dir)")
    return {p.name.removeprefix("normalized_microarray_donor"): read_ahba_donor(p) for p in found}
