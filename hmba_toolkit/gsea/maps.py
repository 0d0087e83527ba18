"""Gene-category enrichment of a brain map, with spatial (ensemble) nulls (Fulcher et al. 2021).

Which gene categories are expressed along a brain map (an imaging phenotype, a gradient)? Each
gene is scored by the correlation of its regional expression with the map; a category by the
mean Fisher z of its genes' correlations. The question is what to compare that score with.

* ``null="random_genes"`` — the conventional test: random gene sets of the same size. Genes of a
  category are co-expressed and brain maps are spatially smooth, so a category's genes share
  one smooth pattern; against random genes its mean correlation with *any* smooth map looks
  extreme. Fulcher et al. (2021) measured false-positive rates hundreds of times the nominal
  level on random maps. Kept here to show that lesson.
* ``null="coexpression_matched"`` — gene specificity (Wei et al. 2022): random gene sets of the same
  size whose mean within-set co-expression matches the category's (within ``tolerance``), built by
  iterative swaps (:func:`coexpression_matched_sets`). It asks whether the category beats other
  equally co-expressed genes on this map. Note that it does not model the map's spatial
  autocorrelation; report it beside the spatial null, not instead of it.
* ``null="spatial"`` — the ensemble null: the same category score computed on surrogate maps
  that keep the map's spatial autocorrelation (from :mod:`hmba_toolkit.nulls`), with the
  expression matrix and hence gene-gene co-expression left intact. All genes x all surrogates
  is one matrix product; all categories x all surrogates a sparse one.

Both return the tidy enrichment table of :mod:`hmba_toolkit.gsea` (``term, n_genes, n_overlap,
statistic, effect, pvalue, padj, genes``): ``effect`` is the category's mean Fisher z,
``statistic`` its z-score against the null, ``genes`` the members sorted by correlation with the
map. p-values are two-sided by default, add-one: ``(1 + #{null at least as extreme}) / (1 + n)``.

References
----------
Fulcher BD, Arnatkeviciute A, Fornito A (2021) Overcoming false-positive gene-category enrichment
in the analysis of spatially resolved transcriptomic brain atlas data. Nat Commun 12:2669.
Wei Y et al. (2022) Statistical testing in transcriptomic-neuroimaging studies. Hum Brain Mapp
43:885-901. Phipson B, Smyth GK (2010) Stat Appl Genet Mol Biol 9:39.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numba
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._arrays import zscore_rows
from .._stats import bh_adjust
from .._checks import numeric_array
from .._maps import surrogates_by_label
from .._compat import LegacyTuple, renamed_parameters, warn, warn_renamed
from ..errors import NotFoundError, ParameterError, ParameterTypeError
from ..spatial.geometry import as_geometry
from .enrichment import ENRICHMENT_COLUMNS, _restrict

__all__ = ["MapCorrelations", "MatchedSets", "map_enrichment_error_rates", "map_enrichment", "gene_map_correlations", "coexpression_matched_sets"]


def _aligned_map(expression: pd.DataFrame, brain_map) -> np.ndarray:
    """The map's values in the order of the rows of ``expression``, checked."""
    if not isinstance(expression, pd.DataFrame):
        raise ParameterTypeError(f"expression must be a regions x genes DataFrame, not {type(expression).__name__}")
    if len(expression) < 3:
        raise ParameterError(f"expression has {len(expression)} regions; a correlation with a map needs at least 3")
    if isinstance(brain_map, pd.Series):
        missing = [r for r in expression.index if r not in brain_map.index]
        if missing:
            raise ParameterError(f"brain_map has no value for regions {missing[:10]} of expression")
        m = numeric_array(brain_map.loc[expression.index], "brain_map")
    else:
        m = numeric_array(brain_map, "brain_map")
        if m.shape != (len(expression),):
            raise ParameterError(f"brain_map must have one value per region of expression ({len(expression)}), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ParameterError("brain_map has NaN or infinite values; drop those regions from expression and the map")
    if np.ptp(m) == 0:
        raise ParameterError("brain_map is constant")
    if expression.columns.duplicated().any():
        dup = expression.columns[expression.columns.duplicated()].unique().tolist()
        raise ParameterError(f"expression has duplicated gene columns: {dup[:10]}")
    return m


def _aligned_surrogates(surrogates, brain_map, expression: pd.DataFrame) -> np.ndarray:
    """Surrogate maps with one column per row of ``expression``, in its order.

    A DataFrame of surrogates is aligned by its column labels; an array is in the order of ``brain_map`` (the map it
    was drawn from), so when ``brain_map`` is a Series its columns follow the map's index and are realigned with it.
    """
    R = len(expression)
    if isinstance(surrogates, pd.DataFrame):
        S = surrogates_by_label(surrogates, expression.index)
    else:
        S = numeric_array(surrogates, "surrogates")
        if isinstance(brain_map, pd.Series):
            if S.ndim != 2 or S.shape[1] != len(brain_map):
                raise ParameterError(f"surrogates must be an (n, {len(brain_map)}) array in the order of brain_map's index "
                                     f"(the map they were drawn from), or a DataFrame with region labels as columns; got "
                                     f"{S.shape}")
            S = S[:, brain_map.index.get_indexer(expression.index)]
    if S.ndim != 2 or S.shape[1] != R:
        raise ParameterError(f"surrogates must be an (n, {R}) array of maps over the regions of expression, got {S.shape}")
    if not np.isfinite(S).all():
        raise ParameterError("surrogates has NaN or infinite values")
    return S


@dataclass(frozen=True, repr=False)
class MapCorrelations(LegacyTuple):
    """Correlations of genes with a map: ``r`` (Series, index gene) and ``null`` (genes x surrogates, or None)."""

    r: pd.Series
    null: np.ndarray | None
    _legacy_fields = ("r", "null")

    def __repr__(self) -> str:
        shape = None if self.null is None else self.null.shape
        return f"MapCorrelations({self.r.size} genes, null {shape})"


def gene_map_correlations(expression: pd.DataFrame, brain_map, surrogates: np.ndarray | None = None) -> MapCorrelations:
    """Pearson correlation of every gene with a map (and with each surrogate map), in one product.

    Genes with missing values or no variance across regions are dropped.

    Returns
    -------
    MapCorrelations
        ``r``: correlation per gene (index: gene); ``null``: a genes x surrogates array of null correlations
        (None without ``surrogates``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> expr = pd.DataFrame(rng.random((30, 4)), columns=list("ABCD"))
    >>> res = gene_map_correlations(expr, expr["A"].to_numpy(), rng.random((10, 30)))
    >>> float(res.r["A"]), res.null.shape
    (1.0, (4, 10))
    """
    m = _aligned_map(expression, brain_map)
    E = numeric_array(expression, "expression")
    keep = np.isfinite(E).all(axis=0) & (np.nanstd(E, axis=0) > 0)
    if not keep.all() and keep.any():
        warn(f"gene_map_correlations: {int((~keep).sum())} genes with NaN or constant values across the regions are left out "
             f"(e.g. {list(expression.columns[~keep][:3])})")
    E = E[:, keep]
    if E.shape[1] == 0:
        raise ParameterError("expression has no gene with complete, varying values across its regions")
    Ez = zscore_rows(E.T)  # genes x regions
    R = len(m)
    r = Ez @ zscore_rows(m[None, :])[0] / R
    null = None
    if surrogates is not None:
        S = _aligned_surrogates(surrogates, brain_map, expression)
        null = Ez @ zscore_rows(S).T / R
    return MapCorrelations(r=pd.Series(r, index=expression.columns[keep], name="r"), null=null)


@numba.njit(cache=True)
def _matched(C, k, target, n, tolerance, max_proposals, seed, out, achieved):
    """Wei et al. (2022) iterative swaps: n random k-gene sets whose mean pairwise C approaches target."""
    np.random.seed(seed)
    N = C.shape[0]
    pairs = k * (k - 1)
    for s in range(n):
        member = np.zeros(N, dtype=np.bool_)
        chosen = np.random.permutation(N)[:k]
        for g in chosen:
            member[g] = True
        r = np.zeros(N)
        for i in range(N):
            acc = 0.0
            for g in chosen:
                acc += C[i, g]
            r[i] = acc
        total = 0.0
        for g in chosen:
            total += r[g] - C[g, g]
        dev = abs(total / pairs - target)
        for _ in range(max_proposals):
            if dev <= tolerance:
                break
            slot = np.random.randint(k)
            g_out = chosen[slot]
            g_in = np.random.randint(N)
            if member[g_in]:
                continue
            new_total = total - 2.0 * (r[g_out] - C[g_out, g_out]) + 2.0 * (r[g_in] - C[g_in, g_out])
            new_dev = abs(new_total / pairs - target)
            if new_dev < dev:
                for i in range(N):
                    r[i] += C[i, g_in] - C[i, g_out]
                member[g_out] = False
                member[g_in] = True
                chosen[slot] = g_in
                total, dev = new_total, new_dev
        out[s, :] = chosen
        achieved[s] = total / pairs


@dataclass(frozen=True, repr=False)
class MatchedSets(Mapping):
    """Random gene sets matched to categories (:func:`coexpression_matched_sets`).

    A mapping ``category -> int array (n_permutations, k)`` of column positions into ``genes``; ``matching``
    reports, per category, the target and achieved mean co-expression and the fraction within tolerance.
    """

    sets: dict[str, np.ndarray]
    matching: pd.DataFrame
    genes: np.ndarray

    def __getitem__(self, key: str) -> np.ndarray:
        if key in ("__matching__", "__genes__"):  # the magic keys of releases before 0.2
            attr = key.strip("_")
            warn_renamed(f"result[{key!r}]", f"result.{attr}", "gsea.coexpression_matched_sets")
            return getattr(self, attr)
        if key not in self.sets:
            raise NotFoundError(f"no matched sets for category {key!r}; categories: {list(self.sets)[:10]}")
        return self.sets[key]

    def __iter__(self):
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)

    def __repr__(self) -> str:
        return f"MatchedSets({len(self.sets)} categories over {self.genes.size} genes)"


@renamed_parameters(n="n_permutations")
def coexpression_matched_sets(
    expression: pd.DataFrame,
    gene_sets: Mapping[str, Iterable[str]],
    *,
    n_permutations: int = 1000,
    tolerance: float = 0.025,
    seed: int = 0,
    min_size: int = 10,
    max_size: int = 200,
    max_proposals: int = 20000,
) -> MatchedSets:
    """Random gene sets matched to each category in size and mean within-set co-expression.

    Co-expression is the Pearson correlation of two genes across the regions of ``expression``;
    a set's co-expression is the mean over its gene pairs. Each random set starts as a uniform draw
    of the category's size and swaps one gene at a time (a random member out, a random non-member
    in), keeping a swap only when it brings the set's mean co-expression closer to the category's,
    until within ``tolerance`` or ``max_proposals`` (Wei et al. 2022's ``y_rand_gs_coexp``).
    The sets depend on the expression matrix only, so compute them once and pass them to
    :func:`map_enrichment` (``random_sets=``) for every map.

    Returns
    -------
    MatchedSets
        A mapping category -> int array (n_permutations, k) of column positions in ``.genes`` (the genes of
        ``expression`` with complete, varying values, as :func:`map_enrichment` uses); ``.matching``: each
        category's target, the achieved mean co-expression (median) and the fraction of sets within tolerance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> expr = pd.DataFrame(rng.standard_normal((40, 60)), columns=[f"g{i}" for i in range(60)])
    >>> matched = coexpression_matched_sets(expr, {"A": [f"g{i}" for i in range(10)]}, n_permutations=20, min_size=5)
    >>> matched["A"].shape, matched.matching["term"].tolist()
    ((20, 10), ['A'])

    References
    ----------
    Wei Y, de Lange SC, Pijnenburg R, et al. (2022) Statistical testing in transcriptomic-neuroimaging
    studies: a how-to and evaluation of methods assessing spatial and gene specificity. Hum Brain
    Mapp 43:885-901.
    """
    n = n_permutations
    if n < 1 or tolerance <= 0:
        raise ParameterError(f"n_permutations must be >= 1 and tolerance > 0, got {n} and {tolerance}")
    if min_size < 2:
        raise ParameterError(f"min_size must be >= 2 (co-expression needs gene pairs), got {min_size}")
    if not isinstance(expression, pd.DataFrame):
        raise ParameterError("expression must be a regions x genes DataFrame")
    E = expression.to_numpy(float)
    e = expression.loc[:, np.isfinite(E).all(axis=0) & (np.nanstd(E, axis=0) > 0)]  # as gene_map_correlations
    Z = zscore_rows(e.to_numpy(float).T)  # genes x regions
    C = (Z @ Z.T) / Z.shape[1]
    pos = {g: i for i, g in enumerate(map(str, e.columns))}
    sets, _ = _restrict(gene_sets, set(pos), min_size, max_size)
    out: dict[str, np.ndarray] = {}
    rows = []
    for j, (name, genes) in enumerate(sets.items()):
        idx = np.array([pos[g] for g in genes])
        k = idx.size
        target = (C[np.ix_(idx, idx)].sum() - k) / (k * (k - 1))
        chosen = np.empty((n, k), dtype=np.int64)
        achieved = np.empty(n)
        _matched(C, k, target, n, tolerance, max_proposals, seed + 7919 * j, chosen, achieved)
        out[name] = chosen
        rows.append({"term": name, "n_genes": k, "target": target, "achieved_median": float(np.median(achieved)),
                     "fraction_within_tolerance": float(np.mean(np.abs(achieved - target) <= tolerance))})
    return MatchedSets(sets=out, matching=pd.DataFrame(rows), genes=np.asarray(e.columns.astype(str)))


@renamed_parameters(n_random="n_permutations")
def map_enrichment(
    expression: pd.DataFrame,
    brain_map,
    gene_sets: Mapping[str, Iterable[str]],
    *,
    null: str = "spatial",
    surrogates: np.ndarray | None = None,
    random_sets: Mapping[str, np.ndarray] | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
    min_size: int = 10,
    max_size: int = 200,
    alternative: str = "two-sided",
    coords=None,
) -> pd.DataFrame:
    """Gene categories whose genes' expression follows a brain map, tested against a chosen null.

    Parameters
    ----------
    expression : DataFrame
        Regions x genes (e.g. ``ahba.process(...).expression``); genes with missing values are dropped.
    brain_map : Series or array
        One value per region (a Series is aligned on the index of ``expression``).
    gene_sets : mapping
        Category name -> genes (e.g. :func:`hmba_toolkit.gsea.go_biological_process`).
    null : {"spatial", "random_genes", "coexpression_matched"}
        ``"spatial"``: the ensemble null over ``surrogates`` (Fulcher et al. 2021; recommended).
        ``"random_genes"``: random gene sets of the same size (the conventional, inflated test).
        ``"coexpression_matched"``: random sets matched in size and co-expression (Wei et al. 2022).
    surrogates : array, (n, regions), or DataFrame
        Surrogate maps of ``brain_map`` (``nulls.spatial_lag``, ``nulls.variogram``, ...), for
        ``null="spatial"``: an array in the order of ``brain_map`` (realigned with it when ``brain_map`` is a
        Series in another region order than ``expression``), or a DataFrame with region labels as columns.
    random_sets : mapping, optional
        For ``null="coexpression_matched"``: the output of :func:`coexpression_matched_sets` on the
        same ``expression`` (computed here when None, with ``n_permutations`` and ``seed``).
    n_permutations, seed : int
        Random gene sets (per size, or per category), and their seed.
    min_size, max_size : int
        Category size limits, applied to the genes present in ``expression``.
    alternative : {"two-sided", "greater", "less"}
        Direction of the test on the category score.
    coords : Geometry, DataFrame or array, optional
        The regions' locations (a :class:`~hmba_toolkit.spatial.Geometry`, or centroids indexed by region or in the
        order of ``expression``): with ``null="spatial"``, the surrogates' median variogram fit to the map is
        reported in ``attrs["variogram_r2"]`` and a poor fit (below ``variograms.POOR_FIT_R2``) is warned, since
        surrogates that do not keep the map's autocorrelation do not hold the false-positive rate.

    Returns
    -------
    DataFrame
        ``term, n_genes, n_overlap, statistic, effect, pvalue, padj, genes``, sorted by p-value;
        ``attrs`` record the null, its size, the smallest attainable p-value and the surrogates' fit.

    Examples
    --------
    >>> from hmba_toolkit import nulls, gsea
    >>> rng = np.random.default_rng(0)
    >>> centroids = rng.random((40, 3)) * 100  # regions x (x, y, z) mm
    >>> brain_map = nulls.random_fields(centroids, 1, seed=1)[0]
    >>> expr = pd.DataFrame(rng.standard_normal((40, 60)), columns=[f"g{i}" for i in range(60)])
    >>> expr.iloc[:, :10] += 2 * brain_map[:, None]  # ten genes follow the map
    >>> surr = nulls.spatial_lag(brain_map, centroids, n_permutations=200, seed=0)
    >>> res = gsea.map_enrichment(expr, brain_map, {"follows": [f"g{i}" for i in range(10)]}, surrogates=surr, min_size=5)
    >>> bool(res.at[0, "pvalue"] < 0.05)
    True

    References
    ----------
    Fulcher BD, Arnatkeviciute A, Fornito A (2021) Nat Commun 12:2669. Wei Y et al. (2022) Hum Brain
    Mapp 43:885-901.
    """
    if null not in ("spatial", "random_genes", "coexpression_matched"):
        raise ParameterError(f"null={null!r} is not 'spatial', 'random_genes' or 'coexpression_matched'")
    if alternative not in ("two-sided", "greater", "less"):
        raise ParameterError(f"alternative={alternative!r} is not 'two-sided', 'greater' or 'less'")
    if null == "spatial" and surrogates is None:
        raise ParameterError("null='spatial' needs surrogates: an (n, regions) array from hmba_toolkit.nulls")
    if null != "spatial" and n_permutations < 1:
        raise ParameterError(f"n_permutations must be a positive number of random gene sets, got {n_permutations}")
    corr = gene_map_correlations(expression, brain_map, surrogates if null == "spatial" else None)
    r, rnull = corr.r, corr.null
    fit_r2 = _surrogate_fit(expression, brain_map, surrogates, coords) if null == "spatial" and coords is not None else None
    genes = r.index
    sets, dropped = _restrict(gene_sets, set(map(str, genes)), min_size, max_size)
    names = list(sets)
    pos = {g: i for i, g in enumerate(map(str, genes))}
    rows = np.repeat(np.arange(len(names)), [len(sets[k]) for k in names])
    cols = np.fromiter((pos[g] for k in names for g in sets[k]), dtype=np.int64, count=rows.size)
    size = np.array([len(sets[k]) for k in names], dtype=float)
    M = sp.csr_matrix((1.0 / size[rows], (rows, cols)), shape=(len(names), len(genes)))
    zr = np.arctanh(np.clip(r.to_numpy(), -0.999999, 0.999999))
    obs = M @ zr
    if null == "spatial":
        null_scores = np.asarray(M @ np.arctanh(np.clip(rnull, -0.999999, 0.999999)))  # categories x surrogates
    elif null == "coexpression_matched":
        if random_sets is None:
            random_sets = coexpression_matched_sets(expression, sets, n_permutations=n_permutations, seed=seed,
                                                    min_size=min_size, max_size=max_size)
        if isinstance(random_sets, MatchedSets) and not np.array_equal(random_sets.genes, np.asarray(genes.astype(str))):
            raise ParameterError("random_sets were computed on another expression matrix (gene order differs)")
        missing = [k for k in names if k not in random_sets]
        if missing:
            raise ParameterError(f"random_sets lacks categories {missing[:5]}: compute them on the same expression and gene sets")
        widths = {random_sets[k].shape[0] for k in names}
        if len(widths) != 1:
            raise ParameterError(f"random_sets hold different numbers of sets per category: {sorted(widths)}")
        null_scores = np.stack([zr[random_sets[k]].mean(axis=1) for k in names])  # categories x sets
    else:
        rng = np.random.default_rng(seed)
        # one set of gene permutations serves every set size: the mean of the first k genes
        perm = np.argsort(rng.random((n_permutations, len(genes))), axis=1)
        csum = np.cumsum(zr[perm], axis=1)
        k = size.astype(int)
        null_scores = (csum[:, k - 1] / k).T  # categories x n_permutations
    n_null = null_scores.shape[1]
    mu = null_scores.mean(axis=1)
    sd = null_scores.std(axis=1)
    if alternative == "two-sided":
        # two-sided around the null's centre (~0 for a symmetric null)
        extreme = np.abs(null_scores - mu[:, None]) >= np.abs(obs - mu)[:, None] - 1e-12
    elif alternative == "greater":
        extreme = null_scores >= obs[:, None] - 1e-12
    else:
        extreme = null_scores <= obs[:, None] + 1e-12
    p = (1 + extreme.sum(axis=1)) / (1 + n_null)
    rvals = r.to_dict()
    out = pd.DataFrame({
        "term": names,
        "n_genes": size.astype(int),
        "n_overlap": size.astype(int),
        "statistic": np.divide(obs - mu, sd, out=np.zeros_like(obs), where=sd > 0),
        "effect": obs,
        "pvalue": p,
        "genes": [";".join(sorted(sets[k], key=lambda g: (-rvals[g], g))) for k in names],
    })
    out["padj"] = bh_adjust(out["pvalue"].to_numpy())
    out = out[ENRICHMENT_COLUMNS].sort_values(["pvalue", "term"], ignore_index=True)
    out.attrs.update({"method": "map_enrichment", "null": null, "n_null": int(n_null), "alternative": alternative,
                      "genes_scored": int(len(genes)), "sets_tested": len(names), "sets_outside_size_limits": dropped,
                      "min_size": min_size, "max_size": max_size, "smallest_possible_pvalue": 1 / (n_null + 1),
                      "seed": seed if null != "spatial" else None, "variogram_r2": fit_r2})
    return out


def _surrogate_fit(expression: pd.DataFrame, brain_map, surrogates, coords) -> float:
    """Median variogram fit of the surrogates to the map over the regions of ``expression``, warned when poor."""
    from ..variograms import POOR_FIT_R2, variogram_fit

    where = as_geometry(coords)
    if where.labels is not None:
        where = where.subset(expression.index, "expression")
    m = brain_map.loc[expression.index] if isinstance(brain_map, pd.Series) else brain_map
    r2 = float(variogram_fit(numeric_array(m, "brain_map"), _aligned_surrogates(surrogates, brain_map, expression),
                             where)["r2"].median())
    if r2 < POOR_FIT_R2:
        warn(f"map_enrichment: the surrogates fit the variogram of brain_map poorly (median r2 {r2:.2f} < {POOR_FIT_R2}): "
             "the p-values are not calibrated for this map (try nulls.variogram(..., refine=True))")
    return r2


def map_enrichment_error_rates(
    expression: pd.DataFrame,
    random_maps: np.ndarray,
    gene_sets: Mapping[str, Iterable[str]],
    coords,
    *,
    nulls: Sequence[str] = ("random_genes", "spatial"),
    n_permutations: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    min_size: int = 10,
    max_size: int = 200,
) -> pd.DataFrame:
    """How many categories :func:`map_enrichment` calls enriched in maps that carry no signal, per null.

    Each of ``random_maps`` (smooth maps unrelated to any category, e.g. spatial-lag surrogates of a real map) is
    tested with each null: ``"random_genes"`` (categories against random gene sets, which ignores the maps'
    autocorrelation) and ``"spatial"`` (against variogram-matching surrogates of the map, :func:`hmba_toolkit.nulls.variogram`,
    seeded ``seed + map``). A calibrated null gives a fraction of p-values below ``alpha`` near ``alpha``.

    Returns
    -------
    pandas.DataFrame
        One row per map and null: ``map, null, n_categories, fraction_p_below_alpha, n_padj_below_alpha``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.random((40, 3))
    >>> expr = pd.DataFrame(rng.standard_normal((40, 30)), columns=[f"g{i}" for i in range(30)])
    >>> sets = {"A": [f"g{i}" for i in range(10)], "B": [f"g{i}" for i in range(10, 20)]}
    >>> from hmba_toolkit import nulls
    >>> maps = nulls.random_fields(xy, 2, seed=1)
    >>> res = map_enrichment_error_rates(expr, maps, sets, xy, n_permutations=49, min_size=5)
    >>> res[["map", "null", "n_categories"]].values.tolist()
    [[0, 'random_genes', 2], [0, 'spatial', 2], [1, 'random_genes', 2], [1, 'spatial', 2]]

    References
    ----------
    Fulcher BD, Arnatkeviciute A, Fornito A (2021) Nat Commun 12:2669 (false-positive rates of category
    enrichment on spatial maps).
    """
    from ..nulls import variogram

    unknown = [n for n in nulls if n not in ("random_genes", "spatial")]
    if unknown:
        raise ParameterError(f"nulls {unknown} are not 'random_genes' or 'spatial'")
    maps = surrogates_by_label(random_maps, expression.index if isinstance(random_maps, pd.DataFrame) else None, "random_maps")
    where = as_geometry(coords)  # one geometry: the variogram pairs are computed once for all maps
    if where.labels is not None:
        where = where.subset(expression.index, "expression")
    if maps.ndim != 2 or maps.shape[1] != len(expression):
        raise ParameterError(f"random_maps must be (n_maps, {len(expression)}) over the regions of expression, got {maps.shape}")
    rows = []
    for i, m in enumerate(maps):
        for null in nulls:
            if null == "random_genes":
                res = map_enrichment(expression, m, gene_sets, null="random_genes", n_permutations=n_permutations,
                                     seed=seed + i, min_size=min_size, max_size=max_size)
            else:
                surrogates = variogram(m, where, n_permutations=n_permutations, seed=seed + i)
                res = map_enrichment(expression, m, gene_sets, surrogates=surrogates, min_size=min_size, max_size=max_size)
            rows.append({"map": i, "null": null, "n_categories": len(res),
                         "fraction_p_below_alpha": float((res["pvalue"] < alpha).mean()) if len(res) else np.nan,
                         "n_padj_below_alpha": int((res["padj"] < alpha).sum())})
    return pd.DataFrame(rows)
