"""Generate demo Allen mouse ISH grids on the real 200 um annotation grid and ontology.

The annotation grid (``P56_Mouse_gridAnnotation``) and the structure tree are real Allen
files (shipped with attribution; tree via iblatlas, MIT). The gene list and SectionDataSet
ids are real coronal experiments (``ABI_genes.csv`` snapshot, DJFernandes/ABIgeneRMINC).
Energies are simulated: a per-division mean profile (striatal markers planted high in
caudoputamen, accumbens and olfactory tubercle), a multiplicative effect per annotated
structure, a smooth anterior-posterior gradient, smooth within-structure variation (a Gaussian-filtered random
field, 400 um scale), a small left/right asymmetry per experiment, values on a 1/64 grid (so the zips stay small), and
whole coronal planes without data (-1) as in real sectioned experiments. Each experiment is stored as the zip the grid API returns.
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ..io.mouse_ish import write_ish_grid
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
