"""Generate the embedded HMBA-BG demo release in the exact layout of the ABC atlas bucket.

The tables use the real CCN20250428 taxonomy (labels, names, colours), the real gene
tables of the aligned 10X set and of the three spatial panels, the curated Group markers,
and real donor ids (all shipped in ``hmba_toolkit/datasets/data``, copied from the Allen
release; CC BY-NC 4.0, Allen Institute). Cells and counts are simulated with planted,
recorded ground truth:

* expression programs per taxonomy node (Neighborhood, Class, Subclass, Group) built from
  the curated Group markers plus canonical basal-ganglia markers (D1 vs D2 MSN, striosome vs
  matrix, interneurons, glia) and random extra program genes;
* multiplicative donor and species effects;
* counts drawn from a gamma-Poisson (negative binomial) model with per-cell library sizes;
* region-specific composition (MSNs in striatum, GP neurons in GPe/GPi, dopamine neurons in SN);
* spatial sections with region polygons, striosome patches and a dorsolateral gradient gene;
* QC-failed spatial cells, spatial cells outside the taxonomy ("Adjacent"), 10X cells without
  a cluster, and h5ad rows that ``cell_metadata`` omits (as in Allen issue #28).

The ground truth is written beside the mirror in ``ground_truth/``.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._files import md5sum
from ..normalize import log2_normalize

SEED = 20250428
RELEASE = "20251031"
BUCKET_URL = "https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/"
LEVELS = ("Neighborhood", "Class", "Subclass", "Group", "Cluster")

ALIGNED = "HMBA-10xMultiome-BG-Aligned"
PER_SPECIES = "HMBA-10xMultiome-BG"
TAXONOMY = "HMBA-BG-taxonomy-CCN20250428"
SPATIAL = {
    "Human": ("HMBA-MERSCOPE-H22.30.001-BG", "MERSCOPE-H22.30.001-BG", "H22.30.001", "gene_HMBA-MERSCOPE-H22.30.001-BG.tsv"),
    "Macaque": ("HMBA-MERSCOPE-QM23.50.001-BG", "MERSCOPE-QM23.50.001-BG", "QM23.50.001", "gene_HMBA-MERSCOPE-QM23.50.001-BG.tsv"),
    "Marmoset": ("HMBA-Xenium-CJ23.56.004-BG", "Xenium-CJ23.56.004-BG", "CJ23.56.004", "gene_HMBA-Xenium-CJ23.56.004-BG.tsv"),
}
VERSIONS = {  # data version of each (directory, kind); human spatial was re-released 20250930
    ALIGNED: {"metadata": "20250630", "expression_matrices": "20250630"},
    PER_SPECIES: {"metadata": "20250630", "expression_matrices": "20250630"},
    TAXONOMY: {"metadata": "20250630"},
    SPATIAL["Human"][0]: {"metadata": "20250930", "expression_matrices": "20250930", "image_volumes": "20250630"},
    SPATIAL["Macaque"][0]: {"metadata": "20250630", "expression_matrices": "20250630", "image_volumes": "20250630"},
    SPATIAL["Marmoset"][0]: {"metadata": "20250630", "expression_matrices": "20250630", "image_volumes": "20250630"},
}

# Real donors of the release (a subset per species) with their real donor table values.
DONORS = pd.DataFrame(
    [
        ("H18.30.001", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "58 yrs", 58.0, "DO-HSDA1801"),
        ("H21.30.004", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "57 yrs", 57.0, "DO-XWIW2465"),
        ("H24.30.001", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "50 yrs", 50.0, "DO-HTQB2430"),
        ("H24.30.003", "NCBITaxon:9606", "Homo sapiens", "Human", "Female", "19 yrs", 19.0, "DO-OSUT8071"),
        ("Q19.26.010", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Female", "10 yrs", 10.0, "DO-XYBX6133"),
        ("QM21.26.001", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "6 yrs", 6.0, "DO-MCUM5797"),
        ("QM23.50.003", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "6 yrs", 6.0, "DO-HHOI8925"),
        ("CJ23.56.002", "NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Female", "4.0 yrs", 3.956284153, "DO-CJMA2302"),
        ("CJ24.56.001", "NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Male", "2.0 yrs", 1.95890411, "DO-CJMB2401"),
    ],
    columns=["donor_label", "donor_species", "species_scientific_name", "species_genus", "donor_sex",
             "donor_age", "donor_age_value", "donor_nhash_id"],
)
SPATIAL_DONORS = pd.DataFrame(
    [
        ("H22.30.001", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "42 yrs", 42.0, "DO-SPHU2230"),
        ("QM23.50.001", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "6 yrs", 6.0, "DO-SPMQ2350"),
        ("CJ23.56.004", "NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Female", "5.4 yrs", 5.391780822, "DO-SPCJ2356"),
    ],
    columns=DONORS.columns,
)
CELLS_PER_DONOR = {"Human": 260, "Macaque": 240, "Marmoset": 260}

# region_of_interest_label -> (name, DHBA id, colour); colours of GPe/GP/GPi/VeP/STH/SN are Allen's
ROIS = {
    "CaH": ("head of caudate", "DHBA:10334", "#0010d9"),
    "CaB": ("body of caudate", "DHBA:10335", "#0060ff"),
    "PuR": ("rostral putamen", "DHBA:11537", "#00bfa0"),
    "PuC": ("caudal putamen", "DHBA:11538", "#00bfff"),
    "NAC": ("nucleus accumbens", "DHBA:10339", "#c941a7"),
    "GPe": ("external segment of globus pallidus", "DHBA:10343", "#53DB33"),
    "GPi": ("internal segment of globus pallidus", "DHBA:10344", "#A7DB33"),
    "VeP": ("Ventral pallidus", "DHBA:10345", "#9b19f5"),
    "STH": ("subthalamic nucleus", "DHBA:10466", "#907991"),
    "SN": ("substantia nigra", "DHBA:12251", "#89522A"),
    "Br": ("brain", "DHBA:10155", "#E0E0E0"),
}
STRIATUM = {"CaH", "CaB", "PuR", "PuC", "NAC"}

# Canonical markers added to the curated CAS markers, by taxonomy node name (general knowledge
# of basal ganglia cell types; see shared research notes section 4.3).
CANONICAL = {
    "Glut Sero Dopa": ["SNAP25", "SYT1", "RBFOX3"],
    "Subpallium GABA": ["SNAP25", "SYT1", "RBFOX3", "GAD1", "GAD2", "SLC32A1"],
    "Subpallium GABA-Glut": ["SNAP25", "SYT1", "GAD1", "SLC17A6"],
    "Nonneuron": ["GLUL"],
    "CN LGE GABA": ["PPP1R1B", "GPR88", "FOXP1", "RARB", "BCL11B", "PDE10A", "RGS9"],
    "STR D1 MSN": ["DRD1", "TAC1", "PDYN", "EBF1", "RXFP1"],
    "STR D2 MSN": ["DRD2", "PENK", "ADORA2A", "GPR6", "SP9"],
    "STR Hybrid MSN": ["DRD1", "DRD2", "CASZ1", "OTOF"],
    "M Dopa": ["TH", "SLC6A3", "DDC"],
    "CN Cholinergic GABA": ["CHAT", "SLC5A7", "LHX8", "GBX1"],
    "CN ST18 GABA": ["PVALB", "PTHLH", "TAC3"],
    "STR SST GABA": ["SST", "NPY"],
    "Astrocyte": ["AQP4", "GFAP", "SLC1A2", "SLC1A3"],
    "Oligodendrocyte": ["PLP1", "MBP", "MOBP", "MOG", "OPALIN", "OLIG2"],
    "OPC": ["PDGFRA", "VCAN", "OLIG2"],
    "Microglia": ["PTPRC", "CSF1R", "P2RY12", "CX3CR1"],
    "Endo": ["CLDN5", "FLT1", "PECAM1"],
    "F Glut": ["SLC17A6"],
}
STRIOSOME_GENES = {"KCNIP1"}  # striosome marker planted in the striosome MSN Groups
GRADIENT_GENE = "CNR1"
VIEW_GENES = ["SLC17A6", "SLC32A1", "PTPRC", "PLP1", "AQP4", "DRD1", "DRD2"]  # Allen's example view  # dorsolateral-high gradient across the striatum (on all three panels)


def _data(name: str) -> pd.DataFrame:
    with resources.files("hmba_toolkit.datasets").joinpath("data", name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False, na_values=[""])


# --------------------------------------------------------------------------------------------
# taxonomy tables
# --------------------------------------------------------------------------------------------
def taxonomy_frames() -> dict[str, pd.DataFrame]:
    """The cluster tables of the taxonomy directory (without cell-level tables)."""
    levels = {lvl: _data(f"taxonomy_CCN20250428_v20250630_{lvl}.tsv") for lvl in LEVELS}
    rows = []
    for i, lvl in enumerate(LEVELS):
        t = levels[lvl]
        parent = LEVELS[i - 1] if i else None
        for order, r in enumerate(t.itertuples(index=False), start=1):
            r = r._asdict()
            rows.append({
                "label": r[f"{lvl}_label"],
                "name": r[lvl],
                "cluster_annotation_term_set_label": f"CCN20250428_LEVEL_{i}",
                "cluster_annotation_term_set_name": lvl,
                "color_hex_triplet": r[f"{lvl}_color"],
                "term_order": order,
                "term_set_order": i,
                "parent_term_label": r[f"{parent}_label"] if parent else None,
                "parent_term_name": r[parent] if parent else None,
                "parent_term_set_label": f"CCN20250428_LEVEL_{i - 1}" if parent else None,
            })
    term = pd.DataFrame(rows)
    term_set = pd.DataFrame({
        "label": [f"CCN20250428_LEVEL_{i}" for i in range(5)],
        "name": list(LEVELS),
        "description": list(LEVELS),
        "order": range(5),
    })
    clusters = levels["Cluster"]
    membership = []
    for r in clusters.itertuples(index=False):
        r = r._asdict()
        for i, lvl in enumerate(reversed(LEVELS)):
            k = 4 - i
            membership.append({
                "cluster_annotation_term_label": r[f"{lvl}_label"],
                "cluster_annotation_term_set_label": f"CCN20250428_LEVEL_{k}",
                "cluster_alias": r["Cluster"],
                "cluster_annotation_term_set_name": lvl,
                "cluster_annotation_term_name": r[lvl],
            })
    abbreviation = _data("abbreviation_term_HMBA-BG-taxonomy-CCN20250428.tsv")
    abbrev_map = []
    abbrevs = set(abbreviation["abbreviation_term"])
    for r in term[term["term_set_order"] < 4].itertuples(index=False):
        for token in r.name.replace("-", " ").split():
            if token in abbrevs:
                abbrev_map.append({"cluster_annotation_term_label": r.label, "abbreviation_term": token})
    return {
        "cluster_annotation_term": term,
        "cluster_annotation_term_set": term_set,
        "cluster_to_cluster_annotation_membership": pd.DataFrame(membership),
        "abbreviation_term": abbreviation,
        "cluster_annotation_to_abbreviation_map": pd.DataFrame(abbrev_map).drop_duplicates(),
        "_clusters": clusters,
    }


def _group_regions(group: str, subclass: str, neighborhood: str) -> set[str]:
    """Regions (ROI labels) where a Group is found, from the anatomical prefix of its name."""
    if neighborhood == "Nonneuron":
        return set(ROIS)
    g = group
    if g.startswith(("STRd", "STR D1D2")) or subclass in ("STR SST GABA", "STR SST-CHODL GABA", "STR RSPO2 GABA") or g.startswith("STR FS") or g.startswith("STR TAC3") or g.startswith("STR Cholinergic"):
        return {"CaH", "CaB", "PuR", "PuC", "NAC", "Br"} if not g.startswith("STRd") else {"CaH", "CaB", "PuR", "PuC", "Br"}
    if g.startswith(("STRv", "OT ")):
        return {"NAC", "VeP", "Br"}
    if g.startswith(("STR-BF", "BF ", "GPin-BF", "AMY-SLEA", "GPe-NDB-SI")):
        return {"VeP", "NAC", "GPi", "Br"}
    if g.startswith("GPe"):
        return {"GPe", "Br"}
    if g.startswith("GPi"):
        return {"GPi", "Br"}
    if g.startswith(("SN", "VTR")):
        return {"SN", "Br"}
    if g.startswith(("STH", "ZI-HTH")):
        return {"STH", "Br"}
    if g.startswith(("LAMP5", "VIP")):
        return STRIATUM | {"Br"}
    return {"Br"}


def _group_weight(group: str, subclass: str, klass: str) -> float:
    if "Matrix MSN" in group:
        return 12.0
    if "MSN" in group or "ICj" in group:
        return 3.0
    if subclass == "Oligodendrocyte":
        return 6.0 if group == "Oligo OPALIN" else 1.5
    if subclass in ("Astrocyte", "OPC", "Microglia"):
        return 2.5
    if klass in ("Immune",) or subclass in ("Ependymal", "COP"):
        return 0.3
    if klass == "Vascular":
        return 0.5
    if group.startswith(("GPe", "GPi", "SN", "STH")):
        return 5.0
    return 0.8


# --------------------------------------------------------------------------------------------
# the expression model
# --------------------------------------------------------------------------------------------
class ExpressionModel:
    """Planted expression programs on the aligned gene universe (gene symbols)."""

    def __init__(self, rng: np.random.Generator, genes: pd.DataFrame, groups: pd.DataFrame, spatial_symbols: set[str]):
        markers = _data("group_markers_CAS_CCN20250428.tsv").set_index("Group")["marker_gene_evidence"].fillna("")
        symbols = set(genes["gene_symbol"])
        program: dict[tuple[str, str], dict[str, float]] = {}
        for lvl in ("Neighborhood", "Class", "Subclass", "Group"):
            for name in sorted(groups[lvl].unique()):
                chosen = list(CANONICAL.get(name, []))
                if lvl == "Group":
                    chosen += [m for m in str(markers.get(name, "")).split("|") if m]
                program[(lvl, name)] = {g: 2.5 for g in chosen if g in symbols}
        # extra random program genes per Group, and striosome genes
        background = sorted(symbols - {g for p in program.values() for g in p})
        pool = rng.choice(background, size=900, replace=False)
        universe = set(pool) | {g for p in program.values() for g in p} | (spatial_symbols & symbols) | {GRADIENT_GENE}
        for name in sorted(groups["Group"].unique()):
            extra = rng.choice(pool, size=8, replace=False)
            for g in extra:
                program[("Group", name)].setdefault(str(g), float(rng.uniform(1.0, 2.5)))
            if "Striosome" in name:
                for g in STRIOSOME_GENES:
                    program[("Group", name)][g] = 2.5
        self.genes = sorted(universe)
        self.index = {g: i for i, g in enumerate(self.genes)}
        n = len(self.genes)
        self.base = rng.normal(-0.5, 1.2, size=n)
        planted = {g for p in program.values() for g in p}
        for g in planted:  # program genes are quiet outside their program
            self.base[self.index[g]] -= 2.0
        self.program = program
        self.species_effect = {
            "Human": np.zeros(n),
            "Macaque": rng.normal(0, 0.3, size=n) * (rng.random(n) < 0.3),
            "Marmoset": rng.normal(0, 0.5, size=n) * (rng.random(n) < 0.3),
        }
        self._effects: dict[tuple[str, ...], np.ndarray] = {}

    def lineage_effect(self, lineage: dict[str, str]) -> np.ndarray:
        """Planted log effect of a cell's lineage (max over its four levels' programs); memoised."""
        key = tuple(lineage[lvl] for lvl in ("Neighborhood", "Class", "Subclass", "Group"))
        if key not in self._effects:
            eff = np.zeros(len(self.genes))
            for lvl, name in zip(("Neighborhood", "Class", "Subclass", "Group"), key):
                for g, lfc in self.program.get((lvl, name), {}).items():
                    eff[self.index[g]] = max(eff[self.index[g]], lfc)
            self._effects[key] = eff
        return self._effects[key]

    def truth(self) -> pd.DataFrame:
        rows = [
            {"level": lvl, "name": name, "gene_symbol": g, "log2_fold_change": round(lfc / np.log(2), 6)}
            for (lvl, name), genes in sorted(self.program.items())
            for g, lfc in sorted(genes.items())
        ]
        return pd.DataFrame(rows)


def _counts(rng, logits: np.ndarray, libsize: np.ndarray, dispersion: float = 0.3) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mu = p * libsize[:, None]
    lam = rng.gamma(shape=1.0 / dispersion, scale=mu * dispersion)
    out = rng.poisson(lam)
    empty = out.sum(axis=1) == 0
    out[empty, np.argmax(logits[empty], axis=1)] = 1
    return out.astype(np.int32)


def _write_h5ad(path: Path, counts: sp.csr_matrix, obs: pd.DataFrame, var: pd.DataFrame, scale: float) -> None:
    """Write the raw and log2 files of one matrix (Allen writer: CSR, gzip level 4)."""
    obs = obs.copy()
    obs.index.name = "cell_label"
    var = var.copy()
    var.index.name = "gene_identifier"
    raw = ad.AnnData(X=counts.astype(np.int32), obs=obs, var=var)
    log2 = ad.AnnData(X=log2_normalize(counts, scale), obs=obs, var=var)
    path.parent.mkdir(parents=True, exist_ok=True)
    for adata, kind in ((raw, "raw"), (log2, "log2")):
        adata.uns["normalization"] = kind
        adata.write_h5ad(path.with_name(f"{path.name}-{kind}.h5ad"), compression="gzip", compression_opts=4)


def _barcodes(rng, n: int) -> list[str]:
    letters = np.array(list("ACGT"))
    return ["".join(letters[rng.integers(0, 4, 16)]) for _ in range(n)]


def _uuid(rng) -> str:
    h = "".join(f"{x:02x}" for x in rng.integers(0, 256, 16))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _write_csv(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=index, lineterminator="\n")


# --------------------------------------------------------------------------------------------
# 10X
# --------------------------------------------------------------------------------------------
def _make_10x(root: Path, rng, model: ExpressionModel, clusters: pd.DataFrame, aligned_genes: pd.DataFrame,
              truth_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write both 10X directories; return (all simulated cells, cell_to_cluster_membership rows)."""
    clusters = clusters.assign(species=clusters["Cluster"].str.split("-").str[0])
    libraries, cells, blocks = [], [], []
    donor_effect_rows = []
    n_genes = len(model.genes)
    for d in DONORS.itertuples(index=False):
        species = d.species_genus
        donor_eff = rng.normal(0, 0.15, size=n_genes)
        donor_effect_rows += [
            {"donor_label": d.donor_label, "gene_symbol": g, "log_effect": round(float(e), 6)}
            for g, e in zip(model.genes, donor_eff) if abs(e) > 0.3
        ]
        rois = ["Br"] if species == "Marmoset" else ["CaH", "CaB", "PuR", "PuC", "NAC", "GPe", "GPi", "VeP", "STH", "SN"]
        per_roi = CELLS_PER_DONOR[species] // len(rois)
        sp_clusters = clusters[clusters["species"] == species]
        for k, roi in enumerate(rois):
            ok = sp_clusters[[roi in _group_regions(r.Group, r.Subclass, r.Neighborhood) for r in sp_clusters.itertuples()]]
            gw = ok.groupby("Group").apply(lambda t: _group_weight(t.name, t["Subclass"].iloc[0], t["Class"].iloc[0]), include_groups=False)
            w = ok["Group"].map(gw / ok.groupby("Group").size()).to_numpy(float)
            pick = rng.choice(len(ok), size=per_roi, p=w / w.sum())
            sample = f"{rng.integers(800, 2500)}_{'ABCDEFGH'[k % 8]}{rng.integers(1, 12):02d}"
            day = f"2{rng.integers(2, 5)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
            lib = (f"LPLCXR_{day}_{k + 1}_{'ABCDEFGH'[k % 8]}{k + 1}" if species == "Marmoset"
                   else f"L8XR_{day}_{k + 1:02d}_{'ABCDEFGH'[k % 8]}{k + 1:02d}")
            name, dhba, _ = ROIS[roi]
            slab = f"{d.donor_label}.CX.{10 + k:02d}"
            libraries.append({
                "library_label": lib, "library_method": "10xMultiome;GEX",
                "library_nhash_id": f"LI-{hashlib.md5(lib.encode()).hexdigest()[:12].upper()}",
                "barcoded_cell_sample_label": sample,
                "enrichment_population": "70% NeuN+, 20% OLIG2-, 10% OLIG2+",
                "cell_specimen_type": "Nuclei", "parcellation_term_identifier": dhba,
                "region_of_interest_name": name, "region_of_interest_label": roi,
                "anatomical_division_label": "Brain" if roi == "Br" else "Basal ganglia",
                "donor_label": d.donor_label, "specimen_dissected_roi_label": f"{slab}.{roi}.01",
                "specimen_dissected_roi_nhash_id": f"RI-{hashlib.md5((slab + roi).encode()).hexdigest()[:12].upper()}",
                "slab_label": slab, "slab_nhash_id": f"SL-{hashlib.md5(slab.encode()).hexdigest()[:12].upper()}",
            })
            chosen = ok.iloc[pick]
            logits = np.empty((per_roi, n_genes))
            for i, r in enumerate(chosen.itertuples(index=False)):
                logits[i] = model.base + model.lineage_effect(r._asdict())
            logits += donor_eff + model.species_effect[species]
            neuron = (chosen["Neighborhood"] != "Nonneuron").to_numpy()
            libsize = rng.lognormal(np.log(np.where(neuron, 2500, 1000)), 0.4)
            blocks.append(_counts(rng, logits, libsize))
            marm = species == "Marmoset"
            for i, (bc, r) in enumerate(zip(_barcodes(rng, per_roi), chosen.itertuples(index=False))):
                cells.append({
                    "cell_label": f"{bc}-{sample}", "cell_barcode": bc, "donor_label": d.donor_label,
                    "barcoded_cell_sample_label": sample, "library_label": lib,
                    "alignment_job_id": str(rng.integers(240101, 250131)) if marm else hashlib.sha1(lib.encode()).hexdigest(),
                    "doublet_score": np.nan if marm else round(float(rng.beta(1, 20)), 6),
                    "umi_count": np.nan if marm else float(blocks[-1][i].sum()),
                    "species": species, "cluster_alias": r.Cluster, "cluster_label": r.Cluster_label,
                    "abc_sample_id": _uuid(rng),
                })
    cells = pd.DataFrame(cells)
    counts = np.vstack(blocks)
    truth = model.truth()
    truth_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(truth, truth_dir / "programs.csv")
    _write_csv(pd.DataFrame(donor_effect_rows), truth_dir / "donor_effects.csv")
    sp_rows = [{"species": s, "gene_symbol": g, "log_effect": round(float(e), 6)}
               for s, eff in model.species_effect.items() for g, e in zip(model.genes, eff) if e != 0]
    _write_csv(pd.DataFrame(sp_rows), truth_dir / "species_effects.csv")

    # full-gene matrices on the aligned gene table (genes outside the model's universe are zero)
    sym_to_col = pd.Series(np.arange(len(aligned_genes)), index=aligned_genes["gene_symbol"])
    sym_to_col = sym_to_col[~sym_to_col.index.duplicated()]
    cols = sym_to_col.loc[model.genes].to_numpy()
    full = sp.csr_matrix(counts)
    full = sp.csr_matrix((full.data, cols[full.indices], full.indptr), shape=(len(cells), len(aligned_genes)))
    full.sort_indices()

    lib_df = pd.DataFrame(libraries)
    # 10X var carries gene_symbol only, as Allen's 10X h5ads do (the full table is gene.csv)
    var = aligned_genes.set_index("gene_identifier")[["gene_symbol"]]
    meta_cols = ["cell_label", "cell_barcode", "donor_label", "barcoded_cell_sample_label", "library_label",
                 "alignment_job_id", "doublet_score", "umi_count", "feature_matrix_label", "dataset_label", "abc_sample_id"]
    # 1% of matrix rows are not in cell_metadata (QC-removed after the matrix was written, cf. Allen issue #28)
    dropped = rng.random(len(cells)) < 0.01
    value_sets = _value_sets_10x()
    for directory, label_of in ((ALIGNED, lambda s: ALIGNED), (PER_SPECIES, lambda s: f"{PER_SPECIES}-{s}")):
        meta = cells.assign(feature_matrix_label=[label_of(s) for s in cells["species"]], dataset_label=directory)
        mdir = root / "metadata" / directory / VERSIONS[directory]["metadata"]
        _write_csv(meta.loc[~dropped, meta_cols], mdir / "cell_metadata.csv")
        _write_csv(DONORS, mdir / "donor.csv")
        _write_csv(lib_df, mdir / "library.csv")
        _write_csv(value_sets, mdir / "value_sets.csv")
        edir = root / "expression_matrices" / directory / VERSIONS[directory]["expression_matrices"]
        obs = meta[["cell_barcode", "library_label", "feature_matrix_label"]].set_index(meta["cell_label"])
        if directory == ALIGNED:
            _write_csv(aligned_genes, mdir / "gene.csv")
            _write_h5ad(edir / ALIGNED, full, obs, var, 1e6)
            _write_view(full[~dropped], var, meta.loc[~dropped, "cell_label"], mdir / "views" / "example_gene_expression.csv",
                        VIEW_GENES, 1e6)
        else:
            for species in ("Human", "Macaque", "Marmoset"):
                rows = (cells["species"] == species).to_numpy()
                _write_csv(aligned_genes, mdir / f"{species.lower()}_gene.csv")
                _write_h5ad(edir / f"{PER_SPECIES}-{species}", full[rows], obs[rows], var, 1e6)
                keep = rows & ~dropped
                _write_view(full[keep], var, meta.loc[keep, "cell_label"],
                            mdir / "views" / f"example_{species.lower()}_gene_expression.csv", VIEW_GENES, 1e6)
    # 2% of cells have no cluster in the taxonomy yet
    unclustered = rng.random(len(cells)) < 0.02
    membership = cells.loc[~dropped & ~unclustered, ["cell_label", "cluster_alias", "cluster_label"]]
    return cells.assign(in_metadata=~dropped, clustered=~unclustered), membership


def _write_view(mat: sp.csr_matrix, var: pd.DataFrame, labels, path: Path, symbols, scale: float) -> None:
    """``views/example_gene_expression.csv``: log2-normalised values of a few genes (index ``cell_label``)."""
    syms = var["gene_symbol"].to_numpy()
    present = [s for s in symbols if (syms == s).any()]
    cols = [int(np.flatnonzero(syms == s)[0]) for s in present]
    totals = np.maximum(np.asarray(mat.sum(axis=1)).ravel(), 1)
    vals = np.log2(mat[:, cols].toarray() / totals[:, None] * scale + 1)
    df = pd.DataFrame(np.round(vals, 6), columns=present, index=pd.Index(labels, name="cell_label"))
    _write_csv(df, path, index=True)


def _value_sets_10x() -> pd.DataFrame:
    rows = [
        ("Female", "donor", "donor_sex", "Female", 1, None, None, "#565353"),
        ("Male", "donor", "donor_sex", "Male", 2, None, None, "#ADC4C3"),
        ("Human", "donor", "species_genus", "Human", 1, "NCBITaxon:9605", None, "#377eb8"),
        ("Macaque", "donor", "species_genus", "Macaque", 2, "NCBITaxon:9539", None, "#4daf4a"),
        ("Marmoset", "donor", "species_genus", "Marmoset", 3, "NCBITaxon:9481", None, "#FF5F5D"),
        ("Homo sapiens", "donor", "species_scientific_name", "Homo sapiens", 1, "NCBITaxon:9606", None, "#377eb8"),
        ("Macaca mulatta", "donor", "species_scientific_name", "Macaca mulatta", 2, "NCBITaxon:9544", None, "#4daf4a"),
        ("Callithrix jacchus", "donor", "species_scientific_name", "Callithrix jacchus", 3, "NCBITaxon:9483", None, "#FF5F5D"),
    ]
    for order, (roi, (name, dhba, color)) in enumerate(ROIS.items(), start=1):
        rows.append((roi, "library", "region_of_interest_label", name, order, dhba, None, color))
    return pd.DataFrame(rows, columns=["label", "table", "field", "description", "order", "external_identifier", "parent_label", "color_hex_triplet"])


# --------------------------------------------------------------------------------------------
# spatial
# --------------------------------------------------------------------------------------------
# region ellipses in slab millimetres (human scale): centre x, centre y, radius x, radius y
SHAPES = {"STR": (20.0, 28.0, 9.0, 13.0), "GPe": (35.0, 34.0, 3.5, 6.0), "GPi": (30.0, 42.0, 2.5, 3.5), "VeP": (22.0, 48.0, 5.0, 2.5)}
SCALE = {"Human": 1.0, "Macaque": 0.6, "Marmoset": 0.35}
PARCELLATION = [
    ("Basal ganglia and adjacent", "Basal ganglia and adjacent", 1, "basal_ganglia_and_adjacent", None, "#BEBEBE"),
    ("STR", "striatum", 2, "DHBA:10333", "Basal ganglia and adjacent", "#cd86cc"),
    ("GP", "globus pallidus", 3, "DHBA:10342", "Basal ganglia and adjacent", "#7AE361"),
    ("GPe", "external segment of globus pallidus", 4, "DHBA:10343", "Basal ganglia and adjacent", "#53DB33"),
    ("GPi", "internal segment of globus pallidus", 5, "DHBA:10344", "Basal ganglia and adjacent", "#A7DB33"),
    ("VeP", "ventral pallidus", 6, "DHBA:10345", "Basal ganglia and adjacent", "#9b19f5"),
    ("STH", "subthalamic nucleus", 7, "DHBA:10466", "Basal ganglia and adjacent", "#907991"),
    ("SN", "substantia nigra", 8, "DHBA:12251", "Basal ganglia and adjacent", "#89522A"),
]


def _ellipse(cx, cy, rx, ry, n=48) -> list[list[float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = [[round(cx + rx * np.cos(a), 4), round(cy + ry * np.sin(a), 4)] for a in t]
    return pts + [pts[0]]


def _inside(x, y, shape, s) -> np.ndarray:
    cx, cy, rx, ry = (v * s for v in shape)
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _make_spatial(root, rng, model: ExpressionModel, clusters: pd.DataFrame, species: str, truth_dir: Path) -> None:
    directory, label, donor, gene_file = SPATIAL[species]
    genes = _data(gene_file)
    mver = VERSIONS[directory]["metadata"]
    mdir = root / "metadata" / directory / mver
    s = SCALE[species]
    clusters = clusters[clusters["Cluster"].str.startswith(species + "-")]
    by_region = {
        "STR": clusters[clusters["Group"].str.match(r"^(STRd|STR |STR FS|STR TAC3|LAMP5|VIP|STR SST|STR LYPD6|STR Cholinergic|STRd Cholinergic)")],
        "GPe": clusters[clusters["Group"].str.startswith(("GPe",))],
        "GPi": clusters[clusters["Group"].str.startswith(("GPi",))],
        "VeP": clusters[clusters["Group"].str.startswith(("STRv", "STR-BF", "BF ", "GPin-BF", "OT "))],
        "glia": clusters[clusters["Neighborhood"] == "Nonneuron"],
    }
    panel = [g for g in genes["gene_symbol"].fillna("") if g in model.index]
    gcols = np.array([model.index[g] for g in panel])
    is_blank = genes["gene_identifier"].str.startswith("Blank").to_numpy()
    slabs = {"Human": [(16, 7), (17, 7)], "Macaque": [(42, 3), (43, 7)], "Marmoset": [(42, 5), (43, 5)]}[species]
    patches = []
    cells_out, counts_out, specimen, features = [], [], [], {}
    barcode0 = {"Human": 1324989690, "Macaque": 1291813781, "Marmoset": 1382042951}[species]
    for si, (slab_no, plane) in enumerate(slabs):
        slab_label = f"{donor}.CX.{slab_no}"
        plane_label = f"{slab_label}.Plane.{plane:02d}"
        # two striosome patches per section, inside the striatum
        cx, cy, rx, ry = (v * s for v in SHAPES["STR"])
        sec_patches = [(cx + rx * a, cy + ry * b, 1.6 * s) for a, b in rng.uniform(-0.45, 0.45, size=(3, 2))]
        patches += [{"slab_plane_label": plane_label, "x_slab_mm": round(px, 4), "y_slab_mm": round(py, 4), "radius_mm": round(pr, 4)} for px, py, pr in sec_patches]
        features[plane_label] = {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {"label": reg},
                 "geometry": {"type": "Polygon", "coordinates": [_ellipse(*(v * s for v in SHAPES[reg]))]}}
                for reg in ("STR", "GPe", "GPi", "VeP")
            ],
        }
        for sec in range(2):
            barcode = barcode0 + 1000 * si + sec
            if species == "Marmoset":
                section = f"{slab_label}.01.{sec + 6:02d}"
            else:
                section = f"{slab_label}.0{sec + 1}.03.0{sec + 2}"
            specimen.append(_specimen_row(section, barcode, slab_label, slab_no, plane, plane_label, donor, sec, si, species))
            n = 800
            x = rng.uniform(8 * s, 42 * s, n)
            y = rng.uniform(12 * s, 54 * s, n)
            region = np.full(n, "Basal ganglia and adjacent", dtype=object)
            for reg in ("STR", "GPe", "GPi", "VeP"):
                region[_inside(x, y, SHAPES[reg], s)] = reg
            in_patch = np.zeros(n, bool)
            for px, py, pr in sec_patches:
                in_patch |= (x - px) ** 2 + (y - py) ** 2 <= pr**2
            in_patch &= region == "STR"
            alias, clabel, logits = [], [], np.empty((n, len(gcols)))
            for i in range(n):
                reg = region[i]
                glia = rng.random() < (0.35 if reg != "Basal ganglia and adjacent" else 0.5)
                if reg == "Basal ganglia and adjacent" and not glia:
                    alias.append(f"{species}-Adj-{rng.integers(1, 40)}")
                    clabel.append(f"CS20250428_ADJ_{rng.integers(1, 40):04d}")
                    logits[i] = model.base[gcols] + rng.normal(0, 1.0, len(gcols))
                    continue
                pool = by_region["glia"] if glia else by_region[reg]
                if reg == "STR" and not glia:
                    strio = pool["Group"].str.contains("Striosome").to_numpy()
                    w = np.where(strio, 6.0 if in_patch[i] else 0.05, np.where(pool["Group"].str.contains("Matrix"), 0.2 if in_patch[i] else 6.0, 0.3))
                else:
                    w = np.ones(len(pool))
                r = pool.iloc[rng.choice(len(pool), p=w / w.sum())]
                alias.append(r["Cluster"])
                clabel.append(r["Cluster_label"])
                logits[i] = (model.base + model.lineage_effect(r.to_dict()) + model.species_effect[species])[gcols]
            # dorsolateral gradient of the gradient gene in the striatum (high dorsal-lateral)
            grad = np.clip(((x - cx) / rx - (y - cy) / ry) / 2 + 0.5, 0, 1) * (region == "STR")
            if GRADIENT_GENE in panel:
                logits[:, panel.index(GRADIENT_GENE)] += 2.5 * grad
            qc = rng.random(n) > 0.05
            lib = np.where(qc, rng.lognormal(np.log(150 * (1 + s) / 2), 0.4, n), rng.integers(1, 8, n))
            c = _counts(rng, logits, lib)
            full = np.zeros((n, len(genes)), dtype=np.int32)
            gene_pos = genes.reset_index(drop=True).index[genes["gene_symbol"].fillna("").isin(panel).to_numpy()]
            sym_order = genes["gene_symbol"].fillna("").to_numpy()[gene_pos]
            full[:, gene_pos] = c[:, [panel.index(g) for g in sym_order]]
            if is_blank.any():
                full[:, is_blank] = rng.poisson(0.02, size=(n, int(is_blank.sum())))
            counts_out.append(full)
            ids = [f"abmkfncc-{k + 1}" if species == "Marmoset" else str(k + 1) for k in range(n)]
            cells_out.append(pd.DataFrame({
                "cell_label": [f"{barcode}_{i}-20250227" for i in ids],
                "brain_section_label": section, "brain_section_barcode": str(barcode),
                "segmentation_job_id": "xenium_cell_segmentation_kit_v1" if species == "Marmoset" else "sis_cellpose_v1",
                "x_experiment": np.round(1000 * (x - 8 * s) + 500, 4), "y_experiment": np.round(1000 * (y - 12 * s) + 500, 4),
                "qc_pass": qc, "dataset_label": directory, "feature_matrix_label": label,
                "abc_sample_id": [_uuid(rng) if q else None for q in qc],
                "slab_plane_label": plane_label, "x_slab_mm": np.round(x, 6), "y_slab_mm": np.round(y, 6),
                "region": region, "in_patch": in_patch, "gradient": np.round(grad, 6),
                "cluster_alias": alias, "cluster_label": clabel,
            }))
    cells = pd.concat(cells_out, ignore_index=True)
    counts = sp.csr_matrix(np.vstack(counts_out))
    meta_cols = ["cell_label", "brain_section_label", "brain_section_barcode", "segmentation_job_id", "x_experiment",
                 "y_experiment", "qc_pass", "dataset_label", "feature_matrix_label", "abc_sample_id"]
    _write_csv(cells[meta_cols], mdir / "cell_metadata.csv")
    _write_csv(pd.DataFrame(specimen), mdir / "specimen_metadata.csv")
    coords = cells[["cell_label", "slab_plane_label", "x_slab_mm", "y_slab_mm"]]
    if species == "Marmoset":
        coords = cells[["cell_label", "brain_section_label"]].assign(
            x_rotated_um=np.round(cells["x_experiment"] * 0.98, 6), y_rotated_um=np.round(-cells["y_experiment"], 6)
        ).join(coords.drop(columns="cell_label"))
    _write_csv(coords, mdir / "slab_plane_coordinates.csv")
    anat = pd.DataFrame({"cell_label": cells["cell_label"], "Basal ganglia and adjacent": True})
    for reg in ("STR", "GP", "GPe", "GPi", "VeP", "SN", "STH"):
        anat[reg] = cells["region"].isin(["GPe", "GPi"]) if reg == "GP" else cells["region"] == reg
    anat["parcellation_term_symbol"] = cells["region"]
    _write_csv(anat, mdir / "cell_anatomical_annotations.csv")
    _write_csv(cells[["cell_label", "cluster_alias", "cluster_label"]], mdir / "cell_to_cluster_membership.csv")
    totals = np.asarray(counts.sum(axis=1)).ravel()
    supp = pd.DataFrame({"cell_label": cells["cell_label"], "total_counts": totals,
                         "total_counts_genes": np.asarray(counts[:, ~is_blank].sum(axis=1)).ravel()})
    if species != "Marmoset":
        supp["total_counts_Blank"] = totals - supp["total_counts_genes"]
        supp["pct_counts_Blank"] = np.round(100 * supp["total_counts_Blank"] / np.maximum(totals, 1), 6)
        supp["qc_pass_and_singlet"] = cells["qc_pass"]
    _write_csv(supp, mdir / "cell_supplemental_metadata.csv")
    _write_csv(SPATIAL_DONORS[SPATIAL_DONORS["species_genus"] == species], mdir / "donor.csv")
    _write_csv(genes, mdir / "gene.csv")
    vs = pd.DataFrame([(lab, "path", "parcellation_term_symbol", desc, o, ext, par, col) for lab, desc, o, ext, par, col in PARCELLATION],
                      columns=["label", "table", "field", "description", "order", "external_identifier", "parent_label", "color_hex_triplet"])
    _write_csv(vs, mdir / "value_sets.csv")
    var = genes.set_index("gene_identifier")
    obs = cells[["brain_section_label"]].set_index(cells["cell_label"])
    edir = root / "expression_matrices" / directory / VERSIONS[directory]["expression_matrices"]
    _write_h5ad(edir / label, counts, obs, var, 1000.0)
    _write_view(counts, var, cells["cell_label"], mdir / "views" / "example_gene_expression.csv",
                ["AQP4", "DRD1", "DRD2", "SLC17A6"], 1000.0)
    idir = root / "image_volumes" / directory / VERSIONS[directory]["image_volumes"]
    idir.mkdir(parents=True, exist_ok=True)
    for plane_label, fc in features.items():
        (idir / f"{plane_label}.geojson").write_text(json.dumps(fc), encoding="utf-8")
    tdir = truth_dir / "spatial"
    _write_csv(pd.DataFrame(patches).assign(species=species), tdir / f"{species.lower()}_striosome_patches.csv")
    _write_csv(cells[["cell_label", "region", "in_patch", "gradient"]], tdir / f"{species.lower()}_cells.csv")


def _specimen_row(section, barcode, slab_label, slab_no, plane, plane_label, donor, sec, si, species):
    return {
        "brain_section_label": section, "brain_section_barcode": str(barcode), "brain_section_thickness": 10,
        "brain_section_plane_of_section": "coronal (caudal to rostral)", "brain_section_ordinal": 140 + 10 * si + sec,
        "brain_section_depth": 1400 + 100 * si + 10 * sec, "section_set_label": section.rsplit(".", 1)[0],
        "section_set_ordinal": 3, "section_set_base_ordinal": 138 + 10 * si, "brain_block_label": f"{slab_label}.01",
        "brain_block_number": 1, "brain_slab_label": slab_label, "brain_slab_ordinal": slab_no,
        "brain_slab_thickness": 5.0 if species == "Marmoset" else 4.0, "hemisphere": "right",
        "brain_division_label": f"{donor}.CX", "brain_division_ordinal": 1, "donor_label": donor,
        "slab_plane_ordinal": plane, "slab_plane_label": plane_label, "slab_plane_order": 10000 + slab_no * 100 + plane,
    }


# --------------------------------------------------------------------------------------------
# taxonomy directory cell tables and the manifest
# --------------------------------------------------------------------------------------------
def _embedding(rng, cells: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    groups = sorted(clusters["Group"].unique())
    angle = {g: 2 * np.pi * i / len(groups) for i, g in enumerate(groups)}
    grp = cells["cluster_alias"].map(clusters.set_index("Cluster")["Group"])
    a = grp.map(angle).to_numpy(float)
    r = 12 + rng.normal(0, 1.0, len(cells))
    return pd.DataFrame({"cell_label": cells["cell_label"], "x": np.round(r * np.cos(a) + rng.normal(0, 0.6, len(a)), 6),
                         "y": np.round(r * np.sin(a) + rng.normal(0, 0.6, len(a)), 6)})


def write_manifest(root: Path) -> Path:
    """Write ``releases/<RELEASE>/manifest.json`` describing every file under ``root``."""
    file_listing: dict = {}
    directory_listing: dict = {}
    for directory, kinds in VERSIONS.items():
        for kind, version in kinds.items():
            rel_dir = f"{kind}/{directory}/{version}"
            base = root / rel_dir
            files = sorted(p for p in base.rglob("*") if p.is_file())
            total = 0
            for p in files:
                rel = p.relative_to(root).as_posix()
                attrs = {"version": version, "relative_path": rel, "url": BUCKET_URL + rel,
                         "size": p.stat().st_size, "file_hash": md5sum(p)}
                total += attrs["size"]
                node = file_listing.setdefault(directory, {}).setdefault(kind, {})
                if p.suffix == ".h5ad":
                    tag, norm = p.stem.rsplit("-", 1)
                    node.setdefault(tag, {})[norm] = {"files": {"h5ad": attrs}}
                else:
                    tag = p.name[: -len("".join(p.suffixes[-1:]))]
                    node[tag] = {"files": {p.suffix.lstrip("."): attrs}}
            directory_listing.setdefault(directory, {"directories": {}})["directories"][kind] = {
                "version": version, "relative_path": rel_dir, "url": BUCKET_URL + rel_dir + "/",
                "view_link": BUCKET_URL + "index.html#" + rel_dir + "/", "total_size": total,
            }
    manifest = {"version": RELEASE, "resource_uri": "s3://allen-brain-cell-atlas/",
                "directory_listing": directory_listing, "file_listing": file_listing}
    path = root / "releases" / RELEASE / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return path


def generate(root: Path, truth_dir: Path) -> None:
    """Generate the whole demo release under ``root`` and its ground truth under ``truth_dir``."""
    rng = np.random.default_rng(SEED)
    frames = taxonomy_frames()
    clusters = frames.pop("_clusters")
    aligned_genes = _data("gene_HMBA-10xMultiome-BG-Aligned.tsv")
    spatial_symbols = set()
    for _, _, _, gene_file in SPATIAL.values():
        spatial_symbols |= set(_data(gene_file)["gene_symbol"].dropna())
    model = ExpressionModel(rng, aligned_genes, clusters, spatial_symbols)
    cells, membership = _make_10x(root, rng, model, clusters, aligned_genes, truth_dir)
    tdir = root / "metadata" / TAXONOMY / VERSIONS[TAXONOMY]["metadata"]
    counts = cells.groupby("cluster_alias").size()
    cluster = pd.DataFrame({"label": clusters["Cluster_label"], "cluster_alias": clusters["Cluster"],
                            "number_of_cells": clusters["Cluster"].map(counts).fillna(0).astype(int)})
    _write_csv(cluster, tdir / "cluster.csv")
    for name, df in frames.items():
        _write_csv(df, tdir / f"{name}.csv")
    _write_csv(membership, tdir / "cell_to_cluster_membership.csv")
    _write_csv(_embedding(rng, cells[cells["in_metadata"]], clusters), tdir / "cell_2d_embedding_coordinates.csv")
    _write_csv(cells[["cell_label", "species", "cluster_alias", "in_metadata", "clustered"]], truth_dir / "cells_10x.csv")
    for species in ("Human", "Macaque", "Marmoset"):
        _make_spatial(root, rng, model, clusters, species, truth_dir)
    write_manifest(root)
