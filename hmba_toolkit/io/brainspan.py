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

__all__ = ["read_brainspan", "age_in_years"]

ROW_COLUMNS = ["row_num", "gene_id", "ensembl_gene_id", "gene_symbol", "entrez_id"]
COLUMN_COLUMNS = ["column_num", "donor_id", "donor_name", "age", "gender", "structure_id", "structure_acronym", "structure_name"]


def age_in_years(age: str) -> float:
    """BrainSpan age strings (``'8 pcw'``, ``'4 mos'``, ``'1 yrs'``) as years from birth (40 pcw = 0)."""
    try:
        n, unit = str(age).split()
        return {"pcw": (float(n) - 40.0) / 52.0, "mos": float(n) / 12.0, "yrs": float(n)}[unit]
    except (ValueError, KeyError):
        raise DataFormatError(f"unrecognised BrainSpan age {age!r}") from None


def read_brainspan(folder: str | os.PathLike) -> ad.AnnData:
    """Read ``expression_matrix.csv`` + ``rows_metadata.csv`` + ``columns_metadata.csv`` as AnnData.

    Returns
    -------
    anndata.AnnData
        ``obs`` = samples (columns_metadata, plus ``age_years``), ``var`` = genes indexed by
        ``gene_symbol`` made unique, ``X`` = RPKM (float64).

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_brainspan
    >>> bs = read_brainspan(fetch_demo_brainspan())
    >>> "age_years" in bs.obs
    True
    """
    folder = Path(folder)
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
    obs = cols.set_index(cols["column_num"].astype(str).rename("sample"))
    var = rows.set_index(pd.Index(rows["gene_symbol"].astype(str), name="gene_symbol"))
    out = ad.AnnData(X=mat.to_numpy(dtype=np.float64).T, obs=obs, var=var.drop(columns="gene_symbol"))
    out.var_names_make_unique()
    return out
