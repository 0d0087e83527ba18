"""Gene-set enrichment: over-representation (ORA) and preranked GSEA, with honest statistics.

ORA: one-sided hypergeometric test of the overlap between a query gene list and each set,
over the background of genes actually measured (not the union of the library); sets are
restricted to the background before the size limits apply.

Preranked GSEA (Subramanian et al. 2005): the weighted Kolmogorov-Smirnov running-sum
enrichment score ``ES`` (weight ``|r|^p``); its null from random gene sets of the same size
drawn from the ranking (gene-set permutation, the only null available for a ranked list);
``NES = ES / mean |null ES| of the same sign``; add-one p-values
``(1 + #{null of the same sign at least as extreme}) / (1 + #{null of the same sign}))``,
never 0 (Phipson and Smyth 2010); Benjamini-Hochberg over every tested set.

Both return tidy tables with the same columns: ``term, n_genes, n_overlap, statistic,
effect, pvalue, padj, genes``.

References
----------
Subramanian A et al. (2005) PNAS 102:15545-15550. Phipson B, Smyth GK (2010) Stat Appl Genet
Mol Biol 9:39. Benjamini Y, Hochberg Y (1995) JRSS B 57:289-300. Rivals I et al. (2007)
Bioinformatics 23:401-407 (hypergeometric ORA).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .._checks import check_count, check_seed
from .genesets import check_gene_sets
from .._stats import bh_adjust
from .._compat import renamed_parameters, warn
from ..errors import ParameterError, ParameterTypeError

__all__ = ["ora", "prerank", "ENRICHMENT_COLUMNS", "enrichment_score"]

ENRICHMENT_COLUMNS = ["term", "n_genes", "n_overlap", "statistic", "effect", "pvalue", "padj", "genes"]


def _restrict(gene_sets: Mapping[str, Iterable[str]], universe: set[str], min_size: int, max_size: int):
    kept, dropped = {}, 0
    for name, genes in check_gene_sets(gene_sets).items():
        g = sorted(set(genes) & universe)
        if min_size <= len(g) <= max_size:
            kept[name] = g
        else:
            dropped += 1
    if not kept:
        raise ParameterError(f"no gene set has between {min_size} and {max_size} genes in the measured background")
    return kept, dropped


def ora(
    genes: Iterable[str],
    gene_sets: Mapping[str, Iterable[str]],
    background: Iterable[str],
    *,
    min_size: int = 5,
    max_size: int = 500,
) -> pd.DataFrame:
    """Over-representation of ``genes`` in each set, against the measured ``background``.

    Parameters
    ----------
    genes
        The query (e.g. significant DE genes).
    gene_sets
        ``{name: genes}`` (see :func:`read_gmt`, :func:`go_biological_process`).
    background
        Every gene that was measured and could have been in the query. Required: the
        library's union is the wrong background and inflates significance.
    min_size, max_size
        Limits on a set's size *within the background*.

    Returns
    -------
    pandas.DataFrame
        ``term, n_genes`` (set size in background), ``n_overlap, statistic`` (expected overlap),
        ``effect`` (odds ratio), ``pvalue`` (hypergeometric upper tail), ``padj`` (BH over every
        tested set), ``genes`` (overlap, ``;``-joined). ``attrs`` report the sizes and limits.

    Examples
    --------
    >>> res = ora(["DRD1", "TAC1"], {"D1": ["DRD1", "TAC1", "PDYN"]}, background=["DRD1", "TAC1", "PDYN", "GFAP"], min_size=1)
    >>> res[["term", "n_overlap", "pvalue"]].to_dict("records")
    [{'term': 'D1', 'n_overlap': 2, 'pvalue': 0.5}]
    """
    for name, value in (("genes", genes), ("background", background)):
        if isinstance(value, str):
            raise ParameterTypeError(f"{name} must be a list of gene names, not the string {value!r}")
    universe = set(background)
    if not universe:
        raise ParameterError("background is empty")
    query_all = set(genes)
    query = query_all & universe
    if not query:
        raise ParameterError("none of the query genes is in the background")
    sets, dropped = _restrict(gene_sets, universe, min_size, max_size)
    N, n = len(universe), len(query)
    rows = []
    for name, members in sets.items():
        K = len(members)
        hit = sorted(query.intersection(members))
        k = len(hit)
        p = float(stats.hypergeom.sf(k - 1, N, K, n))
        a, b, c, d = k, n - k, K - k, N - K - n + k
        odds = (a * d) / (b * c) if b * c > 0 else np.inf
        rows.append((name, K, k, K * n / N, odds, p, ";".join(hit)))
    out = pd.DataFrame(rows, columns=["term", "n_genes", "n_overlap", "statistic", "effect", "pvalue", "genes"])
    out["padj"] = bh_adjust(out["pvalue"].to_numpy())
    out = out[ENRICHMENT_COLUMNS].sort_values(["pvalue", "term"], ignore_index=True)
    out.attrs.update({"method": "ora", "background_size": N, "query_size": n, "query_not_in_background": len(query_all - universe),
                      "sets_tested": len(sets), "sets_outside_size_limits": dropped, "min_size": min_size, "max_size": max_size})
    return out


def _tie_blocks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last position of the block of equal scores that each position of a sorted ranking belongs to."""
    n = scores.size
    new_block = np.r_[True, scores[1:] != scores[:-1]]
    start = np.maximum.accumulate(np.where(new_block, np.arange(n), 0))
    block_end = np.r_[np.flatnonzero(new_block)[1:] - 1, n - 1]
    end = block_end[np.cumsum(new_block) - 1]
    return start, end


def _es_from_positions(pos: np.ndarray, weights: np.ndarray, n: int, blocks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Enrichment scores for rows of sorted hit positions (shape sets x k) in a ranking of n genes.

    ``blocks`` (from :func:`_tie_blocks`): the running sum is read only at the edges of blocks of tied scores, so the
    score does not depend on how tied genes happen to be ordered (every order of a tie block gives the same value);
    without ties every block is one gene and this is the usual maximum deviation over hits.
    """
    k = pos.shape[1]
    w = weights[pos]
    cw = np.cumsum(w, axis=1)
    total = cw[:, -1:]
    total = np.where(total == 0, 1.0, total)
    j = np.broadcast_to(np.arange(k), pos.shape)
    start, end = blocks[0][pos], blocks[1][pos]
    # hits of one block are adjacent in a sorted row: index of the first and the last hit of each hit's block
    new = np.ones(pos.shape, bool)
    new[:, 1:] = end[:, 1:] != end[:, :-1]
    first = np.maximum.accumulate(np.where(new, j, 0), axis=1)
    is_last = np.ones(pos.shape, bool)
    is_last[:, :-1] = new[:, 1:]
    last = np.minimum.accumulate(np.where(is_last, j, k)[:, ::-1], axis=1)[:, ::-1]
    cw_after = np.take_along_axis(cw, last, axis=1)
    cw_before = np.take_along_axis(cw, first, axis=1) - np.take_along_axis(w, first, axis=1)
    after = cw_after / total - (end + 1 - (last + 1)) / (n - k)  # just after the hit's block
    before = cw_before / total - (start - first) / (n - k)  # just before the hit's block
    top = after.max(axis=1)
    bottom = before.min(axis=1)
    es = np.where(np.abs(top) >= np.abs(bottom), top, bottom)
    return np.where(cw[:, -1] > 0, es, np.nan)  # a set whose genes all weigh 0 has no running sum


def enrichment_score(ranking: pd.Series, genes: Iterable[str], weight: float = 1.0) -> float:
    """The GSEA running-sum enrichment score of one set in a ranking (sorted high to low)."""
    r = ranking.sort_values(ascending=False, kind="stable")
    pos = np.flatnonzero(r.index.isin(list(genes)))
    if pos.size == 0 or pos.size == len(r):
        raise ParameterError("the set must hit some but not all ranked genes")
    scores = r.to_numpy(float)
    return float(_es_from_positions(pos[None, :], np.abs(scores) ** weight, len(r), _tie_blocks(scores))[0])


@renamed_parameters(permutations="n_permutations")
def prerank(
    ranking: pd.Series,
    gene_sets: Mapping[str, Iterable[str]],
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    weight: float = 1.0,
    min_size: int = 15,
    max_size: int = 500,
) -> pd.DataFrame:
    """Preranked GSEA with gene-set permutation and add-one p-values.

    Parameters
    ----------
    ranking
        A score per gene (index = gene), e.g. the ``statistic`` column of a DE table. Genes must
        be unique. Tied scores (e.g. never-expressed genes at 0) form blocks whose order does not
        matter: the running sum is read at the blocks' edges, so results do not depend on input order.
    gene_sets
        ``{name: genes}``.
    n_permutations
        Random same-size gene sets drawn for every set size (shared across sets of one size).
    seed
        Seed of the random gene sets.
    weight
        Exponent p of the running-sum weights ``|r|^p`` (1 = GSEA's default, 0 = unweighted KS).

    Returns
    -------
    pandas.DataFrame
        ``term, n_genes, n_overlap`` (= n_genes), ``statistic`` (NES), ``effect`` (ES),
        ``pvalue`` (add-one), ``padj`` (BH over every tested set), ``genes`` (leading edge).

    Examples
    --------
    >>> ranking = pd.Series(np.linspace(3, -3, 100), index=[f"g{i}" for i in range(100)])  # e.g. DE statistics
    >>> sets = {"top": [f"g{i}" for i in range(0, 40, 2)], "spread": [f"g{i}" for i in range(0, 100, 5)]}
    >>> res = prerank(ranking, sets, n_permutations=999, seed=0, min_size=5)
    >>> res[["term", "n_genes"]].values.tolist(), bool(res.set_index("term").at["top", "pvalue"] < 0.01)
    ([['top', 20], ['spread', 20]], True)
    """
    if not isinstance(ranking, pd.Series):
        raise ParameterTypeError(f"ranking must be a pandas Series of scores indexed by gene, not {type(ranking).__name__}")
    if ranking.index.has_duplicates:
        raise ParameterError("ranking has duplicated gene names")
    n_permutations = check_count(n_permutations, "n_permutations", what="(permutations of the genes for the p-values)")
    check_seed(seed)
    if isinstance(weight, (str, bytes, bool)) or not np.isfinite(float(weight)) or weight < 0:
        raise ParameterError(f"weight must be a finite exponent >= 0 (1 = GSEA, 0 = unweighted), got {weight!r}")
    n_missing = int(ranking.isna().sum())
    if n_missing:
        warn(f"prerank: {n_missing} genes of the ranking have no score (NaN) and are left out of the ranking and the sets")
    # ties (e.g. every never-expressed gene at 0) in gene-name order, so nothing depends on the input's order
    r = ranking.dropna().sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    n = len(r)
    scores = r.to_numpy(float)
    w = np.abs(scores) ** weight
    blocks = _tie_blocks(scores)
    index = {g: i for i, g in enumerate(r.index)}
    sets, dropped = _restrict(gene_sets, set(r.index), min_size, max_size)
    if max(len(g) for g in sets.values()) >= n:
        raise ParameterError("a gene set covers the whole ranking")
    rng = np.random.default_rng(seed)
    draws = np.argsort(rng.random((n_permutations, n)), axis=1)  # each row a random order of genes
    by_size: dict[int, np.ndarray] = {}
    rows = []
    weightless: list[str] = []
    for name, members in sets.items():
        k = len(members)
        if k not in by_size:
            by_size[k] = _es_from_positions(np.sort(draws[:, :k], axis=1), w, n, blocks)
        null = by_size[k]
        pos = np.sort(np.fromiter((index[g] for g in members), dtype=np.int64, count=k))
        es = float(_es_from_positions(pos[None, :], w, n, blocks)[0])
        if np.isnan(es):  # every gene of the set has weight 0 (score 0): undefined, not "depleted"
            weightless.append(name)
            rows.append((name, k, k, np.nan, np.nan, np.nan, ""))
            continue
        same = null[null >= 0] if es >= 0 else null[null < 0]
        extreme = (same >= es).sum() if es >= 0 else (same <= es).sum()
        p = (1 + extreme) / (1 + same.size)
        nes = es / np.abs(same).mean() if same.size else np.nan
        # leading edge: hits up to the peak (positive ES) or from the trough (negative ES)
        cw = np.cumsum(w[pos]) / w[pos].sum()
        run = cw - (pos - np.arange(k)) / (n - k)
        lead = pos[: int(np.argmax(run)) + 1] if es >= 0 else pos[int(np.argmin(run - w[pos] / w[pos].sum())):]
        rows.append((name, k, k, nes, es, p, ";".join(r.index[lead])))
    if weightless:
        warn(f"{len(weightless)} gene set(s) have only genes of score 0 (weight 0), so no enrichment score: "
             f"{weightless[:5]}; their statistics are NaN")
    out = pd.DataFrame(rows, columns=["term", "n_genes", "n_overlap", "statistic", "effect", "pvalue", "genes"])
    out["padj"] = np.where(out["pvalue"].isna(), np.nan, bh_adjust(out["pvalue"].to_numpy()))
    out = out[ENRICHMENT_COLUMNS].sort_values(["pvalue", "term"], ignore_index=True)
    out.attrs.update({"method": "prerank", "ranked_genes": n, "n_permutations": n_permutations, "seed": seed, "weight": weight,
                      "sets_tested": len(sets), "sets_outside_size_limits": dropped, "min_size": min_size, "max_size": max_size,
                      "smallest_possible_pvalue": 1 / (n_permutations + 1)})
    return out
