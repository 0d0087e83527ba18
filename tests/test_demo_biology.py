"""The demo release's biology, as properties of the generator: markers where they belong, nuclei of realistic depth.

Targets (issue "A demo release that is the real release in miniature"): every curated or canonical marker is detected
(raw count > 0) in at least 60% of the cells of its types and at most 10% of the cells of unrelated classes;
housekeeping genes in nearly every nucleus; D1 vs D2 matrix MSNs differ by the textbook genes with no ribosomal or
mitochondrial gene among the top 20; a median of at least 3,000 UMIs per nucleus.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.datasets import _abc_demo, demo_ground_truth
from hmba_toolkit.de import pseudobulk

ALIGNED = "HMBA-10xMultiome-BG-Aligned"
LEVELS = ["Neighborhood", "Class", "Subclass", "Group"]


@pytest.fixture(scope="module")
def tenx(cache):
    cells = cache.cell_table(ALIGNED)
    raw = cache.read_expression(ALIGNED, normalization="raw")
    raw = raw[raw.obs_names.isin(cells.index)]
    obs = cells.loc[raw.obs_names]
    symbols = pd.Index(raw.var["gene_symbol"].astype(str))
    detected = raw.X.tocsc() > 0
    return {"cells": obs, "raw": raw, "symbols": symbols, "detected": detected}


def _detected(tenx, gene) -> pd.Series:
    col = tenx["symbols"].get_loc(gene)
    return pd.Series(np.asarray(tenx["detected"][:, col].todense()).ravel(), index=tenx["cells"].index)


def test_nuclei_have_realistic_depth(tenx):
    umis = np.asarray(tenx["raw"].X.sum(axis=1)).ravel()
    assert np.median(umis) >= 3000
    neurons = (tenx["cells"]["Neighborhood"] != "Nonneuron").to_numpy()
    assert np.median(umis[neurons]) > np.median(umis[~neurons])  # neurons are larger nuclei


def _markers() -> pd.DataFrame:
    """Curated (CAS) and canonical markers with the taxonomy node that carries each."""
    programs = pd.read_csv(demo_ground_truth() / "programs.csv")
    curated = _abc_demo.data_table("group_markers_CAS_CCN20250428.tsv").set_index("Group")["marker_gene_evidence"].fillna("")
    keep = [(g in _abc_demo.CANONICAL.get(n, [])) or (lvl == "Group" and g in curated.get(n, "").split("|"))
            for lvl, n, g in zip(programs["level"], programs["name"], programs["gene_symbol"])]
    return programs[keep]


def test_markers_are_detected_in_their_types_and_not_elsewhere(tenx):
    cells, markers = tenx["cells"], _markers()
    assert len(markers["gene_symbol"].unique()) > 80
    failures = []
    for gene, rows in markers.groupby("gene_symbol"):
        if gene not in tenx["symbols"]:
            continue
        own = np.zeros(len(cells), bool)
        for lvl, name in zip(rows["level"], rows["name"]):
            own |= (cells[lvl] == name).to_numpy()
        related = cells.loc[own, "Class"].unique()
        unrelated = ~cells["Class"].isin(related).to_numpy() & cells["Class"].notna().to_numpy()
        det = _detected(tenx, gene).to_numpy()
        inside, outside = det[own].mean(), det[unrelated].mean()
        if inside < 0.6 or outside > 0.10:
            failures.append(f"{gene}: {inside:.2f} of its types' cells, {outside:.2f} of unrelated classes'")
    assert not failures, failures


def test_textbook_markers_by_class(tenx):
    cells = tenx["cells"]
    expect = {  # gene: classes where it is expected in most cells
        "PTPRC": {"Immune"}, "MBP": {"OPC-Oligo"}, "AQP4": {"Astro-Epen"}, "CLDN5": set(), "PPP1R1B": {"CN LGE GABA"},
        "SLC17A6": {"F M Glut", "CN GABA-Glut"}, "TH": {"M Dopa"}, "GAD1": {"CN LGE GABA", "CN MGE GABA", "CN CGE GABA"},
    }
    by_class = {g: _detected(tenx, g).groupby(cells["Class"]).mean() for g in expect}
    for gene, classes in expect.items():
        for klass, rate in by_class[gene].items():
            if klass in classes:
                assert rate >= 0.6, (gene, klass, rate)
    # a cortical marker of absent cell types, and the neuronal programme, stay where they belong
    assert _detected(tenx, "SLC17A7").mean() < 0.05
    assert _detected(tenx, "SNAP25").groupby(cells["Neighborhood"]).mean()["Nonneuron"] < 0.1
    endo = cells["Subclass"] == "Endo"
    assert _detected(tenx, "CLDN5")[endo].mean() >= 0.6


def test_housekeeping_genes_are_broad(tenx):
    cells = tenx["cells"]
    for gene in ("ACTB", "EEF1A1", "CALM1", "TPT1"):
        rates = _detected(tenx, gene).groupby(cells["Class"]).mean()
        assert rates.min() >= 0.9, (gene, rates.idxmin(), rates.min())
    ribosomal = [g for g in tenx["symbols"] if g.startswith(("RPL", "RPS"))][:10]
    assert np.mean([_detected(tenx, g).mean() for g in ribosomal]) > 0.8


def test_d1_and_d2_msns_differ_by_the_known_genes(cache, tenx):
    cells = tenx["cells"]
    msn = cells[cells["Group"].isin(["STRd D1 Matrix MSN", "STRd D2 Matrix MSN"])]
    raw = tenx["raw"][msn.index]
    raw.obs = raw.obs.join(msn[["Group", "donor_label", "species_genus"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        de = pseudobulk(raw, "Group", replicate="donor_label", reference="STRd D2 Matrix MSN",
                        groups=["STRd D1 Matrix MSN"], min_cells=5, seed=0)
    assert not de.head(20)["gene"].str.match(r"^(RP[LS]\d|MT-|MRP[LS])").any(), de.head(20)["gene"].tolist()
    # the canonical markers are switched on in one pathway and off in the other: the largest significant folds (the
    # smallest p-values go to genes raised a few fold at a higher level, such as the panel genes of either type)
    significant = de[de["padj"] < 1e-10]
    top = significant.loc[significant["log2_fold_change"].abs().sort_values(ascending=False, kind="stable").index[:20]]
    up = set(top.loc[top["log2_fold_change"] > 0, "gene"])
    down = set(top.loc[top["log2_fold_change"] < 0, "gene"])
    assert len(up & {"DRD1", "TAC1", "PDYN", "EBF1", "RXFP1", "ISL1"}) >= 4, up
    assert len(down & {"DRD2", "PENK", "ADORA2A", "GPR6", "SP9"}) >= 4, down
