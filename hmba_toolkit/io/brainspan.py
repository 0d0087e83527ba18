"""Reader for BrainSpan developmental transcriptome downloads (RNA-seq genes matrix).

Reference: Miller et al. 2014, Nature 508:199; BrainSpan technical white paper
"Transcriptome profiling by RNA sequencing"; download ``well_known_file_download/267666525``.
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import DataFormatError

__all__ = ["read_brainspan", "age_in_years", "developmental_period", "DEVELOPMENTAL_PERIODS"]

ROW_COLUMNS = ["row_num", "gene_id", "ensembl_gene_id", "gene_symbol", "entrez_id"]
COLUMN_COLUMNS = ["column_num", "donor_id", "donor_name", "age", "gender", "structure_id", "structure_acronym", "structure_name"]


def age_in_years(age: str) -> float:
    """BrainSpan age strings (``'8 pcw'``, ``'4 mos'``, ``'1 yrs'``) as years from birth (40 pcw = 0)."""
    try:
        n, unit = str(age).split()
        return {"pcw": (float(n) - 40.0) / 52.0, "mos": float(n) / 12.0, "yrs": float(n)}[unit]
    except (ValueError, KeyError):
        raise DataFormatError(f"unrecognised BrainSpan age {age!r}") from None


#: Kang et al. 2011 (Nature 478:483, Table 1): period, stage, and its lower age bound in years
#: from birth (post-conception weeks as (pcw - 40) / 52, so birth = 0).
DEVELOPMENTAL_PERIODS = pd.DataFrame(
    [(1, "embryonic", "4 pcw"), (2, "early fetal", "8 pcw"), (3, "early fetal", "10 pcw"),
     (4, "early mid-fetal", "13 pcw"), (5, "early mid-fetal", "16 pcw"), (6, "late mid-fetal", "19 pcw"),
     (7, "late fetal", "24 pcw"), (8, "neonatal and early infancy", "0 mos"), (9, "late infancy", "6 mos"),
     (10, "early childhood", "1 yrs"), (11, "middle and late childhood", "6 yrs"), (12, "adolescence", "12 yrs"),
     (13, "young adulthood", "20 yrs"), (14, "middle adulthood", "40 yrs"), (15, "late adulthood", "60 yrs")],
    columns=["period", "stage", "from_age"],
)
_STAGE_GROUPS = {1: "prenatal", 2: "prenatal", 3: "prenatal", 4: "prenatal", 5: "prenatal", 6: "prenatal", 7: "prenatal",
                 8: "infancy", 9: "infancy", 10: "childhood", 11: "childhood", 12: "adolescence",
                 13: "adulthood", 14: "adulthood", 15: "adulthood"}


def developmental_period(age: str) -> int:
    """Kang et al. (2011) developmental period (1-15) of a BrainSpan age string.

    Periods 1-7 are prenatal (4, 8, 10, 13, 16, 19 and 24 post-conception weeks onwards; a
    prenatal sample of 38 pcw or more stays in period 7), 8-9 infancy (birth, 6 months),
    10-11 childhood (1, 6 years), 12 adolescence (12 years), 13-15 adulthood (20, 40, 60 years).

    Examples
    --------
    >>> [developmental_period(a) for a in ("8 pcw", "37 pcw", "4 mos", "13 yrs", "40 yrs")]
    [2, 7, 8, 12, 14]

    References
    ----------
    Kang HJ et al. (2011) Spatio-temporal transcriptome of the human brain. Nature 478:483-489, Table 1.
    """
    years = age_in_years(age)
    if str(age).split()[1] == "pcw":
        if years < age_in_years("4 pcw"):
            raise DataFormatError(f"BrainSpan age {age!r} is before period 1 (4 pcw)")
        bounds = DEVELOPMENTAL_PERIODS.iloc[:7]
    else:
        bounds = DEVELOPMENTAL_PERIODS.iloc[7:]
    starts = bounds["from_age"].map(age_in_years).to_numpy()
    return int(bounds["period"].iloc[int((starts <= years + 1e-9).sum()) - 1])


def read_brainspan(folder: str | os.PathLike) -> ad.AnnData:
    """Read ``expression_matrix.csv`` + ``rows_metadata.csv`` + ``columns_metadata.csv`` as AnnData.

    Returns
    -------
    anndata.AnnData
        ``obs`` = samples (columns_metadata, plus ``age_years``, Kang 2011 ``period`` 1-15 and
        ``stage``: prenatal, infancy, childhood, adolescence, adulthood), ``var`` = genes indexed by
        ``gene_symbol`` made unique, ``X`` = RPKM (float64).

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_brainspan
    >>> bs = read_brainspan(fetch_demo_brainspan())
    >>> "age_years" in bs.obs
    True
    """
    folder = Path(folder)
    if folder.is_file():
        raise DataFormatError(f"{folder} is a file: pass the BrainSpan folder that holds it (expression_matrix.csv, "
                              "rows_metadata.csv, columns_metadata.csv)")
    rows_p, cols_p, mat_p = (folder / f for f in ("rows_metadata.csv", "columns_metadata.csv", "expression_matrix.csv"))
    for p in (rows_p, cols_p, mat_p):
        if not p.is_file():
            raise DataFormatError(f"{p}: missing from the BrainSpan folder")
    rows = pd.read_csv(rows_p, dtype={"ensembl_gene_id": str, "gene_symbol": str})
    cols = pd.read_csv(cols_p, dtype={"donor_name": str, "age": str})
    for df, need, p in ((rows, ROW_COLUMNS, rows_p), (cols, COLUMN_COLUMNS, cols_p)):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise DataFormatError(f"{p}: missing columns {missing}")
    mat = pd.read_csv(mat_p, header=None, index_col=0)
    if mat.shape != (len(rows), len(cols)):
        raise DataFormatError(f"{mat_p}: shape {mat.shape}, expected (rows_metadata, columns_metadata) = {(len(rows), len(cols))}")
    cols["age_years"] = cols["age"].map(age_in_years)
    cols["period"] = cols["age"].map(developmental_period).astype(np.int64)
    cols["stage"] = pd.Categorical(cols["period"].map(_STAGE_GROUPS),
                                   categories=["prenatal", "infancy", "childhood", "adolescence", "adulthood"], ordered=True)
    obs = cols.set_index(cols["column_num"].astype(str).rename("sample"))
    var = rows.set_index(pd.Index(rows["gene_symbol"].astype(str), name="gene_symbol"))
    out = ad.AnnData(X=mat.to_numpy(dtype=np.float64).T, obs=obs, var=var.drop(columns="gene_symbol"))
    out.var_names_make_unique()
    return out
