"""AHBA probe handling: re-annotation, intensity-based filtering, probe selection.

A gene is measured by one to several probes; the pipeline keeps probes re-annotated to a
gene (Arnatkeviciute et al. 2019), drops probes rarely above background (intensity-based
filtering on the PA calls pooled over donors), and keeps one value per gene and sample,
either the probe chosen by a criterion or the mean of the gene's probes.

References
----------
Arnatkeviciute A, Fulcher BD, Fornito A (2019) NeuroImage 189:353-367 (re-annotation, IBF,
differential stability). Hawrylycz MJ et al. (2015) Nat Neurosci 18:1832-1844 (differential
stability). Markello RD et al. (2021) eLife 10:e72129 (abagen options).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from itertools import combinations

import numpy as np
import pandas as pd

from .._arrays import canonical_signs
from .._compat import LegacyTuple
from ..errors import ParameterError
from ..io.ahba import AhbaDonor

__all__ = ["reannotate_probes", "filter_probes", "select_probes", "SELECTION_METHODS"]

SELECTION_METHODS = ("mean", "max_intensity", "max_variance", "pc_loading", "corr_intensity", "corr_variance", "diff_stability")
_POOLED = ("mean", "diff_stability")  # computed on all donors together whatever donor_probes says


def reannotate_probes(probes: pd.DataFrame) -> pd.DataFrame:
    """Replace Allen's probe annotation by the re-annotation of Arnatkeviciute et al. (2019).

    Keeps only probes present in the re-annotation with an Entrez id. Returns a table
    indexed by ``probe_id`` with ``probe_name, gene_symbol, entrez_id``.
    """
    if "probe_name" not in probes.columns:
        raise ParameterError("reannotate_probes: the probe table needs a 'probe_name' column")
    with gzip.open(resources.files("hmba_toolkit.datasets").joinpath("data", "ahba_reannotated.csv.gz").open("rb")) as fh:
        table = pd.read_csv(fh, usecols=["probe_name", "gene_symbol", "entrez_id"])
    merged = probes[["probe_name"]].reset_index().merge(table, on="probe_name", how="inner")
    merged = merged.dropna(subset=["entrez_id", "gene_symbol"])
    merged["entrez_id"] = merged["entrez_id"].astype("Int64")
    return merged.set_index(merged.columns[0]).rename_axis("probe_id")


def filter_probes(donors: Mapping[str, AhbaDonor], probes: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Intensity-based filtering: keep probes above background in at least ``threshold`` of all samples.

    The fraction is pooled over donors: ``sum of PA calls / number of samples`` across every
    donor's samples (abagen ``ibf_threshold``). ``threshold`` is clipped to [0, 1].
    """
    threshold = float(np.clip(threshold, 0, 1))
    if not donors:
        raise ParameterError("donors is empty: pass the donors read with read_ahba_donor / fetch_ahba")
    signal = sum(d.pacall.reindex(probes.index).sum(axis=1) for d in donors.values())
    n = sum(d.n_samples for d in donors.values())
    return probes[(signal / n >= threshold).to_numpy()]


def _by_structure(d: AhbaDonor, probe_ids) -> pd.DataFrame:
    """Region (structure_id) x probe means of one donor."""
    x = d.microarray.loc[probe_ids].T
    x.index = d.annotation["structure_id"].to_numpy()
    return x.groupby(level=0).mean()


def _diff_stability(donors: Mapping[str, AhbaDonor], probes: pd.DataFrame) -> pd.Series:
    """Per probe: mean over donor pairs of the Spearman correlation across shared regions."""
    if len(donors) < 2:
        raise ParameterError("differential stability needs at least two donors")
    regional = {k: _by_structure(d, probes.index) for k, d in donors.items()}
    rhos = []
    for a, b in combinations(sorted(regional), 2):
        common = regional[a].index.intersection(regional[b].index)
        if len(common) < 3:
            continue
        ra = regional[a].loc[common].rank()
        rb = regional[b].loc[common].rank()
        za = (ra - ra.mean()) / ra.std(ddof=1)
        zb = (rb - rb.mean()) / rb.std(ddof=1)
        rhos.append((za * zb).sum() / (len(common) - 1))
    if not rhos:
        raise ParameterError("differential stability: no donor pair shares 3 or more structures")
    return pd.concat(rhos, axis=1).mean(axis=1)


def _pick(scores: pd.Series, probes: pd.DataFrame) -> pd.Index:
    """The probe with the highest score for each gene (ties: first probe id)."""
    frame = pd.DataFrame({"gene": probes["gene_symbol"], "score": scores.reindex(probes.index)})
    frame = frame.sort_index().sort_values("score", ascending=False, kind="stable")
    return pd.Index(frame.groupby("gene", sort=False).head(1).index)


def _pc_loading(x: pd.DataFrame, probes: pd.DataFrame) -> pd.Index:
    chosen = []
    for _, ids in probes.groupby("gene_symbol").groups.items():
        ids = sorted(ids)
        if len(ids) == 1:
            chosen.append(ids[0])
            continue
        data = x.loc[ids].to_numpy()
        data = data - data.mean(axis=0)
        _, _, v = np.linalg.svd(data, full_matrices=False)
        v = canonical_signs(v.T).T  # components' signs: the same on any LAPACK
        chosen.append(ids[int(np.argmax((data @ v.T)[:, 0]))])
    return pd.Index(chosen)


def _corr(x: pd.DataFrame, probes: pd.DataFrame, two_probe_stat) -> pd.Index:
    chosen = []
    for _, ids in probes.groupby("gene_symbol").groups.items():
        ids = sorted(ids)
        data = x.loc[ids].to_numpy()
        if len(ids) == 1:
            chosen.append(ids[0])
        elif len(ids) == 2:
            chosen.append(ids[int(np.argmax(two_probe_stat(data, axis=1)))])
        else:
            chosen.append(ids[int(np.argmax(((np.corrcoef(data) + 1) / 2).mean(axis=1)))])
    return pd.Index(chosen)


def _choose(x: pd.DataFrame, probes: pd.DataFrame, method: str) -> pd.Index:
    if method == "max_intensity":
        return _pick(x.mean(axis=1), probes)
    if method == "max_variance":
        return _pick(x.std(axis=1, ddof=1), probes)
    if method == "pc_loading":
        return _pc_loading(x, probes)
    if method == "corr_intensity":
        return _corr(x, probes, np.mean)
    if method == "corr_variance":
        return _corr(x, probes, np.std)
    raise ParameterError(f"unknown probe selection method {method!r}")


@dataclass(frozen=True, repr=False)
class ProbeSelection(LegacyTuple):
    """Genes from probes (:func:`select_probes`): ``expression`` per donor and the ``chosen`` probes."""

    expression: dict[str, pd.DataFrame]
    chosen: pd.DataFrame
    _legacy_fields = ("expression", "chosen")

    def __repr__(self) -> str:
        genes = next(iter(self.expression.values())).shape[1] if self.expression else 0
        return f"ProbeSelection({len(self.expression)} donors x {genes} genes)"


def select_probes(
    donors: Mapping[str, AhbaDonor],
    probes: pd.DataFrame,
    method: str = "diff_stability",
    donor_probes: str = "aggregate",
) -> ProbeSelection:
    """Collapse probes to genes for every donor.

    Parameters
    ----------
    donors
        ``{donor: AhbaDonor}`` (see :func:`hmba_toolkit.io.read_ahba_donor`).
    probes
        Probes to consider (index ``probe_id``, column ``gene_symbol``), e.g. after
        :func:`reannotate_probes` and :func:`filter_probes`.
    method
        ``"diff_stability"`` (highest mean Spearman correlation of regional profiles between
        donor pairs; Hawrylycz et al. 2015), ``"max_intensity"``, ``"max_variance"``,
        ``"pc_loading"`` (highest score on the first principal component of the gene's probes),
        ``"corr_intensity"`` / ``"corr_variance"`` (most correlated with the gene's other probes;
        with two probes, the higher mean or SD), or ``"mean"`` (average of the gene's probes).
    donor_probes
        ``"aggregate"`` (one choice from all donors' samples pooled), ``"independent"`` (each
        donor its own), ``"common"`` (each donor's choice, then the most frequent across donors).
        ``mean`` and ``diff_stability`` always pool donors.

    Returns
    -------
    ProbeSelection
        Two attributes:

    expression : dict
        ``{donor: samples x genes DataFrame}`` (columns sorted gene symbols).
    chosen : pandas.DataFrame
        The probe used per donor and gene (``donor, gene_symbol, probe_id``; empty for ``mean``).

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_ahba
    >>> from hmba_toolkit.io import read_ahba_donors
    >>> donors = read_ahba_donors(fetch_demo_ahba())
    >>> probes = filter_probes(donors, reannotate_probes(donors["9861"].probes))
    >>> selection = select_probes(donors, probes, "diff_stability")
    >>> sorted(selection.expression) == sorted(donors), selection.chosen.columns.tolist()
    (True, ['donor', 'gene_symbol', 'probe_id'])
    """
    if method not in SELECTION_METHODS:
        raise ParameterError(f"method={method!r} is not one of {SELECTION_METHODS}")
    if donor_probes not in ("aggregate", "independent", "common"):
        raise ParameterError(f"donor_probes={donor_probes!r} is not 'aggregate', 'independent' or 'common'")
    genes = probes["gene_symbol"]
    if method == "mean":
        out = {k: d.microarray.loc[probes.index].groupby(genes.to_numpy()).mean().T.sort_index(axis=1) for k, d in donors.items()}
        return ProbeSelection(expression=out, chosen=pd.DataFrame(columns=["donor", "gene_symbol", "probe_id"]))
    if method == "diff_stability":
        picks = {k: _pick(_diff_stability(donors, probes), probes) for k in donors}
    elif donor_probes == "aggregate":
        pooled = pd.concat([d.microarray.loc[probes.index] for d in donors.values()], axis=1)
        chosen = _choose(pooled, probes, method)
        picks = {k: chosen for k in donors}
    else:
        picks = {k: _choose(d.microarray.loc[probes.index], probes, method) for k, d in donors.items()}
        if donor_probes == "common":
            allp = pd.DataFrame([(genes[p], p) for idx in picks.values() for p in idx], columns=["gene", "probe"])
            mode = allp.groupby("gene")["probe"].agg(lambda s: s.value_counts().sort_index(kind="stable").idxmax())
            common = pd.Index(mode.to_numpy())
            picks = {k: common for k in donors}
    out, rows = {}, []
    for k, d in donors.items():
        idx = picks[k]
        x = d.microarray.loc[idx].T
        x.columns = genes.loc[idx].to_numpy()
        out[k] = x.sort_index(axis=1)
        rows += [(k, genes[p], p) for p in idx]
    return ProbeSelection(expression=out, chosen=pd.DataFrame(rows, columns=["donor", "gene_symbol", "probe_id"]))
