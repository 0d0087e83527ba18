"""Small array helpers shared by the statistics modules."""

from __future__ import annotations

import numpy as np


def has_fractions(X) -> bool:
    """Whether a (sparse or dense) matrix of floats holds a non-integer value: data that are not raw counts."""
    import scipy.sparse as sp

    data = X.data if sp.issparse(X) else np.asarray(X)
    return bool(data.size) and np.issubdtype(data.dtype, np.floating) and not np.all(np.mod(data, 1) == 0)


def zscore_rows(A: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit (population) SD; constant rows become zeros."""
    A = A - A.mean(axis=1, keepdims=True)
    sd = np.sqrt((A * A).mean(axis=1, keepdims=True))
    return np.divide(A, sd, out=np.zeros_like(A), where=sd > 0)


def canonical_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its entry of largest magnitude is positive (the first such on ties).

    Eigenvectors and singular vectors are defined up to sign and LAPACK implementations disagree on
    it; results that depend on the sign (surrogates drawn from the vectors, component scores) are
    reproducible across machines only after this.
    """
    vectors = np.asarray(vectors, dtype=float)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        return vectors
    pivot = vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])]
    return vectors * np.where(pivot < 0, -1.0, 1.0)
