"""Co-expression: gene x gene correlation (cells, pseudobulk, regions) and correlated gene expression.

* :func:`gene_correlation` — Pearson or Spearman correlation between genes across cells (sparse,
  never densified: the Gram matrix of the selected genes), across pseudobulk samples (summed
  counts per group, log2 CPM), or across regions (a region x gene table);
* :func:`top_pairs` — the strongest pairs of a correlation matrix as a tidy table;
* :func:`cge` — correlated gene expression between regions: the correlation, across genes, of
  two regions' expression profiles (Fulcher and Fornito 2016; Arnatkeviciute et al. 2019);
* :func:`fit_distance_decay` — CGE against the distance between regions, fitted by
  ``A exp(-d / lambda) + B`` (or a line, as abagen's ``remove_distance``), with the residual,
  distance-corrected CGE matrix.

Co-expression between genes measured on the same brain locations is confounded by space:
nearby locations share expression, so two genes with smooth maps correlate by chance far more
often than a naive test says. Test a pair of maps with :func:`hmba_toolkit.nulls.correlate` and
spatial surrogates, not with a t-test on ``r``.

References
----------
Fulcher BD, Fornito A (2016) PNAS 113:1435-1440. Arnatkeviciute A, Fulcher BD, Fornito A (2019)
NeuroImage 189:353-367. Markello RD et al. (2021) eLife 10:e72129 (abagen). Spearman C (1904)
Am J Psychol 15:72-101.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import optimize, stats

from ._checks import check_layer
from ._compat import renamed_parameters, warn
from .errors import ParameterError, ParameterTypeError
from .spatial.geometry import as_geometry

__all__ = ["gene_correlation", "top_pairs", "cge", "fit_distance_decay", "DistanceDecayFit"]


def _sparse_rank_shift(X: sp.csc_matrix) -> sp.csc_matrix:
    """Per column: average ranks minus the zeros' average rank; zeros stay 0 (sparsity kept).

    Spearman = Pearson of ranks, and Pearson does not change when a column is shifted, so the
    zeros (tied at rank ``(z + 1) / 2``) can be moved to 0.
    """
    X = sp.csc_matrix(X, dtype=float, copy=True)
    n = X.shape[0]
    for g in range(X.shape[1]):
        a, b = X.indptr[g], X.indptr[g + 1]
        vals = X.data[a:b]
        if vals.size == 0:
            continue
        if (vals < 0).any():
            raise ParameterError("method='spearman' on sparse data needs non-negative values (counts or log counts)")
        z = n - vals.size
        X.data[a:b] = z + stats.rankdata(vals) - (z + 1) / 2
    return X


def _corr_columns(X, genes: list[str]) -> pd.DataFrame:
    n = X.shape[0]
    if n < 3:
        raise ParameterError(f"a correlation needs at least 3 observations, got {n}")
    if sp.issparse(X):
        X = sp.csc_matrix(X, dtype=float)
        G = (X.T @ X).toarray()
        mu = np.asarray(X.mean(axis=0)).ravel()
    else:
        X = np.asarray(X, dtype=float)
        if not np.isfinite(X).all():
            raise ParameterError("the expression values have NaN or infinite entries; drop or impute them first")
        mu = X.mean(axis=0)
        G = X.T @ X
    cov = (G - n * np.outer(mu, mu)) / (n - 1)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.outer(sd, sd)
    r = np.clip(r, -1, 1)
    # a gene that never varies has no correlation: decided exactly (the variance from sums of squares is not)
    constant = _constant_columns(X)
    r[constant, :] = np.nan
    r[:, constant] = np.nan
    np.fill_diagonal(r, np.where(constant, np.nan, 1.0))
    if constant.any():
        names = [genes[i] for i in np.flatnonzero(constant)]
        warn(f"{len(names)} gene(s) do not vary across the observations, their correlations are NaN: {names[:10]}")
    return pd.DataFrame(r, index=pd.Index(genes, name="gene"), columns=pd.Index(genes, name="gene"))


def _constant_columns(X) -> np.ndarray:
    """True for columns whose values are all equal (exact comparison, dense or sparse)."""
    if sp.issparse(X):
        X = sp.csc_matrix(X, copy=True)  # eliminate_zeros works in place: never on the caller's matrix
        X.eliminate_zeros()
        nnz = np.diff(X.indptr)
        out = nnz == 0  # all zero
        full = np.flatnonzero(nnz == X.shape[0])  # no zero: constant if the stored values are equal
        for j in full:
            vals = X.data[X.indptr[j]:X.indptr[j + 1]]
            out[j] = bool((vals == vals[0]).all())
        return out
    return (X == X[:1]).all(axis=0)


def _select(names: pd.Index, genes: Sequence[str] | None, what: str) -> np.ndarray:
    if genes is None:
        return np.arange(len(names))
    if isinstance(genes, str):
        raise ParameterTypeError(f"genes must be a list of names, not one string; use [{genes!r}]")
    genes = list(genes)
    pos = pd.Index(names).get_indexer(genes)
    missing = [g for g, p in zip(genes, pos, strict=True) if p < 0]
    if missing:
        from ._names import did_you_mean

        hint = did_you_mean(missing, names)
        raise ParameterError(f"genes not in the {what}: {missing[:10]}" + (f" ({hint})" if hint else ""))
    if len(set(genes)) < len(genes):
        raise ParameterError("genes has duplicated symbols")
    return pos


@renamed_parameters(gene_symbols="gene_column")
def gene_correlation(data, genes: Sequence[str] | None = None, *, method: str = "pearson", layer: str | None = None,
                     groupby: str | Sequence[str] | None = None, gene_column: str | None = None) -> pd.DataFrame:
    """Gene x gene correlation across cells, pseudobulk samples or regions.

    Parameters
    ----------
    data : AnnData or DataFrame
        Cells x genes AnnData (sparse or dense ``X`` or ``layer``), or a samples/regions x genes
        DataFrame (e.g. ``ahba.process(...).expression``).
    genes : list of str, optional
        Genes to correlate (all by default; the result is genes x genes, so choose a few
        thousand at most at cell level).
    method : {"pearson", "spearman"}
        Spearman on sparse cells ranks the non-zeros and ties the zeros, without densifying.
    layer : str, optional
        AnnData layer to use instead of ``X``.
    groupby : str or list of str, optional
        AnnData only: sum raw counts per group of cells (e.g. ``["donor_label", "Group"]``),
        convert to log2(CPM + 1) and correlate across those pseudobulk samples. ``X``/``layer``
        must then hold raw counts.
    gene_column : str, optional
        ``var`` column with the gene symbols (default: ``var_names``).

    Returns
    -------
    DataFrame
        Symmetric genes x genes correlation matrix (NaN for genes that never vary).
        ``attrs["n_observations"]`` and ``attrs["level"]`` say what was correlated.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame(np.random.default_rng(0).random((20, 3)), columns=["A", "B", "C"])
    >>> gene_correlation(df).shape
    (3, 3)

    References
    ----------
    Crow M, Gillis J (2018) Co-expression in single-cell analysis: saving grace or original sin?
    Trends Genet 34:823-831 (why pseudobulk co-expression is more robust than cell-level).
    """
    if method not in ("pearson", "spearman"):
        raise ParameterError(f"method={method!r} is not 'pearson' or 'spearman'")
    if isinstance(data, pd.DataFrame):
        if groupby is not None:
            raise ParameterError("groupby applies to AnnData of cells; a DataFrame is already one row per sample")
        cols = _select(data.columns, genes, "table's columns")
        X = data.iloc[:, cols].to_numpy(float)
        names = [str(c) for c in data.columns[cols]]
        level = "rows"
    elif isinstance(data, ad.AnnData):
        symbols = pd.Index(data.var[gene_column]) if gene_column else data.var_names
        cols = _select(symbols, genes, "AnnData's genes")
        names = [str(s) for s in symbols[cols]]
        if groupby is not None:
            from .normalize import log2_cpm
            from .stream import aggregate

            pb = aggregate(data, groupby, layer=layer)
            Xn = log2_cpm(pb).X  # CPM over all genes, then the selection
            X = (Xn.toarray() if sp.issparse(Xn) else np.asarray(Xn, dtype=float))[:, cols]
            level = "pseudobulk"
        else:
            check_layer(data, layer, "data")
            X = (data.layers[layer] if layer else data.X)[:, cols]
            X = sp.csc_matrix(X, dtype=float) if sp.issparse(X) else np.asarray(X, dtype=float)
            level = "cells"
    else:
        raise ParameterTypeError(f"data must be an AnnData or a DataFrame, got {type(data).__name__}")
    if method == "spearman":
        X = _sparse_rank_shift(X) if sp.issparse(X) else stats.rankdata(X, axis=0)
    out = _corr_columns(X, names)
    out.attrs.update({"method": method, "level": level, "n_observations": int(X.shape[0])})
    return out


def top_pairs(corr: pd.DataFrame, n: int = 20, *, absolute: bool = True) -> pd.DataFrame:
    """The ``n`` strongest gene pairs of a correlation matrix: tidy ``gene_a, gene_b, r``.

    Each pair appears once (upper triangle), sorted by ``|r|`` (or ``r`` when ``absolute`` is
    False) and then by name, so ties are stable.
    """
    if not isinstance(corr, pd.DataFrame):
        raise ParameterTypeError(f"corr must be a genes x genes DataFrame (gene_correlation), not {type(corr).__name__}")
    if corr.shape[0] != corr.shape[1] or not corr.index.equals(corr.columns):
        raise ParameterError("corr must be a square matrix with the same genes as index and columns")
    if n < 1:
        raise ParameterError(f"n must be >= 1 (how many pairs to return), got {n}")
    iu, ju = np.triu_indices(corr.shape[0], k=1)
    r = corr.to_numpy()[iu, ju]
    out = pd.DataFrame({"gene_a": corr.index[iu].astype(str), "gene_b": corr.columns[ju].astype(str), "r": r}).dropna()
    out["_key"] = -out["r"].abs() if absolute else -out["r"]
    return out.sort_values(["_key", "gene_a", "gene_b"]).drop(columns="_key").head(n).reset_index(drop=True)


def cge(expression: pd.DataFrame, *, method: str = "pearson") -> pd.DataFrame:
    """Correlated gene expression: region x region correlation of expression profiles across genes.

    Parameters
    ----------
    expression : DataFrame
        Regions x genes (e.g. normalised AHBA values from :func:`hmba_toolkit.ahba.process`).
        Regions with any missing value are dropped (listed in ``attrs["dropped_regions"]``).
    method : {"pearson", "spearman"}
        Spearman is what Arnatkeviciute et al. (2019) use.

    Returns
    -------
    DataFrame
        Regions x regions CGE.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> e = pd.DataFrame(np.random.default_rng(0).random((5, 50)), index=list("abcde"))
    >>> cge(e).shape
    (5, 5)

    References
    ----------
    Fulcher BD, Fornito A (2016) PNAS 113:1435-1440. Arnatkeviciute A et al. (2019) NeuroImage 189:353-367.
    """
    if not isinstance(expression, pd.DataFrame):
        raise ParameterError("expression must be a regions x genes DataFrame")
    if expression.index.has_duplicates:
        raise ParameterError(f"expression has duplicated regions {list(expression.index[expression.index.duplicated()][:5])}: "
                             "one row per region")
    ok = expression.notna().all(axis=1)
    e = expression.loc[ok]
    if len(e) < 3 or e.shape[1] < 3:
        raise ParameterError(f"CGE needs at least 3 complete regions and 3 genes, got {e.shape}")
    out = gene_correlation(e.T.reset_index(drop=True), method=method)
    out.index = out.columns = pd.Index(e.index, name="region")
    out.attrs.update({"dropped_regions": list(expression.index[~ok]), "n_genes": e.shape[1], "method": method})
    return out


def _decay_curve(model: str, p: dict, d) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    if model == "exponential":
        return p["A"] * np.exp(-d / p["lambda"]) + p["B"]
    return p["intercept"] + p["slope"] * d


@dataclass
class DistanceDecayFit:
    """Result of :func:`fit_distance_decay`.

    Attributes
    ----------
    model : str
        ``"exponential"`` (``A exp(-d / lambda) + B``) or ``"linear"`` (``a + b d``).
    params : dict
        Fitted parameters (``A``, ``lambda``, ``B``; or ``intercept``, ``slope``).
    r2 : float
        Variance of CGE over region pairs explained by the fit.
    pairs : DataFrame
        One row per region pair: ``region_a, region_b, distance, cge, fitted, residual``.
    residuals : DataFrame
        Regions x regions distance-corrected CGE (diagonal NaN).
    """

    model: str
    params: dict
    r2: float
    pairs: pd.DataFrame
    residuals: pd.DataFrame

    def predict(self, d) -> np.ndarray:
        return _decay_curve(self.model, self.params, d)

    def label(self, distance_unit: str = "") -> str:
        """The fitted curve as text, with signs written once and the distance unit (for legends and titles).

        An exponential whose length exceeds the largest distance observed is flagged: over the data it is a
        straight line, and ``A`` and ``B`` are not separately meaningful.

        Examples
        --------
        >>> fit = DistanceDecayFit("exponential", {"A": 0.8, "lambda": 25.0, "B": -0.1}, 0.4, None, None)
        >>> fit.label("mm")
        'CGE = 0.80 exp(-d / 25.0 mm) - 0.10 (r2 = 0.40)'
        """
        p = self.params
        unit = f" {distance_unit}" if distance_unit else ""

        def signed(v: float, fmt: str) -> str:
            return f"- {abs(v):{fmt}}" if v < 0 else f"+ {v:{fmt}}"

        if self.model == "exponential":
            text = f"CGE = {p['A']:.2f} exp(-d / {p['lambda']:.1f}{unit}) {signed(p['B'], '.2f')} (r2 = {self.r2:.2f})"
            if self.pairs is not None and p["lambda"] > self.pairs["distance"].max():
                text += "; length beyond the largest distance: effectively linear"
            return text
        return f"CGE = {p['intercept']:.2f} {signed(p['slope'], '.4f')} d{unit and ' (per' + unit + ')'} (r2 = {self.r2:.2f})"


def fit_distance_decay(cge_matrix: pd.DataFrame, coords=None, *, distances=None, model: str = "exponential") -> DistanceDecayFit:
    """Fit CGE against the distance between regions and return the distance-corrected CGE.

    Parameters
    ----------
    cge_matrix : DataFrame
        Regions x regions CGE from :func:`cge`.
    coords : Geometry, DataFrame or array, optional
        Region centroids (a :class:`~hmba_toolkit.spatial.Geometry`, a DataFrame indexed by region, or rows in
        the order of ``cge_matrix``).
    distances : DataFrame or array, optional
        Or a regions x regions distance matrix.
    model : {"exponential", "linear"}
        ``A exp(-d / lambda) + B`` (Fulcher and Fornito 2016; Arnatkeviciute et al. 2019; ``lambda``
        at most ten times the largest distance, beyond which the curve is a line) or the
        line of abagen's ``remove_distance`` (leaves structure in the residuals when the decay
        is exponential).

    Returns
    -------
    DistanceDecayFit

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.random((40, 2)) * 100  # region centroids, mm
    >>> D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    >>> field = np.linalg.cholesky(np.exp(-D / 30) + 1e-9 * np.eye(40)) @ rng.standard_normal((40, 200))
    >>> expr = pd.DataFrame(field + 0.5 * rng.standard_normal((40, 200)))  # 200 genes smooth in space
    >>> fit = fit_distance_decay(cge(expr), xy)
    >>> bool(fit.params["A"] > 0 and fit.r2 > 0.3), fit.residuals.shape
    (True, (40, 40))

    References
    ----------
    Fulcher BD, Fornito A (2016) PNAS 113:1435-1440. Arnatkeviciute A et al. (2019) NeuroImage 189:353-367.
    """
    if model not in ("exponential", "linear"):
        raise ParameterError(f"model={model!r} is not 'exponential' or 'linear'")
    regions = cge_matrix.index
    where = as_geometry(coords, distances=distances)
    if where.labels is not None:
        where = where.subset(regions, "cge_matrix")
    D = where.distances
    if D.shape != cge_matrix.shape:
        raise ParameterError(f"distances must be {cge_matrix.shape} (one row and column per region of cge_matrix), got {D.shape}")
    if not np.isfinite(D).all():
        raise ParameterError(f"distances has {int((~np.isfinite(D)).sum())} NaN or infinite entries")
    iu, ju = np.triu_indices(len(regions), k=1)
    d, y = D[iu, ju], cge_matrix.to_numpy(float)[iu, ju]
    ok = np.isfinite(y)
    if ok.sum() < 4:
        raise ParameterError("fewer than 4 region pairs with a finite CGE")
    if model == "exponential":
        p0 = (max(y[ok].max() - y[ok].min(), 1e-3), float(np.median(d[ok])) / 2, float(np.quantile(y[ok], 0.1)))
        try:
            (A, lam, B), _ = optimize.curve_fit(lambda x, A, lam, B: A * np.exp(-x / lam) + B, d[ok], y[ok], p0=p0,
                                                bounds=([-np.inf, 1e-9 * d.max() + 1e-12, -np.inf], [np.inf, 10 * d.max(), np.inf]),
                                                maxfev=20000)
        except RuntimeError as exc:  # no convergence
            raise ParameterError(f"the exponential fit of CGE against distance did not converge ({exc}); try model='linear'") from exc
        params = {"A": float(A), "lambda": float(lam), "B": float(B)}
    else:
        slope, intercept = np.polyfit(d[ok], y[ok], 1)
        params = {"intercept": float(intercept), "slope": float(slope)}
    fitted = _decay_curve(model, params, d)
    resid = y - fitted
    r2 = float(1 - np.nansum(resid**2) / np.nansum((y - np.nanmean(y)) ** 2))
    pairs = pd.DataFrame({"region_a": regions[iu], "region_b": regions[ju], "distance": d, "cge": y, "fitted": fitted,
                          "residual": resid})
    R = np.full(D.shape, np.nan)
    R[iu, ju] = resid
    R[ju, iu] = resid
    return DistanceDecayFit(model, params, r2, pairs, pd.DataFrame(R, index=regions, columns=regions))
