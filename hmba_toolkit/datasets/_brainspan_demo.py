"""Generate a demo BrainSpan developmental RNA-seq download (genes matrix) in the real format.

Files as in the BrainSpan "RNA-Seq Gencode v10 summarized to genes" zip: ``expression_matrix.csv``
(no header; first column ``row_num``, then one RPKM column per sample), ``rows_metadata.csv``
(``row_num,gene_id,ensembl_gene_id,gene_symbol,entrez_id``) and ``columns_metadata.csv``
(``column_num,donor_id,donor_name,age,gender,structure_id,structure_acronym,structure_name``).
Simulated values with planted developmental trajectories (prenatal-high, postnatal-rising)
and a striatum-high program. Gene symbols are real (the aligned HMBA gene table).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 1999
AGES = ["8 pcw", "12 pcw", "16 pcw", "21 pcw", "37 pcw", "4 mos", "1 yrs", "3 yrs", "8 yrs", "13 yrs", "19 yrs", "23 yrs", "30 yrs", "40 yrs"]
STRUCTURES = [(10361, "STR", "striatum"), (10398, "MD", "mediodorsal nucleus of thalamus"), (10294, "HIP", "hippocampus (hippocampal formation)"),
              (10361 + 1, "AMY", "amygdaloid complex"), (10173, "DFC", "dorsolateral prefrontal cortex"), (10657, "CBC", "cerebellar cortex")]
PRENATAL = ["DCX", "SOX11", "NES", "STMN2"]
POSTNATAL = ["MBP", "PLP1", "MOBP", "GFAP"]
STRIATAL = ["PPP1R1B", "PENK", "DRD1", "DRD2", "GPR88"]


def _age_years(age: str) -> float:
    n, unit = age.split()
    return {"pcw": (float(n) - 40) / 52, "mos": float(n) / 12, "yrs": float(n)}[unit]


def generate(root: Path, truth_dir: Path) -> None:
    rng = np.random.default_rng(SEED)
    with resources.files("hmba_toolkit.datasets").joinpath("data", "gene_HMBA-10xMultiome-BG-Aligned.tsv").open("r") as fh:
        table = pd.read_csv(fh, sep="\t")
    planted = PRENATAL + POSTNATAL + STRIATAL
    others = sorted(set(table["gene_symbol"]) - set(planted))
    symbols = planted + list(rng.choice(others, 300 - len(planted), replace=False))
    genes = table.drop_duplicates("gene_symbol").set_index("gene_symbol").loc[symbols].reset_index()
    donors = [(13058 + 7 * i, f"H376.{['IIA', 'IIB', 'IIIA', 'IV', 'V', 'VI'][i % 6]}.{51 + i}", age, "MF"[i % 2]) for i, age in enumerate(AGES)]
    cols = []
    for donor_id, name, age, sex in donors:
        for sid, acr, sname in STRUCTURES:
            if rng.random() < 0.85:
                cols.append((donor_id, name, age, sex, sid, acr, sname))
    cols = pd.DataFrame(cols, columns=["donor_id", "donor_name", "age", "gender", "structure_id", "structure_acronym", "structure_name"])
    cols.insert(0, "column_num", np.arange(1, len(cols) + 1))
    years = cols["age"].map(_age_years).to_numpy()
    t = np.log10(years + 1.0)  # 0 around birth, ~1.6 at 40 years
    base = rng.normal(1.5, 1.0, len(genes))
    logx = base[:, None] + rng.normal(0, 0.3, (len(genes), len(cols)))
    idx = {g: i for i, g in enumerate(symbols)}
    for g in PRENATAL:
        logx[idx[g]] += 2.5 * (t < 0.01) - 1.0 * t
    for g in POSTNATAL:
        logx[idx[g]] += 2.0 * np.clip(t, 0, None)
    for g in STRIATAL:
        logx[idx[g]] += 2.5 * (cols["structure_acronym"] == "STR").to_numpy()
    rpkm = np.round(np.exp(logx * np.log(2)) - 1, 6).clip(min=0)
    root.mkdir(parents=True, exist_ok=True)
    rows = pd.DataFrame({"row_num": np.arange(1, len(genes) + 1), "gene_id": np.arange(1, len(genes) + 1) + 7000,
                         "ensembl_gene_id": [f"ENSG{int(x):011d}" for x in rng.integers(1, 10**9, len(genes))],
                         "gene_symbol": genes["gene_symbol"], "entrez_id": genes["gene_identifier"].str.replace("NCBIGene:", "")})
    rows.to_csv(root / "rows_metadata.csv", index=False, lineterminator="\n")
    cols.to_csv(root / "columns_metadata.csv", index=False, lineterminator="\n")
    mat = pd.DataFrame(rpkm, index=rows["row_num"])
    mat.to_csv(root / "expression_matrix.csv", header=False, lineterminator="\n")
    truth_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"gene_symbol": planted, "program": ["prenatal"] * 4 + ["postnatal"] * 4 + ["striatal"] * 5}).to_csv(
        truth_dir / "brainspan_programs.csv", index=False, lineterminator="\n")
