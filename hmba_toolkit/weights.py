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

from ._checks import check_count
from .errors import ParameterError
from .spatial.geometry import as_geometry

__all__ = ["knn_weights", "distance_band_weights", "exponential_weights", "row_standardize"]


def knn_weights(coords, k: int = 6) -> sp.csr_matrix:
    """Binary weights to each point's ``k`` nearest neighbours (not symmetrised; within sections for a sectioned
    :class:`~hmba_toolkit.spatial.Geometry`).

    ``coords``: a Geometry (its cached neighbour table is reused), (N, d) positions or a DataFrame of them.

    Examples
    --------
    >>> xy = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0]])
    >>> knn_weights(xy, k=1).toarray().astype(int).tolist()
    [[0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    """
    g = as_geometry(coords)
    k = check_count(k, "k")
    if not 1 <= k < g.n:
        raise ParameterError(f"k must be between 1 and N - 1 = {g.n - 1}, got {k}")
    return g.knn_graph(k)


def distance_band_weights(coords, threshold: float) -> sp.csr_matrix:
    """Binary weights between points closer than ``threshold`` (symmetric)."""
    g = as_geometry(coords)
    if threshold <= 0:
        raise ParameterError(f"threshold must be positive, got {threshold}")
    pairs = g.pairs_within(threshold)
    if not len(pairs.i):
        nearest = float(g.neighbors(1).distances.min()) if g.n > 1 else float("nan")
        raise ParameterError(f"threshold {threshold} leaves every location without a neighbour (the closest pair is "
                             f"{nearest:.4g} apart)")
    rows = np.concatenate([pairs.i, pairs.j])
    cols = np.concatenate([pairs.j, pairs.i])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(g.n, g.n))


def exponential_weights(coords=None, d0: float = 1.0, *, distances=None, cutoff: float | None = None) -> sp.csr_matrix:
    """Weights ``exp(-d / d0)`` between points (Burt et al. 2018), sparse beyond ``cutoff``.

    Give ``coords`` (a Geometry or (N, d) positions) or a precomputed ``distances`` matrix. Without ``cutoff`` the matrix
    is dense-valued (use for a few thousand points at most); with it, pairs farther apart are 0.
    """
    if d0 <= 0:
        raise ParameterError(f"d0 must be positive, got {d0}")
    g = as_geometry(coords, distances=distances)
    if cutoff is None:
        W = sp.csr_matrix(np.exp(-g.distances / d0))  # 0 between sections
    else:
        pairs = g.pairs_within(cutoff)
        w = np.exp(-pairs.distances / d0)
        W = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([pairs.i, pairs.j]), np.concatenate([pairs.j, pairs.i]))),
                          shape=(g.n, g.n))
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
