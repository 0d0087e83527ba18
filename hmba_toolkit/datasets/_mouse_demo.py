"""Generate demo Allen mouse ISH grids on the real 200 um annotation grid and ontology.

The annotation grid (``P56_Mouse_gridAnnotation``) and the structure tree are real Allen
files (shipped with attribution; tree via iblatlas, MIT). The gene list and SectionDataSet
ids are real coronal experiments (``ABI_genes.csv`` snapshot, DJFernandes/ABIgeneRMINC).
Energies are simulated: a per-division mean profile (striatal markers planted high in
caudoputamen, accumbens and olfactory tubercle), a multiplicative effect per annotated
structure, a smooth anterior-posterior gradient, smooth within-structure variation (a Gaussian-filtered random
field, 400 um scale), a small left/right asymmetry per experiment, values on a 1/64 grid (so the zips stay small), and
whole coronal planes without data (-1) as in real sectioned experiments. Each experiment is stored as the zip the grid API returns.

The striatal genes' experiments and five others also carry density and intensity grids (per voxel, density =
1 - exp(-energy / 15) and intensity = energy / density, so that energy = density x intensity as Allen defines it) and
Allen-format StructureUnionize answers (``structure_unionizes/<id>.json``, the flat ``model::StructureUnionize`` answer;
``71717084.xml``, the nested ``SectionDataSet/query.xml`` answer of Pdyn). Their records pool each structure's subtree as
Allen's do, weighting voxels by their sampled pixels (1,600 pixels for a fully sampled voxel),
so ``voxel_energy_mean`` equals the grid mean of :func:`hmba_toolkit.mouse.unionize` and ``expression_energy`` differs from it
only by that weighting (coverage per coronal plane ~ Beta(2, 0.8), surface voxels halved, per-voxel Beta(8, 2)).
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from xml.sax.saxutils import escape as xml_escape

from ..io.mouse_ish import write_ish_grid
from ..mouse._unionize import structure_membership
from ..mouse.atlas import _data_bytes, load_annotation, load_ontology

SEED = 56
STRIATAL = ["Pdyn", "Penk", "Drd2", "Ppp1r1b", "Tac1", "Adora2a", "Gpr88", "Rgs9", "Pde10a", "Rarb", "Foxp1"]
DIVISIONS = ["Isocortex", "OLF", "HPF", "CTXsp", "STR", "PAL", "TH", "HY", "MB", "P", "MY", "CB", "fiber tracts"]




def generate(root: Path, truth_dir: Path) -> None:
    """Write ``root/{P56_Mouse_gridAnnotation,grids,structure_tree.csv,section_data_sets.csv}``."""
    rng = np.random.default_rng(SEED)
    tree_csv = _data_bytes("allen_structure_tree.csv")
    (root / "P56_Mouse_gridAnnotation").mkdir(parents=True, exist_ok=True)
    (root / "structure_tree.csv").write_bytes(tree_csv)
    (root / "P56_Mouse_gridAnnotation" / "gridAnnotation.mhd").write_bytes(_data_bytes("P56_Mouse_gridAnnotation.mhd"))
    (root / "P56_Mouse_gridAnnotation" / "gridAnnotation.raw").write_bytes(gzip.decompress(_data_bytes("P56_Mouse_gridAnnotation.raw.gz")))
    sds = pd.read_csv(resources.files("hmba_toolkit.datasets").joinpath("data", "mouse_ish_section_data_sets.csv"))
    sds.to_csv(root / "section_data_sets.csv", index=False, lineterminator="\n")
    tree = load_ontology()
    ann = load_annotation()
    brain = ann > 0
    division_of = np.zeros(ann.shape, dtype=np.int16) - 1
    for k, acr in enumerate(DIVISIONS):
        division_of[tree.mask(ann, acr)] = k
    ids, inverse = np.unique(ann, return_inverse=True)
    inverse = inverse.reshape(ann.shape)
    ap = np.repeat(np.linspace(-1, 1, 12, dtype=np.float32), 6)[: ann.shape[0]]  # gradient in 6-plane steps
    striatal_core = tree.mask(ann, "CP") | tree.mask(ann, "ACB") | tree.mask(ann, "OT")
    profiles = []
    grid_dir = root / "grids"
    grid_dir.mkdir(parents=True, exist_ok=True)
    others = sds.loc[~sds["gene_acronym"].isin(STRIATAL), "id"].sort_values().head(N_UNIONIZE_CONTROLS)
    with_records = set(sds.loc[sds["gene_acronym"].isin(STRIATAL), "id"]) | set(others)
    rng_records = np.random.default_rng(SEED + 1)  # its own stream: the energies do not depend on it
    sm = structure_membership(ann, tree)
    unionize_dir = root / "structure_unionizes"
    unionize_dir.mkdir(parents=True, exist_ok=True)
    for row in sds.itertuples(index=False):
        level = rng.gamma(2.0, 0.6, size=len(DIVISIONS))
        if row.gene_acronym in STRIATAL:
            level = level * 0.3
            level[DIVISIONS.index("STR")] = rng.uniform(6, 10)
        vol = np.zeros(ann.shape, dtype=np.float32)
        known = division_of >= 0
        vol[known] = level[division_of[known]]
        vol[brain & ~known] = level.mean()
        if row.gene_acronym in STRIATAL:
            vol[striatal_core] *= 1.3
        effect = rng.lognormal(0, 0.3, size=ids.size).astype(np.float32)
        vol *= effect[inverse]
        vol *= (1 + rng.uniform(-0.4, 0.4) * ap)[:, None, None]
        field = ndimage.gaussian_filter(rng.standard_normal(ann.shape).astype(np.float32), sigma=2.0)
        vol *= np.exp(0.25 * field / field.std())  # smooth variation within structures
        left = np.arange(ann.shape[2]) < ann.shape[2] // 2
        vol[:, :, left] *= np.float32(1 + rng.normal(0, 0.06))  # left/right asymmetry of this experiment
        vol = np.round(vol * 64) / 64
        vol[~brain] = 0.0
        missing = rng.random(ann.shape[0]) < 0.15  # coronal planes (x) without data
        vol[missing, :, :] = np.nan
        vol[~brain] = np.nan
        if row.id in with_records:
            density, intensity = _density_intensity(vol)
            pixels = _sampled_pixels(rng_records, brain)
            write_ish_grid(grid_dir / f"{row.id}.zip", {"energy": vol, "density": density, "intensity": intensity},
                           data_set_xml=_data_set_xml(row))
            records = _unionize_records(row.id, len(profiles), vol, density, pixels, sm, tree.table)
            (unionize_dir / f"{row.id}.json").write_text(_json_answer(records), encoding="utf-8")
            if row.gene_acronym == "Pdyn":
                (unionize_dir / f"{row.id}.xml").write_text(_xml_answer(row, records), encoding="utf-8")
        else:
            write_ish_grid(grid_dir / f"{row.id}.zip", vol, data_set_xml=_data_set_xml(row))
        profiles += [{"gene_acronym": row.gene_acronym, "section_data_set_id": row.id, "division": d, "level": round(float(v), 6)}
                     for d, v in zip(DIVISIONS, level)]
    truth_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(profiles).to_csv(truth_dir / "mouse_ish_division_levels.csv", index=False, lineterminator="\n")
    pd.DataFrame({"gene_acronym": STRIATAL}).to_csv(truth_dir / "mouse_ish_striatal_genes.csv", index=False, lineterminator="\n")


def _data_set_xml(row) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<section-data-set>\n'
        f"  <failed>false</failed>\n  <id>{row.id}</id>\n  <plane-of-section-id>1</plane-of-section-id>\n"
        "  <reference-space-id>9</reference-space-id>\n  <section-thickness>25.0</section-thickness>\n"
        "</section-data-set>\n"
    )


# -- density / intensity grids and Allen's StructureUnionize records, for a subset of experiments --------------------

#: Experiments that also get density and intensity grids and StructureUnionize answers: the striatal genes and
#: this many others (the first by id), so the demo stays small.
N_UNIONIZE_CONTROLS = 5
_PIXELS_PER_VOXEL = 1600  # sampled pixels of a fully covered 200 um voxel in one 25 um section (simulated scale)
_BACKGROUND = 3.0  # mean intensity of non-expressing pixels
_STRUCTURE_FIELDS = ("id", "atlas_id", "acronym", "name", "color_hex_triplet", "depth", "graph_id", "graph_order",
                     "hemisphere_id", "ontology_id", "parent_structure_id", "safe_name", "structure_id_path")


def _sampled_pixels(rng: np.random.Generator, brain: np.ndarray) -> np.ndarray:
    """Pixels sampled per voxel: whole sections partly lost (a coverage per coronal plane), voxels at the brain's
    surface half covered, and pixel-level noise; the reason Allen's pixel-weighted summaries leave the voxel mean."""
    plane = rng.beta(2.0, 0.8, size=brain.shape[0])[:, None, None]
    surface = brain & ~ndimage.binary_erosion(brain)
    coverage = plane * np.where(surface, 0.5, 1.0) * rng.beta(8.0, 2.0, size=brain.shape)
    return np.rint(_PIXELS_PER_VOXEL * coverage).astype(np.int64)


def _density_intensity(energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel density (fraction of expressing pixels) and intensity (their mean) with density x intensity = energy."""
    density = (1 - np.exp(-energy / 15.0)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(density > 0, energy / np.maximum(density, 1e-12), 0.0).astype(np.float32)
    density = np.round(density * 4096) / 4096
    intensity = np.round(intensity * 64) / 64
    return density, intensity


def _unionize_records(sds: int, k: int, energy: np.ndarray, density: np.ndarray, pixels: np.ndarray, sm, tree) -> list[dict]:
    """StructureUnionize records (Allen's fields) pooling each structure's subtree, pixel-weighted as Allen's are."""
    vox = sm.voxels
    e = energy.ravel()[vox].astype(np.float64)
    valid = ~np.isnan(e)
    e = np.where(valid, e, 0.0)
    p = np.where(valid, pixels.ravel()[vox], 0).astype(np.float64)
    d = np.where(valid, density.ravel()[vox], 0.0).astype(np.float64)
    m = sm.membership
    n_valid = m @ valid.astype(np.float64)
    sum_pixels = m @ p
    sum_expressing = np.round(m @ (d * p))
    sum_expressing_intensity = m @ (e * p)
    sum_intensity = sum_expressing_intensity + _BACKGROUND * (sum_pixels - sum_expressing)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (m @ e) / n_valid
        var = np.maximum((m @ (e * e)) / n_valid - mean**2, 0.0)
        cv = np.where(mean > 0, np.sqrt(var) / mean, 0.0)
    records = []
    for row, sid in enumerate(sm.info["structure_id"].to_numpy()):
        if n_valid[row] == 0 or sum_pixels[row] == 0:
            continue
        node = tree.loc[int(sid)]
        structure = {f: _plain(node.get(f)) for f in _STRUCTURE_FIELDS if f != "id"}
        structure = {"id": int(sid), **structure}
        records.append({
            "expression_density": _sig(sum_expressing[row] / sum_pixels[row]),
            "expression_energy": _sig(sum_expressing_intensity[row] / sum_pixels[row]),
            "id": 600_000_000 + k * 2_000 + row,
            "section_data_set_id": int(sds),
            "structure_id": int(sid),
            "sum_expressing_pixel_intensity": _sig(sum_expressing_intensity[row]),
            "sum_expressing_pixels": float(sum_expressing[row]),
            "sum_pixel_intensity": _sig(sum_intensity[row]),
            "sum_pixels": float(sum_pixels[row]),
            "voxel_energy_cv": _sig(cv[row]),
            "voxel_energy_mean": _sig(mean[row]),
            "structure": structure,
        })
    return records


def _sig(value: float) -> float:
    """Seven significant digits, as the API prints its floats."""
    return float(f"{float(value):.7g}")


def _plain(value):
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return int(value) if float(value).is_integer() else float(value)
    return value


def _json_answer(records: list[dict]) -> str:
    return json.dumps({"success": True, "id": 0, "start_row": 0, "num_rows": len(records), "total_rows": len(records),
                       "msg": records}, separators=(",", ":"))


def _xml_element(tag: str, value) -> str:
    tag = tag.replace("_", "-")
    if value is None:
        return f'<{tag} nil="true"/>'
    if isinstance(value, bool):
        return f'<{tag} type="boolean">{str(value).lower()}</{tag}>'
    if isinstance(value, int):
        return f'<{tag} type="integer">{value}</{tag}>'
    if isinstance(value, float):
        return f'<{tag} type="float">{value!r}</{tag}>'
    return f"<{tag}>{xml_escape(str(value))}</{tag}>"


def _xml_answer(row, records: list[dict]) -> str:
    """The answer of ``SectionDataSet/query.xml?id=<id>&include=genes,plane_of_section,structure_unionizes(structure)``."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<Response success="true" id="0" start_row="0" num_rows="1" total_rows="1">',
           "<section-data-sets>", "<section-data-set>"]
    out += [_xml_element("failed", False), _xml_element("id", int(row.id)), _xml_element("plane_of_section_id", 1),
            _xml_element("reference_space_id", 9), _xml_element("section_thickness", 25.0)]
    out += ["<genes>", "<gene>", _xml_element("acronym", row.gene_acronym), _xml_element("entrez_id", int(row.entrez_id)),
            "</gene>", "</genes>", "<plane-of-section>", _xml_element("id", 1), _xml_element("name", "coronal"),
            "</plane-of-section>", "<structure-unionizes>"]
    for record in records:
        out.append("<structure-unionize>")
        out += [_xml_element(key, value) for key, value in record.items() if key != "structure"]
        out.append("<structure>")
        out += [_xml_element(key, value) for key, value in record["structure"].items()]
        out += ["</structure>", "</structure-unionize>"]
    out += ["</structure-unionizes>", "</section-data-set>", "</section-data-sets>", "</Response>", ""]
    return "\n".join(out)
