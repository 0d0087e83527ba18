"""Cross-species comparison of cell-type expression profiles at the Group level.

The HMBA-BG taxonomy aligns human, macaque and marmoset down to the Group level (finer levels
are species-specific), on the 16,630 genes with one-to-one orthologs in all three (the
``Aligned`` matrices). A Group's profile is its mean log2 CPM per gene in one species (from
:func:`hmba_toolkit.stream.aggregate` with ``groupby=[species, "Group"]``). Profiles are centred
per gene within each species, which removes species-wide offsets (sequencing depth, 3' bias,
annotation) and leaves what distinguishes Groups; then every Group of one species is
correlated with every Group of another. A Group is matched when its best partner is the Group
of the same name. The permutation test shuffles the query species' Group labels, so its
p-value asks whether more Groups match than label-free profiles would.

References
----------
Krienen FM et al. (2020) Nature 586:262-269 (cross-species interneuron profiles, centred
correlations); Crow M et al. (2018) Nat Commun 9:884 (MetaNeighbor: replicability of cell
types across datasets); Johansen N et al. (2023) Science 382:eadf6812 (cross-species taxonomy
alignment at the Group level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ._checks import check_count, check_layer, check_seed, numeric_array
from ._compat import renamed_parameters, warn
from ._taxonomy import check_cross_species
from .errors import ParameterError, ParameterTypeError

__all__ = ["group_profiles", "variable_genes", "profile_correlation", "match_groups", "match_species", "marker_ranks"]


@renamed_parameters(group="groupby", var_column="gene_column")
def group_profiles(
    aggregated: ad.AnnData,
    *,
    species: str = "species_genus",
    groupby: str = "Group",
    layer: str = "mean",
    min_cells: int = 10,
    gene_column: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Split an aggregated species x Group table into one Groups x genes table per species.

    Parameters
    ----------
    aggregated
        The result of :func:`hmba_toolkit.stream.aggregate` with ``species`` and ``groupby`` among its ``obs``
        columns (aggregate log2 CPM: ``normalization="log2cpm"`` on raw counts).
    species
        The ``obs`` column naming the species.
    groupby
        The taxonomy level compared (``"Group"``; finer levels are not aligned across species and are refused).
    layer
        Which layer holds the profiles (``"mean"`` of log2 CPM by default); None uses ``X``.
    min_cells
        Groups with fewer cells in a species are left out of that species.
    gene_column
        A ``var`` column to name the genes by (``"gene_symbol"``); default ``var_names``.

    Returns
    -------
    dict
        species -> DataFrame (Groups x genes), Groups sorted by name.

    Examples
    --------
    >>> from hmba_toolkit import stream
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> path = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> agg = stream.aggregate(path, ["species_genus", "Group"], obs=cache.cell_table("HMBA-10xMultiome-BG-Aligned"),
    ...                        normalization="log2cpm", progress=False)
    >>> profiles = group_profiles(agg, min_cells=5, gene_column="gene_symbol")
    >>> sorted(profiles), profiles["Human"].columns.name
    (['Human', 'Macaque', 'Marmoset'], 'gene_symbol')
    """
    group = groupby
    n_column = "n_obs_aggregated" if "n_obs_aggregated" in aggregated.obs else "n_cells"
    for col in (species, group, n_column):
        if col not in aggregated.obs:
            raise ParameterError(f"aggregated.obs has no column {col!r}; aggregate with groupby=[{species!r}, {group!r}]")
    check_cross_species(aggregated.obs, group, species)
    check_layer(aggregated, layer, "aggregated")
    values = aggregated.X if layer is None else aggregated.layers[layer]
    values = np.asarray(values.toarray() if hasattr(values, "toarray") else values, dtype=np.float64)
    if gene_column is None:
        gene_names = pd.Index(aggregated.var_names)
    else:
        if gene_column not in aggregated.var:
            raise ParameterError(f"gene_column {gene_column!r} is not a column of aggregated.var: {list(aggregated.var.columns)}")
        gene_names = pd.Index(aggregated.var[gene_column].astype(str))
        if gene_names.duplicated().any():
            raise ParameterError(f"var[{gene_column!r}] repeats names, e.g. {list(gene_names[gene_names.duplicated()][:3])}")
    out = {}
    obs = aggregated.obs
    for sp_name in sorted(obs[species].astype(str).unique()):
        rows = np.flatnonzero((obs[species].astype(str) == sp_name).to_numpy() & (obs[n_column].to_numpy() >= min_cells))
        table = pd.DataFrame(values[rows], index=pd.Index(obs[group].astype(str).to_numpy()[rows], name=group),
                             columns=gene_names)
        if table.index.duplicated().any():
            raise ParameterError(f"species {sp_name!r} has several rows per {group}: aggregate by exactly [{species!r}, {group!r}]")
        out[sp_name] = table.sort_index()
    return out


def _centred(table: pd.DataFrame) -> pd.DataFrame:
    return table - table.mean(axis=0)


def variable_genes(profiles: dict[str, pd.DataFrame], n: int = 2000, groups: Sequence[str] | None = None) -> list[str]:
    """Genes whose profiles vary most across Groups, averaged over species (ranked, ties by name).

    Uses the variance across the Groups shared by every species (or ``groups``) of each
    species' profiles, as a rank averaged over species, so no species dominates.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = pd.DataFrame(rng.standard_normal((5, 30)) * np.r_[np.full(10, 3.0), np.full(20, 0.1)],
    ...                     index=list("ABCDE"), columns=[f"g{i}" for i in range(30)])
    >>> profiles = {s: base + 0.05 * rng.standard_normal(base.shape) for s in ("Human", "Macaque")}
    >>> sorted(variable_genes(profiles, n=10)) == sorted(f"g{i}" for i in range(10))
    True
    """
    n = check_count(n, "n", what="(how many genes to return)")
    if not isinstance(profiles, Mapping) or not profiles:
        raise ParameterError("profiles must be a non-empty {species: Groups x genes} mapping (group_profiles)")
    shared = groups if groups is not None else sorted(set.intersection(*(set(t.index) for t in profiles.values())))
    if len(shared) < 3:
        raise ParameterError(f"need at least 3 Groups shared by every species, found {len(shared)}")
    genes = sorted(set.intersection(*(set(t.columns) for t in profiles.values())))
    ranks = [t.loc[shared, genes].var(axis=0).rank(ascending=False) for t in profiles.values()]
    mean_rank = pd.concat(ranks, axis=1).mean(axis=1)
    order = pd.DataFrame({"r": mean_rank, "g": mean_rank.index}).sort_values(["r", "g"], kind="stable")
    return order["g"].head(n).tolist()


def profile_correlation(
    reference: pd.DataFrame,
    query: pd.DataFrame,
    genes: Sequence[str] | None = None,
    *,
    method: str = "pearson",
    center: bool = True,
) -> pd.DataFrame:
    """Correlation of every reference Group's profile with every query Group's profile.

    Parameters
    ----------
    reference, query
        Groups x genes profiles of two species (from :func:`group_profiles`).
    genes
        Genes to use (e.g. :func:`variable_genes`); default the genes both tables hold.
    method
        ``"pearson"`` or ``"spearman"`` (across genes).
    center
        Subtract each gene's mean across the species' Groups first (recommended).

    Returns
    -------
    pandas.DataFrame
        Reference Groups (rows) x query Groups (columns).

    References
    ----------
    Krienen FM et al. (2020) Nature 586:262-269.
    """
    if method not in ("pearson", "spearman"):
        raise ParameterError(f"method must be 'pearson' or 'spearman', not {method!r}")
    for name, table in (("reference", reference), ("query", query)):
        if not isinstance(table, pd.DataFrame):
            raise ParameterTypeError(f"{name} must be a Groups x genes DataFrame (group_profiles), not {type(table).__name__}")
    if isinstance(genes, str):
        raise ParameterTypeError(f"genes must be a list of gene names, not one string; use [{genes!r}]")
    genes = list(genes) if genes is not None else sorted(set(reference.columns) & set(query.columns))
    missing = [g for g in genes if g not in reference.columns or g not in query.columns]
    if missing:
        raise ParameterError(f"genes missing from a profile table: {missing[:5]}")
    if len(genes) < 3:
        raise ParameterError(f"the reference and query profiles share {len(genes)} gene column(s); a correlation needs at "
                             "least 3 (profiles are Groups x genes, e.g. from group_profiles on the aligned set)")
    a, b = (pd.DataFrame(numeric_array(t[genes], f"{name} profiles"), index=t.index, columns=genes)
            for name, t in (("reference", reference), ("query", query)))
    for name, table in (("reference", a), ("query", b)):
        finite = np.isfinite(table.to_numpy()).all(axis=1)
        if not finite.all():
            bad = list(table.index[~finite][:5])
            raise ParameterError(f"{name} profiles have NaN or infinite values in Groups {bad}; drop those Groups or genes first")
    if center:
        a, b = _centred(a), _centred(b)
    if method == "spearman":
        a, b = a.rank(axis=1), b.rank(axis=1)
    A = a.to_numpy(float)
    B = b.to_numpy(float)
    flat = {}
    for name, M, index in (("reference", A, reference.index), ("query", B, query.index)):
        flat[name] = (M == M[:, :1]).all(axis=1)
        if flat[name].any():
            warn(f"profile_correlation: {name} Groups {list(index[flat[name]][:5])} do not vary across the {len(genes)} genes; "
                 "their correlations are NaN")
    A = (A - A.mean(1, keepdims=True)) / np.maximum(A.std(1, keepdims=True), 1e-300)
    B = (B - B.mean(1, keepdims=True)) / np.maximum(B.std(1, keepdims=True), 1e-300)
    r = A @ B.T / A.shape[1]
    r[flat["reference"], :] = np.nan
    r[:, flat["query"]] = np.nan
    return pd.DataFrame(r, index=reference.index, columns=query.index)


def match_groups(correlation: pd.DataFrame, *, n_permutations: int = 1000, seed: int = 0) -> pd.DataFrame:
    """For each reference Group present in both species: its best query match and whether it is itself.

    Returns
    -------
    pandas.DataFrame
        ``group, best_match, r_best, r_self, rank_self`` (1 = the same-named Group is the best
        match), ``matched``; sorted by group. ``attrs`` hold ``accuracy`` (fraction matched),
        ``chance`` (expected under shuffled labels, 1 / number of query Groups) and ``pvalue``
        (add-one permutation p-value of the accuracy, query Group labels shuffled).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> human = pd.DataFrame(rng.standard_normal((6, 50)), index=list("ABCDEF"))
    >>> macaque = human + 0.3 * rng.standard_normal(human.shape)
    >>> res = match_groups(profile_correlation(human, macaque), n_permutations=999)
    >>> res.attrs["accuracy"], res.attrs["pvalue"]
    (1.0, 0.002)

    References
    ----------
    Crow M et al. (2018) Nat Commun 9:884.
    """
    shared = sorted(set(correlation.index) & set(correlation.columns))
    if len(shared) < 2:
        raise ParameterError("fewer than 2 Groups are present in both species")
    n_permutations = check_count(n_permutations, "n_permutations")
    check_seed(seed)
    c = correlation.loc[shared]
    values = c.to_numpy(float)
    if not np.isfinite(values).all():
        bad = [g for g, row in zip(shared, values, strict=True) if not np.isfinite(row).all()]
        raise ParameterError(f"correlation has NaN for Groups {bad[:10]} (a profile that does not vary?); drop them first")
    cols = np.asarray(c.columns)
    self_pos = np.array([np.flatnonzero(cols == g)[0] for g in shared])
    best = values.argmax(axis=1)
    r_self = values[np.arange(len(shared)), self_pos]
    rank_self = 1 + (values > r_self[:, None]).sum(axis=1)
    out = pd.DataFrame({"group": shared, "best_match": cols[best], "r_best": values.max(axis=1), "r_self": r_self,
                        "rank_self": rank_self, "matched": best == self_pos})
    accuracy = float(out["matched"].mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_permutations):
        perm = rng.permutation(cols.size)  # shuffle which column carries which label
        hits += float(np.mean(perm[best] == self_pos)) >= accuracy
    out.attrs.update({"accuracy": accuracy, "chance": 1.0 / cols.size, "pvalue": (hits + 1) / (n_permutations + 1),
                      "n_groups": len(shared)})
    return out


def marker_ranks(profiles: dict[str, pd.DataFrame], markers: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Where each Group's markers rank in each species: is the marker highest in its own Group?

    Parameters
    ----------
    profiles
        species -> Groups x genes (from :func:`group_profiles`).
    markers
        Group -> marker genes (e.g. :func:`hmba_toolkit.gsea.hmba_marker_sets`); Groups or genes
        absent from a species' table are skipped for that species.

    Returns
    -------
    pandas.DataFrame
        Tidy: ``group, gene, species, value, rank`` (1 = the marker is highest in its own Group
        among that species' Groups), ``n_groups``; sorted by group, gene, species.

    Examples
    --------
    >>> profiles = {"Human": pd.DataFrame({"DRD1": [9.0, 1.0, 2.0]}, index=["STRd D1 Matrix MSN", "Astrocyte", "OPC"])}
    >>> marker_ranks(profiles, {"STRd D1 Matrix MSN": ["DRD1"]})["rank"].tolist()
    [1]
    """
    rows = []
    for sp_name, table in sorted(profiles.items()):
        ranks = table.rank(axis=0, ascending=False, method="min")
        for group, genes in sorted(markers.items()):
            if group not in table.index:
                continue
            for gene in sorted(set(genes)):
                if gene in table.columns:
                    rows.append({"group": group, "gene": gene, "species": sp_name, "value": float(table.at[group, gene]),
                                 "rank": int(ranks.at[group, gene]), "n_groups": len(table)})
    if not rows:
        groups = sorted({g for t in profiles.values() for g in t.index})
        raise ParameterError(f"no marker of markers' Groups {sorted(markers)[:5]} is in the profiles; their Groups: {groups[:8]}")
    return pd.DataFrame(rows, columns=["group", "gene", "species", "value", "rank", "n_groups"])


def match_species(
    profiles: dict[str, pd.DataFrame],
    genes: Sequence[str] | None = None,
    *,
    reference: str | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
    method: str = "pearson",
) -> pd.DataFrame:
    """Group matching (:func:`match_groups`) for every pair of species, one row per pair.

    Pairs are ``(reference, other)`` for each other species, then the remaining pairs in name order (every
    pair once when ``reference`` is None).

    Returns
    -------
    pandas.DataFrame
        ``reference, query, n_groups, accuracy, chance, pvalue, median_r_self``; ``pvalue`` is the add-one
        permutation p-value of the accuracy.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = pd.DataFrame(rng.standard_normal((6, 40)), index=list("ABCDEF"))
    >>> profiles = {s: base + 0.3 * rng.standard_normal(base.shape) for s in ("Human", "Macaque", "Marmoset")}
    >>> res = match_species(profiles, reference="Human", n_permutations=99)
    >>> res[["reference", "query", "accuracy"]].values.tolist()
    [['Human', 'Macaque', 1.0], ['Human', 'Marmoset', 1.0], ['Macaque', 'Marmoset', 1.0]]
    """
    names = sorted(profiles)
    if reference is not None and reference not in profiles:
        raise ParameterError(f"reference {reference!r} is not one of the species {names}")
    pairs = [(reference, q) for q in names if q != reference] if reference is not None else []
    pairs += [(a, b) for a in names for b in names if a < b and reference not in (a, b)]
    rows = []
    for ref, query in pairs:
        correlation = profile_correlation(profiles[ref], profiles[query], genes, method=method)
        res = match_groups(correlation, n_permutations=n_permutations, seed=seed)
        rows.append({"reference": ref, "query": query, "n_groups": res.attrs["n_groups"], "accuracy": res.attrs["accuracy"],
                     "chance": res.attrs["chance"], "pvalue": res.attrs["pvalue"], "median_r_self": float(res["r_self"].median())})
    return pd.DataFrame(rows)
