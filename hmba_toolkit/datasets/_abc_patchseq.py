"""The macaque Patch-seq directory of the demo release (``HMBA-Macaque-PatchSeq``, release 20260228).

The real set holds 717 striatal neurons of *Macaca mulatta* and *M. nemestrina* (SMART-Seq v4), each with a
transcriptome mapped onto the HMBA taxonomy by MapMyCells (HANN; in the demo by this toolkit's HANN on the demo's
10X cells, see ``_abc_mapmycells``), electrophysiology features (action potential, sweep, chirp and cross-sweep
long-square tables) and, for reconstructed cells, morphology features. The demo keeps
the real table names and the column names Allen's Patch-seq notebook uses, with fewer cells and a subset of the
features (each named as in the release). Genes are the macaque MERSCOPE panel's, with their macaque NCBI Gene ids.

Planted ground truth (``ground_truth/patchseq_cells.csv`` and ``patchseq_features.csv``): each cell's Group (its
expression and features were drawn from it; the membership and ``mmc_results`` hold the mapped Group, which can
differ), its off-target contamination (share and source Group) and morpho-electric means per Group. Fast-spiking
interneurons have narrow spikes, cholinergic interneurons large somata and wide spikes; D1 matrix MSNs have wider
spikes (``width_rheo``) and larger somata (``soma_surface_area``) than D2 matrix MSNs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._log2cpm import CPM
from ._abc_mapmycells import patchseq_mmc_results
from ._demo_common import DONOR_COLUMNS, counts, data_table, uuid4, write_csv, write_h5ad

PATCHSEQ = "HMBA-Macaque-PatchSeq"
FEATURE_MATRIX = "HMBA-Macaque-PatchSeq-BG"
DONORS = pd.DataFrame(
    [
        ("QN22.26.002", "NCBITaxon:9545", "Macaca nemestrina", "Macaque", "Male", "7 yrs", 7.0, "years", "DO-PSQN2226"),
        ("QM22.26.004", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Female", "14 yrs", 14.0, "years", "DO-PSQM2226"),
        ("QM23.26.001", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "5 yrs", 5.0, "years", "DO-PSQM2326"),
    ],
    columns=DONOR_COLUMNS,
)
REGIONS = {"Ca": ("caudate nucleus", "HOMBA:10334"), "Pu": ("putamen", "HOMBA:10338"), "NAC": ("nucleus accumbens", "HOMBA:10339")}
# Groups recorded, with their share of cells and planted feature means: width_rheo (ms), soma_surface_area (um^2),
# input resistance (MOhm), rheobase (pA), upstroke/downstroke ratio
PROFILES = {
    "STRd D1 Matrix MSN": (0.30, 1.02, 360.0, 160.0, 160.0, 3.6),
    "STRd D2 Matrix MSN": (0.30, 0.86, 300.0, 230.0, 110.0, 3.5),
    "STRd D1 Striosome MSN": (0.08, 0.98, 330.0, 190.0, 140.0, 3.6),
    "STRd D2 Striosome MSN": (0.08, 0.88, 310.0, 220.0, 120.0, 3.5),
    "STR FS PTHLH-PVALB GABA": (0.10, 0.34, 420.0, 90.0, 320.0, 1.4),
    "STR SST-CHODL GABA": (0.07, 0.62, 380.0, 420.0, 60.0, 2.4),
    "STRd Cholinergic GABA": (0.07, 1.55, 900.0, 260.0, 90.0, 2.9),
}
N_CELLS = 180
# Patch-seq samples pick up transcripts of the cells around the pipette (Tripathy et al. 2018, "Assessing
# transcriptome quality in patch-seq datasets", Front. Mol. Neurosci. 11:363, doi:10.3389/fnmol.2018.00363): glia and
# the abundant matrix MSNs
CONTAMINANTS = ["Astrocyte", "Oligo OPALIN", "Microglia", "STRd D1 Matrix MSN", "STRd D2 Matrix MSN"]
CONTAMINATION_BETA = (1.5, 6.0)  # share of each sample's transcripts from one contaminating cell type
PANEL_MOLECULES = 3000  # median molecules per cell captured on the panel's genes


def make_patchseq(root: Path, rng, model, clusters: pd.DataFrame, truth_dir: Path, versions: dict, raw_10x: Path,
                  cells_10x: pd.DataFrame) -> None:
    """Write the Patch-seq metadata, feature tables and log2 matrix (mapped onto the taxonomy with the 10X cells of
    ``raw_10x``), and the planted truth."""
    macaque = clusters[clusters["Cluster"].str.startswith("Macaque-")]
    groups = list(PROFILES)
    share = np.array([PROFILES[g][0] for g in groups])
    group = np.array(groups)[rng.choice(len(groups), size=N_CELLS, p=share / share.sum())]
    rows = []
    for g in group:
        pool = macaque[macaque["Group"] == g]
        rows.append(pool.iloc[rng.integers(len(pool))])
    tax = pd.DataFrame(rows).reset_index(drop=True)
    donor = DONORS["donor_label"].to_numpy()[rng.integers(len(DONORS), size=N_CELLS)]
    region = np.array(list(REGIONS))[rng.choice(3, size=N_CELLS, p=[0.4, 0.45, 0.15])]
    slice_, well = rng.integers(10, 20, N_CELLS), rng.integers(1, 9, N_CELLS)
    seen: dict[tuple, int] = {}
    labels = []
    for d, s, w in zip(donor, slice_, well):  # donor.slice.well.cell, cells numbered within a well
        seen[(d, s, w)] = seen.get((d, s, w), 0) + 1
        labels.append(f"{d}.{s:02d}.{w:02d}.{seen[(d, s, w)]:02d}")
    sample = [f"PS{2210000 + k:07d}" for k in range(N_CELLS)]
    library = [f"LS-{2200000 + k:07d}" for k in range(N_CELLS)]
    mdir = root / "metadata" / PATCHSEQ / versions["metadata"]
    cells = pd.DataFrame({
        "cell_label": labels, "library_label": library, "barcoded_cell_sample_label": sample, "donor_label": donor,
        "region_of_interest_label": region, "region_of_interest_id": [REGIONS[r][1] for r in region],
        "alignment_id": rng.integers(1_300_000_000, 1_400_000_000, N_CELLS).astype(str),
        "feature_matrix_label": FEATURE_MATRIX, "dataset_label": PATCHSEQ,
        "abc_sample_id": [uuid4(rng) for _ in range(N_CELLS)],
    })
    write_csv(cells, mdir / "cell_metadata.csv")
    write_csv(DONORS, mdir / "donor.csv")
    write_csv(pd.DataFrame({
        "library_label": library, "library_aliquot_label": [f"{lib}.1" for lib in library], "barcoded_cell_sample_label": sample,
        "barcoded_cell_sample_technique": "PatchSeq-SmartSeq", "library_method": "SMARTerV4",
    }), mdir / "library.csv")
    vs = [(r, "cell_metadata", "region_of_interest_label", name, k + 1, ident, None, color)
          for k, ((r, (name, ident)), color) in enumerate(zip(REGIONS.items(), ["#0030ec", "#00a0c0", "#c941a7"]))]
    vs += [(s, "donor", "species_scientific_name", s, k + 1, taxon, None, color)
           for k, (s, taxon, color) in enumerate([("Macaca mulatta", "NCBITaxon:9544", "#4daf4a"),
                                                  ("Macaca nemestrina", "NCBITaxon:9545", "#2b7a29")])]
    write_csv(pd.DataFrame(vs, columns=["label", "table", "field", "description", "order", "external_identifier",
                                        "parent_label", "color_hex_triplet"]), mdir / "value_sets.csv")
    # genes: the macaque panel's genes with their macaque NCBI Gene ids
    panel = data_table("gene_HMBA-MERSCOPE-QM23.50.001-BG.tsv")
    panel = panel[panel["ncbi_gene_identifier"].fillna("").str.startswith("NCBIGene:")].reset_index(drop=True)
    gene = pd.DataFrame({"gene_identifier": panel["ncbi_gene_identifier"], "gene_symbol": panel["ncbi_gene_symbol"],
                         "description": panel["ncbi_description"],
                         "gene_id": panel["ncbi_gene_identifier"].str.split(":").str[1],
                         "molecular_type": panel["molecular_type"], "synonym": ""})
    write_csv(gene, mdir / "gene.csv")
    present = [g for g in gene["gene_symbol"] if g in model.index]
    gcols = np.array([model.index[g] for g in present])
    logits = np.stack([(model.base + model.lineage_effect(r.to_dict()) + model.species_effect["Macaque"])[gcols]
                       for _, r in tax.iterrows()])
    logits, contamination, source = _contaminate(rng, logits, model, macaque, gcols)
    # molecules on the panel's genes: little cytosol, a few thousand (the reads are amplified copies of them)
    c = counts(rng, logits, rng.lognormal(np.log(PANEL_MOLECULES), 0.5, N_CELLS), dispersion=0.5, normalize=True)
    full = np.zeros((N_CELLS, len(gene)), dtype=np.int32)
    pos = {g: i for i, g in enumerate(present)}
    for j, g in enumerate(gene["gene_symbol"]):
        if g in pos:
            full[:, j] = c[:, pos[g]]
    edir = root / "expression_matrices" / PATCHSEQ / versions["expression_matrices"]
    write_h5ad(edir / FEATURE_MATRIX, sp.csr_matrix(full), cells[["donor_label"]].set_index(cells["cell_label"]),
               gene.set_index("gene_identifier")[["gene_symbol"]], CPM, kinds=("log2",))
    mmc = patchseq_mmc_results(edir / f"{FEATURE_MATRIX}-log2.h5ad", raw_10x, cells_10x, clusters,
                               pd.Series(tax["Cluster"].to_numpy(), index=labels))
    write_csv(mmc, mdir / "mmc_results.csv")
    membership = pd.DataFrame({"cell_label": labels, "cluster_alias": mmc["cluster_alias"],
                               "cluster_label": mmc["Cluster_label"]})
    write_csv(membership, mdir / "cell_to_cluster_membership.csv")
    features, truth = _features(rng, labels, group)
    for name, table in features.items():
        write_csv(table, mdir / f"{name}.csv")
    write_csv(pd.DataFrame({"cell_label": labels, "Group": group, "donor_label": donor, "region": region,
                            "contamination": np.round(contamination, 4), "contaminant_Group": source}),
              truth_dir / "patchseq_cells.csv")
    write_csv(truth, truth_dir / "patchseq_features.csv")


def _contaminate(rng, logits: np.ndarray, model, macaque: pd.DataFrame, gcols: np.ndarray):
    """Off-target transcripts: each cell's levels mixed with a share (:data:`CONTAMINATION_BETA`) of one of
    :data:`CONTAMINANTS` (Tripathy et al. 2018). Returns the log levels, the shares and the contaminating Groups."""
    share = rng.beta(*CONTAMINATION_BETA, size=len(logits))
    source = np.array(CONTAMINANTS)[rng.integers(len(CONTAMINANTS), size=len(logits))]
    first = macaque.drop_duplicates("Group").set_index("Group")
    profile = {g: np.exp((model.base + model.lineage_effect(first.loc[g].to_dict())
                          + model.species_effect["Macaque"])[gcols]) for g in CONTAMINANTS}
    level = (1 - share[:, None]) * np.exp(logits) + share[:, None] * np.stack([profile[g] for g in source])
    return np.log(level), share, source


def _features(rng, labels: list[str], group: np.ndarray) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Electrophysiology and morphology tables (columns named as in the release) around planted Group means."""
    n = len(labels)
    prof = np.array([PROFILES[g][1:] for g in group])
    width, soma, rin, rheo, ratio = (prof[:, k] for k in range(5))
    width = width * rng.lognormal(0, 0.09, n)
    soma = soma * rng.lognormal(0, 0.12, n)
    rin = rin * rng.lognormal(0, 0.2, n)
    rheo = rheo * rng.lognormal(0, 0.2, n)
    ratio = ratio * rng.lognormal(0, 0.08, n)
    thr = rng.normal(-42, 3, n) + np.where(np.isin(group, ["STRd D1 Matrix MSN", "STRd D1 Striosome MSN"]), -2.0, 0.0)
    peak = thr + rng.normal(75, 5, n)
    ap = pd.DataFrame({
        "cell_label": labels,
        "width_rheo": np.round(width / 1e3, 7), "width_rheo_ms": np.round(width, 4),
        "threshold_v_rheo": np.round(thr, 3), "peak_v_rheo": np.round(peak, 3),
        "fast_trough_v_rheo": np.round(thr - rng.normal(8, 2, n), 3),
        "adp_v_last_rheo": np.round(thr - rng.normal(4, 1.5, n), 3),
        "upstroke_rheo": np.round((peak - thr) / width * 1.6, 3),
        "downstroke_rheo": np.round(-(peak - thr) / width * 1.6 / ratio, 3),
        "upstroke_downstroke_ratio_rheo": np.round(ratio, 4),
        "width_suprathresh_mean": np.round(width * rng.lognormal(0.05, 0.05, n), 4),
    })
    sweep = pd.DataFrame({"cell_label": labels, "input_resistance": np.round(rin, 3), "rheobase_i": np.round(rheo, 2),
                          "tau": np.round(rng.lognormal(np.log(9), 0.3, n), 3), "v_baseline": np.round(rng.normal(-80, 4, n), 3),
                          "sag": np.round(np.clip(rng.normal(0.05, 0.03, n), 0, None), 4)})
    chirp = pd.DataFrame({"cell_label": labels, "chirp_peak_freq": np.round(rng.lognormal(np.log(2.5), 0.4, n), 3),
                          "chirp_3db_freq": np.round(rng.lognormal(np.log(6), 0.4, n), 3),
                          "chirp_peak_ratio": np.round(rng.lognormal(np.log(1.2), 0.1, n), 4)})
    cross = pd.DataFrame({"cell_label": labels, "adapt_mean": np.round(rng.normal(0.02, 0.02, n), 4),
                          "isi_cv_mean": np.round(rng.lognormal(np.log(0.15), 0.3, n), 4),
                          "latency_rheo": np.round(rng.lognormal(np.log(0.15), 0.5, n), 4),
                          "avg_rate_max": np.round(np.where(width < 0.5, 180, 40) * rng.lognormal(0, 0.2, n), 2)})
    reconstructed = rng.random(n) < 0.6
    morph = pd.DataFrame({
        "cell_label": labels, "soma_surface_area": np.round(soma, 2),
        "basal_dendrite_total_length": np.round(rng.lognormal(np.log(2500), 0.3, n) * np.sqrt(soma / 330), 2),
        "basal_dendrite_max_euclidean_distance": np.round(rng.lognormal(np.log(220), 0.2, n), 2),
        "basal_dendrite_num_branches": rng.poisson(30, n),
        "axon_bias_dorsal": np.round(rng.normal(0, 40, n), 2),
        "axon_exit_theta_coronal": np.round(rng.uniform(-180, 180, n), 2),
        "23_Sholl_PC0": np.round(rng.normal(0, 1, n), 4),
    })[reconstructed]
    truth = pd.DataFrame([{"Group": g, "width_rheo_ms": p[1], "soma_surface_area": p[2], "input_resistance": p[3],
                           "rheobase_i": p[4], "upstroke_downstroke_ratio_rheo": p[5]} for g, p in PROFILES.items()])
    return {"ap_features": ap, "sweep_features": sweep, "chirp_features": chirp,
            "cross_sweep_long_square_features": cross, "morphology_features": morph}, truth
