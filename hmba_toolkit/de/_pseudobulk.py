"""Pseudobulk differential expression: donors (or samples) as replicates.

Raw counts are summed per (replicate x group) in one sparse pass (an indicator matrix times
the count matrix; the number of expressing cells comes from the same pass), then tested with
DESeq2's negative-binomial GLM and Wald test (pydeseq2; Love et al. 2014; Muzellec et al.
2023), Benjamini-Hochberg FDR. When every replicate contributes both sides of a contrast
(two cell types within each donor) the design is paired, ``~ replicate + condition``; when
each replicate belongs to one side (a donor-level label such as sex) it is ``~ condition``.

Cell-level tests treat cells of one donor as independent and give false discoveries when
donors differ (Squair et al. 2021); pseudobulk is the default for donor-level questions.

References
----------
Love MI, Huber W, Anders S (2014) Genome Biol 15:550. Muzellec B et al. (2023) Bioinformatics
39:btad547. Squair JW et al. (2021) Nat Commun 12:5692. Crowell HL et al. (2020) Nat Commun 11:6077.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .._arrays import has_fractions
from .._checks import check_anndata, check_column_name, check_count
from .._compat import warn, warn_renamed
from .._log2cpm import CPM, log2_per_total, refuse_normalized
from ..errors import ParameterError
from .._taxonomy import check_cross_species
from ..stream._aggregate import aggregate
from ._result import bh_adjust, tidy

__all__ = ["aggregate_counts", "pseudobulk", "check_cross_species"]

def aggregate_counts(
    adata: ad.AnnData,
    by: Sequence[str],
    *,
    layer: str | None = None,
    chunk_size: int = 50_000,
) -> ad.AnnData:
    """Deprecated: use :func:`hmba_toolkit.stream.aggregate` (the one aggregation, scanpy's layer names).

    Kept for one release: returns the same object as ``stream.aggregate(adata, by, layer=layer)`` plus the old
    names, ``layers["n_expressing"]`` (= ``count_nonzero``) and ``obs["n_cells"]`` (= ``n_obs_aggregated``).
    """
    warn_renamed("de.aggregate_counts", "stream.aggregate (layers sum, mean, var, count_nonzero)", "hmba_toolkit.de")
    out = aggregate(adata, list(by), layer=layer)
    out.layers["n_expressing"] = out.layers["count_nonzero"]
    out.obs["n_cells"] = out.obs["n_obs_aggregated"]
    return out


def _dispersion_gradient_sign(t: np.ndarray, Y: np.ndarray, Mu: np.ndarray, X: np.ndarray, cr_reg: bool,
                              prior: tuple[np.ndarray, float] | None) -> np.ndarray:
    """Sign of the derivative of DESeq2's dispersion objective at ``alpha = exp(t)``, for every gene at once.

    Objective (to minimise, Love et al. 2014, Genome Biol 15:550, methods): the negative binomial negative
    log-likelihood, plus the Cox-Reid adjustment ``0.5 log det(X' W X)`` with ``W = mu / (1 + mu alpha)``, plus the
    log-normal prior ``(t - t_trend)^2 / (2 s^2)`` in the MAP step. With ``r = 1/alpha``:
    ``d(-loglik)/d(alpha) = r^2 sum[psi(y + r) - psi(r) + log(r / (r + mu)) + 1 - (r + y) / (r + mu)]`` and
    ``d(CR)/d(alpha) = -0.5 tr((X'WX)^-1 X' W^2 X)``. ``Y``, ``Mu``: samples x genes.
    """
    from scipy.special import digamma

    alpha = np.exp(t)[None, :]
    r = 1.0 / alpha
    grad = (r[0] ** 2) * np.sum(digamma(Y + r) - digamma(r) + np.log(r / (r + Mu)) + 1 - (r + Y) / (r + Mu), axis=0)
    if cr_reg:
        W = Mu / (1 + Mu * alpha)  # samples x genes
        info = np.einsum("sp,sg,sq->gpq", X, W, X)
        d_info = np.einsum("sp,sg,sq->gpq", X, W**2, X)
        grad -= 0.5 * np.einsum("gpq,gqp->g", np.linalg.inv(info), d_info)
    if prior is not None:
        grad += (t - prior[0]) / (prior[1] * np.exp(t))
    return np.sign(grad)


def _dispersion_objective(t: np.ndarray, Y: np.ndarray, Mu: np.ndarray, X: np.ndarray, cr_reg: bool,
                          prior: tuple[np.ndarray, float] | None) -> np.ndarray:
    """DESeq2's dispersion objective at ``alpha = exp(t)`` for every gene (see :func:`_dispersion_gradient_sign`)."""
    from scipy.special import gammaln

    alpha = np.exp(t)[None, :]
    r = 1.0 / alpha
    out = -np.sum(gammaln(Y + r) - gammaln(r) + r * np.log(r / (r + Mu)) + Y * np.log(Mu / (r + Mu)), axis=0)
    if cr_reg:
        W = Mu / (1 + Mu * alpha)
        out += 0.5 * np.linalg.slogdet(np.einsum("sp,sg,sq->gpq", X, W, X))[1]
    if prior is not None:
        out += (t - prior[0]) ** 2 / (2 * prior[1])
    return out


def _exact_log_dispersions(Y: np.ndarray, Mu: np.ndarray, X: np.ndarray, lo: float, hi: float, cr_reg: bool,
                           prior: tuple[np.ndarray, float] | None, tol: float = 1e-10, n_grid: int = 97) -> np.ndarray:
    """The minimiser of the dispersion objective in ``[lo, hi]`` (log scale) for every gene.

    pydeseq2 stops L-BFGS-B at a gradient of 1e-5 in log(alpha); near alpha = 0 the objective is flat on that scale, so
    where it stops depends on the floating-point path (BLAS kernel, thread count) and the estimates differ by orders of
    magnitude between machines. Here the global minimum is located on a grid of ``n_grid`` points over the whole range
    (the objective can have a second, shallow minimum at the lower bound) and refined by bisection on the sign of the
    derivative between the grid point's neighbours: every step is a comparison, so any machine decides the same way.
    """
    n = Y.shape[1]
    grid = np.linspace(lo, hi, n_grid)
    values = np.stack([_dispersion_objective(np.full(n, u), Y, Mu, X, cr_reg, prior) for u in grid])
    k = np.argmin(values, axis=0)
    left, right = grid[np.maximum(k - 1, 0)], grid[np.minimum(k + 1, n_grid - 1)]
    at_left = _dispersion_gradient_sign(left, Y, Mu, X, cr_reg, prior) >= 0
    at_right = _dispersion_gradient_sign(right, Y, Mu, X, cr_reg, prior) <= 0
    a, b = left, right
    for _ in range(int(np.ceil(np.log2((b - a).max() / tol)))):
        mid = 0.5 * (a + b)
        up = _dispersion_gradient_sign(mid, Y, Mu, X, cr_reg, prior) >= 0
        b = np.where(up, mid, b)
        a = np.where(up, a, mid)
    out = 0.5 * (a + b)
    # a bracket end that is itself a minimum (a bound, or a kink of the grid) wins when it is lower
    f_out = _dispersion_objective(out, Y, Mu, X, cr_reg, prior)
    for end, flag in ((left, at_left), (right, at_right)):
        f_end = _dispersion_objective(end, Y, Mu, X, cr_reg, prior)
        lower = flag & (f_end < f_out)
        out, f_out = np.where(lower, end, out), np.where(lower, f_end, f_out)
    return out


def _inference(n_cpus: int = 1):
    """pydeseq2's inference with dispersion estimates found exactly (the same on any machine)."""
    from pydeseq2.default_inference import DefaultInference

    class ExactDispersionInference(DefaultInference):
        def alpha_mle(self, counts, design_matrix, mu, alpha_hat, min_disp, max_disp, prior_disp_var=None,
                      cr_reg=True, prior_reg=False, optimizer="L-BFGS-B"):
            # replaces pydeseq2's per-gene L-BFGS-B (``optimizer`` is not used); every gene converges
            prior = (np.log(np.asarray(alpha_hat, float)), float(prior_disp_var)) if prior_reg else None
            t = _exact_log_dispersions(np.asarray(counts, float), np.asarray(mu, float), np.asarray(design_matrix, float),
                                       float(np.log(min_disp)), float(np.log(max_disp)), cr_reg, prior)
            return np.exp(t), np.ones(t.size, dtype=bool)

    return ExactDispersionInference(n_cpus=n_cpus)


def _is_paired(meta: pd.DataFrame) -> bool:
    """Whether every replicate has both an 'in' and an 'out' sample (the design ~replicate + condition)."""
    return set(meta.loc[meta["condition"] == "in", "replicate"]) == set(meta.loc[meta["condition"] == "out", "replicate"])


def _deseq2(counts: pd.DataFrame, meta: pd.DataFrame, design: str) -> pd.DataFrame:
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    inference = _inference(n_cpus=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(counts=counts, metadata=meta, design=design, size_factors_fit_type="poscounts",
                           refit_cooks=True, inference=inference, quiet=True)
        dds.deseq2()
        res = DeseqStats(dds, contrast=["condition", "in", "out"], inference=inference, quiet=True)
        res.summary()
    return res.results_df


def pseudobulk(
    adata: ad.AnnData,
    groupby: str,
    replicate: str = "donor_label",
    reference: str = "rest",
    *,
    groups: Sequence[str] | None = None,
    min_cells: int = 10,
    min_total_count: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Pseudobulk DE of each group against the rest or a reference, replicates as units.

    Parameters
    ----------
    adata
        Cells x genes **raw counts** (the release's ``-raw.h5ad``) with ``obs[groupby]`` and
        ``obs[replicate]``; in memory or backed.
    groupby
        Cell grouping (``Group``, ``Subclass``...) or a replicate-level label (``donor_sex``).
    replicate
        The experimental unit, ``donor_label`` by default (or a library/sample column).
    reference
        ``"rest"`` or a value of ``obs[groupby]``.
    groups
        Values of ``obs[groupby]`` to test (default: all but the reference).
    min_cells
        A pseudobulk sample needs at least this many cells.
    min_total_count
        Genes with fewer total counts over the tested samples are not tested (NaN p-value).
    seed
        Recorded in ``df.attrs["seed"]``; DESeq2 fitting draws no random numbers, so results do
        not depend on it (the global NumPy random state is never touched).

    Returns
    -------
    pandas.DataFrame
        The shared tidy table. ``statistic`` is DESeq2's Wald statistic; ``log2_fold_change``
        its MLE; ``mean_in``/``mean_out`` the mean log2(CPM + 1) of the pseudobulk samples;
        ``frac_in``/``frac_out`` the fraction of cells with a count. ``padj`` is BH over
        every tested gene. ``df.attrs["design"]`` holds the design of each group.

    Notes
    -----
    DESeq2 through pydeseq2, with one change: the gene-wise and MAP dispersions are the exact minima of DESeq2's
    objective (a grid over the whole range refined by bisection on the derivative's sign) instead of where
    L-BFGS-B stops at a gradient of 1e-5. On flat likelihoods (near-Poisson genes) the stopping point depended on
    the BLAS kernel and thread count, moving Wald statistics by up to 0.3 between machines; the exact minima agree
    to about 1e-12 (``tests/test_de_pseudobulk.py`` runs two OpenBLAS kernels).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
    >>> msn = cells.index[cells["Group"].isin(["STRd D1 Matrix MSN", "STRd D2 Matrix MSN"])]
    >>> raw = cache.read_expression("HMBA-10xMultiome-BG-Aligned", cells=msn, normalization="raw",
    ...                             obs=["Group", "donor_label", "species_genus"])
    >>> res = pseudobulk(raw, "Group", reference="STRd D2 Matrix MSN", groups=["STRd D1 Matrix MSN"], min_cells=5)
    >>> res.attrs["design"]
    {'STRd D1 Matrix MSN': '~replicate + condition'}
    >>> r = res.set_index("gene")
    >>> bool(r.at["DRD1", "log2_fold_change"] > 2 and r.at["DRD1", "padj"] < 0.05)
    True
    """
    check_anndata(adata, "pseudobulk")
    for name, col in (("groupby", groupby), ("replicate", replicate)):
        check_column_name(col, f"pseudobulk: {name}")
    for col in (groupby, replicate):
        if col not in adata.obs:
            raise ParameterError(f"pseudobulk: obs has no column {col!r}")
    min_cells = check_count(min_cells, "min_cells", minimum=0, what="(cells a pseudobulk sample needs)")
    min_total_count = check_count(min_total_count, "min_total_count", minimum=0, what="(counts a gene needs to be tested)")
    check_cross_species(adata.obs, groupby)
    values = pd.Index(pd.unique(adata.obs[groupby].dropna().astype(str))).sort_values()
    if reference != "rest" and reference not in values:
        raise ParameterError(f"reference {reference!r} is not a value of obs[{groupby!r}]: {list(values)}")
    tested = [g for g in (groups if groups is not None else values) if g != reference]
    bad = [g for g in tested if g not in values]
    if bad or not tested:
        raise ParameterError(f"groups {bad or tested} are not testable values of obs[{groupby!r}]")
    refuse_normalized(adata.uns, "pseudobulk")
    if has_fractions(adata.X):
        warn("pseudobulk needs raw counts; X holds non-integer values (log-normalised?), and summed counts are rounded "
             "for DESeq2: pass the raw matrix")
    pb = aggregate(adata, [replicate, groupby])
    genes = adata.var["gene_symbol"].astype(str).to_numpy() if "gene_symbol" in adata.var else adata.var_names.to_numpy()
    frames, designs = [], {}
    for g in tested:
        side = np.where(pb.obs[groupby] == g, "in", np.where((pb.obs[groupby] == reference) | (reference == "rest"), "out", ""))
        keep = side != ""
        # collapse each replicate's "out" groups into one sample (rest = every other group)
        sub = pb[keep]
        lab = pd.Series(side[keep], index=sub.obs_names)
        key = sub.obs[replicate].astype(str) + "|" + lab
        ind = pd.get_dummies(key).astype(float)
        M = ind.T.to_numpy()  # samples x pseudobulk rows
        counts = M @ np.asarray(sub.layers["sum"])
        nexp = M @ np.asarray(sub.layers["count_nonzero"])
        ncell = M @ sub.obs["n_obs_aggregated"].to_numpy(float)
        meta = pd.DataFrame([k.split("|") for k in ind.columns], columns=["replicate", "condition"], index=ind.columns)
        ok = ncell >= min_cells
        paired_before = _is_paired(meta)
        dropped = [f"{r} ({c}, {int(n)} cells)" for r, c, n in zip(meta.loc[~ok, "replicate"], meta.loc[~ok, "condition"], ncell[~ok])]
        counts, nexp, ncell, meta = counts[ok], nexp[ok], ncell[ok], meta[ok]
        n_in, n_out = int((meta["condition"] == "in").sum()), int((meta["condition"] == "out").sum())
        if n_in < 2 or n_out < 2:
            raise ParameterError(
                f"group {g!r}: {n_in} 'in' and {n_out} 'out' pseudobulk samples with >= {min_cells} cells; "
                "need at least 2 replicates on each side"
            )
        paired = _is_paired(meta)
        if paired_before and not paired:
            warn(f"pseudobulk: group {g!r}: min_cells={min_cells} drops the samples {dropped[:5]}, so the design changes from "
                 "paired (~replicate + condition) to unpaired (~condition); lower min_cells, or leave those replicates out "
                 "to keep the pairing")
        design = "~replicate + condition" if paired else "~condition"
        designs[str(g)] = design
        testable = counts.sum(axis=0) >= min_total_count
        cdf = pd.DataFrame(np.rint(counts[:, testable]).astype(np.int64), index=meta.index,
                           columns=[f"g{j}" for j in np.flatnonzero(testable)])
        res = _deseq2(cdf, meta, design)
        lfc = np.full(len(genes), np.nan)
        stat = np.full(len(genes), np.nan)
        pval = np.full(len(genes), np.nan)
        idx = np.flatnonzero(testable)
        lfc[idx] = res["log2FoldChange"].to_numpy()
        stat[idx] = res["stat"].to_numpy()
        pval[idx] = res["pvalue"].to_numpy()
        padj = np.full(len(genes), np.nan)
        tested_mask = ~np.isnan(pval)
        padj[tested_mask] = bh_adjust(pval[tested_mask])
        cpm = log2_per_total(counts, np.maximum(counts.sum(axis=1, keepdims=True), 1), CPM)
        is_in = (meta["condition"] == "in").to_numpy()
        frames.append(pd.DataFrame({
            "gene": genes, "group": g, "reference": reference, "log2_fold_change": lfc, "statistic": stat,
            "pvalue": pval, "padj": padj, "mean_in": cpm[is_in].mean(0), "mean_out": cpm[~is_in].mean(0),
            "frac_in": nexp[is_in].sum(0) / ncell[is_in].sum(), "frac_out": nexp[~is_in].sum(0) / ncell[~is_in].sum(),
        }))
    out = tidy(frames)
    out.attrs["design"] = designs
    out.attrs["seed"] = seed
    return out
