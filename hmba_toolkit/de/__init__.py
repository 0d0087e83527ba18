"""Differential expression: cell-level Wilcoxon and donor-level pseudobulk (AHBA region groups: ``ahba.region_groups``).

Every method returns the same tidy table (``gene, group, reference, log2_fold_change,
statistic, pvalue, padj, mean_in, mean_out, frac_in, frac_out``).
"""

from .._taxonomy import check_cross_species
from ._result import RESULT_COLUMNS, bh_adjust
from ._pseudobulk import aggregate_counts, pseudobulk
from ._wilcoxon import wilcoxon

__all__ = ["RESULT_COLUMNS", "aggregate_counts", "bh_adjust", "check_cross_species", "pseudobulk", "wilcoxon"]


def __getattr__(name: str):
    if name == "region_groups":  # moved to ahba (it tests AHBA regions); the old place works for one release
        from .._compat import warn_renamed
        from ..ahba.regions import region_groups

        warn_renamed("hmba_toolkit.de.region_groups", "hmba_toolkit.ahba.region_groups", "hmba_toolkit.de")
        return region_groups
    raise AttributeError(f"module 'hmba_toolkit.de' has no attribute {name!r}")
