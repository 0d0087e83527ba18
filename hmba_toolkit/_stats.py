"""Statistics helpers shared by every testing module (bottom layer)."""

from __future__ import annotations

import numpy as np

__all__ = ["bh_adjust"]


def bh_adjust(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN (untested) entries count as 1 in the ranking.

    ``padj_(i) = min_{j >= i} p_(j) m / j`` over the sorted p-values, capped at 1.

    Examples
    --------
    >>> bh_adjust(np.array([0.01, 0.04, 0.03, np.nan])).round(3).tolist()
    [0.04, 0.053, 0.053, 1.0]

    References
    ----------
    Benjamini Y, Hochberg Y (1995) J R Stat Soc B 57:289-300.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    p = np.where(np.isnan(p), 1.0, p)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out
