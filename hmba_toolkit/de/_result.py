"""The one tidy result table shared by every differential-expression method."""

from __future__ import annotations

import pandas as pd

from .._stats import bh_adjust

__all__ = ["RESULT_COLUMNS", "bh_adjust", "tidy"]

RESULT_COLUMNS = [
    "gene", "group", "reference", "log2_fold_change", "statistic", "pvalue", "padj",
    "mean_in", "mean_out", "frac_in", "frac_out",
]


def tidy(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-group results into the shared layout, sorted by group then p-value."""
    out = pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]
    return out.sort_values(["group", "pvalue", "gene"], kind="stable", ignore_index=True)
