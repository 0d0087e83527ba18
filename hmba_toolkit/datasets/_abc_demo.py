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
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .._log2cpm import CPM
from .._files import md5sum
from ._abc_mapmycells import make_mapmycells
from ._abc_patchseq import PATCHSEQ, make_patchseq
from ._abc_spatial import SPATIAL, make_spatial
from ._demo_common import DONOR_COLUMNS, LEVELS, counts, data_table, on_genes, uuid4, write_csv, write_h5ad, write_view

SEED = 20250428
BUCKET_URL = "https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/"

ALIGNED = "HMBA-10xMultiome-BG-Aligned"
PER_SPECIES = "HMBA-10xMultiome-BG"
TAXONOMY = "HMBA-BG-taxonomy-CCN20250428"
# Later manifests rename the aligned set and the taxonomy directory
CROSS_SPECIES = "HMBA-10xMultiome-BG-Cross-Species"
TAXONOMY_RENAMED = "HMBA-BG-taxonomy"
# Data version of each (directory, kind), per release. 20251031: the public HMBA-BG release; 20260228 adds the macaque
# Patch-seq set and a new human spatial metadata version; 20261031 renames the aligned set and the taxonomy directory.
_BASE = {
    ALIGNED: {"metadata": "20250630", "expression_matrices": "20250630"},
    PER_SPECIES: {"metadata": "20250630", "expression_matrices": "20250630"},
    TAXONOMY: {"metadata": "20250630", "mapmycells": "20250630"},
    SPATIAL["Human"][0]: {"metadata": "20250930", "expression_matrices": "20250930", "image_volumes": "20250630"},
    SPATIAL["Macaque"][0]: {"metadata": "20250630", "expression_matrices": "20250630", "image_volumes": "20250630"},
    SPATIAL["Marmoset"][0]: {"metadata": "20250630", "expression_matrices": "20250630", "image_volumes": "20250630"},
}
RELEASES = {
    "20251031": _BASE,
    "20260228": {**_BASE, SPATIAL["Human"][0]: {**_BASE[SPATIAL["Human"][0]], "metadata": "20260228"},
                 PATCHSEQ: {"metadata": "20260228", "expression_matrices": "20260228"}},
}
RELEASES["20261031"] = {
    **{d: v for d, v in RELEASES["20260228"].items() if d not in (ALIGNED, TAXONOMY)},
    CROSS_SPECIES: {"metadata": "20260415", "expression_matrices": "20260331"},
    TAXONOMY_RENAMED: {"metadata": "20250630", "mapmycells": "20250630"},
}
RELEASE = "20251031"  # the release the tutorials were written for
#: every (directory, kind) -> version generated (union over the releases)
VERSIONS: dict[str, dict[str, str]] = {}
for _listing in RELEASES.values():
    for _d, _kinds in _listing.items():
        VERSIONS.setdefault(_d, {}).update(_kinds)

# Donors of the release. The first five rows carry the real donor table values (Allen's clustering notebook prints
# them); the others are real donor labels with illustrative hashes (their real hashes are not published in a form we
# could check).
DONORS = pd.DataFrame(
    [
        ("H21.30.004", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "57 yrs", 57.0, "years", "DO-XWIW2465"),
        ("H24.30.003", "NCBITaxon:9606", "Homo sapiens", "Human", "Female", "19 yrs", 19.0, "years", "DO-OSUT8071"),
        ("Q19.26.010", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Female", "10 yrs", 10.0, "years", "DO-XYBX6133"),
        ("QM21.26.001", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "6 yrs", 6.0, "years", "DO-MCUM5797"),
        ("QM23.50.003", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "6 yrs", 6.0, "years", "DO-HHOI8925"),
        ("H18.30.001", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "58 yrs", 58.0, "years", "DO-HSDA1801"),
        ("H24.30.001", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "50 yrs", 50.0, "years", "DO-HTQB2430"),
        ("Q21.26.002", "NCBITaxon:9545", "Macaca nemestrina", "Macaque", "Male", "11 yrs", 11.0, "years", "DO-QNEM2126"),
        ("CJ23.56.002", "NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Female", "4.0 yrs", 3.956284153, "years", "DO-CJMA2302"),
        ("CJ24.56.001", "NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Male", "2.0 yrs", 1.95890411, "years", "DO-CJMB2401"),
    ],
    columns=DONOR_COLUMNS,
)
CELLS_PER_DONOR = {"Human": 220, "Macaque": 200, "Marmoset": 300}
MIN_CELLS_PER_GROUP = 4  # sampled cells of every Group (the last donor of each species tops rare Groups up)

# The 20 regions of interest of the release, in value-set order (GPe is 15th, as in the release). Names, labels and the
# DHBA ids of CaH, CaB, PuR, PuC, NAC, GP, GPe, GPi, VeP, STH, SN, VTA and Br are the release's; the pairing of the
# remaining seven ids with their labels could not be checked. Colours of GP, GPe, GPi, VeP, STH and SN are Allen's.
ROIS = {
    "Ca": ("caudate nucleus", "DHBA:10336", "#0030ec"),
    "CaH": ("head of caudate", "DHBA:10334", "#0010d9"),
    "CaB": ("body of caudate", "DHBA:10335", "#0060ff"),
    "CaT": ("tail of caudate", "DHBA:10337", "#4090ff"),
    "Pu": ("putamen", "DHBA:10338", "#00a0c0"),
    "PuR": ("rostral putamen", "DHBA:11537", "#00bfa0"),
    "PuC": ("caudal putamen", "DHBA:11538", "#00bfff"),
    "PuPV": ("posteroventral putamen", "DHBA:146034742", "#30d0e0"),
    "NAC": ("nucleus accumbens", "DHBA:10339", "#c941a7"),
    "NACc": ("core of nucleus accumbens", "DHBA:10340", "#d960b7"),
    "NACs": ("shell of nucleus accumbens", "DHBA:10341", "#e980c7"),
    "Eca": ("peri-caudate ependymal and subependymal zone", "DHBA:146034754", "#b0b0b0"),
    "VeP": ("Ventral pallidus", "DHBA:10345", "#9b19f5"),
    "GP": ("globus pallidus", "DHBA:10342", "#7AE361"),
    "GPe": ("external segment of globus pallidus", "DHBA:10343", "#53DB33"),
    "GPi": ("internal segment of globus pallidus", "DHBA:10344", "#A7DB33"),
    "STH": ("subthalamic nucleus", "DHBA:10466", "#907991"),
    "SN": ("substantia nigra", "DHBA:12251", "#89522A"),
    "VTA": ("ventral tegmental area", "DHBA:12261", "#a0623a"),
    "Br": ("brain", "DHBA:10155", "#E0E0E0"),
}
STRIATUM = {"Ca", "CaH", "CaB", "CaT", "Pu", "PuR", "PuC", "PuPV", "NAC", "NACc", "NACs"}
SAMPLED_ROIS = ["CaH", "CaB", "PuR", "PuC", "NAC", "GPe", "GPi", "VeP", "STH", "SN"]  # dissected for the demo's donors
# Term order of the taxonomy: Neighborhoods in the release's order; Classes of Subpallium GABA in an order that gives
# CN LGE GABA the release's position (10); below that, alphabetical within the parent (this reproduces the release's
# Subclass and Group orders checked by hand, and its first Cluster orders; clusters are ordered by label in a Group).
NEIGHBORHOOD_ORDER = ["Nonneuron", "Glut Sero Dopa", "Subpallium GABA", "Subpallium GABA-Glut"]
CLASS_ORDER = {"Subpallium GABA": ["CN MGE GABA", "F M GABA", "Cx GABA", "CN LGE GABA", "CN CGE GABA"]}

# Canonical markers added to the curated CAS markers (group_markers_CAS_CCN20250428.tsv), by taxonomy node name:
# textbook markers of basal ganglia cell types (neurons: SNAP25/SYT1/RBFOX3; GABAergic: GAD1/GAD2/SLC32A1; MSNs:
# PPP1R1B/GPR88/RGS9/PDE10A/BCL11B/FOXP1 with DRD1/TAC1/PDYN/EBF1 (D1) and DRD2/PENK/ADORA2A/GPR6/SP9 (D2); dopamine:
# TH/SLC6A3/DDC/SLC18A2; cholinergic: CHAT/SLC5A7/SLC18A3; glia and vascular markers). A gene is "on" in every cell
# type below the nodes that list it and "off" (1/500 of its on level or less) elsewhere.
CANONICAL = {
    "Glut Sero Dopa": ["SNAP25", "SYT1", "RBFOX3"],
    "Subpallium GABA": ["SNAP25", "SYT1", "RBFOX3", "GAD1", "GAD2", "SLC32A1"],
    "Subpallium GABA-Glut": ["SNAP25", "SYT1", "RBFOX3", "GAD1", "GAD2", "SLC32A1", "SLC17A6"],
    "STR D1 MSN": ["PPP1R1B", "GPR88", "RGS9", "PDE10A", "BCL11B", "FOXP1", "DRD1", "TAC1", "PDYN", "EBF1", "RXFP1", "ISL1"],
    "STR D2 MSN": ["PPP1R1B", "GPR88", "RGS9", "PDE10A", "BCL11B", "FOXP1", "DRD2", "PENK", "ADORA2A", "GPR6", "SP9"],
    "STR Hybrid MSN": ["PPP1R1B", "GPR88", "RGS9", "PDE10A", "BCL11B", "FOXP1", "DRD1", "DRD2", "CASZ1", "OTOF"],
    "OT Granular GABA": ["PPP1R1B", "GPR88", "RGS9", "PDE10A", "BCL11B", "DRD1"],
    "M Dopa": ["TH", "SLC6A3", "DDC", "SLC18A2"],
    "CN Cholinergic GABA": ["CHAT", "SLC5A7", "SLC18A3", "LHX8", "GBX1"],
    "CN ST18 GABA": ["PVALB", "PTHLH", "TAC3"],
    "STR SST GABA": ["SST", "NPY"],
    "STR SST-CHODL GABA": ["SST", "NPY", "CHODL"],
    "STR RSPO2 GABA": ["SST", "RSPO2"],
    "Astrocyte": ["AQP4", "GFAP", "SLC1A2", "SLC1A3", "GJA1", "GLUL", "ALDH1L1"],
    "OPC-Oligo": ["OLIG1", "OLIG2", "SOX10"],
    "Oligodendrocyte": ["PLP1", "MBP", "MOBP", "MOG", "MAG", "CNP"],
    "OPC": ["PDGFRA", "VCAN", "CSPG4"],
    "Immune": ["PTPRC"],
    "Microglia": ["CSF1R", "P2RY12", "CX3CR1", "C1QB"],
    "Macrophage": ["CSF1R", "C1QB"],
    "Monocyte": ["CSF1R"],
    "Endo": ["CLDN5", "FLT1", "PECAM1", "VWF"],
    "Pericyte": ["PDGFRB", "RGS5"],
    "SMC": ["ACTA2", "MYH11"],
    "VLMC": ["DCN", "COL1A2"],
    "F Glut": ["SLC17A6"],
    "F M Glut": ["SLC17A6"],
}
# Expressed in every nucleus: levels in counts per 10,000 transcripts (CP10k). Ribosomal protein genes (RPL*, RPS*)
# are added at RIBOSOMAL_CP10K each.
HOUSEKEEPING = {"ACTB": 60, "EEF1A1": 50, "TPT1": 40, "FTH1": 35, "FTL": 25, "CALM1": 35, "CALM2": 25, "UBB": 25,
                "UBC": 15, "GAPDH": 30, "TMSB4X": 20, "PPIA": 15, "YWHAZ": 15, "HSP90AB1": 15, "B2M": 8}
RIBOSOMAL_CP10K = 6.0
# Markers of cell types absent from the basal ganglia (cortical glutamatergic neurons): off in every basal-ganglia
# cell, on in the Adjacent cortical types of the spatial sections.
SILENT = ["SLC17A7", "SATB2", "NEUROD6", "TBR1"]
ON_CP10K = 8.0  # median level of a program gene where it is on (log-normal, sd 0.35 in log)
OFF_CP10K = 0.005  # level of a program gene where it is off
EXTRA_FOLD = (2.0, 5.0)  # random extra program genes of a Group: expressed this many times above their usual level
STRIOSOME_GENES = {"KCNIP1"}  # striosome marker planted in the striosome MSN Groups
# Designed spatial panels hold genes chosen to tell the taxonomy's types apart at every level: every taxon (and every
# Adjacent type) is marked by this many genes of each species' panel, drawn at random among the panel genes no other
# program uses.
PANEL_GENES_PER_TYPE = 3
PANEL_FOLD = (4.0, 16.0)  # a panel gene is this many times above its usual level in the types it marks
_NEURON = ["SNAP25", "SYT1", "RBFOX3"]
# Neurons of the grey matter around the basal ganglia, outside the released taxonomy ("Adjacent" in the spatial
# sections): cortical, claustral and thalamic glutamatergic types, named here by their anatomy.
ADJACENT_TYPES = {
    "CTX IT Glut": _NEURON + ["SLC17A7", "SATB2", "CUX2", "RORB"],
    "CTX ET-CT Glut": _NEURON + ["SLC17A7", "TBR1", "FEZF2", "NEUROD6"],
    "CLA Glut": _NEURON + ["SLC17A7", "NR4A2", "NTNG2", "SYNPR"],
    "TH Glut": _NEURON + ["SLC17A6", "TCF7L2", "SHOX2", "ZIC1"],
}
GRADIENT_GENE = "CNR1"
GRADIENT_CP10K = 3.0  # level of the gradient gene outside the gradient (in every cell type)
VIEW_GENES = ["SLC17A6", "SLC32A1", "PTPRC", "PLP1", "AQP4", "DRD1", "DRD2"]  # Allen's example view  # dorsolateral-high gradient across the striatum (on all three panels)


# --------------------------------------------------------------------------------------------
# taxonomy tables
# --------------------------------------------------------------------------------------------
def taxonomy_frames() -> dict[str, pd.DataFrame]:
    """The cluster tables of the taxonomy directory (without cell-level tables)."""
    levels = {lvl: data_table(f"taxonomy_CCN20250428_v20250630_{lvl}.tsv") for lvl in LEVELS}
    orders = _term_orders(levels["Cluster"])
    rows = []
    for i, lvl in enumerate(LEVELS):
        t = levels[lvl]
        parent = LEVELS[i - 1] if i else None
        for r in t.itertuples(index=False):
            r = r._asdict()
            order = orders[lvl][r[lvl]]
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
    abbreviation = data_table("abbreviation_term_HMBA-BG-taxonomy-CCN20250428.tsv")
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


def _term_orders(clusters: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``term_order`` of every taxon per level: 1-based for Neighborhood..Group, 0-based for Cluster (as released)."""
    t = clusters.copy()
    t["_nb"] = t["Neighborhood"].map(NEIGHBORHOOD_ORDER.index)
    t["_class"] = [f"{CLASS_ORDER[n].index(c):02d}" if n in CLASS_ORDER else c for n, c in zip(t["Neighborhood"], t["Class"])]
    t = t.sort_values(["_nb", "_class", "Subclass", "Group", "Cluster_label"], kind="stable")
    out = {}
    for lvl in LEVELS:
        names = list(dict.fromkeys(t[lvl]))
        start = 0 if lvl == "Cluster" else 1
        out[lvl] = {name: k + start for k, name in enumerate(names)}
    return out


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


_HOUSEKEEPING_LIKE = re.compile(r"(MT-|RP[LS]\d|MRP[LS]|NDUF|COX\d|ATP5|UQCR|SDH[A-D])")


# --------------------------------------------------------------------------------------------
# the expression model
# --------------------------------------------------------------------------------------------
class ExpressionModel:
    """Planted expression programs on the aligned gene universe (gene symbols).

    Every gene has a level per cell type in counts per 10,000 transcripts (CP10k); ``base`` holds the natural log of
    the levels where no program is on, ``lineage_effect`` the log increase where one is. Program genes are off
    (``OFF_CP10K``) outside their programs and on (about ``ON_CP10K``) inside; housekeeping and ribosomal genes are
    broadly expressed; background genes have log-normal levels shared by every cell type. Every taxon and every
    Adjacent type (``adjacent_effect``) has :data:`PANEL_GENES_PER_TYPE` program genes on each spatial panel. Counts
    are drawn with mean ``libsize * level / 1e4`` (the remaining transcripts are not simulated), so a level is the
    expected count per 10,000 transcripts of the nucleus.
    """

    def __init__(self, rng: np.random.Generator, genes: pd.DataFrame, groups: pd.DataFrame,
                 panels: dict[str, set[str]]):
        markers = data_table("group_markers_CAS_CCN20250428.tsv").set_index("Group")["marker_gene_evidence"].fillna("")
        symbols = set(genes["gene_symbol"])
        housekeeping = {g: float(v) for g, v in HOUSEKEEPING.items() if g in symbols}
        housekeeping |= {g: RIBOSOMAL_CP10K for g in sorted(symbols) if re.fullmatch(r"RP[LS]\d+[AXY]?\d*", g)}
        program: dict[tuple[str, str], dict[str, float]] = {}
        for lvl in ("Neighborhood", "Class", "Subclass", "Group"):
            for name in sorted(groups[lvl].unique()):
                chosen = list(CANONICAL.get(name, []))
                if lvl == "Group":
                    chosen += [m for m in str(markers.get(name, "")).split("|") if m]
                program[(lvl, name)] = {g: 0.0 for g in chosen if g in symbols and g not in housekeeping}
        for name, chosen in ADJACENT_TYPES.items():
            program[("Adjacent", name)] = {g: 0.0 for g in chosen if g in symbols}
        # panel genes of every taxon and Adjacent type, per species panel
        taken = (set(housekeeping) | set(SILENT) | {g for p in program.values() for g in p} | STRIOSOME_GENES
                 | {GRADIENT_GENE})  # genes with a spatial role of their own are nobody's panel genes
        fold: dict[tuple[tuple[str, str], str], tuple[float, float]] = {}  # genes raised by a fold, not switched on
        for species in sorted(panels):
            panel_pool = sorted(g for g in panels[species] & symbols
                                if g not in taken and not _HOUSEKEEPING_LIKE.match(g))
            for key in sorted(program):
                for g in rng.choice(panel_pool, size=PANEL_GENES_PER_TYPE, replace=False):
                    program[key][str(g)] = 0.0
                    fold[(key, str(g))] = PANEL_FOLD
        # extra program genes per Group: moderate differences of broadly expressed genes (never housekeeping,
        # ribosomal or mitochondrial-function genes), and striosome genes
        excluded = set(housekeeping) | set(SILENT) | {g for p in program.values() for g in p}
        background = sorted(g for g in symbols - excluded if not _HOUSEKEEPING_LIKE.match(g))
        pool = rng.choice(background, size=900, replace=False)
        for name in sorted(groups["Group"].unique()):
            for g in rng.choice(pool, size=6, replace=False):
                if str(g) not in program[("Group", name)]:
                    program[("Group", name)][str(g)] = 0.0
                    fold[(("Group", name), str(g))] = EXTRA_FOLD
            if "Striosome" in name:
                for g in STRIOSOME_GENES:
                    program[("Group", name)][g] = 0.0
        planted = sorted({g for p in program.values() for g in p} - {g for _, g in fold})
        spatial_symbols = set().union(*panels.values())
        universe = sorted(set(pool) | set(planted) | set(housekeeping) | set(SILENT) & symbols
                          | (spatial_symbols & symbols) | {GRADIENT_GENE})
        self.genes = universe
        self.index = {g: i for i, g in enumerate(self.genes)}
        n = len(self.genes)
        level = np.exp(rng.normal(np.log(0.4), 1.1, size=n))  # background genes
        on = {g: float(ON_CP10K * np.exp(rng.normal(0, 0.35))) for g in planted}
        for g in planted:
            level[self.index[g]] = OFF_CP10K
        for g in SILENT:
            if g in self.index:
                level[self.index[g]] = OFF_CP10K
        for g, v in housekeeping.items():
            level[self.index[g]] = v
        level[self.index[GRADIENT_GENE]] = GRADIENT_CP10K
        self.base = np.log(level)
        # a marker's on level is the same in all its programs; an extra or panel gene is raised by a fold in its type
        self.program = {key: {g: (float(np.log(rng.uniform(*fold[(key, g)]))) if (key, g) in fold
                                  else float(np.log(on[g]) - self.base[self.index[g]]))
                              for g in genes_} for key, genes_ in program.items()}
        self.species_effect = {
            "Human": np.zeros(n),
            "Macaque": rng.normal(0, 0.3, size=n) * (rng.random(n) < 0.3),
            "Marmoset": rng.normal(0, 0.5, size=n) * (rng.random(n) < 0.3),
        }
        self._effects: dict[tuple[str, ...], np.ndarray] = {}
        self.adjacent_types = list(ADJACENT_TYPES)

    def lineage_effect(self, lineage: dict[str, str]) -> np.ndarray:
        """Planted log effect of a cell's lineage (max over its four levels' programs); memoised."""
        levels = ("Neighborhood", "Class", "Subclass", "Group", "Adjacent")
        key = tuple(lineage.get(lvl, "") for lvl in levels)
        if key not in self._effects:
            eff = np.zeros(len(self.genes))
            for lvl, name in zip(levels, key):
                for g, lfc in self.program.get((lvl, name), {}).items():
                    eff[self.index[g]] = max(eff[self.index[g]], lfc)
            self._effects[key] = eff
        return self._effects[key]

    def adjacent_effect(self, name: str) -> np.ndarray:
        """Planted log effect of the Adjacent type ``name`` (one of :data:`ADJACENT_TYPES`)."""
        return self.lineage_effect({"Adjacent": name})

    def truth(self) -> pd.DataFrame:
        rows = [
            {"level": lvl, "name": name, "gene_symbol": g, "log2_fold_change": round(lfc / np.log(2), 6)}
            for (lvl, name), genes in sorted(self.program.items())
            for g, lfc in sorted(genes.items())
        ]
        return pd.DataFrame(rows)


def _barcodes(rng, n: int) -> list[str]:
    letters = np.array(list("ACGT"))
    return ["".join(letters[rng.integers(0, 4, 16)]) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# 10X
# --------------------------------------------------------------------------------------------
def _top_up(rng, pick: np.ndarray, group: np.ndarray, seen: Counter) -> None:
    """Give every Group of a sample's candidates at least :data:`MIN_CELLS_PER_GROUP` cells so far, replacing
    (in place) picks of Groups that have many; the demo's mapping reference needs every Group twice or more."""
    picked = Counter(group[pick])
    for g in sorted(set(group)):
        need = MIN_CELLS_PER_GROUP - seen[g] - picked[g]
        if need <= 0:
            continue
        spare = np.flatnonzero([seen[x] + picked[x] > 4 * MIN_CELLS_PER_GROUP for x in group[pick]])[:need]
        members = np.flatnonzero(group == g)
        pick[spare] = members[rng.integers(len(members), size=len(spare))]
        picked = Counter(group[pick])


def _make_10x(root: Path, rng, model: ExpressionModel, clusters: pd.DataFrame, aligned_genes: pd.DataFrame,
              truth_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write both 10X directories; return (all simulated cells, cell_to_cluster_membership rows)."""
    clusters = clusters.assign(species=clusters["Cluster"].str.split("-").str[0])
    libraries, cells, blocks = [], [], []
    donor_effect_rows = []
    n_genes = len(model.genes)
    seen: Counter = Counter()  # cells per Group so far
    last_of = {species: int(i) for i, species in DONORS.groupby("species_genus").tail(1)["species_genus"].items()}
    for di, d in enumerate(DONORS.itertuples(index=False)):
        species = d.species_genus
        donor_eff = rng.normal(0, 0.15, size=n_genes)
        donor_effect_rows += [
            {"donor_label": d.donor_label, "gene_symbol": g, "log_effect": round(float(e), 6)}
            for g, e in zip(model.genes, donor_eff) if abs(e) > 0.3
        ]
        rois = ["Br"] if species == "Marmoset" else SAMPLED_ROIS
        per_roi = CELLS_PER_DONOR[species] // len(rois)
        sp_clusters = clusters[clusters["species"] == species]
        for k, roi in enumerate(rois):
            ok = sp_clusters[[roi in _group_regions(r.Group, r.Subclass, r.Neighborhood) for r in sp_clusters.itertuples()]]
            gw = ok.groupby("Group").apply(lambda t: _group_weight(t.name, t["Subclass"].iloc[0], t["Class"].iloc[0]), include_groups=False)
            w = ok["Group"].map(gw / ok.groupby("Group").size()).to_numpy(float)
            pick = rng.choice(len(ok), size=per_roi, p=w / w.sum())
            if di == last_of[species]:
                _top_up(rng, pick, ok["Group"].to_numpy(), seen)
            seen.update(ok["Group"].to_numpy()[pick])
            sample = f"{rng.integers(800, 2500)}_{'ABCDEFGH'[k % 8]}{rng.integers(1, 12):02d}"
            day = f"2{rng.integers(2, 5)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
            # library labels: method prefix, date, batch (unique per donor), well
            lib = (f"LPLCXR_{day}_{di + 1}_{'ABCDEFGH'[k % 8]}{k + 1}" if species == "Marmoset"
                   else f"L8XR_{day}_{di + 1:02d}_{'ABCDEFGH'[k % 8]}{k + 1:02d}")
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
            libsize = rng.lognormal(np.log(np.where(neuron, 22000, 12000)), 0.4)  # transcripts per nucleus
            blocks.append(counts(rng, logits, libsize))
            marm = species == "Marmoset"
            for i, (bc, r) in enumerate(zip(_barcodes(rng, per_roi), chosen.itertuples(index=False))):
                cells.append({
                    "cell_label": f"{bc}-{sample}", "cell_barcode": bc, "donor_label": d.donor_label,
                    "barcoded_cell_sample_label": sample, "library_label": lib,
                    "alignment_job_id": str(rng.integers(240101, 250131)) if marm else hashlib.sha1(lib.encode()).hexdigest(),
                    "doublet_score": np.nan if marm else round(float(rng.beta(1, 20)), 6),
                    "umi_count": np.nan if marm else float(blocks[-1][i].sum()),
                    "species": species, "cluster_alias": r.Cluster, "cluster_label": r.Cluster_label,
                    "abc_sample_id": uuid4(rng),
                })
    cells = pd.DataFrame(cells)
    all_counts = np.vstack(blocks)
    truth = model.truth()
    truth_dir.mkdir(parents=True, exist_ok=True)
    adjacent = truth["level"] == "Adjacent"  # programs of the spatial sections' Adjacent types, not of 10X cells
    write_csv(truth[~adjacent], truth_dir / "programs.csv")
    write_csv(truth[adjacent], truth_dir / "spatial" / "adjacent_programs.csv")
    write_csv(pd.DataFrame(donor_effect_rows), truth_dir / "donor_effects.csv")
    sp_rows = [{"species": s, "gene_symbol": g, "log_effect": round(float(e), 6)}
               for s, eff in model.species_effect.items() for g, e in zip(model.genes, eff) if e != 0]
    write_csv(pd.DataFrame(sp_rows), truth_dir / "species_effects.csv")

    # full-gene matrices on the aligned gene table (genes outside the model's universe are zero)
    full = on_genes(all_counts, model.genes, aligned_genes["gene_symbol"])
    lib_df = pd.DataFrame(libraries)
    meta_cols = ["cell_label", "cell_barcode", "donor_label", "barcoded_cell_sample_label", "library_label",
                 "alignment_job_id", "doublet_score", "umi_count", "feature_matrix_label", "dataset_label", "abc_sample_id"]
    # 1% of matrix rows are not in cell_metadata (QC-removed after the matrix was written, cf. Allen issue #28)
    dropped = rng.random(len(cells)) < 0.01
    value_sets = _value_sets_10x()
    species_genes = species_gene_tables()
    for directory, label_of in ((ALIGNED, lambda s: ALIGNED), (CROSS_SPECIES, lambda s: CROSS_SPECIES),
                                (PER_SPECIES, lambda s: f"{PER_SPECIES}-{s}")):
        meta = cells.assign(feature_matrix_label=[label_of(s) for s in cells["species"]], dataset_label=directory)
        mdir = root / "metadata" / directory / VERSIONS[directory]["metadata"]
        write_csv(meta.loc[~dropped, meta_cols], mdir / "cell_metadata.csv")
        write_csv(DONORS, mdir / "donor.csv")
        write_csv(lib_df, mdir / "library.csv")
        write_csv(value_sets, mdir / "value_sets.csv")
        edir = root / "expression_matrices" / directory / VERSIONS[directory]["expression_matrices"]
        obs = meta[["cell_barcode", "library_label", "feature_matrix_label"]].set_index(meta["cell_label"])
        if directory != PER_SPECIES:
            # 10X var carries gene_symbol only, as Allen's 10X h5ads do (the full table is gene.csv)
            var = aligned_genes.set_index("gene_identifier")[["gene_symbol"]]
            write_csv(aligned_genes, mdir / "gene.csv")
            write_h5ad(edir / directory, full, obs, var, CPM)
            write_view(full[~dropped], var, meta.loc[~dropped, "cell_label"], mdir / "views" / "example_gene_expression.csv",
                       VIEW_GENES, CPM)
            continue
        for species, table in species_genes.items():
            rows = (cells["species"] == species).to_numpy()
            var = table.set_index("gene_identifier")[["gene_symbol"]]
            matrix = on_genes(all_counts[rows], model.genes, table["gene_symbol"])
            write_csv(table, mdir / f"{species.lower()}_gene.csv")
            write_h5ad(edir / f"{PER_SPECIES}-{species}", matrix, obs[rows], var, CPM)
            keep = ~dropped[rows]
            write_view(matrix[keep], var, meta.loc[rows, "cell_label"][keep],
                       mdir / "views" / f"example_{species.lower()}_gene_expression.csv", VIEW_GENES, CPM)
    # Every cell of cell_metadata has a cluster; the membership table also holds cells that cell_metadata dropped,
    # some in clusters the released taxonomy does not annotate (Allen's 10X notebook filters them with ``isin``).
    membership = cells[["cell_label", "cluster_alias", "cluster_label"]].copy()
    unannotated = dropped & (rng.random(len(cells)) < 0.7)
    membership.loc[unannotated, "cluster_alias"] = [f"{s}-{1900 + i}" for i, s in enumerate(cells.loc[unannotated, "species"])]
    membership.loc[unannotated, "cluster_label"] = [f"CS20250428_CLUST_{1800 + i:04d}" for i in range(int(unannotated.sum()))]
    return cells.assign(in_metadata=~dropped), membership


def species_gene_tables() -> dict[str, pd.DataFrame]:
    """The per-species gene tables of ``HMBA-10xMultiome-BG`` with the release's identifier types.

    Human genes are identified by Ensembl ids (``ENSG...``), macaque and marmoset genes by the species' own NCBI Gene
    ids (``NCBIGene:...``). The real tables hold 36,601 / 35,219 / 35,787 genes; the demo's are the genes whose real
    identifiers ship with the package: the genes of each species' spatial panel (the human MERSCOPE panel with its
    Ensembl ids, the macaque MERSCOPE panel with its NCBI Gene ids, the marmoset Xenium panel). Genes are matched across
    species by symbol (71 genes are in all three).
    """
    human = data_table(SPATIAL["Human"][3])
    human = human[~human["gene_identifier"].str.startswith("Blank")]
    macaque = data_table(SPATIAL["Macaque"][3])
    macaque = macaque[macaque["ncbi_gene_identifier"].fillna("").str.startswith("NCBIGene:")]
    marmoset = data_table(SPATIAL["Marmoset"][3])
    marmoset = marmoset[marmoset["gene_identifier"].str.startswith("NCBIGene:")]
    return {
        "Human": human[["gene_identifier", "gene_symbol", "description", "molecular_type"]].reset_index(drop=True),
        "Macaque": pd.DataFrame({
            "gene_identifier": macaque["ncbi_gene_identifier"], "gene_symbol": macaque["ncbi_gene_symbol"],
            "description": macaque["ncbi_description"], "molecular_type": macaque["molecular_type"],
            "ensembl_gene_identifier": macaque["gene_identifier"],
        }).reset_index(drop=True),
        "Marmoset": marmoset[["gene_identifier", "gene_symbol", "description", "molecular_type"]].reset_index(drop=True),
    }


def _value_sets_10x() -> pd.DataFrame:
    rows = [
        ("Female", "donor", "donor_sex", "Female", 1, None, None, "#565353"),
        ("Male", "donor", "donor_sex", "Male", 2, None, None, "#ADC4C3"),
        ("Human", "donor", "species_genus", "Human", 1, "NCBITaxon:9605", None, "#377eb8"),
        ("Macaque", "donor", "species_genus", "Macaque", 2, "NCBITaxon:9539", None, "#4daf4a"),
        ("Marmoset", "donor", "species_genus", "Marmoset", 3, "NCBITaxon:9481", None, "#FF5F5D"),
        ("Homo sapiens", "donor", "species_scientific_name", "Homo sapiens", 1, "NCBITaxon:9606", None, "#377eb8"),
        ("Macaca mulatta", "donor", "species_scientific_name", "Macaca mulatta", 2, "NCBITaxon:9544", None, "#4daf4a"),
        ("Macaca nemestrina", "donor", "species_scientific_name", "Macaca nemestrina", 3, "NCBITaxon:9545", None, "#2b7a29"),
        ("Callithrix jacchus", "donor", "species_scientific_name", "Callithrix jacchus", 4, "NCBITaxon:9483", None, "#FF5F5D"),
    ]
    for order, (roi, (name, dhba, color)) in enumerate(ROIS.items(), start=1):
        rows.append((roi, "library", "region_of_interest_label", name, order, dhba, None, color))
    return pd.DataFrame(rows, columns=["label", "table", "field", "description", "order", "external_identifier", "parent_label", "color_hex_triplet"])


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


def write_manifest(root: Path, release: str = RELEASE) -> Path:
    """Write ``releases/<release>/manifest.json`` describing the files of the release's (directory, kind) versions."""
    file_listing: dict = {}
    directory_listing: dict = {}
    for directory, kinds in RELEASES[release].items():
        for kind, version in kinds.items():
            rel_dir = f"{kind}/{directory}/{version}"
            base = root / rel_dir
            files = sorted(p for p in base.rglob("*") if p.is_file())
            if not files:
                raise RuntimeError(f"release {release} lists {rel_dir}, which holds no file")
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
    manifest = {"version": release, "resource_uri": "s3://allen-brain-cell-atlas/",
                "directory_listing": directory_listing, "file_listing": file_listing}
    path = root / "releases" / release / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return path


def generate(root: Path, truth_dir: Path) -> None:
    """Generate the whole demo release under ``root`` and its ground truth under ``truth_dir``."""
    rng = np.random.default_rng(SEED)
    frames = taxonomy_frames()
    clusters = frames.pop("_clusters")
    aligned_genes = data_table("gene_HMBA-10xMultiome-BG-Aligned.tsv")
    panels = {species: set(data_table(gene_file)["gene_symbol"].dropna())
              for species, (_, _, _, gene_file) in SPATIAL.items()}
    model = ExpressionModel(rng, aligned_genes, clusters, panels)
    cells, membership = _make_10x(root, rng, model, clusters, aligned_genes, truth_dir)
    n_cells = cells[cells["in_metadata"]].groupby("cluster_alias").size()
    cluster = pd.DataFrame({"label": clusters["Cluster_label"], "cluster_alias": clusters["Cluster"],
                            "number_of_cells": clusters["Cluster"].map(n_cells).fillna(0).astype(int)})
    embedding = _embedding(rng, cells[cells["in_metadata"]], clusters)
    for directory in (TAXONOMY, TAXONOMY_RENAMED):
        tdir = root / "metadata" / directory / VERSIONS[directory]["metadata"]
        write_csv(cluster, tdir / "cluster.csv")
        for name, df in frames.items():
            write_csv(df, tdir / f"{name}.csv")
        write_csv(membership, tdir / "cell_to_cluster_membership.csv")
        write_csv(embedding, tdir / "cell_2d_embedding_coordinates.csv")
    raw = root / "expression_matrices" / ALIGNED / VERSIONS[ALIGNED]["expression_matrices"] / f"{ALIGNED}-raw.h5ad"
    first = root / "mapmycells" / TAXONOMY / VERSIONS[TAXONOMY]["mapmycells"]
    make_mapmycells(first, raw, cells, clusters)
    shutil.copytree(first, root / "mapmycells" / TAXONOMY_RENAMED / VERSIONS[TAXONOMY_RENAMED]["mapmycells"])
    write_csv(cells[["cell_label", "species", "cluster_alias", "in_metadata"]], truth_dir / "cells_10x.csv")
    for species in ("Human", "Macaque", "Marmoset"):
        directory = SPATIAL[species][0]
        make_spatial(root, rng, model, clusters, species, truth_dir, RELEASES[RELEASE][directory], raw, cells)
        if species == "Human":  # the re-released human metadata (20260228): the same tables
            new, old = (root / "metadata" / directory / RELEASES[r][directory]["metadata"] for r in ("20260228", RELEASE))
            shutil.copytree(old, new)
    make_patchseq(root, rng, model, clusters, truth_dir, RELEASES["20260228"][PATCHSEQ], raw, cells)
    for release in RELEASES:
        write_manifest(root, release)
