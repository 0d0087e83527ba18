"""Null models for spatially autocorrelated brain maps, and map-to-map correlation tests.

Nearby locations have similar values, so shuffling a map (the naive permutation null) breaks
its autocorrelation and makes independent maps look correlated far more often than alpha.
The nulls here keep the autocorrelation:

* :func:`moran` — Moran spectral randomisation (Wagner and Dray 2015): the map's projections on
  the eigenvectors of the doubly centred weight matrix (Moran eigenvector maps) get random
  signs (``"singleton"``) or random rotations within pairs (``"pair"``);
* :func:`spatial_lag` — spatial-lag (SAR) ensembles (Burt et al. 2018): ``x = (I - rho W)^-1 u``
  with ``W_ij = exp(-d_ij / d0)``, ``rho`` and ``d0`` fitted to the map, ``u`` white noise; above
  3,000 locations ``W`` is sparse (pairs within ``6 d0``) and the system is solved by conjugate
  gradients, so cell- and voxel-scale maps run without an N x N matrix;
* :func:`variogram` — variogram-matching surrogates (Burt et al. 2020): a permutation of ``x``
  smoothed over k nearest neighbours plus white noise, with ``k`` and the mix chosen so the
  surrogate's variogram matches the map's; batched, sparse for large ``N``, with a sampled variant
  and a goodness-of-fit figure per surrogate (:mod:`hmba_toolkit.variograms`); where the map's variogram dips and
  rises again, which smoothing cannot follow, values are swapped within each surrogate until its variogram fits
  (``refine``; Deutsch and Journel 1998);
* :func:`naive` — random permutations, for contrast only.

Each takes ``x`` (N values) and its locations ``coords``: a :class:`~hmba_toolkit.spatial.Geometry` (checked once, its
distances, neighbours and variogram pairs computed once for every call), (N, d) positions, a DataFrame of them indexed
by label, or ``distances`` (N, N); and returns an (n, N) array of surrogate maps. A map given as a Series (index:
region or cell labels) picks its locations from a labelled geometry by label (in the geometry's order, so that the
surrogates do not depend on how the map was sorted) and gets its surrogates as a DataFrame with those labels as
columns, which :func:`correlate`, :func:`variogram_fit` and :func:`hmba_toolkit.gsea.map_enrichment` align by label.
In a sectioned Geometry the surrogates are drawn within each section. :func:`correlate` tests the correlation of two
maps against the surrogates of one of them, with the add-one rule.

What each achieves (false-positive rate at alpha = 0.05 for pairs of independent Gaussian maps
with exponential covariance, 200 pairs, 300 surrogates; measured 2026-11-23, ``tests/test_nulls.py``
reproduces a seeded subset):

=======================  ==================  ==================  ==================  ==================
null                     150 points, L=0.1   150 points, L=0.3   83 DK centroids,    83 DK centroids,
                                                                 L=0.1               L=0.3
=======================  ==================  ==================  ==================  ==================
naive permutation        0.13                0.39                0.06                0.135
moran, singleton         0.05                0.105               0.065               0.055
moran, pair              0.055               0.085               0.065               0.045
spatial_lag (SAR, ML)    0.06                0.07                0.075               0.055
variogram (Burt 2020)    0.05                0.03                0.045               0.025
=======================  ==================  ==================  ==================  ==================

(L is the covariance length as a fraction of the median pairwise distance.) Moran spectral
randomisation is liberal under strong autocorrelation, as Markello and Misic (2021) also found;
the spatial-lag ensemble and variogram matching (defaults; measured 2026-11-30) held the rate
in every setting measured here. ``tests/test_variogram.py`` adds 3-D point clouds (200 points).
The sparse spatial-lag path (1,500 points, L = 1.5 on a 10 x 10 square, 60 pairs, 199 surrogates;
2026-12-01, ``tests/test_nulls.py``): 0.067, against 0.70 for the naive permutation; its
surrogates' variogram fit equals the dense model's (median r2 0.307 vs 0.302 at 2,500 points).

Against the strength of autocorrelation (``bench/bench_null_fpr.py``: 300 random points, 200 pairs, 300 surrogates,
2026-12-02, BrainSMASH 0.11 on the same maps in the same run; 95% Wilson intervals about +-0.035 around 0.05):

=====  =====  ================  ===========  ===========  =========  =================  ==========
L      naive  moran singleton   moran pair   spatial_lag  variogram  variogram refined  BrainSMASH
=====  =====  ================  ===========  ===========  =========  =================  ==========
0.1    0.200  0.085             0.065        0.060        0.045      0.045              0.030
0.3    0.470  0.110             0.135        0.050        0.040      0.035              0.035
0.5    0.540  0.125             0.155        0.045        0.045      0.030              0.040
=====  =====  ================  ===========  ===========  =========  =================  ==========

On 150 parcels (fields averaged within Voronoi parcels of 3,000 points) every null but the naive one stays within
0.035-0.075 at L = 0.1-0.5. Moran spectral randomisation passes 0.08 on points from L = 0.2 on: :func:`moran` warns on
maps that autocorrelated (:data:`MORAN_WARN_SHARE`). At 10,000 points and L = 0.3 the large-map paths (sparse
spatial-lag kernel, sampled variogram) reached 0.12 and 0.16 (50 pairs): they warn when a map's autocorrelation
reaches beyond the neighbourhoods they see (``bench/README.md``).

References
----------
Wagner HH, Dray S (2015) Methods Ecol Evol 6:1169-1178. Ord K (1975) J Am Stat Assoc 70:120-126. Burt JB et al. (2018) Nat Neurosci
21:1251-1259. Burt JB et al. (2020) NeuroImage 220:117038. Markello RD, Misic B (2021) NeuroImage 236:118052. Vos de Wael R et al. (2020)
Commun Biol 3:103 (BrainSpace).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import linalg, optimize, stats

from ._arrays import canonical_signs, zscore_rows
from ._checks import check_count, check_seed, numeric_array
from ._maps import align_to, labelled_surrogates, surrogates_by_label
from ._compat import LegacyTuple, renamed_parameters, warn, warn_renamed
from .errors import NotFoundError, ParameterError
from .spatial.geometry import Geometry, as_geometry
from .variograms import POOR_FIT_R2, VariogramGeometry, _check_map, _surrogates, summarize_fits, variogram_fit

__all__ = ["MORAN_WARN_SHARE", "CorrelationTest", "MoranEigenvectors", "correlation_tests", "false_positive_rate", "random_fields", "naive", "moran", "spatial_lag", "variogram", "variogram_fit", "summarize_fits", "moran_eigenvectors", "correlate"]


def _index_aware(null=None, *, required: bool = True):
    """A null that takes its locations once, as a :class:`~hmba_toolkit.spatial.Geometry` (built from ``coords`` or
    ``distances`` when those are given), and a map that may carry labels: a Series picks its locations from a
    labelled geometry by label, and the surrogates come back as a DataFrame with the map's labels as columns (so a
    map and its surrogates cannot disagree on order downstream). The wrapped function gets the map's values and the
    geometry (None when a null that does not need locations was given none)."""
    if null is None:
        return functools.partial(_index_aware, required=required)

    @functools.wraps(null)
    def wrapper(x, coords=None, *args, distances=None, **kwargs):
        where = as_geometry(coords, distances=distances, x=x, required=required)
        if where is None:
            labels = x.index if isinstance(x, pd.Series) else None
            return labelled_surrogates(null(x if labels is None else numeric_array(x, "x"), None, *args, **kwargs), labels)
        out = null(where.values(x), where, *args, **kwargs)
        if isinstance(out, tuple):  # variogram(..., return_fit=True)
            return (where.labelled(out[0]), *out[1:])
        return where.labelled(out)

    return wrapper


def _permutation(rng: np.random.Generator, where: Geometry | None, n: int) -> np.ndarray:
    """A random permutation of the locations, within each section of a sectioned geometry."""
    if where is None or not where.sectioned:
        return rng.permutation(n)
    perm = np.arange(n)
    for _, rows in where.sections():
        perm[rows] = rows[rng.permutation(rows.size)]
    return perm


def _check_n(n, seed=0) -> int:
    """The number of surrogates (a whole number >= 1), after checking ``seed``."""
    check_seed(seed)
    n = check_count(n, "n_permutations", minimum=-(2**62))
    if n < 1:
        raise ParameterError(f"n_permutations must be a positive number of surrogate maps, got {n}")
    return n


@_index_aware(required=False)
@renamed_parameters(n="n_permutations")
def naive(x, coords=None, *, n_permutations: int = 1000, seed: int = 0, distances=None) -> np.ndarray:
    """Random permutations of ``x`` (ignores space; shown for contrast). With a sectioned
    :class:`~hmba_toolkit.spatial.Geometry` as ``coords``, values are permuted within each section."""
    n = _check_n(n_permutations, seed)
    x = _check_map(x, finite=False)
    rng = np.random.default_rng(seed)
    return np.stack([x[_permutation(rng, coords, x.size)] for _ in range(n)])


@dataclass(frozen=True, repr=False)
class MoranEigenvectors(LegacyTuple):
    """Moran eigenvector maps of a set of locations (:func:`moran_eigenvectors`).

    ``eigenvalues`` (k,), decreasing; ``eigenvectors`` (N, k), one map per column, signs canonical.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    _legacy_fields = ("eigenvalues", "eigenvectors")

    def __repr__(self) -> str:
        return f"MoranEigenvectors({self.eigenvectors.shape[0]} locations, {self.eigenvalues.size} eigenvectors)"


def moran_eigenvectors(coords=None, *, distances=None, weights: str = "inverse") -> MoranEigenvectors:
    """Moran eigenvector maps: eigenvalues and eigenvectors of the doubly centred symmetric W.

    ``weights="inverse"``: ``w_ij = 1 / d_ij`` (BrainSpace's default for point sets). Eigenpairs with
    ``|lambda| < 1e-10`` (the constant direction) are dropped; sorted by decreasing eigenvalue (ties
    by position, a stable sort). Each eigenvector's sign is canonical: its entry of largest
    magnitude is positive, so that surrogates drawn with a seed are the same whichever LAPACK
    kernel, BLAS library or thread count computed the decomposition.

    Examples
    --------
    >>> xy = np.random.default_rng(0).random((60, 2))
    >>> mem = moran_eigenvectors(xy)
    >>> mem.eigenvectors.shape[0], bool((np.diff(mem.eigenvalues) <= 0).all())
    (60, True)
    """
    where = as_geometry(coords, distances=distances)
    if where.sectioned:
        raise ParameterError("moran_eigenvectors of a sectioned Geometry: Moran eigenvectors are computed on one set of "
                             "connected locations; take one section (geometry.subset(...)) at a time")
    D = where.distances
    with np.errstate(divide="ignore"):
        W = np.where(D > 0, 1.0 / D, 0.0) if weights == "inverse" else None
    if W is None:
        raise ParameterError(f"weights={weights!r} is not 'inverse'")
    W = (W + W.T) / 2
    Wc = W - W.mean(axis=0) - W.mean(axis=1)[:, None] + W.mean()
    vals, vecs = linalg.eigh(Wc)
    keep = np.abs(vals) > 1e-10 * np.abs(vals).max()
    order = np.argsort(-vals[keep], kind="stable")
    vals, vecs = vals[keep][order], vecs[:, keep][:, order]
    return MoranEigenvectors(eigenvalues=vals, eigenvectors=canonical_signs(vecs))


#: Share of a map's variance in its smoothest 5% of Moran eigenvectors above which :func:`moran` warns that its
#: surrogates are anti-conservative (the share of independent Gaussian fields of length scale 0.1-0.2 of the median
#: distance on 300 points, where the measured false-positive rate passes 0.08).
MORAN_WARN_SHARE = 0.25


@_index_aware(required=False)
@renamed_parameters(n="n_permutations")
def moran(x, coords=None, *, n_permutations: int = 1000, seed: int = 0, distances=None, procedure: str = "singleton",
          eigenvectors: MoranEigenvectors | np.ndarray | None = None) -> np.ndarray:
    """Moran spectral randomisation surrogates of ``x`` (Wagner and Dray 2015).

    Keeps the mean and the variance of ``x`` and, with ``"singleton"``, the magnitude of its
    correlation with every Moran eigenvector (hence its Moran's I spectrum). Pass precomputed
    ``eigenvectors`` (from :func:`moran_eigenvectors`) to reuse the O(N^3) decomposition.

    **Anti-conservative for strongly autocorrelated maps.** Measured with ``bench/bench_null_fpr.py`` (300 random
    points, 200 pairs of independent Gaussian fields, 300 surrogates, alpha 0.05): false-positive rates of
    0.085-0.125 (singleton) and 0.065-0.155 (pair) for length scales 0.1-0.5 of the median distance, against
    0.035-0.060 for :func:`variogram` and :func:`spatial_lag` (Markello and Misic 2021 found the same on the cortex).
    The surrogates keep the map's own spectrum, a noisy estimate of the spectrum of maps like it, and the null is
    too narrow when a few smooth modes carry the map. A map with more than :data:`MORAN_WARN_SHARE` of its variance
    in the smoothest 5% of the eigenvectors gets a warning; prefer :func:`variogram` or :func:`spatial_lag` there.
    """
    n = _check_n(n_permutations, seed)
    if procedure not in ("singleton", "pair"):
        raise ParameterError(f"procedure={procedure!r} is not 'singleton' or 'pair'")
    if eigenvectors is None:
        if coords is None:
            raise ParameterError("moran needs the locations (coords, distances or a Geometry) or precomputed eigenvectors")
        eigenvectors = moran_eigenvectors(coords)
    V = eigenvectors.eigenvectors if isinstance(eigenvectors, MoranEigenvectors) else np.asarray(eigenvectors)
    x = _check_map(x, finite=False)
    if V.shape[0] != x.size:
        raise ParameterError(f"eigenvectors have {V.shape[0]} rows for {x.size} values")
    if not np.isfinite(x).all():
        raise ParameterError(f"x has {int((~np.isfinite(x)).sum())} NaN or infinite values: Moran spectral randomisation "
                             "needs a value at every location (drop or impute them, with their coordinates)")
    z = x - x.mean()
    coef = V.T @ z
    smooth = max(1, int(np.ceil(0.05 * coef.size)))
    share = float((coef[:smooth] ** 2).sum() / max((coef**2).sum(), 1e-300))
    if share > MORAN_WARN_SHARE:
        warnings.warn(f"nulls.moran: {share:.0%} of the map's variance lies in its smoothest 5% of Moran eigenvectors (a "
                      "strongly autocorrelated map), where Moran spectral randomisation is anti-conservative (measured "
                      "false-positive rate 0.11-0.16 at alpha 0.05); prefer nulls.variogram or nulls.spatial_lag",
                      UserWarning, stacklevel=4)
    rng = np.random.default_rng(seed)
    if procedure == "singleton":
        new = coef[None, :] * rng.choice([-1.0, 1.0], size=(n, coef.size))
    else:
        new = np.empty((n, coef.size))
        # rotate within pairs of neighbouring eigenvectors (similar Moran's I), random angles
        a = np.arange(0, coef.size - 1, 2)
        b = a + 1
        for i in range(n):
            c = coef.copy()
            phi = rng.uniform(0, 2 * np.pi, a.size)
            c[a] = np.cos(phi) * coef[a] - np.sin(phi) * coef[b]
            c[b] = np.sin(phi) * coef[a] + np.cos(phi) * coef[b]
            if coef.size % 2:
                c[-1] *= rng.choice([-1.0, 1.0])
            new[i] = c
    surr = new @ V.T
    # the centred map may have a part outside the kept eigenvectors (numerical); rescale the variance
    surr *= z.std() / np.maximum(surr.std(axis=1, keepdims=True), 1e-300)
    return surr + x.mean()


def _sar_fit(x, where) -> tuple[float, float]:
    """Maximum-likelihood fit of the SAR model ``z = rho W(d0) z + e`` (Ord 1975), profiled over d0.

    ``W`` is ``exp(-d/d0)`` with a zero diagonal, row-normalised; ``log|I - rho W|`` comes from its
    (real) eigenvalues, those of the symmetric ``S^-1/2 K S^-1/2``. Least squares of z on ``Wz`` is
    biased here (the regressor is endogenous) and drives ``rho`` to its bound. ``where``: a Geometry (or a
    distance matrix); in a sectioned one ``W`` is block-diagonal, so its eigenvalues are those of the sections'
    blocks (an exact fit at the cost of the largest section), and ``z`` is centred within each section.
    """
    where = where if isinstance(where, Geometry) else Geometry(distances=where)
    blocks = [(rows, where.subset(rows).distances if where.sectioned else where.distances) for _, rows in where.sections()]
    z = np.asarray(x, dtype=float).copy()
    for rows, _ in blocks:
        z[rows] -= z[rows].mean()
    z /= z.std()
    n = z.size
    dpos = np.concatenate([Db[np.triu_indices(len(Db), k=1)] for _, Db in blocks])
    best = (-np.inf, 0.0, float(np.median(dpos)))
    for d0 in np.geomspace(np.quantile(dpos, 0.005), np.quantile(dpos, 0.5), 14):
        lam, wz = [], np.empty(n)
        for rows, Db in blocks:
            K = np.exp(-Db / d0)
            np.fill_diagonal(K, 0)
            s_ = K.sum(axis=1)
            lam.append(linalg.eigvalsh(K / np.sqrt(np.outer(s_, s_))))
            wz[rows] = (K @ z[rows]) / s_
        lam = np.concatenate(lam)

        def negll(rho):
            return -(np.log1p(-rho * lam).sum() - n / 2 * np.log(((z - rho * wz) ** 2).sum()))

        fit = optimize.minimize_scalar(negll, bounds=(-0.99, 0.99), method="bounded")
        if -fit.fun > best[0]:
            best = (-fit.fun, float(fit.x), float(d0))
    return best[1], best[2]


def _decay_kernel(where: Geometry, d0: float, knn: int, reach: float = 6.0) -> sp.csr_matrix:
    """Symmetric sparse ``exp(-d / d0)`` between points closer than ``reach * d0``, each point keeping
    at most its ``knn`` nearest neighbours (a pair kept by either end is kept), zero diagonal; within sections."""
    table = where.neighbors(knn)
    d, idx = table.distances.astype(float), table.indices
    far = d > reach * d0
    far[:, 0] = False  # no neighbour within reach: keep the nearest one, however far
    ok = ~far
    N = where.n
    rows = np.repeat(np.arange(N), ok.sum(axis=1))
    K = sp.csr_matrix((np.exp(-d[ok] / d0), (rows, idx[ok])), shape=(N, N))
    return K.maximum(K.T).tocsr()


def _sar_solve(K: sp.csr_matrix, rho: float, U: np.ndarray, tol: float = 1e-8, max_iter: int = 5_000) -> np.ndarray:
    """Solve ``(I - rho S^-1 K) X = U`` (``S`` the row sums of the symmetric kernel ``K``) for all columns.

    Multiplying by ``S`` gives the symmetric positive-definite system ``(S - rho K) X = S U`` for
    |rho| < 1, solved by conjugate gradients with a Jacobi preconditioner, one sparse product per
    iteration for all columns at once; the preconditioned spectrum lies in [1 - |rho|, 1 + |rho|], so
    the iterations grow like sqrt(1 / (1 - |rho|)). Memory: a few copies of ``U``.
    """
    s = np.asarray(K.sum(axis=1)).ravel()
    A = (sp.diags(s) - rho * K).tocsr()
    B = s[:, None] * U
    X = U.copy()
    R = B - A @ X
    Z = R / s[:, None]
    P = Z.copy()
    rz = (R * Z).sum(axis=0)
    bnorm = np.maximum(np.sqrt((B * B).sum(axis=0)), 1e-300)
    for _ in range(max_iter):
        if (np.sqrt((R * R).sum(axis=0)) / bnorm).max() <= tol:
            return X
        AP = A @ P
        alpha = rz / np.maximum((P * AP).sum(axis=0), 1e-300)
        X += alpha * P
        R -= alpha * AP
        Z = R / s[:, None]
        rz_new = (R * Z).sum(axis=0)
        P = Z + (rz_new / np.maximum(rz, 1e-300)) * P
        rz = rz_new
    raise ParameterError(f"the spatial-lag solve did not converge in {max_iter} iterations (rho={rho:.4f}); pass a smaller rho")


@_index_aware
@renamed_parameters(n="n_permutations")
def spatial_lag(x, coords=None, *, n_permutations: int = 1000, seed: int = 0, distances=None, rho: float | None = None,
                d0: float | None = None, method: str = "auto", knn: int = 512, fit_sample: int = 1500,
                batch_size: int = 200) -> np.ndarray:
    """Spatial-lag (SAR) surrogates ``(I - rho W)^-1 u`` with row-normalised ``W = exp(-d / d0)``.

    ``rho`` and ``d0`` are fitted to ``x`` by maximum likelihood when not given (Ord 1975; the model
    of Burt et al. 2018). Surrogates are rescaled to the mean and SD of ``x`` and rank-matched to its
    values, so each surrogate is a spatially autocorrelated reordering of ``x``.

    Parameters
    ----------
    method : {"auto", "dense", "sparse"}
        ``"dense"``: the exact model, all pairs in ``W``, dense LU (O(N^3); a few thousand points).
        ``"sparse"``: the kernel kept within ``6 d0`` of each point (weights above exp(-6)), on at
        most its ``knn`` nearest neighbours, and the system solved by preconditioned conjugate
        gradients on its symmetric form (memory a few N x ``batch_size`` arrays), for cell- and
        voxel-scale maps. ``"auto"``: dense up to 3,000
        points. In the sparse path ``rho`` and ``d0`` are fitted on a random subsample of
        ``fit_sample`` locations (the dense maximum likelihood), an approximation whose surrogates'
        variogram fit can be checked with :func:`variogram_fit`; with a sectioned Geometry whose sections
        all have at most ``fit_sample`` locations, the fit is exact, section block by section block (the
        weights are zero between sections, and each section is centred on its own mean).

    References
    ----------
    Burt JB et al. (2018) Nat Neurosci 21:1251-1259; Ord K (1975) JASA 70:120-126; Fulcher BD et al.
    (2021) Nat Commun 12:2669 (SAR ensembles with a fitted distance scale).
    """
    n = _check_n(n_permutations, seed)
    if method not in ("auto", "dense", "sparse"):
        raise ParameterError(f"method must be 'auto', 'dense' or 'sparse', not {method!r}")
    if rho is not None and not -1 < float(rho) < 1:
        raise ParameterError(f"rho must lie in (-1, 1) for the spatial-lag model to be stationary, got {rho}")
    if d0 is not None and not float(d0) > 0:
        raise ParameterError(f"d0 must be a positive distance, got {d0}")
    where, N = coords, coords.n
    if method == "auto":
        method = "dense" if N <= 3000 else "sparse"
    rng = np.random.default_rng(seed)
    x = _check_map(x, N)
    if method == "dense":
        D = where.distances
        if rho is None or d0 is None:
            f_rho, f_d0 = _sar_fit(x, where)
            rho = f_rho if rho is None else rho
            d0 = f_d0 if d0 is None else d0
        W = np.exp(-D / d0)  # 0 between sections
        np.fill_diagonal(W, 0)
        W /= W.sum(axis=1, keepdims=True)
        U = rng.standard_normal((x.size, n))
        X = linalg.lu_solve(linalg.lu_factor(np.eye(x.size) - rho * W), U).T
    else:
        if not 2 <= knn < N:
            raise ParameterError(f"knn must be between 2 and N - 1 = {N - 1}, got {knn}")
        if rho is None or d0 is None:
            if where.sectioned and where.section_sizes.max() <= fit_sample:
                f_rho, f_d0 = _sar_fit(x, where)  # sections small enough for the exact fit, block by block
            else:
                sub = np.sort(np.random.default_rng([seed, 17]).choice(N, size=min(N, fit_sample), replace=False))
                f_rho, f_d0 = _sar_fit(x[sub], where.subset(sub))
            rho = f_rho if rho is None else rho
            d0 = f_d0 if d0 is None else d0
        K = _decay_kernel(where, d0, knn)
        reach = where.neighbors(knn).distances[:, -1]  # the table _decay_kernel used (cached)
        cut = float(np.mean(reach < 6.0 * d0))
        if cut > 0.5:
            warn(f"nulls.spatial_lag: the fitted decay (d0 = {d0:.3g}) reaches beyond the knn={knn} nearest neighbours "
                 f"of {cut:.0%} of the locations, so the sparse kernel truncates the map's autocorrelation and the "
                 "surrogates are anti-conservative (false-positive rate 0.12 measured at 10,000 points); pass a larger "
                 "knn, or parcellate the map")
        X = np.empty((n, N))
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            X[start:start + b] = _sar_solve(K, rho, rng.standard_normal((N, b))).T
    return _rank_match(X, x, where)


def _rank_match(X: np.ndarray, x: np.ndarray, where: Geometry) -> np.ndarray:
    """Each row of ``X`` replaced by the values of ``x`` in the order of its ranks (within each section)."""
    out = np.empty_like(X)
    for _, rows in where.sections():
        ranks = np.argsort(np.argsort(X[:, rows], axis=1), axis=1)
        out[:, rows] = np.sort(x[rows])[ranks]
    return out


@dataclass(frozen=True)
class CorrelationTest:
    """The result of :func:`correlate`: ``r``, its two-sided ``pvalue``, the null distribution ``null_r`` and, when the
    locations were given, ``variogram_r2``: the median variogram fit of the surrogates to ``x`` (NaN otherwise)."""

    r: float
    pvalue: float
    n_permutations: int
    method: str
    null_r: np.ndarray = field(repr=False)
    variogram_r2: float = float("nan")

    def __getitem__(self, key: str):  # the dict keys of releases before 0.2
        renamed = {"r": "r", "p": "pvalue", "n_nulls": "n_permutations"}
        if key not in renamed:
            raise NotFoundError(f"CorrelationTest has no {key!r}; attributes: r, pvalue, n_permutations, method, null_r")
        if key != "r":
            warn_renamed(f"result[{key!r}]", f"result.{renamed[key]}", "nulls.correlate")
        return getattr(self, renamed[key])


def correlate(x, y, nulls: np.ndarray, *, method: str = "pearson", coords=None, distances=None) -> CorrelationTest:
    """Correlation of maps ``x`` and ``y`` with a two-sided p-value from surrogates of ``x``.

    ``pvalue = (1 + #{|r_null| >= |r|}) / (1 + n_permutations)``, the surrogates' correlations with ``y`` forming
    the null. ``method``: ``"pearson"`` or ``"spearman"`` (ranks of the maps and of every surrogate). With the
    locations (``coords`` or ``distances``), the surrogates' fit to the variogram of ``x`` (:func:`variogram_fit`) is
    reported as ``variogram_r2`` and a poor fit (median r2 below ``variograms.POOR_FIT_R2``) is warned: a null whose
    surrogates do not keep the map's autocorrelation does not hold its false-positive rate.

    Returns
    -------
    CorrelationTest
        ``r``, ``pvalue``, ``n_permutations`` (surrogates used), ``method``, ``null_r`` (their correlations).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal(50), rng.standard_normal(50)
    >>> res = correlate(x, y, naive(x, n_permutations=99, seed=1))
    >>> res.n_permutations, bool(0 < res.pvalue <= 1), res.null_r.shape
    (99, True, (99,))
    """
    fit_r2 = float("nan")
    if coords is not None or distances is not None:  # how well the surrogates keep x's autocorrelation, reported
        fit_r2 = float(variogram_fit(x, nulls, coords, distances=distances)["r2"].median())
        if fit_r2 < POOR_FIT_R2:
            warnings.warn(f"nulls.correlate: the surrogates fit the variogram of x poorly (median r2 {fit_r2:.2f} < "
                          f"{POOR_FIT_R2}): the p-value is not calibrated for this map", UserWarning, stacklevel=2)
    labels = x.index if isinstance(x, pd.Series) else None
    if labels is not None and isinstance(y, pd.Series):
        y = align_to(y, labels, "y")
    nulls = surrogates_by_label(nulls, labels, "nulls")
    x, y = numeric_array(x, "x"), numeric_array(y, "y")
    if nulls.ndim != 2 or nulls.shape[1] != x.size or y.size != x.size:
        raise ParameterError(f"nulls must be (n, {x.size}) and y must have {x.size} values")
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
        nulls = np.apply_along_axis(stats.rankdata, 1, nulls)
    elif method != "pearson":
        raise ParameterError(f"method={method!r} is not 'pearson' or 'spearman'")
    for name, v in (("x", x), ("y", y)):
        if not np.isfinite(v).all() or v.std() == 0:
            raise ParameterError(f"{name} must be a finite, non-constant map")
    bad = ~np.isfinite(nulls).all(axis=1)
    if bad.any():  # a p-value from NaN surrogates would look real (every comparison is False)
        raise ParameterError(f"nulls: {int(bad.sum())} of {len(nulls)} surrogate maps have NaN or infinite values "
                               "(surrogates of a map with missing values?); drop those locations first")
    yz = zscore_rows(y[None, :])[0]
    r = float(np.mean(zscore_rows(x[None, :])[0] * yz))
    rn = (zscore_rows(nulls) * yz).mean(axis=1)
    p = (1 + np.sum(np.abs(rn) >= abs(r) - 1e-12)) / (1 + len(rn))
    return CorrelationTest(r=r, pvalue=float(p), n_permutations=len(rn), method=method, null_r=rn, variogram_r2=fit_r2)


@_index_aware(required=False)
@renamed_parameters(n="n_permutations")
def variogram(x, coords=None, *, n_permutations: int = 1000, seed: int = 0, distances=None, deltas=None, knn: int | None = None,
              pv: float | None = None, nh: int = 25, kernel: str = "exp", resample: bool = False,
              sampled: bool | None = None, ns: int = 1000, batch_size: int | None = None, refine: bool | str = "auto",
              max_swaps: int = 50, geometry: VariogramGeometry | None = None, return_fit: bool = False):
    """Variogram-matching surrogate maps (Burt et al. 2020).

    Each surrogate is a random permutation of ``x`` smoothed over each location's ``k`` nearest
    neighbours, scaled and mixed with white noise so that its variogram matches the variogram
    of ``x`` (see :mod:`hmba_toolkit.variograms` for the formulas and what differs from
    BrainSMASH).

    Parameters
    ----------
    x : array (N,) or Series
        The map (finite values); a Series picks its locations from a labelled ``coords`` by label.
    coords : Geometry, array (N, d) or DataFrame, optional
        The locations: a :class:`~hmba_toolkit.spatial.Geometry` (its pairs and neighbours are computed once and
        reused by later calls), positions (mm, um, ...), or give ``distances``, an (N, N) matrix (e.g. geodesic).
        In a sectioned Geometry, pairs, neighbours and permutations stay within sections.
    n_permutations : int
        Number of surrogate maps.
    seed : int
        Seed; surrogate ``i`` depends only on ``seed`` and ``i`` (not on ``batch_size``).
    deltas : sequence of float, optional
        Fractions of ``knn`` tried as neighbourhood sizes; default ``0.1, 0.2, ..., 0.9`` (all
        pairs) or ``0.3, 0.5, 0.7, 0.9`` (sampled).
    knn : int, optional
        Neighbours considered; default ``N - 1`` (all pairs) or ``min(N - 1, 1000)`` (sampled).
        Markello and Misic (2021) found larger ``knn`` lowers the false-positive rate.
    pv : float, optional
        Percentile of pair distances up to which variograms are fitted; default 25 (all pairs)
        or 70 (sampled), as in Burt et al. (2020).
    nh : int
        Number of variogram distances.
    kernel : {"exp", "gaussian", "invdist", "uniform"}
        Smoothing kernel (``exp(-d / d_k)`` by default).
    resample : bool
        Rank-match each surrogate to the values of ``x`` (exact value distribution, slightly
        worse variogram fit). Otherwise surrogates are shifted to the mean of ``x``.
    sampled : bool, optional
        Fit variograms on the pairs of ``ns`` random sources and their ``knn`` neighbours instead
        of all pairs; default: when ``N > 5000``.
    ns : int
        Sources of the sampled variant (drawn once per call from ``seed``).
    batch_size : int, optional
        Surrogates generated together (memory ~ ``6 * 8 * N * batch_size`` bytes).
    refine : {"auto", True, False}
        Smoothing gives monotone variograms; a map whose variogram dips and rises again (a hole effect, e.g. a
        regional profile where the closest regions differ most) is fitted poorly. Refinement swaps values between
        locations of each surrogate while a swap brings its variogram closer to the map's, until its fit reaches
        ``variograms.REFINE_R2`` (0.8) or ``max_swaps`` swaps per location were tried: the simulated-annealing
        simulation of geostatistics (Deutsch and Journel 1998), run at zero temperature from the smoothed
        surrogate. ``"auto"``: only when the smoothed surrogates' median fit is below ``variograms.POOR_FIT_R2``.
    max_swaps : int
        Candidate swaps per location and surrogate in the refinement.
    geometry : VariogramGeometry, optional
        Deprecated: pass a :class:`~hmba_toolkit.spatial.Geometry` as ``coords`` to reuse pairs and neighbours.
    return_fit : bool
        Deprecated (a flag that switches the return type): also return a table with one row per surrogate,
        ``surrogate``, ``k`` (neighbours used), ``alpha``, ``beta``, ``r2``. Use :func:`variogram_fit` on the
        surrogates for the goodness of fit.

    Returns
    -------
    ndarray, (n_permutations, N)
        The surrogate maps (with the deprecated ``return_fit``, ``(surrogates, fit)``).

    Examples
    --------
    >>> import numpy as np
    >>> xy = np.random.default_rng(0).random((400, 2))
    >>> x = np.sin(5 * xy[:, 0]) + 0.3 * np.random.default_rng(1).standard_normal(400)
    >>> surr = variogram(x, xy, n_permutations=50, seed=2)
    >>> fit = variogram_fit(x, surr, xy)
    >>> surr.shape, bool(fit["r2"].median() > 0.8)
    ((50, 400), True)

    References
    ----------
    Burt JB, Helmer M, Shinn M, Anticevic A, Murray JD (2020) NeuroImage 220:117038.
    Viladomat J et al. (2014) Biometrics 70:409-418. Markello RD, Misic B (2021) NeuroImage 236:118052.
    Deutsch CV, Journel AG (1998) GSLIB: Geostatistical Software Library, 2nd ed., Oxford University Press
    (``sasim``: values swapped to reproduce a target variogram).
    """
    if return_fit:
        warn_renamed("variogram(..., return_fit=True)", "variogram_fit(x, surrogates, coords)", "hmba_toolkit.nulls")
    if kernel not in ("exp", "gaussian", "invdist", "uniform"):
        raise ParameterError(f"kernel={kernel!r} is not one of 'exp', 'gaussian', 'invdist', 'uniform'")
    if refine not in (True, False, "auto"):
        raise ParameterError(f"refine={refine!r} is not True, False or 'auto'")
    max_swaps = check_count(max_swaps, "max_swaps", minimum=0)
    n = _check_n(n_permutations, seed)
    if geometry is not None:
        warn_renamed("variogram(..., geometry=VariogramGeometry)", "variogram(x, spatial.Geometry)", "hmba_toolkit.nulls")
        if geometry.nbr is None:
            raise ParameterError("geometry has no neighbour table; build it with neighbours=True")
        bins = geometry
    elif coords is None:
        raise ParameterError("variogram needs the map's locations: pass coords (n x 2 or n x 3 positions, or a Geometry) "
                             "or distances (n x n)")
    else:
        bins = VariogramGeometry.of(coords, pv=pv, nh=nh, knn=knn, sampled=sampled, ns=ns, seed=seed)
    x = _check_map(x, bins.n)
    if np.ptp(x) == 0:
        raise ParameterError("x is constant; it has no variogram to match")
    return _surrogates(x, bins, coords, n=n, seed=seed, deltas=deltas, kernel=kernel, resample=resample,
                       batch_size=batch_size, refine=refine, max_swaps=max_swaps, return_fit=return_fit)


def random_fields(coords, n_fields: int = 1, *, length_scale: float = 0.3, seed: int = 0) -> np.ndarray:
    """Independent Gaussian random fields with exponential covariance over the locations: ``(n_fields, N)``.

    Covariance ``exp(-d / (length_scale * median(d)))`` (``length_scale`` as a fraction of the median pair
    distance), drawn through its Cholesky factor: the strongly autocorrelated, independent maps on which the
    false-positive rate of a null is measured (Markello and Misic 2021).

    Examples
    --------
    >>> xy = np.random.default_rng(0).random((100, 2))
    >>> random_fields(xy, 3, seed=1).shape
    (3, 100)

    References
    ----------
    Markello RD, Misic B (2021) NeuroImage 236:118052. Burt JB et al. (2020) NeuroImage 220:117038.
    """
    n_fields = check_count(n_fields, "n_fields")
    check_seed(seed)
    where = as_geometry(coords)
    D = where.distances  # infinite between sections: independent fields per section
    if length_scale <= 0:
        raise ParameterError(f"length_scale must be positive, got {length_scale}")
    scale = length_scale * np.median(where.pair_distances())
    chol = linalg.cholesky(np.exp(-D / scale) + 1e-8 * np.eye(len(D)), lower=True)
    return (chol @ np.random.default_rng(seed).standard_normal((len(D), int(n_fields)))).T


_NULL_METHODS = ("naive", "spatial_lag", "moran", "moran_pair", "variogram", "variogram_refined")


def false_positive_rate(coords, methods=("naive", "spatial_lag", "moran_pair"), *, n_simulations: int = 100,
                        n_permutations: int = 1000, length_scale: float = 0.3, alpha: float = 0.05,
                        seed: int = 0) -> pd.DataFrame:
    """How often each null calls two independent autocorrelated maps significantly correlated.

    For each of ``n_simulations`` pairs of independent :func:`random_fields`, every method's surrogates of the
    first map test its correlation with the second (:func:`correlate`); a calibrated null rejects in about
    ``alpha`` of the pairs.

    Returns
    -------
    pandas.DataFrame
        One row per method: ``method``, ``false_positive_rate``, ``n_simulations``, and the 95% Wilson interval
        ``ci_low``, ``ci_high`` of the rate.

    Examples
    --------
    >>> xy = np.random.default_rng(0).random((80, 2))
    >>> res = false_positive_rate(xy, ["naive"], n_simulations=5, n_permutations=49)
    >>> res.columns.tolist()
    ['method', 'false_positive_rate', 'n_simulations', 'ci_low', 'ci_high']
    """
    bad = [m for m in methods if m not in _NULL_METHODS]
    if bad:
        raise ParameterError(f"methods {bad} are not among {_NULL_METHODS}")
    coords = as_geometry(coords)
    fields = random_fields(coords, 2 * n_simulations, length_scale=length_scale, seed=seed)
    eig = moran_eigenvectors(coords) if any(m.startswith("moran") for m in methods) else None
    make = {
        "naive": lambda x, i: naive(x, n_permutations=n_permutations, seed=i),
        "spatial_lag": lambda x, i: spatial_lag(x, coords, n_permutations=n_permutations, seed=i),
        "moran": lambda x, i: moran(x, n_permutations=n_permutations, seed=i, eigenvectors=eig),
        "moran_pair": lambda x, i: moran(x, n_permutations=n_permutations, seed=i, eigenvectors=eig, procedure="pair"),
        "variogram": lambda x, i: variogram(x, coords, n_permutations=n_permutations, seed=i),
        "variogram_refined": lambda x, i: variogram(x, coords, n_permutations=n_permutations, seed=i, refine=True),
    }
    rows = []
    with warnings.catch_warnings():  # the rate is what is being measured: no warning that it may be high
        warnings.filterwarnings("ignore", message="nulls.moran:", category=UserWarning)
        for method in methods:
            hits = sum(correlate(fields[2 * i], fields[2 * i + 1], make[method](fields[2 * i], i)).pvalue < alpha
                       for i in range(n_simulations))
            rows.append(_rate_row(method, hits, n_simulations))
    return pd.DataFrame(rows)


def _rate_row(method: str, hits: int, n_simulations: int) -> dict:
    """A false-positive rate with its 95% Wilson interval."""
    rate = hits / n_simulations
    z = 1.959963984540054  # Wilson score interval
    centre = (rate + z**2 / (2 * n_simulations)) / (1 + z**2 / n_simulations)
    half = z * np.sqrt(rate * (1 - rate) / n_simulations + z**2 / (4 * n_simulations**2)) / (1 + z**2 / n_simulations)
    return {"method": method, "false_positive_rate": rate, "n_simulations": n_simulations,
            "ci_low": max(0.0, centre - half), "ci_high": min(1.0, centre + half)}


def correlation_tests(x, table: pd.DataFrame, surrogates, *, method: str = "pearson", coords=None,
                      distances=None) -> pd.DataFrame:
    """Correlation of a map with each column of ``table``, tested against every null at once.

    Parameters
    ----------
    x
        The map (regions or cells), aligned with the rows of ``table``.
    table
        Locations x variables (e.g. regions x genes).
    surrogates
        ``{null name: (n_permutations, N) surrogate maps of x}`` (e.g. from :func:`variogram`, :func:`spatial_lag`,
        :func:`naive`).
    coords, distances
        The locations: each null's median variogram fit to ``x`` is then reported in ``attrs["variogram_r2"]``, and
        nulls whose surrogates fit poorly (below ``variograms.POOR_FIT_R2``) are named in a warning.

    Returns
    -------
    pandas.DataFrame
        One row per column of ``table`` (``gene``, sorted by name): ``r``, ``pvalue_parametric`` (the textbook
        test, which assumes independent locations) and ``pvalue_<null>`` per null (:func:`correlate`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal(40)
    >>> table = pd.DataFrame({"B": x + rng.standard_normal(40), "A": rng.standard_normal(40)})
    >>> res = correlation_tests(x, table, {"naive": naive(x, n_permutations=99, seed=1)})
    >>> res.columns.tolist(), res["gene"].tolist()
    (['gene', 'r', 'pvalue_parametric', 'pvalue_naive'], ['A', 'B'])
    """
    if not isinstance(table, pd.DataFrame):
        raise ParameterError("table must be a locations x variables DataFrame")
    if not isinstance(surrogates, dict) or not surrogates:
        raise ParameterError("surrogates must be a non-empty {name: (n, N) array} mapping")
    fits = {}
    if coords is not None or distances is not None:
        fits = {name: float(variogram_fit(x, s, coords, distances=distances)["r2"].median()) for name, s in surrogates.items()}
        poor = {name: round(r2, 2) for name, r2 in fits.items() if r2 < POOR_FIT_R2}
        if poor:
            warnings.warn(f"correlation_tests: the surrogates of {poor} (median variogram r2) fit the variogram of x poorly: "
                          "their p-values are not calibrated for this map", UserWarning, stacklevel=2)
    labels = x.index if isinstance(x, pd.Series) else None
    if labels is not None:
        table = align_to(table, labels, "table")
    surrogates = {name: surrogates_by_label(s, labels, f"surrogates[{name!r}]") for name, s in surrogates.items()}
    x = numeric_array(x, "x")
    if len(table) != x.size:
        raise ParameterError(f"table has {len(table)} rows for a map of {x.size} values")
    rows = []
    for gene in sorted(table.columns, key=str):
        y = table[gene].to_numpy(float)
        test = stats.pearsonr(x, y) if method == "pearson" else stats.spearmanr(x, y)
        row = {"gene": gene, "r": float(test[0]), "pvalue_parametric": float(test[1])}
        for name, s in surrogates.items():
            row[f"pvalue_{name}"] = correlate(x, y, s, method=method).pvalue
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["variogram_r2"] = fits
    return out
