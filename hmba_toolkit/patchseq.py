"""Morpho-electric properties of transcriptomic types from Patch-seq cells (HMBA macaque basal ganglia).

Patch-seq records a neuron's electrophysiology, shape and transcriptome; the transcriptome places it in the
taxonomy (MapMyCells, with a bootstrapping probability per level). Three questions, each one call on the joined
cell table of :meth:`hmba_toolkit.io.AbcCache.cell_table`:

- :func:`features_by_group`: each feature summarised per type, with how confidently the cells were mapped;
- :func:`compare_groups`: does a feature differ between types? Kruskal-Wallis H, with the p-value from permuting
  type labels *within donors*, so that donors recorded in different proportions of types cannot pass for a type
  effect (cells of one donor are not independent replicates);
- :func:`gene_feature_correlations`: which genes track a feature across cells? Spearman correlation after removing
  each donor's mean rank, p-values by the same within-donor permutation, Benjamini-Hochberg across all pairs.

References
----------
Gouwens NW et al. (2020) Integrated morphoelectric and transcriptomic classification of cortical GABAergic cells.
Cell 183:935-953. Lee BR et al. (2023) Signature morphoelectric properties of diverse GABAergic interneurons in the
human neocortex. Science 382:eadf6484. Kruskal WH, Wallis WA (1952) JASA 47:583-621. Good PI (2005) Permutation,
Parametric and Bootstrap Tests of Hypotheses (restricted permutations within strata).
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from ._checks import check_count, check_seed
from ._compat import warn
from ._names import did_you_mean
from ._stats import bh_adjust
from ._taxonomy import check_cross_species
from .errors import NotFoundError, ParameterError, ParameterTypeError

__all__ = ["features_by_group", "compare_groups", "gene_feature_correlations"]


def _columns(cells: pd.DataFrame, names: Sequence[str], what: str) -> list[str]:
    if not isinstance(cells, pd.DataFrame):
        raise ParameterTypeError(f"cells must be a DataFrame (AbcCache.cell_table), not {type(cells).__name__}")
    if isinstance(names, str):
        raise ParameterTypeError(f"{what} must be a list of column names, not the string {names!r}; use [{names!r}]")
    names = list(names)
    missing = [n for n in names if n not in cells.columns]
    if missing:
        hint = did_you_mean(missing, cells.columns)
        raise NotFoundError(f"{what} {missing} are not columns of cells" + (f" ({hint})" if hint else ""))
    bad = [n for n in names if not pd.api.types.is_numeric_dtype(cells[n])]
    if bad and what == "features":
        raise ParameterError(f"features {bad} are not numeric columns")
    return names


def _confident(cells: pd.DataFrame, groupby: str, min_probability: float) -> pd.DataFrame:
    if not 0 <= min_probability <= 1:
        raise ParameterError(f"min_probability must be within [0, 1], got {min_probability}")
    if min_probability == 0:
        return cells
    column = f"{groupby}_bootstrapping_probability"
    if column not in cells.columns:
        raise NotFoundError(f"min_probability needs the column {column!r} (the MapMyCells results of cell_table)")
    return cells[cells[column] >= min_probability]


def features_by_group(
    cells: pd.DataFrame,
    features: Sequence[str],
    *,
    groupby: str = "Group",
    min_probability: float = 0.0,
    min_cells: int = 3,
) -> pd.DataFrame:
    """Each feature summarised per transcriptomic type, with the confidence of the cells' mapping.

    Parameters
    ----------
    cells
        The joined Patch-seq cell table (``AbcCache.cell_table("HMBA-Macaque-PatchSeq")``).
    features
        Feature columns (``width_rheo_ms``, ``input_resistance``, ``soma_surface_area``, ...).
    groupby
        The taxonomy level (``"Subclass"``, ``"Group"``).
    min_probability
        Keep cells whose ``<groupby>_bootstrapping_probability`` is at least this.
    min_cells
        Types with fewer cells measured for a feature get NaN statistics (their ``n_cells`` is kept).

    Returns
    -------
    pandas.DataFrame
        One row per type and feature, sorted by type then feature order: ``group, feature, n_cells, n_donors,
        mean, sd, median, q25, q75, mean_probability`` (the mean bootstrapping probability of the cells summarised).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cells = AbcCache.from_demo().cell_table("HMBA-Macaque-PatchSeq")
    >>> table = features_by_group(cells, ["width_rheo_ms"]).set_index("group")
    >>> bool(table.at["STR FS PTHLH-PVALB GABA", "median"] < table.at["STRd D1 Matrix MSN", "median"])
    True
    """
    features = _columns(cells, features, "features")
    _columns(cells, [groupby], "groupby")
    if min_cells < 1:
        raise ParameterError(f"min_cells must be >= 1, got {min_cells}")
    kept = _confident(cells, groupby, min_probability)
    probability = f"{groupby}_bootstrapping_probability"
    rows = []
    for group, part in kept.groupby(groupby, sort=True, observed=True):
        for feature in features:
            measured = part[feature].notna()
            x = part.loc[measured, feature].to_numpy(dtype=float)
            enough = x.size >= min_cells
            rows.append({
                "group": group, "feature": feature, "n_cells": int(x.size),
                "n_donors": int(part.loc[measured, "donor_label"].nunique()) if "donor_label" in part else np.nan,
                "mean": x.mean() if enough else np.nan, "sd": x.std(ddof=1) if enough and x.size > 1 else np.nan,
                "median": np.median(x) if enough else np.nan,
                "q25": np.quantile(x, 0.25) if enough else np.nan, "q75": np.quantile(x, 0.75) if enough else np.nan,
                "mean_probability": part.loc[measured, probability].mean() if probability in part else np.nan,
            })
    out = pd.DataFrame(rows, columns=["group", "feature", "n_cells", "n_donors", "mean", "sd", "median", "q25", "q75",
                                      "mean_probability"])
    order = {f: k for k, f in enumerate(features)}
    return out.sort_values(["group", "feature"], key=lambda s: s.map(order) if s.name == "feature" else s,
                           kind="stable").reset_index(drop=True)


def _bh(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg over the tests that were made; untested (NaN) entries stay NaN and do not count."""
    out = np.full(pvalues.shape, np.nan)
    made = ~np.isnan(pvalues)
    out[made] = bh_adjust(pvalues[made])
    return out


def _within_donor_permutations(donors: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """``n_permutations`` x n index arrays, each shuffling positions only among cells of the same donor."""
    rng = np.random.default_rng(seed)
    n = donors.size
    out = np.empty((n_permutations, n), dtype=np.int64)
    strata = [np.flatnonzero(donors == d) for d in pd.unique(donors)]
    for k in range(n_permutations):
        perm = np.arange(n)
        for idx in strata:
            perm[idx] = idx[rng.permutation(idx.size)]
        out[k] = perm
    return out


def _kruskal_h(x: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Kruskal-Wallis H of ``x`` for each row of ``codes`` (tie-corrected), vectorised over the rows."""
    ranks = stats.rankdata(x)
    n = x.size
    sums = np.zeros((codes.shape[0], n_groups))
    counts = np.bincount(codes[0], minlength=n_groups).astype(float)
    for g in range(n_groups):
        sums[:, g] = (ranks[None, :] * (codes == g)).sum(axis=1)
    h = 12.0 / (n * (n + 1)) * (sums**2 / counts).sum(axis=1) - 3 * (n + 1)
    _, tie_counts = np.unique(x, return_counts=True)
    correction = 1 - (tie_counts**3 - tie_counts).sum() / (n**3 - n)
    return h / correction if correction > 0 else np.full(codes.shape[0], np.nan)


def compare_groups(
    cells: pd.DataFrame,
    features: Sequence[str],
    *,
    groupby: str = "Group",
    replicate: str = "donor_label",
    min_probability: float = 0.0,
    min_cells: int = 3,
    n_permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Does each feature differ between transcriptomic types? Kruskal-Wallis H with a within-donor permutation null.

    Type labels are shuffled only among cells of the same donor, so the null keeps each donor's mix of types and
    its own offsets (recording rig, age, slice quality): a donor effect that coincides with the types a donor
    contributed does not make a feature look type-specific. ``pvalue`` is ``(1 + #{H_perm >= H}) / (1 +
    n_permutations)``; ``padj`` is Benjamini-Hochberg across the features.

    Parameters
    ----------
    cells
        The joined Patch-seq cell table.
    features
        Feature columns to test.
    groupby
        The type column (a taxonomy level).
    replicate
        The experimental unit whose cells are permuted among themselves: ``donor_label`` (as in
        :func:`hmba_toolkit.de.pseudobulk`).
    min_probability
        Keep cells mapped to their type with at least this bootstrapping probability.
    min_cells
        Types with fewer measured cells are left out of that feature's test.
    n_permutations, seed
        Permutations of the null and their seed.

    Returns
    -------
    pandas.DataFrame
        ``feature, statistic`` (H), ``effect`` (epsilon squared, H / (n - 1)), ``pvalue, padj, n_cells, n_groups,
        n_donors``, sorted by ``pvalue`` then feature. Features with fewer than two types of ``min_cells`` cells get
        NaN with a warning.

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cells = AbcCache.from_demo().cell_table("HMBA-Macaque-PatchSeq")
    >>> result = compare_groups(cells, ["width_rheo_ms", "sag"], n_permutations=200).set_index("feature")
    >>> bool(result.at["width_rheo_ms", "pvalue"] < 0.01)
    True

    References
    ----------
    Kruskal WH, Wallis WA (1952) JASA 47:583-621; Good PI (2005) Permutation, Parametric and Bootstrap Tests of
    Hypotheses, 3rd ed., ch. 3 (restricted permutations).
    """
    features = _columns(cells, features, "features")
    _columns(cells, [groupby, replicate], "columns")
    check_cross_species(cells, groupby)  # Clusters are species-specific: never compared across species
    n_permutations = check_count(n_permutations, "n_permutations")
    check_seed(seed)
    kept = _confident(cells, groupby, min_probability).sort_index(kind="stable")  # results never depend on row order
    rows, degenerate = [], []
    for k, feature in enumerate(features):
        part = kept[kept[feature].notna() & kept[groupby].notna() & kept[replicate].notna()]
        sizes = part[groupby].value_counts()
        part = part[part[groupby].isin(sizes.index[sizes >= min_cells])]
        groups = sorted(part[groupby].unique())
        row = {"feature": feature, "n_cells": len(part), "n_groups": len(groups), "n_donors": part[replicate].nunique()}
        if len(groups) < 2 or part[feature].nunique() < 2:
            degenerate.append(feature)
            rows.append({**row, "statistic": np.nan, "effect": np.nan, "pvalue": np.nan})
            continue
        x = part[feature].to_numpy(dtype=float)
        codes = pd.Categorical(part[groupby], categories=groups).codes.astype(np.int64)
        perms = _within_donor_permutations(part[replicate].astype(str).to_numpy(), n_permutations, seed + k)
        h = _kruskal_h(x, np.vstack([codes, codes[perms]]), len(groups))
        pvalue = (1 + np.sum(h[1:] >= h[0] - 1e-12 * abs(h[0]))) / (1 + n_permutations)
        rows.append({**row, "statistic": h[0], "effect": h[0] / (len(part) - 1), "pvalue": pvalue})
    if degenerate:
        warn(f"compare_groups: features {degenerate[:10]} have fewer than two {groupby} types of {min_cells} measured "
             "cells (or a constant value); their statistics are NaN")
    out = pd.DataFrame(rows, columns=["feature", "statistic", "effect", "pvalue", "n_cells", "n_groups", "n_donors"])
    out["padj"] = _bh(out["pvalue"].to_numpy())
    out = out[["feature", "statistic", "effect", "pvalue", "padj", "n_cells", "n_groups", "n_donors"]]
    return out.sort_values(["pvalue", "feature"], kind="stable", na_position="last").reset_index(drop=True)


def _donor_centred_ranks(values: np.ndarray, donors: np.ndarray) -> np.ndarray:
    """Ranks of each column across cells, minus each donor's mean rank (columns of a 2-D array)."""
    ranks = stats.rankdata(values, axis=0)
    out = ranks.copy()
    for d in pd.unique(donors):
        rows = donors == d
        out[rows] -= ranks[rows].mean(axis=0)
    return out


def gene_feature_correlations(
    expression: pd.DataFrame | ad.AnnData,
    cells: pd.DataFrame,
    features: Sequence[str],
    *,
    gene_column: str | None = "gene_symbol",
    replicate: str = "donor_label",
    min_cells: int = 10,
    n_permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman correlation of every gene with every feature across Patch-seq cells, donor effects removed.

    Each gene's and each feature's ranks are centred on their donor's mean rank before correlating (a partial
    Spearman correlation given donor), and the p-value comes from permuting the feature among cells of the same
    donor: ``(1 + #{abs(r_perm) >= abs(r)}) / (1 + n_permutations)``. ``padj`` is Benjamini-Hochberg over all
    gene x feature pairs. Only cells measured for the feature and present in ``expression`` enter its correlations.

    Parameters
    ----------
    expression
        Cells x genes: the Patch-seq log2 matrix as AnnData (``AbcCache.read_expression``), or a DataFrame indexed
        by ``cell_label`` with one column per gene.
    gene_column
        For AnnData: the ``var`` column naming the genes in the result (None: ``var_names``, the identifiers).
    cells
        The joined Patch-seq cell table (features and donors).
    features
        Feature columns.
    replicate
        The experimental unit (``donor_label``): ranks are centred and the feature permuted within it.
    min_cells
        Features measured in fewer shared cells are skipped with a warning.
    n_permutations, seed
        The within-donor permutations and their seed.

    Returns
    -------
    pandas.DataFrame
        ``gene, feature, r, pvalue, padj, n_cells``, sorted by ``pvalue``, then ``|r|`` (largest first), feature and
        gene. Genes constant
        across the cells get NaN (with a warning naming how many).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> cells = cache.cell_table("HMBA-Macaque-PatchSeq")
    >>> expr = cache.read_expression("HMBA-Macaque-PatchSeq", genes=["DRD1", "DRD2", "LHX6"])
    >>> result = gene_feature_correlations(expr, cells, ["width_rheo_ms"], n_permutations=100)
    >>> list(result.columns)
    ['gene', 'feature', 'r', 'pvalue', 'padj', 'n_cells']
    """
    if isinstance(expression, ad.AnnData):
        if gene_column is not None and gene_column not in expression.var.columns:
            raise NotFoundError(f"var has no column {gene_column!r}; columns: {list(expression.var.columns)} (or gene_column=None)")
        names = expression.var[gene_column].astype(str) if gene_column is not None else expression.var_names.astype(str)
        matrix = expression.X.toarray() if sp.issparse(expression.X) else np.asarray(expression.X)
        expression = pd.DataFrame(matrix, index=expression.obs_names, columns=pd.Index(names))
    if not isinstance(expression, pd.DataFrame):
        raise ParameterTypeError(f"expression must be AnnData or a cells x genes DataFrame, not {type(expression).__name__}")
    features = _columns(cells, features, "features")
    _columns(cells, [replicate], "replicate")
    n_permutations = check_count(n_permutations, "n_permutations")
    check_seed(seed)
    if not expression.columns.is_unique:
        dup = expression.columns[expression.columns.duplicated()].unique().tolist()
        raise ParameterError(f"expression has duplicated gene names {dup[:5]}; use gene_column=None (identifiers)")
    shared = expression.index.intersection(cells.index).sort_values()  # results never depend on row order
    if not len(shared):
        raise NotFoundError("no cell of expression is in cells: index both by cell_label")
    genes = [str(g) for g in expression.columns]
    values_all = expression.loc[shared].to_numpy(dtype=float)
    rows, skipped = [], []
    for k, feature in enumerate(features):
        use = cells.loc[shared, feature].notna().to_numpy() & cells.loc[shared, replicate].notna().to_numpy()
        if use.sum() < min_cells:
            skipped.append(feature)
            continue
        donors = cells.loc[shared, replicate].astype(str).to_numpy()[use]
        x = _donor_centred_ranks(values_all[use], donors)
        y = _donor_centred_ranks(cells.loc[shared, feature].to_numpy(dtype=float)[use, None], donors)[:, 0]
        x_norm = np.sqrt((x**2).sum(axis=0))
        constant = x_norm == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            xs = np.where(constant, np.nan, x / np.where(constant, 1, x_norm))
            perms = _within_donor_permutations(donors, n_permutations, seed + k)
            ys = np.vstack([y, y[perms]])
            ys = ys / np.sqrt((ys**2).sum(axis=1, keepdims=True))
            r_all = ys @ np.nan_to_num(xs)  # (1 + n_permutations) x genes
        r = np.where(constant, np.nan, r_all[0])
        exceed = (np.abs(r_all[1:]) >= np.abs(r_all[0]) - 1e-12).sum(axis=0)
        pvalue = np.where(constant, np.nan, (1 + exceed) / (1 + n_permutations))
        rows.append(pd.DataFrame({"gene": genes, "feature": feature, "r": r, "pvalue": pvalue, "n_cells": int(use.sum())}))
        if constant.any():
            warn(f"gene_feature_correlations: {int(constant.sum())} genes do not vary across the {int(use.sum())} cells "
                 f"measured for {feature!r}; their correlations are NaN")
    if skipped:
        warn(f"gene_feature_correlations: features {skipped[:10]} are measured in fewer than {min_cells} cells of "
             "expression; skipped")
    if not rows:
        return pd.DataFrame(columns=["gene", "feature", "r", "pvalue", "padj", "n_cells"])
    out = pd.concat(rows, ignore_index=True)
    out["padj"] = _bh(out["pvalue"].to_numpy())
    out = out[["gene", "feature", "r", "pvalue", "padj", "n_cells"]].assign(_strength=-out["r"].abs())
    out = out.sort_values(["pvalue", "_strength", "feature", "gene"], kind="stable", na_position="last")
    return out.drop(columns="_strength").reset_index(drop=True)
