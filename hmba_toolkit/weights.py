"""Spatial weights from coordinates or distances: k-nearest neighbours, distance band, exponential decay.

All return a sparse (CSR) n x n matrix with a zero diagonal; :func:`row_standardize` makes each
row sum to 1 (rows without neighbours stay zero).

References
----------
Cliff AD, Ord JK (1981) Spatial Processes: Models and Applications. Pion. Burt JB et al. (2018)
Nat Neurosci 21:1251-1259 (exponential-decay weights ``exp(-d/d0)``).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ._checks import check_count, numeric_array
from .errors import ParameterError

__all__ = ["knn_weights", "distance_band_weights", "exponential_weights", "row_standardize"]


def _coords(coords) -> np.ndarray:
    """Positions as a finite float (N, d) array (1-D input is one coordinate per location)."""
    c = numeric_array(coords, "coords")
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2:
        raise ParameterError(f"coords must be an (N, d) array, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ParameterError(f"coords has {int((~np.isfinite(c)).any(axis=1).sum())} locations with NaN or infinite values")
    return c


def knn_weights(coords, k: int = 6) -> sp.csr_matrix:
    """Binary weights to each point's ``k`` nearest neighbours (not symmetrised)."""
    c = _coords(coords)
    k = check_count(k, "k")
    if not 1 <= k < len(c):
        raise ParameterError(f"k must be between 1 and N - 1 = {len(c) - 1}, got {k}")
    dist, idx = cKDTree(c).query(c, k=k + 1)
    shared = dist[:, 1] == 0
    if shared.any():
        warnings.warn(f"knn_weights: {int(shared.sum())} locations share their coordinates with another (e.g. rows "
                      f"{np.flatnonzero(shared)[:3].tolist()}): which of the tied neighbours each keeps depends on the input "
                      "order; drop or merge duplicated locations", UserWarning, stacklevel=2)
    rows = np.repeat(np.arange(len(c)), k)
    cols = idx[:, 1:].ravel()
    W = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(c), len(c)))
    W.setdiag(0)
    W.eliminate_zeros()
    return W


def distance_band_weights(coords, threshold: float) -> sp.csr_matrix:
    """Binary weights between points closer than ``threshold`` (symmetric)."""
    c = _coords(coords)
    if threshold <= 0:
        raise ParameterError(f"threshold must be positive, got {threshold}")
    pairs = cKDTree(c).query_pairs(threshold, output_type="ndarray")
    if not len(pairs):
        nearest = float(cKDTree(c).query(c, k=2)[0][:, 1].min()) if len(c) > 1 else float("nan")
        raise ParameterError(f"threshold {threshold} leaves every location without a neighbour (the closest pair is "
                             f"{nearest:.4g} apart)")
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(c), len(c)))


def exponential_weights(coords=None, d0: float = 1.0, *, distances=None, cutoff: float | None = None) -> sp.csr_matrix:
    """Weights ``exp(-d / d0)`` between points (Burt et al. 2018), sparse beyond ``cutoff``.

    Give ``coords`` (N, d) or a precomputed ``distances`` matrix. Without ``cutoff`` the matrix
    is dense-valued (use for a few thousand points at most); with it, pairs farther apart are 0.
    """
    if d0 <= 0:
        raise ParameterError(f"d0 must be positive, got {d0}")
    if distances is not None:
        D = np.asarray(distances, dtype=float)
        if D.ndim != 2 or D.shape[0] != D.shape[1]:
            raise ParameterError(f"distances must be a square matrix, got shape {D.shape}")
        vals = np.exp(-D / d0)
        if cutoff is not None:
            vals[D > cutoff] = 0.0
        W = sp.csr_matrix(vals)
    else:
        c = _coords(coords)
        if cutoff is None:
            diff = c[:, None, :] - c[None, :, :]
            W = sp.csr_matrix(np.exp(-np.sqrt((diff**2).sum(-1)) / d0))
        else:
            pairs = cKDTree(c).query_pairs(cutoff, output_type="ndarray")
            d = np.linalg.norm(c[pairs[:, 0]] - c[pairs[:, 1]], axis=1)
            w = np.exp(-d / d0)
            W = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([pairs[:, 0], pairs[:, 1]]),
                                                        np.concatenate([pairs[:, 1], pairs[:, 0]]))), shape=(len(c), len(c)))
    W.setdiag(0)
    W.eliminate_zeros()
    return W


def row_standardize(W) -> sp.csr_matrix:
    """Scale each row of ``W`` to sum to 1 (rows that sum to 0, locations without a neighbour, stay zeros, with a warning)."""
    W = sp.csr_matrix(W, dtype=float)
    if W.shape[0] != W.shape[1]:
        raise ParameterError(f"W must be a square locations x locations matrix, got shape {W.shape}")
    s = np.asarray(W.sum(axis=1)).ravel()
    if (s == 0).any():
        warnings.warn(f"row_standardize: {int((s == 0).sum())} of {len(s)} locations have no neighbour (rows of zeros); "
                      "they are left out of the spatial lag", UserWarning, stacklevel=2)
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    return sp.csr_matrix(sp.diags(inv) @ W)
