"""Small array helpers shared by the statistics modules."""

from __future__ import annotations

import numpy as np


def zscore_rows(A: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit (population) SD; constant rows become zeros."""
    A = A - A.mean(axis=1, keepdims=True)
    sd = np.sqrt((A * A).mean(axis=1, keepdims=True))
    return np.divide(A, sd, out=np.zeros_like(A), where=sd > 0)
