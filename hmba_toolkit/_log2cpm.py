"""The one definition of the release's log-normalisation, ``log2(x / total * scale + 1)`` (bottom layer).

Allen's HMBA-BG ``-log2.h5ad`` files hold ``log2(x / total * 1e6 + 1)`` per cell (log2(CPM + 1)), computed in
float64 and stored as float32; the spatial sets use ``scale = 1e3`` (log2(CPT + 1)). Every path of the toolkit
that normalises counts (in memory, streamed, from a gene index, inside compiled kernels) calls
:func:`log2_per_total` (NumPy) or its compiled twin :data:`log2_per_total_jit`, built from the same source.

Names: a normalisation is requested as ``normalization="log2cpm"`` (or ``"raw"``/None for values as stored) and
recorded in ``uns["normalization"]`` as ``"log2(CPM+1)"``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["CPM", "CPT", "LOG2CPM", "LOG2CPM_MAX", "NORMALIZED_LABELS", "NORMALIZATIONS", "check_normalization",
           "log2_per_total", "log2_per_total_jit", "refuse_normalized", "row_totals"]

CPM = 1e6
CPT = 1e3
#: The parameter value asking for log2(CPM + 1) on the fly, and the label written to ``uns["normalization"]``.
LOG2CPM = "log2cpm"
LOG2CPM_LABEL = "log2(CPM+1)"
#: The largest log2(CPM + 1) a cell can hold (all its counts in one gene): larger values are not log2(CPM + 1).
LOG2CPM_MAX = float(np.log2(CPM + 1.0))
#: ``uns["normalization"]`` labels that say the values are not raw counts (the release's and the toolkit's own)
NORMALIZED_LABELS = ("log2", "log2(CPM+1)", "log2(CPT+1)", "CPM", LOG2CPM)
#: Values accepted by ``normalization=`` wherever counts can be normalised while read.
NORMALIZATIONS = (None, "raw", LOG2CPM)


def log2_per_total(values, totals, scale=CPM):
    """``log2(values / totals * scale + 1)``: Allen's log-normalisation of counts, element-wise.

    ``totals`` are each value's cell total (same shape as ``values``, or a scalar). Zero totals only occur with
    zero values, which are never stored in sparse matrices.

    Examples
    --------
    >>> log2_per_total(np.array([1.0, 3.0]), 4.0, 4.0).tolist()
    [1.0, 2.0]
    """
    return np.log2(values / totals * scale + 1.0)


#: The compiled twin of :func:`log2_per_total` (same source), for numba kernels.
log2_per_total_jit = numba.njit(cache=True, nogil=True)(log2_per_total)


@numba.njit(cache=True, nogil=True)
def row_totals(data: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Sum of each CSR row's stored values (0.0 for empty rows), in float64."""
    n = ptr.size - 1
    out = np.zeros(n)
    for r in range(n):
        s = 0.0
        for k in range(ptr[r], ptr[r + 1]):
            s += data[k]
        out[r] = s
    return out


def refuse_normalized(uns, what: str) -> None:
    """Raise when ``uns["normalization"]`` says the data are normalised: ``what`` needs raw counts."""
    from .errors import DataFormatError

    label = uns.get("normalization") if hasattr(uns, "get") else None
    if isinstance(label, str) and label.strip().lower() in {v.lower() for v in NORMALIZED_LABELS}:
        raise DataFormatError(f"{what} needs raw counts, but uns['normalization'] is {label!r}: the data are already "
                              "normalised (read the '-raw' matrix, normalization='raw')")


def check_normalization(value, parameter: str = "normalization") -> str | None:
    """Return ``"log2cpm"`` or None (values as stored) for an accepted ``normalization=``; else raise."""
    from .errors import ParameterError

    if value not in NORMALIZATIONS:
        raise ParameterError(f"{parameter} must be one of {NORMALIZATIONS}, not {value!r}")
    return LOG2CPM if value == LOG2CPM else None
