"""Per-sample gene-set scores (ssGSEA, GSVA) through gseapy, as a tidy table.

References
----------
Barbie DA et al. (2009) Nature 462:108-112 (ssGSEA). Haenzelmann S, Castelo R, Guinney J (2013)
BMC Bioinformatics 14:7 (GSVA). Fang Z et al. (2023) Bioinformatics 39:btac757 (gseapy).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import pandas as pd

from .._checks import check_count, check_seed
from .._compat import warn
from ..errors import ParameterError, ParameterTypeError
from .genesets import check_gene_sets

__all__ = ["sample_scores"]


def sample_scores(
    expression: pd.DataFrame,
    gene_sets: Mapping[str, Iterable[str]],
    *,
    method: str = "ssgsea",
    min_size: int = 5,
    max_size: int = 500,
    seed: int = 0,
    threads: int = 1,
) -> pd.DataFrame:
    """Score every sample (region, pseudobulk sample, cell group) for every gene set.

    Parameters
    ----------
    expression
        Samples x genes (e.g. an AHBA region x gene table, log-CPM pseudobulk samples).
    method
        ``"ssgsea"`` (Barbie et al. 2009) or ``"gsva"`` (Haenzelmann et al. 2013), via gseapy.

    Returns
    -------
    pandas.DataFrame
        Tidy ``sample, term, score`` (ssGSEA: normalized enrichment score; GSVA: ES).
    """
    import gseapy as gp

    if not isinstance(expression, pd.DataFrame):
        raise ParameterTypeError(f"expression must be a samples x genes DataFrame (e.g. pseudobulk log2 CPM with genes as the "
                                 f"columns), not {type(expression).__name__}")
    sets = check_gene_sets(gene_sets)
    threads = check_count(threads, "threads")
    check_seed(seed)
    data = expression.T.dropna(how="any")
    if data.shape[0] < len(expression.columns):
        warn(f"sample_scores: {len(expression.columns) - data.shape[0]} genes with NaN in some sample are left out")
    measured = set(map(str, data.index))
    if not any(min_size <= len(set(g) & measured) <= max_size for g in sets.values()):
        raise ParameterError(f"no gene set has between {min_size} and {max_size} genes among the {len(measured)} genes "
                             f"(columns) of expression; genes look like {sorted(measured)[:3]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "ssgsea":
            res = gp.ssgsea(data=data, gene_sets=sets, outdir=None, min_size=min_size, max_size=max_size,
                            permutation_num=0, no_plot=True, threads=threads, seed=seed, verbose=False)
            col = "NES"
        elif method == "gsva":
            res = gp.gsva(data=data, gene_sets=sets, outdir=None, min_size=min_size, max_size=max_size,
                          threads=threads, seed=seed, verbose=False)
            col = "ES"
        else:
            raise ParameterError(f"method={method!r} is not 'ssgsea' or 'gsva'")
    out = res.res2d.rename(columns={"Name": "sample", "Term": "term", col: "score"})[["sample", "term", "score"]]
    out["score"] = out["score"].astype(float)
    return out.sort_values(["term", "sample"], ignore_index=True)
