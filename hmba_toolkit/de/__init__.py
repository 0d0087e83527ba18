"""Differential expression: cell-level Wilcoxon, donor-level pseudobulk, AHBA region groups.

Every method returns the same tidy table (``gene, group, reference, log2_fold_change,
statistic, pvalue, padj, mean_in, mean_out, frac_in, frac_out``).
"""

from ._checks import check_cross_species
from ._result import RESULT_COLUMNS, bh_adjust
from .pseudobulk import aggregate_counts, pseudobulk
from .regions import region_groups
from .wilcoxon import wilcoxon

__all__ = [
    "RESULT_COLUMNS", "aggregate_counts", "bh_adjust", "check_cross_species", "pseudobulk", "region_groups", "wilcoxon",
]
