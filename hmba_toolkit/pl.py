"""Plots of the tidy result tables: volcano and dot plots for DE, curves and dot plots for enrichment,
variogram fits of surrogate maps, correlated gene expression against distance, mouse ISH grids as
orthogonal slices and structure x gene heat maps.

Every function draws on ``ax`` (a new figure when None) and returns the Axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ParameterError, ParameterTypeError



class _LazyPyplot:
    """``matplotlib.pyplot``, imported on first use so that importing the toolkit never starts a plotting backend."""

    def __getattr__(self, name: str):
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _LazyPyplot()

__all__ = ["volcano", "de_dotplot", "enrichment_curve", "enrichment_dotplot", "variogram_fit", "cge_distance",
           "ish_slices", "structure_heatmap", "group_correlation", "section", "embedding", "features_by_group", "format_pvalue",
           "format_pvalues", "SPECIES_COLORS"]


def _require_columns(table, columns: Sequence[str], what: str, source: str) -> None:
    """Refuse a table that is not a DataFrame with ``columns``, naming the function that makes it."""
    if not isinstance(table, pd.DataFrame):
        raise ParameterTypeError(f"{what} must be a DataFrame from {source}, not {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ParameterError(f"{what} lacks columns {missing} (is it a table from {source}?); columns: {list(table.columns)[:12]}")


_DE_SOURCE = "hmba_toolkit.de.wilcoxon or de.pseudobulk"


def _one_group(de: pd.DataFrame, group: str | None) -> pd.DataFrame:
    _require_columns(de, ["group", "gene", "pvalue"], "de", _DE_SOURCE)
    groups = de["group"].unique()
    if group is None:
        if len(groups) != 1:
            raise ParameterError(f"the table holds several groups {list(groups)}; pass group=")
        group = groups[0]
    if group not in groups:
        raise ParameterError(f"group {group!r} is not in the table; groups: {list(groups)}")
    return de[de["group"] == group]


def volcano(de: pd.DataFrame, group: str | None = None, *, padj: float = 0.05, lfc: float = 1.0,
            label_top: int = 10, ax: plt.Axes | None = None) -> plt.Axes:
    """Volcano plot: log2 fold change vs -log10 p-value; significant genes (``padj`` and ``|lfc|``) coloured.

    The ``label_top`` most significant of them are labelled.
    """
    _require_columns(de, ["group", "reference", "gene", "log2_fold_change", "pvalue", "padj"], "de", _DE_SOURCE)
    d = _one_group(de, group).dropna(subset=["pvalue", "log2_fold_change"])
    ax = ax or plt.subplots(figsize=(5, 4))[1]
    y = -np.log10(np.maximum(d["pvalue"].to_numpy(float), np.finfo(float).tiny))
    sig = ((d["padj"] < padj) & (d["log2_fold_change"].abs() >= lfc)).to_numpy()
    up = sig & (d["log2_fold_change"] > 0).to_numpy()
    ax.scatter(d["log2_fold_change"][~sig], y[~sig], s=4, c="#bbbbbb", label="n.s.", rasterized=True)
    ax.scatter(d["log2_fold_change"][up], y[up], s=6, c="#c0392b", label=f"up ({int(up.sum())})")
    ax.scatter(d["log2_fold_change"][sig & ~up], y[sig & ~up], s=6, c="#2c7fb8", label=f"down ({int((sig & ~up).sum())})")
    for _, row in d[sig].nsmallest(label_top, "pvalue").iterrows():
        ax.annotate(row["gene"], (row["log2_fold_change"], -np.log10(max(row["pvalue"], np.finfo(float).tiny))), fontsize=7)
    ax.axvline(-lfc, ls=":", c="k", lw=0.5)
    ax.axvline(lfc, ls=":", c="k", lw=0.5)
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p-value")
    ax.set_title(f"{d['group'].iat[0]} vs {d['reference'].iat[0]}")
    ax.legend(frameon=False, fontsize=7)
    return ax


def de_dotplot(de: pd.DataFrame, genes: Sequence[str], *, ax: plt.Axes | None = None) -> plt.Axes:
    """Dot plot from a tidy DE table: dot size = fraction expressing in the group, colour = mean in the group."""
    _require_columns(de, ["group", "gene", "frac_in", "mean_in"], "de", _DE_SOURCE)
    d = de[de["gene"].isin(genes)]
    if d.empty:
        raise ParameterError("none of the genes is in the table")
    groups = sorted(d["group"].unique())
    ax = ax or plt.subplots(figsize=(0.5 * len(genes) + 2, 0.4 * len(groups) + 1.5))[1]
    gx = {g: i for i, g in enumerate(genes)}
    gy = {g: i for i, g in enumerate(groups)}
    sc = ax.scatter(d["gene"].map(gx), d["group"].map(gy), s=200 * d["frac_in"].fillna(0), c=d["mean_in"], cmap="Reds", edgecolor="k", lw=0.3)
    ax.set_xticks(range(len(genes)), genes, rotation=90)
    ax.set_yticks(range(len(groups)), groups)
    plt.colorbar(sc, ax=ax, label="mean in group")
    return ax


def enrichment_curve(ranking: pd.Series, genes: Sequence[str], *, weight: float = 1.0, ax: plt.Axes | None = None) -> plt.Axes:
    """The GSEA running sum of one gene set along a ranking, with the hits as ticks."""
    r = ranking.dropna().sort_values(ascending=False, kind="stable")
    hit = r.index.isin(list(genes))
    if not hit.any():
        raise ParameterError("no gene of the set is in the ranking")
    w = np.abs(r.to_numpy(float)) ** weight
    step = np.where(hit, w / w[hit].sum(), -1.0 / (len(r) - hit.sum()))
    run = np.cumsum(step)
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    ax.plot(np.arange(len(r)), run, c="#2ca25f")
    ax.vlines(np.flatnonzero(hit), run.min() - 0.05, run.min() - 0.01, color="k", lw=0.5)
    ax.axhline(0, c="k", lw=0.5)
    ax.set_xlabel("rank")
    ax.set_ylabel("running enrichment score")
    return ax


def enrichment_dotplot(res: pd.DataFrame, top: int = 15, *, ax: plt.Axes | None = None) -> plt.Axes:
    """The ``top`` sets by p-value: x = statistic (NES or expected overlap), size = set size, colour = -log10 padj."""
    _require_columns(res, ["term", "statistic", "n_overlap", "padj"], "res", "hmba_toolkit.gsea.ora or gsea.prerank")
    d = res.head(top).iloc[::-1]
    ax = ax or plt.subplots(figsize=(5, 0.3 * len(d) + 1))[1]
    sc = ax.scatter(d["statistic"], np.arange(len(d)), s=10 + 3 * d["n_overlap"], c=-np.log10(d["padj"].clip(lower=1e-300)), cmap="viridis")
    ax.set_yticks(range(len(d)), d["term"])
    ax.set_xlabel("NES" if res.attrs.get("method") == "prerank" else "statistic")
    plt.colorbar(sc, ax=ax, label="-log10 padj")
    return ax


def variogram_fit(fit, *, label: str = "surrogates", distance_unit: str = "", ax: plt.Axes | None = None) -> plt.Axes:
    """The map's variogram and the mean +- SD of its surrogates' (from ``nulls.variogram_fit``).

    ``fit`` is one table, or ``{null name: table}`` to compare null models on one plot; the legend gives each
    null's median goodness of fit (``r2``) and flags a poor fit (median below
    :data:`hmba_toolkit.variograms.POOR_FIT_R2`).
    """
    if isinstance(fit, dict):
        for name, one in fit.items():
            ax = variogram_fit(one, label=name, distance_unit=distance_unit, ax=ax)
        return ax
    from .variograms import POOR_FIT_R2

    for key in ("distance", "target", "surrogate_mean", "surrogate_sd"):
        if key not in fit.attrs:
            raise ParameterError(f"fit lacks attrs[{key!r}]; pass the table returned by nulls.variogram_fit")
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    h, m, sd = fit.attrs["distance"], fit.attrs["surrogate_mean"], fit.attrs["surrogate_sd"]
    median = float(np.median(fit["r2"]))
    flag = ": POOR FIT" if median < POOR_FIT_R2 else ""
    (line,) = ax.plot(h, m, lw=1.5, label=f"{label} (median r2 {median:.2f}{flag})")
    ax.fill_between(h, m - sd, m + sd, color=line.get_color(), alpha=0.2, lw=0)
    if not any(ln.get_label() == "map" for ln in ax.get_lines()):
        ax.plot(h, fit.attrs["target"], "k.-", lw=1, label="map")
    unit = f" ({distance_unit})" if distance_unit else ""
    ax.set(xlabel=f"separation distance{unit}", ylabel="semivariance", title="Variogram: map vs surrogates")
    ax.legend(frameon=False, fontsize=8)
    return ax


def cge_distance(fit, *, distance_unit: str = "mm", ax: plt.Axes | None = None) -> plt.Axes:
    """Correlated gene expression of region pairs against their distance, with the fitted decay curve."""
    if not hasattr(fit, "pairs") or not hasattr(fit, "predict"):
        raise ParameterTypeError(f"fit must be a DistanceDecayFit (coexpression.fit_distance_decay), not {type(fit).__name__}")
    pairs = fit.pairs
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    ax.scatter(pairs["distance"], pairs["cge"], s=4, alpha=0.4, color="0.4", lw=0, label="region pairs")
    d = np.linspace(0, pairs["distance"].max(), 200)
    ax.plot(d, fit.predict(d), color="C3", lw=2, label=fit.label(distance_unit))
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set(xlabel=f"distance between regions ({distance_unit})", ylabel="correlated gene expression (r)",
           title="CGE decays with distance")
    ax.legend(frameon=False, fontsize=8)
    return ax


def _edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D label image that border another label (structure outlines)."""
    e = np.zeros(labels.shape, dtype=bool)
    e[1:, :] |= labels[1:, :] != labels[:-1, :]
    e[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return e


def ish_slices(
    grid: np.ndarray,
    annotation: np.ndarray | None = None,
    *,
    at: str | tuple[int, int, int] = "CP",
    outline: np.ndarray | None = None,
    title: str | None = None,
    label: str = "expression energy",
    cmap: str = "magma",
    vmax: float | None = None,
    axes: Sequence[plt.Axes] | None = None,
) -> np.ndarray:
    """A 200 um grid as coronal, horizontal and sagittal slices with structure outlines.

    Parameters
    ----------
    grid
        [x, y, z] grid (x anterior -> posterior, y dorsal -> ventral, z left -> right), NaN = no data.
    annotation
        Structure ids; default the shipped 200 um annotation.
    at
        The slices' crossing point: a structure acronym (its voxel centroid) or voxel indices (x, y, z).
    outline
        A label grid whose boundaries are drawn; default the major divisions (:func:`hmba_toolkit.mouse.relabel`).
    label
        Colour bar label (with units, e.g. ``"expression energy"``).
    axes
        Three Axes; default a new 1 x 3 figure.

    Returns
    -------
    numpy.ndarray
        The three Axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> from hmba_toolkit.io import read_gene_ish_grid
    >>> axes = ish_slices(read_gene_ish_grid(fetch_demo_mouse_ish(), "Pdyn"), at="CP", title="Pdyn")
    >>> axes.shape
    (3,)
    """
    from .mouse import SPACING_UM, load_annotation, load_ontology, relabel

    grid = np.asarray(grid, dtype=float)
    annotation = load_annotation() if annotation is None else np.asarray(annotation)
    if grid.shape != annotation.shape:
        raise ParameterError(f"grid has shape {grid.shape}, the annotation {annotation.shape}")
    labels = relabel(annotation) if outline is None else np.asarray(outline)
    if isinstance(at, str):
        inside = np.argwhere(load_ontology().mask(annotation, at))
        if not inside.size:
            raise ParameterError(f"structure {at!r} has no voxels in the annotation")
        x, y, z = np.round(inside.mean(axis=0)).astype(int)
    else:
        x, y, z = (int(v) for v in at)
    mm = SPACING_UM / 1000.0
    nx, ny, nz = grid.shape
    views = [  # image (rows, cols), outline, extent, axis labels, title
        (grid[x], labels[x], (0, nz * mm, ny * mm, 0), "left -> right (mm)", "dorsal -> ventral (mm)", f"coronal, {x * mm:.1f} mm from front"),
        (grid[:, y], labels[:, y], (0, nz * mm, nx * mm, 0), "left -> right (mm)", "anterior -> posterior (mm)", f"horizontal, {y * mm:.1f} mm from top"),
        (grid[:, :, z].T, labels[:, :, z].T, (0, nx * mm, ny * mm, 0), "anterior -> posterior (mm)", "dorsal -> ventral (mm)", f"sagittal, {z * mm:.1f} mm from left"),
    ]
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [nz, nz, nx]})
    axes = np.asarray(axes).ravel()
    if axes.size != 3:
        raise ParameterError(f"axes must hold 3 Axes, got {axes.size}")
    cm = plt.get_cmap(cmap).with_extremes(bad="#e6e6e6")
    top = vmax if vmax is not None else float(np.nanpercentile(grid, 99.5)) if np.isfinite(grid).any() else 1.0
    for ax, (img, lab, extent, xl, yl, tl) in zip(axes, views):
        im = ax.imshow(np.ma.masked_invalid(img), cmap=cm, vmin=0, vmax=top, extent=extent, interpolation="nearest")
        edge = _edges(lab) & (lab > 0)
        ax.imshow(np.ma.masked_where(~edge, edge), cmap=plt.matplotlib.colors.ListedColormap(["#9ecae1"]), alpha=0.7,
                  extent=extent, interpolation="nearest")
        ax.set(xlabel=xl, ylabel=yl, title=tl)
        ax.title.set_fontsize(9)
    plt.colorbar(im, ax=list(axes), label=label, shrink=0.85)
    if title:
        axes[0].figure.suptitle(title)
    return axes


def structure_heatmap(
    table: pd.DataFrame,
    ontology=None,
    *,
    scale: str | None = "genes",
    cmap: str = "viridis",
    label: str | None = None,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Structure x gene heat map ordered by the ontology, with the Allen structure colours beside it.

    Parameters
    ----------
    table
        Structures (index: acronyms) x genes, e.g. from :func:`hmba_toolkit.mouse.unionize_genes`.
    ontology
        Structure tree for order and colours; default the shipped mouse ontology.
    scale
        ``"genes"`` z-scores each gene across the structures shown; None plots the values.
    label
        Colour bar label; default ``"z-score across structures"`` or ``"expression energy"``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from hmba_toolkit import mouse
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> from hmba_toolkit.io import read_gene_ish_grid
    >>> grids = {g: read_gene_ish_grid(fetch_demo_mouse_ish(), g) for g in ["Pdyn", "Penk", "Nrp1"]}
    >>> ax = structure_heatmap(mouse.unionize_genes(grids, structures=["CP", "ACB", "MOp", "CB"]))
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['Pdyn', 'Penk', 'Nrp1']
    """
    from .mouse import load_ontology

    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ParameterError("table must be a non-empty structures x genes DataFrame (mouse.unionize_genes)")
    ontology = load_ontology() if ontology is None else ontology
    missing = [s for s in table.index if s not in ontology]
    if missing:
        raise ParameterError(f"table rows {missing[:5]} are not structures of the ontology")
    order = sorted(table.index, key=lambda s: float(ontology.get(s).get("graph_order", 0)))
    data = table.loc[order].astype(float)
    if scale == "genes":
        data = (data - data.mean()) / data.std(ddof=0).replace(0, np.nan)
        label = label or "z-score across structures"
    elif scale is not None:
        raise ParameterError(f"scale must be 'genes' or None, not {scale!r}")
    label = label or "expression energy"
    ax = ax or plt.subplots(figsize=(0.35 * data.shape[1] + 2.5, 0.25 * data.shape[0] + 1.5))[1]
    im = ax.imshow(data.to_numpy(), aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(data.shape[1]), data.columns, rotation=90, fontsize=8)
    ax.set_yticks(range(data.shape[0]), [])
    strip = ax.inset_axes([-0.05, 0, 0.04, 1])
    colours = [f"#{str(ontology.get(s).get('color_hex_triplet', 'CCCCCC'))}" for s in order]
    strip.imshow(np.arange(len(order))[:, None], cmap=plt.matplotlib.colors.ListedColormap(colours), aspect="auto",
                 interpolation="nearest")
    strip.set_xticks([])
    strip.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlabel("gene")
    ax.set_title("Expression by structure (ontology order)")
    plt.colorbar(im, ax=ax, label=label, shrink=0.8)
    return ax


def group_correlation(
    correlation: pd.DataFrame,
    *,
    order: Sequence[str] | None = None,
    colors: dict[str, str] | None = None,
    labels: tuple[str, str] = ("reference", "query"),
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Heat map of Group x Group profile correlations between two species, taxonomy colours beside it.

    Parameters
    ----------
    correlation
        From :func:`hmba_toolkit.cross_species.profile_correlation`.
    order
        Group order for rows and columns (e.g. the taxonomy's ``Group_order``); default sorted names.
    colors
        Group -> hex colour (the taxonomy's ``Group_color``), drawn as a strip beside the rows.
    labels
        Species names for the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> rng = np.random.default_rng(0)
    >>> r = pd.DataFrame(rng.uniform(-1, 1, (3, 3)), index=list("ABC"), columns=list("ABC"))
    >>> ax = group_correlation(r, order=list("ABC"), colors={"A": "#ff0000", "B": "#00ff00", "C": "#0000ff"},
    ...                        labels=("Human", "Macaque"))
    >>> ax.get_xlabel()
    'Macaque Group'
    """
    if not isinstance(correlation, pd.DataFrame):
        raise ParameterTypeError(f"correlation must be a Groups x Groups DataFrame (cross_species.profile_correlation), "
                                 f"not {type(correlation).__name__}")
    order = list(order) if order is not None else sorted(set(correlation.index) | set(correlation.columns))
    rows = [g for g in order if g in correlation.index]
    cols = [g for g in order if g in correlation.columns]
    data = correlation.loc[rows, cols]
    ax = ax or plt.subplots(figsize=(7, 6))[1]
    lim = float(np.nanmax(np.abs(data.to_numpy()))) if data.size else 1.0
    im = ax.imshow(data.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest", aspect="auto")
    small = 6 if len(rows) > 30 else 8
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=small)
    ax.set_yticks(range(len(rows)), [])
    strip = ax.inset_axes([-0.04, 0, 0.03, 1])
    palette = [colors.get(g, "#cccccc") if colors else "#cccccc" for g in rows]
    strip.imshow(np.arange(len(rows))[:, None], cmap=plt.matplotlib.colors.ListedColormap(palette), aspect="auto",
                 interpolation="nearest")
    strip.set_xticks([])
    strip.set_yticks(range(len(rows)), rows, fontsize=small)
    ax.set_xlabel(f"{labels[1]} Group")
    strip.set_ylabel(f"{labels[0]} Group")
    ax.set_title(f"Centred profile correlation, {labels[0]} vs {labels[1]}")
    plt.colorbar(im, ax=ax, label="Pearson r (centred log2 CPM)", shrink=0.8)
    return ax


#: Colours of the three HMBA species, used by every tutorial figure that colours cells by species.
SPECIES_COLORS = {"Human": "#377eb8", "Macaque": "#4daf4a", "Marmoset": "#FF5F5D"}


def _categorical_scatter(ax, table, x, y, color, *, palette, size, legend_max):
    """Scatter coloured by a category: taxonomy colours from ``<color>_color`` when present; legend with counts."""
    labels = table[color].astype("string").fillna("(none)")
    counts = labels.value_counts(sort=False).sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    palette_column = f"{color}_color"
    if palette is not None:
        missing = sorted(set(counts.index) - set(palette))
        if missing:
            raise ParameterError(f"palette has no colour for {missing[:5]}")
    elif palette_column in table.columns:
        palette = dict(zip(labels, table[palette_column].fillna("#bdbdbd")))
    else:
        cycle = plt.get_cmap("tab20").colors
        palette = {lab: cycle[i % len(cycle)] for i, lab in enumerate(sorted(counts.index))}
    ax.scatter(table[x], table[y], c=[palette[lab] for lab in labels], s=size, linewidths=0)
    shown = counts.index[:legend_max]
    handles = [plt.Line2D([], [], ls="", marker="o", color=palette[lab], label=f"{lab} ({counts[lab]})") for lab in sorted(shown)]
    title = color if len(counts) <= legend_max else f"{color} ({legend_max} most frequent of {len(counts)})"
    ax.legend(handles=handles, title=title, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=7, frameon=False)


def embedding(
    cells: pd.DataFrame,
    color: str,
    *,
    x: str = "x",
    y: str = "y",
    palette: dict[str, str] | None = None,
    size: float = 3,
    legend_max: int = 30,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Cells of a 2-D embedding (the taxonomy's ``cell_2d_embedding_coordinates``) coloured by a category.

    Taxonomy colours come from the ``<color>_color`` column when present, else from ``palette`` (e.g.
    :data:`SPECIES_COLORS`); the legend lists the categories with their numbers of cells.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> cells = pd.DataFrame({"x": [0, 1, 2], "y": [0, 1, 0], "species_genus": ["Human", "Macaque", "Human"]})
    >>> ax = embedding(cells, "species_genus", palette=SPECIES_COLORS)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['Human (2)', 'Macaque (1)']
    """
    if not isinstance(cells, pd.DataFrame):
        raise ParameterTypeError(f"cells must be a DataFrame with columns {x!r}, {y!r} and {color!r}, not {type(cells).__name__}")
    for column in (x, y, color):
        if column not in cells.columns:
            raise ParameterError(f"cells has no column {column!r}; columns: {list(cells.columns)[:12]}")
    ax = ax or plt.subplots(figsize=(6, 5))[1]
    _categorical_scatter(ax, cells, x, y, color, palette=palette, size=size, legend_max=legend_max)
    ax.set_xlabel("embedding 1")
    ax.set_ylabel("embedding 2")
    ax.set_title(f"cells coloured by {color}")
    return ax


def format_pvalue(p: float, digits: int = 2) -> str:
    """A p-value for a table or a title: scientific notation below 0.001, never rounded to 0.

    Examples
    --------
    >>> format_pvalue(0.0312), format_pvalue(3.2e-09), format_pvalue(float("nan"))
    ('0.031', '3.2e-09', 'NaN')
    """
    if isinstance(p, (str, bytes)) or not isinstance(p, (int, float, np.number, type(None))):
        raise ParameterTypeError(f"p must be a number, not {p!r} ({type(p).__name__})")
    if p is None or not np.isfinite(p):
        return "NaN"
    if p < 1e-3:
        return f"{p:.{digits - 1}e}"
    return f"{p:.{digits + 1}f}".rstrip("0").rstrip(".") if p < 1 else "1"


def format_pvalues(table: pd.DataFrame, digits: int = 2, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A copy of a result table for display: p-value columns as text (:func:`format_pvalue`), never rounded to 0.

    ``columns`` defaults to ``pvalue``, ``padj`` and every column whose name starts with ``pvalue_``.

    Examples
    --------
    >>> res = pd.DataFrame({"gene": ["A", "B"], "pvalue": [2e-12, 0.2], "padj": [4e-12, 0.2]})
    >>> format_pvalues(res).values.tolist()
    [['A', '2.0e-12', '4.0e-12'], ['B', '0.2', '0.2']]
    """
    if not isinstance(table, pd.DataFrame):
        raise ParameterTypeError(f"table must be a result DataFrame, not {type(table).__name__}")
    out = table.copy()
    chosen = columns if columns is not None else [c for c in out.columns
                                                  if c in ("pvalue", "padj") or str(c).startswith("pvalue_")]
    missing = [c for c in chosen if c not in out.columns]
    if missing:
        raise ParameterError(f"columns {missing} are not in the table; columns: {list(out.columns)[:12]}")
    for c in chosen:
        out[c] = [format_pvalue(float(v), digits) for v in out[c]]
    return out


def section(
    cells: pd.DataFrame,
    color: str,
    *,
    values: Sequence[float] | np.ndarray | None = None,
    polygons: dict[str, list[np.ndarray]] | None = None,
    region_colors: dict[str, str] | None = None,
    x: str = "x_slab_mm",
    y: str = "y_slab_mm",
    size: float = 6,
    cmap: str = "viridis",
    label: str | None = None,
    legend_max: int = 30,
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Cells of one spatial section at their slab coordinates, coloured by a taxonomy level or by values.

    Parameters
    ----------
    cells
        Cells of one section or slab plane (``x_slab_mm``, ``y_slab_mm`` and ``color`` columns).
    color
        A categorical column (e.g. ``"Subclass"``): its ``<color>_color`` column gives the taxonomy colours when
        present, and a legend lists the categories (the ``legend_max`` most frequent). With ``values``, the title
        of the colour bar (e.g. a gene symbol).
    values
        Numbers per cell (e.g. a gene's expression): a continuous map with a colour bar labelled ``label``.
    polygons, region_colors
        Region outlines of the plane (:func:`hmba_toolkit.spatial.read_region_polygons`), drawn and labelled,
        and their colours (e.g. the ``value_sets`` table's ``color_hex_triplet``).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> cells = pd.DataFrame({"x_slab_mm": [0, 1, 2], "y_slab_mm": [0, 1, 0], "Class": ["a", "b", "a"],
    ...                       "Class_color": ["#ff0000", "#0000ff", "#ff0000"]})
    >>> ax = section(cells, "Class")
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['a (2)', 'b (1)']
    """
    for column in (x, y) + (() if values is not None else (color,)):
        if column not in cells.columns:
            raise ParameterError(f"cells has no column {column!r}; columns: {list(cells.columns)[:12]}")
    ax = ax or plt.subplots(figsize=(7, 7))[1]
    if values is not None:
        v = np.asarray(values, dtype=float).ravel()
        if v.size != len(cells):
            raise ParameterError(f"values has {v.size} entries for {len(cells)} cells")
        order = np.argsort(v, kind="stable")  # high values drawn last, on top
        im = ax.scatter(cells[x].to_numpy()[order], cells[y].to_numpy()[order], c=v[order], s=size, cmap=cmap)
        plt.colorbar(im, ax=ax, label=label or color, shrink=0.8)
    else:
        _categorical_scatter(ax, cells, x, y, color, palette=None, size=size, legend_max=legend_max)
    for name, rings in (polygons or {}).items():
        for ring in rings:
            ring = np.asarray(ring)
            ax.plot(ring[:, 0], ring[:, 1], c=(region_colors or {}).get(name, "k"), lw=1.5)
            ax.text(ring[:, 0].mean(), ring[:, 1].mean(), name, fontsize=9, ha="center", weight="bold")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xlabel(f"{x} (mm)" if x.endswith("_mm") else x)
    ax.set_ylabel(f"{y} (mm)" if y.endswith("_mm") else y)
    return ax


def features_by_group(
    cells: pd.DataFrame,
    features: Sequence[str],
    *,
    groupby: str = "Group",
    units: dict[str, str] | None = None,
    ncols: int = 3,
    axes: Sequence[plt.Axes] | None = None,
) -> np.ndarray:
    """Each feature per type: box plots with every cell drawn over them, in the taxonomy's order and colours.

    Parameters
    ----------
    cells
        A cell table with ``groupby``, its ``<groupby>_color`` and ``<groupby>_order`` columns and the features
        (``AbcCache.cell_table("HMBA-Macaque-PatchSeq")``).
    features
        Numeric feature columns, one panel each.
    units
        ``{feature: unit}`` for the axis labels (e.g. ``{"width_rheo_ms": "ms"}``).
    axes
        One Axes per feature; default a new figure with ``ncols`` panels per row.

    Returns
    -------
    numpy.ndarray
        The Axes, one per feature.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from hmba_toolkit.io import AbcCache
    >>> cells = AbcCache.from_demo().cell_table("HMBA-Macaque-PatchSeq")
    >>> features_by_group(cells, ["width_rheo_ms", "input_resistance"]).shape
    (2,)
    """
    if isinstance(features, str):
        raise ParameterError(f"features must be a list of columns, not the string {features!r}; use [{features!r}]")
    missing = [c for c in [groupby, *features] if c not in cells.columns]
    if missing:
        raise ParameterError(f"cells has no column(s) {missing}")
    table = cells.dropna(subset=[groupby])
    order_col, color_col = f"{groupby}_order", f"{groupby}_color"
    firsts = table.groupby(groupby, observed=True).first()
    groups = list(firsts.sort_values(order_col).index) if order_col in table else sorted(table[groupby].unique())
    colors = firsts[color_col].reindex(groups).fillna("#808080").tolist() if color_col in table else ["#4c72b0"] * len(groups)
    if axes is None:
        nrows = int(np.ceil(len(features) / ncols))
        _, grid = plt.subplots(nrows, min(ncols, len(features)), figsize=(4.2 * min(ncols, len(features)), 0.35 * len(groups) * nrows + 1.5 * nrows),
                               squeeze=False)
        axes = grid.ravel()[: len(features)]
        for extra in grid.ravel()[len(features):]:
            extra.set_visible(False)
    axes = np.asarray(axes, dtype=object)
    jitter = np.random.default_rng(0)
    for ax, feature in zip(axes, features):
        values = [table.loc[table[groupby] == g, feature].dropna().to_numpy(dtype=float) for g in groups]
        positions = np.arange(len(groups))
        box = ax.boxplot(values, positions=positions, vert=False, widths=0.6, patch_artist=True, showfliers=False)
        for patch, color in zip(box["boxes"], colors):
            patch.set(facecolor=color, alpha=0.35, edgecolor=color)
        for k, (v, color) in enumerate(zip(values, colors)):
            ax.scatter(v, k + jitter.uniform(-0.2, 0.2, v.size), s=8, color=color, edgecolor="none")
        unit = (units or {}).get(feature)
        ax.set_xlabel(f"{feature} ({unit})" if unit else feature)
        ax.set_yticks(positions, [f"{g} (n={v.size})" for g, v in zip(groups, values)])
        ax.invert_yaxis()
    return axes
