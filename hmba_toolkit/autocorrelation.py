"""Global spatial autocorrelation per gene: Moran's I and Geary's C.

For a weights matrix W (``S0 = sum w``, ``S1 = 1/2 sum (w_ij + w_ji)^2``,
``S2 = sum_i (w_i. + w_.i)^2``) and centred values z:

* Moran's I ``= n / S0 * z'Wz / z'z``, ``E[I] = -1 / (n - 1)``;
* Geary's C ``= (n - 1) sum w_ij (x_i - x_j)^2 / (2 S0 z'z)``, ``E[C] = 1``;

with the normality and randomization variances of Cliff and Ord (1981) (the randomization
variance is the exact variance under random relabelling of the values, using the sample
kurtosis) and two-sided normal p-values. Permutation p-values relabel the **values** (never
the rows of W, a shortcut that gives the wrong null) and use the add-one rule
``(1 + #{|null - E| >= |observed - E|}) / (1 + permutations)``.

References
----------
Moran PAP (1950) Biometrika 37:17-23. Geary RC (1954) The Incorporated Statistician 5:115-145.
Cliff AD, Ord JK (1981) Spatial Processes: Models and Applications. Pion.
Phipson B, Smyth GK (2010) Stat Appl Genet Mol Biol 9:39 (add-one permutation p-values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from ._checks import check_count, check_seed, numeric_array, warn_constant_columns
from ._stats import bh_adjust
from ._compat import renamed_parameters
from .errors import ParameterError
from .spatial.geometry import Geometry

__all__ = ["morans_i", "gearys_c", "AUTOCORRELATION_COLUMNS", "DEFAULT_NEIGHBORS"]

#: Neighbours per location of the weights built when ``W`` is a :class:`~hmba_toolkit.spatial.Geometry` (squidpy's
#: default for generic coordinates).
DEFAULT_NEIGHBORS = 6

AUTOCORRELATION_COLUMNS = ["gene", "statistic", "expected", "z_norm", "pvalue_norm", "z_rand", "pvalue_rand", "pvalue_perm",
                           "pvalue", "padj"]


def _prepare(X, W, genes, n_permutations=0, seed=0):
    check_count(n_permutations, "n_permutations", minimum=0, what="(0 skips the permutation test)")
    check_seed(seed)
    if isinstance(W, Geometry):  # the locations: their kNN weights within sections, row-standardised
        W = sp.diags(np.full(W.n, 1.0 / DEFAULT_NEIGHBORS)) @ W.knn_graph(DEFAULT_NEIGHBORS)
    W = sp.csr_matrix(W, dtype=float)
    if W.shape[0] != W.shape[1]:
        raise ParameterError(f"W must be square, got {W.shape}")
    X = X.toarray() if sp.issparse(X) else numeric_array(X, "X")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ParameterError(f"X must be locations x genes (2-D) or one map (1-D), got shape {X.shape}")
    if X.shape[0] != W.shape[0]:
        raise ParameterError(f"X has {X.shape[0]} rows, W has {W.shape[0]}: one row of X per location")
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        where = list(np.asarray(genes, dtype=object)[bad][:5]) if genes is not None else list(np.flatnonzero(bad)[:5])
        raise ParameterError(f"X has NaN or infinite values in {int(bad.sum())} column(s) ({where}): drop or impute those "
                             "locations first (the statistics need a value at every location)")
    n = X.shape[0]
    if n < 4:
        raise ParameterError("need at least 4 locations")
    names = list(genes) if genes is not None else [f"x{j}" for j in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise ParameterError(f"{len(names)} gene names for {X.shape[1]} columns")
    warn_constant_columns(X, names, "spatial autocorrelation")
    S0 = W.sum()
    if S0 == 0:
        raise ParameterError("W has no weights")
    Wt = W.T.tocsr()
    S1 = 0.5 * (W + Wt).power(2).sum()
    S2 = float(((np.asarray(W.sum(axis=1)).ravel() + np.asarray(W.sum(axis=0)).ravel()) ** 2).sum())
    z = X - X.mean(axis=0)
    return W, z, n, S0, S1, S2, names


def _kurtosis(z):
    m2 = (z**2).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (z**4).mean(axis=0) / m2**2


def _moran(W, z, n, S0):
    with np.errstate(divide="ignore", invalid="ignore"):
        return n / S0 * (z * (W @ z)).sum(axis=0) / (z**2).sum(axis=0)


def _geary(W, z, n, S0):
    # sum_ij w_ij (z_i - z_j)^2 = sum_i z_i^2 (w_i. + w_.i) - 2 z'Wz
    rs = np.asarray(W.sum(axis=1)).ravel() + np.asarray(W.sum(axis=0)).ravel()
    num = ((z**2) * rs[:, None]).sum(axis=0) - 2 * (z * (W @ z)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (n - 1) * num / (2 * S0 * (z**2).sum(axis=0))


def _permute(stat_fn, W, z, n, S0, permutations, seed, expected, observed):
    if not permutations:
        return np.full(z.shape[1], np.nan)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(z.shape[1])
    for _ in range(permutations):
        perm = rng.permutation(n)
        null = stat_fn(W, z[perm], n, S0)
        exceed += np.abs(null - expected) >= np.abs(observed - expected) - 1e-12
    return (1 + exceed) / (1 + permutations)


def _table(names, stat, expected, vn, vr, pperm):
    with np.errstate(divide="ignore", invalid="ignore"):
        zn = (stat - expected) / np.sqrt(vn)
        zr = (stat - expected) / np.sqrt(vr)
    out = pd.DataFrame({
        "gene": names, "statistic": stat, "expected": expected, "z_norm": zn, "pvalue_norm": 2 * stats.norm.sf(np.abs(zn)),
        "z_rand": zr, "pvalue_rand": 2 * stats.norm.sf(np.abs(zr)), "pvalue_perm": pperm,
    })
    out["pvalue"] = out["pvalue_perm"] if np.isfinite(pperm).all() else out["pvalue_rand"]
    out["padj"] = bh_adjust(out["pvalue"].to_numpy())
    return out


@renamed_parameters(permutations="n_permutations")
def morans_i(X, W, genes: Sequence[str] | None = None, *, n_permutations: int = 0, seed: int = 0) -> pd.DataFrame:
    """Moran's I of every column of ``X`` (locations x genes) under weights ``W``.

    Parameters
    ----------
    X
        Locations x genes (dense or sparse), or one map (1-D).
    W
        n x n spatial weights (see :mod:`hmba_toolkit.weights`), row-standardized or not; or the locations as a
        :class:`~hmba_toolkit.spatial.Geometry`, for the row-standardised weights of each location's
        :data:`DEFAULT_NEIGHBORS` nearest neighbours within its section.
    genes
        Column names (default ``x0, x1, ...``).
    n_permutations
        Number of random relabellings of the values for ``pvalue_perm`` (0: skip).
    seed
        Seed of the permutations.

    Returns
    -------
    pandas.DataFrame
        ``gene, statistic (I), expected, z_norm, pvalue_norm, z_rand, pvalue_rand, pvalue_perm, pvalue, padj``;
        two-sided p-values under normality, randomisation and permutation; ``pvalue`` is ``pvalue_perm`` (or
        ``pvalue_rand`` without permutations) and ``padj`` its BH adjustment over genes.

    Examples
    --------
    >>> from hmba_toolkit.weights import knn_weights, row_standardize
    >>> import numpy as np
    >>> xy = np.random.default_rng(0).random((200, 2))
    >>> res = morans_i(xy[:, 0], row_standardize(knn_weights(xy, 6)))
    >>> bool(res.loc[0, "statistic"] > 0.5)
    True
    """
    W, z, n, S0, S1, S2, names = _prepare(X, W, genes, n_permutations, seed)
    stat = _moran(W, z, n, S0)
    e = -1.0 / (n - 1)
    vn = (n**2 * S1 - n * S2 + 3 * S0**2) / ((n - 1) * (n + 1) * S0**2) - e**2
    k = _kurtosis(z)
    vr = (n * ((n**2 - 3 * n + 3) * S1 - n * S2 + 3 * S0**2) - k * ((n**2 - n) * S1 - 2 * n * S2 + 6 * S0**2)) / (
        (n - 1) * (n - 2) * (n - 3) * S0**2) - e**2
    pperm = _permute(_moran, W, z, n, S0, n_permutations, seed, e, stat)
    return _table(names, stat, np.full(len(stat), e), np.full(len(stat), vn), vr, pperm)


@renamed_parameters(permutations="n_permutations")
def gearys_c(X, W, genes: Sequence[str] | None = None, *, n_permutations: int = 0, seed: int = 0) -> pd.DataFrame:
    """Geary's C of every column of ``X`` under weights ``W`` (same contract as :func:`morans_i`).

    C below 1 means positive autocorrelation (neighbours alike), above 1 negative.
    """
    W, z, n, S0, S1, S2, names = _prepare(X, W, genes, n_permutations, seed)
    stat = _geary(W, z, n, S0)
    vn = ((2 * S1 + S2) * (n - 1) - 4 * S0**2) / (2 * (n + 1) * S0**2)
    k = _kurtosis(z)
    vr = ((n - 1) * S1 * (n**2 - 3 * n + 3 - (n - 1) * k) - 0.25 * (n - 1) * S2 * (n**2 + 3 * n - 6 - (n**2 - n + 2) * k)
          + S0**2 * (n**2 - 3 - (n - 1) ** 2 * k)) / (n * (n - 2) * (n - 3) * S0**2)
    pperm = _permute(_geary, W, z, n, S0, n_permutations, seed, 1.0, stat)
    return _table(names, stat, np.ones(len(stat)), np.full(len(stat), vn), vr, pperm)
