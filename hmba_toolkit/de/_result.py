"""The one tidy result table shared by every differential-expression method."""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

RESULT_COLUMNS = [
    "gene", "group", "reference", "log2_fold_change", "statistic", "pvalue", "padj",
    "mean_in", "mean_out", "frac_in", "frac_out",
]


def bh_adjust(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over every tested gene (NaN counted as 1)."""
    p = np.where(np.isnan(pvalues), 1.0, pvalues)
    if p.size == 0:
        return p
    return multipletests(p, alpha=0.05, method="fdr_bh")[1]


def tidy(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-group results into the shared layout, sorted by group then p-value."""
    out = pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]
    return out.sort_values(["group", "pvalue", "gene"], kind="stable", ignore_index=True)
