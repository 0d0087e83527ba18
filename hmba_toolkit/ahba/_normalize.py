"""Normalization of AHBA microarray data (samples x genes), the abagen set of methods.

Each column is normalized across rows (for gene normalization pass samples x genes; for
sample normalization pass the transpose). Rows that are entirely NaN are left NaN and do
not enter the statistics.

Formulas (Fulcher et al. 2013; Arnatkeviciute et al. 2019; Markello et al. 2021):

========================  =====================================================================
``rs`` robust sigmoid     ``1 / (1 + exp(-(x - median(x)) / IQR_n(x)))``, ``IQR_n = (Q3 - Q1) / 1.349`` (normal-consistent)
``srs`` scaled rs         min-max rescaling of ``rs`` to [0, 1]
``sig`` sigmoid           ``1 / (1 + exp(-(x - mean(x)) / sd(x)))``, ``sd`` with ddof = 1
``scaled_sig``            min-max of ``sig``
``scaled_sig_qnt``        ``sig`` with mean and sd taken from the values within [P5, P95], then min-max
``mixed_sig``             ``scaled_sig`` where ``IQR_n == 0`` else ``srs``; NaN results set to 0
``center``                ``x - mean(x)``
``zscore``                ``(x - mean(x)) / sd(x)``, ddof = 1
``minmax``                ``(x - min) / (max - min)``
========================  =====================================================================

References
----------
Fulcher BD, Little MA, Jones NS (2013) J R Soc Interface 10:20130048.
Arnatkeviciute A, Fulcher BD, Fornito A (2019) NeuroImage 189:353-367.
Markello RD et al. (2021) eLife 10:e72129 (abagen).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats

from .._checks import numeric_array
from .._compat import warn
from ..errors import ParameterError

__all__ = ["normalize", "METHODS"]

_IQR_NORMAL = 2.0 * np.sqrt(2.0) * special.erfinv(0.5)  # 1.3489795...


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = np.min(x, axis=0), np.max(x, axis=0)
    return (x - lo) / (hi - lo)


def _rs(x: np.ndarray) -> np.ndarray:
    med = np.median(x, axis=0)
    iqr = stats.iqr(x, axis=0) / _IQR_NORMAL
    return 1.0 / (1.0 + np.exp(-(x - med) / iqr))


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x - np.mean(x, axis=0)) / np.std(x, axis=0, ddof=1)))


def _sig_qnt(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [5, 95], axis=0)
    inside = np.ma.masked_array(x, mask=(x < lo) | (x > hi))
    mean = np.asarray(inside.mean(axis=0))
    sd = np.asarray(inside.std(axis=0, ddof=1))
    return _minmax(1.0 / (1.0 + np.exp(-(x - mean) / sd)))


def _mixed(x: np.ndarray) -> np.ndarray:
    iqr = stats.iqr(x, axis=0) / _IQR_NORMAL
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(iqr == 0, _minmax(_sig(x)), _minmax(_rs(x)))
    return np.nan_to_num(out)


METHODS = {
    "rs": _rs,
    "srs": lambda x: _minmax(_rs(x)),
    "sig": _sig,
    "scaled_sig": lambda x: _minmax(_sig(x)),
    "scaled_sig_qnt": _sig_qnt,
    "mixed_sig": _mixed,
    "center": lambda x: x - np.mean(x, axis=0),
    "zscore": lambda x: (x - np.mean(x, axis=0)) / np.std(x, axis=0, ddof=1),
    "minmax": _minmax,
}
_ALIASES = {
    "rsig": "rs", "robust_sigmoid": "rs", "scaled_rsig": "srs", "scaled_robust_sigmoid": "srs",
    "sigmoid": "sig", "scaled_sigmoid": "scaled_sig", "scaled_sigmoid_quantiles": "scaled_sig_qnt",
    "mixed_sigmoid": "mixed_sig", "demean": "center",
}


def normalize(data: pd.DataFrame | np.ndarray, method: str = "srs", *, groups: pd.Series | None = None):
    """Normalize every column of ``data`` across its rows.

    Parameters
    ----------
    data
        Samples x genes (gene normalization) or genes x samples (sample normalization).
    method
        One of ``rs, srs, sig, scaled_sig, scaled_sig_qnt, mixed_sig, center, zscore, minmax``
        (abagen's aliases accepted), or ``None`` to return the data unchanged.
    groups
        Optional row labels (e.g. the structural class of each sample, abagen's
        ``norm_structures``): rows are normalized within each group separately.

    Returns
    -------
    Same type and shape as ``data``; all-NaN rows stay NaN.

    Examples
    --------
    >>> import numpy as np
    >>> out = normalize(np.array([[1.0], [2.0], [3.0], [10.0]]), "minmax")
    >>> out.ravel().round(3).tolist()
    [0.0, 0.111, 0.222, 1.0]
    """
    if method is None:
        return data
    key = _ALIASES.get(method, method)
    if key not in METHODS:
        raise ParameterError(f"method={method!r} is not one of {sorted(METHODS)} (or their abagen aliases)")
    frame = isinstance(data, pd.DataFrame)
    x = numeric_array(data, "data")
    if x.ndim != 2:
        raise ParameterError(f"data must be 2-D (rows x columns), got shape {x.shape}")
    if np.isinf(x).any():
        raise ParameterError(f"data has {int(np.isinf(x).sum())} infinite values")
    out = np.full_like(x, np.nan)
    rows = ~np.isnan(x).all(axis=1)
    partial = rows & np.isnan(x).any(axis=1)
    if partial.any():
        warn(f"normalize: {int(partial.sum())} rows hold NaN among their values; those entries stay NaN (rows without any "
             "value, such as regions without samples, are expected and kept NaN silently)")
    labels = np.asarray(groups) if groups is not None else np.zeros(x.shape[0])
    if labels.shape[0] != x.shape[0]:
        raise ParameterError(f"groups has {labels.shape[0]} labels for {x.shape[0]} rows")
    with np.errstate(divide="ignore", invalid="ignore"):
        for g in pd.unique(labels[rows]):
            sel = rows & (labels == g)
            out[sel] = METHODS[key](x[sel])
    lost = np.isnan(out) & ~np.isnan(x)
    if lost.any():
        cols = np.flatnonzero(lost.any(axis=0))
        names = list(data.columns[cols][:5]) if frame else cols[:5].tolist()
        warn(f"normalize: {cols.size} columns (e.g. {names}) do not vary across the rows of a group (or a group has a "
             f"single row), so {method!r} leaves them NaN")
    if frame:
        return pd.DataFrame(out, index=data.index, columns=data.columns)
    return out
