"""AHBA region-group differential expression with donor as a covariate.

For every gene, an ordinary least-squares model ``expression ~ donor + in_group`` over the
samples of the two region groups (for example striatum vs pallidum), solved for all genes
at once; the ``in_group`` coefficient, its t statistic (residual degrees of freedom
n - n_donors - 1) and two-sided p-value, Benjamini-Hochberg over genes. Donor enters as a
fixed effect because AHBA donors differ systematically (batch) and sample different regions.

References
----------
Hawrylycz MJ et al. (2012) Nature 489:391-399 (AHBA). Arnatkeviciute A et al. (2019)
NeuroImage 189:353-367 (donor effects in AHBA). Benjamini Y, Hochberg Y (1995) JRSS B 57:289-300.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ParameterError
from .._stats import bh_adjust
from ..de._result import tidy

__all__ = ["region_groups"]


def _resolve(names: Sequence[int | str], info: pd.DataFrame) -> set[int]:
    ids: set[int] = set()
    for n in names:
        if isinstance(n, (int, np.integer)) and int(n) in info.index:
            ids.add(int(n))
            continue
        hit = info.index[info["label"] == n]
        if len(hit) == 0:
            raise ParameterError(f"region {n!r} is neither an atlas id nor a label; labels: {sorted(set(info['label']))[:10]}...")
        ids.update(int(i) for i in hit)
    return ids


def region_groups(result, group: Sequence[int | str], reference: Sequence[int | str], atlas=None) -> pd.DataFrame:
    """Test every gene between two groups of atlas regions, adjusting for donor.

    Parameters
    ----------
    result
        :class:`hmba_toolkit.ahba.AhbaResult` (its normalized sample-level data and labels).
    group, reference
        Atlas labels (``"caudate"``, both hemispheres) or ids forming each side.
    atlas
        The atlas used by ``result`` (default: Desikan-Killiany).

    Returns
    -------
    pandas.DataFrame
        The shared tidy DE table. ``log2_fold_change`` is the donor-adjusted difference of the
        group means in the units of the sample data: a log2 fold change for un-normalized
        log2 intensities (``gene_norm=None, sample_norm=None``), a difference on the [0, 1]
        scale for ``srs``. ``statistic`` is the t statistic; ``frac_in``/``frac_out`` are NaN
        (not defined for microarray intensities).

    Examples
    --------
    >>> from hmba_toolkit.ahba import process
    >>> from hmba_toolkit.datasets import fetch_demo_ahba
    >>> from hmba_toolkit.io import read_ahba_donors
    >>> res = process(read_ahba_donors(fetch_demo_ahba()))
    >>> table = region_groups(res, ["caudate", "putamen"], ["pallidum"])
    >>> {"PENK", "TAC1"} <= set(table.head(5)["gene"])  # striatal markers lead
    True
    """
    from .samples import desikan_killiany

    info = (atlas or desikan_killiany()).info
    g_ids, r_ids = _resolve(group, info), _resolve(reference, info)
    if g_ids & r_ids:
        raise ParameterError(f"group and reference share regions {sorted(g_ids & r_ids)}")
    ys, xs, donors = [], [], []
    for k, e in result.sample_expression.items():
        lab = result.samples[k]["label"].to_numpy()
        sel = np.isin(lab, list(g_ids | r_ids))
        ys.append(e[sel])
        xs.append(np.isin(lab[sel], list(g_ids)).astype(float))
        donors += [k] * int(sel.sum())
    y = pd.concat(ys)
    x = np.concatenate(xs)
    if x.sum() < 2 or (1 - x).sum() < 2:
        raise ParameterError(f"need at least 2 samples on each side; got {int(x.sum())} in group, {int((1 - x).sum())} in reference")
    dummies = pd.get_dummies(pd.Series(donors), drop_first=True).to_numpy(float)
    design = np.column_stack([np.ones(len(x)), dummies, x])
    keep = y.notna().all(axis=0).to_numpy()
    Y = y.loc[:, keep].to_numpy(float)
    beta, _, rank, _ = np.linalg.lstsq(design, Y, rcond=None)
    df = len(x) - rank
    if df < 1:
        raise ParameterError("no residual degrees of freedom: too few samples for the donor covariate")
    resid = Y - design @ beta
    s2 = (resid**2).sum(axis=0) / df
    cov = np.linalg.pinv(design.T @ design)[-1, -1]
    t = beta[-1] / np.sqrt(s2 * cov)
    p = 2 * stats.t.sf(np.abs(t), df)
    name = lambda ids: "+".join(sorted(set(info.loc[sorted(ids), "label"])))  # noqa: E731
    genes = y.columns[keep]
    frame = pd.DataFrame({
        "gene": genes, "group": name(g_ids), "reference": name(r_ids), "log2_fold_change": beta[-1], "statistic": t,
        "pvalue": p, "padj": bh_adjust(p), "mean_in": Y[x == 1].mean(axis=0), "mean_out": Y[x == 0].mean(axis=0),
        "frac_in": np.nan, "frac_out": np.nan,
    })
    out = tidy([frame])
    out.attrs.update({"n_in": int(x.sum()), "n_out": int((1 - x).sum()), "df": int(df), "design": "~ donor + in_group"})
    return out
