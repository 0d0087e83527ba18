"""The AHBA processing pipeline: donor folders in, a region x gene table and a report out.

Steps (Arnatkeviciute et al. 2019; abagen's ``get_expression_data``, Markello et al. 2021):
probe re-annotation -> intensity-based filtering -> probe selection -> corrected MNI
coordinates, hemisphere check, optional left-right mirroring -> atlas assignment with a
distance tolerance and hemisphere/class constraints -> sample normalization (across genes)
-> gene normalization (across samples, per donor) -> aggregation over donors or samples.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import ParameterError, ParameterTypeError
from ..io.ahba import AhbaDonor
from ._normalize import normalize
from .probes import filter_probes, reannotate_probes, select_probes
from .samples import Atlas, annotate_samples, assign_regions, desikan_killiany, hemisphere_matches, mirror_samples

__all__ = ["AhbaResult", "process", "aggregate_regions"]


@dataclass
class AhbaResult:
    """Output of :func:`process`."""

    expression: pd.DataFrame  # regions (atlas id) x genes
    counts: pd.DataFrame  # regions x donors: samples assigned
    report: pd.DataFrame  # step, probes, genes, samples, note
    samples: dict[str, pd.DataFrame] = field(default_factory=dict)  # per donor: annotated samples with labels
    sample_expression: dict[str, pd.DataFrame] = field(default_factory=dict)  # per donor: normalized samples x genes


def aggregate_regions(expression: Mapping[str, pd.DataFrame], labels: Mapping[str, pd.Series],
                      region_agg: str = "donors", agg_metric: str = "mean") -> pd.DataFrame:
    """Average normalized samples into regions.

    ``region_agg="donors"``: per donor per region first, then across donors (each donor
    weighs the same); ``"samples"``: all samples of a region pooled. ``agg_metric``: ``mean``
    or ``median``. Label 0 (unassigned) is dropped. Genes that are NaN in a region with data
    are dropped.
    """
    if agg_metric not in ("mean", "median"):
        raise ParameterError(f"agg_metric={agg_metric!r} is not 'mean' or 'median'")
    missing = sorted(set(expression) - set(labels))
    if missing:
        raise ParameterError(f"labels has no region labels for donors {missing}; it has {sorted(labels)}")
    for k, e in expression.items():
        if len(labels[k]) != len(e):
            raise ParameterError(f"donor {k!r}: {len(labels[k])} region labels for {len(e)} samples of expression")
    frames = {k: e.assign(label=labels[k].to_numpy()).query("label != 0") for k, e in expression.items()}
    if region_agg == "donors":
        per = [f.groupby("label").agg(agg_metric) for f in frames.values()]
        out = pd.concat(per).groupby(level=0).agg(agg_metric)
    elif region_agg == "samples":
        out = pd.concat(frames.values()).groupby("label").agg(agg_metric)
    else:
        raise ParameterError(f"region_agg={region_agg!r} is not 'donors' or 'samples'")
    has = out.notna().any(axis=1)
    out = out.loc[:, out[has].notna().all(axis=0)]
    out.index.name, out.columns.name = "label", "gene_symbol"
    return out.sort_index()


def process(
    donors: Mapping[str, AhbaDonor],
    atlas: Atlas | None = None,
    *,
    ibf_threshold: float = 0.5,
    probe_selection: str = "diff_stability",
    donor_probes: str = "aggregate",
    lr_mirror: str | None = None,
    tolerance: float = 2.0,
    constrain: bool = True,
    sample_norm: str | None = "srs",
    gene_norm: str | None = "srs",
    norm_matched: bool = True,
    region_agg: str = "donors",
    agg_metric: str = "mean",
    corrected_mni: bool = True,
) -> AhbaResult:
    """Run the whole pipeline on AHBA donors.

    Parameters mirror abagen's ``get_expression_data`` (``ibf_threshold``, ``probe_selection``,
    ``donor_probes``, ``lr_mirror``, ``tolerance``, ``sample_norm``, ``gene_norm``, ``norm_matched``,
    ``region_agg``, ``agg_metric``, ``corrected_mni``); ``atlas`` defaults to the shipped
    Desikan-Killiany volume.

    Returns
    -------
    AhbaResult
        ``expression`` (atlas ids x genes), ``counts`` (samples per region and donor) and a
        ``report`` with the probes, genes and samples left after each step.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_ahba
    >>> from hmba_toolkit.io import read_ahba_donors
    >>> res = process(read_ahba_donors(fetch_demo_ahba()))
    >>> res.report["step"].iloc[-1], bool(res.expression.shape[1] == res.report["genes"].iloc[-1])
    ('aggregate', True)
    """
    if isinstance(donors, (str, os.PathLike)):
        raise ParameterTypeError(f"process takes the donors, not a folder: process(read_ahba_donors({str(donors)!r}))")
    if not isinstance(donors, Mapping):
        raise ParameterTypeError(f"process takes {{uid: AhbaDonor}} (read_ahba_donors), not {type(donors).__name__}")
    if not donors:
        raise ParameterError("process: no donors given")
    atlas = atlas or desikan_killiany()
    report = []
    first = next(iter(donors.values()))
    n_samples = sum(d.n_samples for d in donors.values())
    report.append(("read", len(first.probes), first.probes["gene_symbol"].nunique(), n_samples, f"{len(donors)} donors"))
    probes = reannotate_probes(first.probes)
    report.append(("reannotate", len(probes), probes["gene_symbol"].nunique(), n_samples, "Arnatkeviciute et al. 2019"))
    probes = filter_probes(donors, probes, ibf_threshold)
    report.append(("intensity filter", len(probes), probes["gene_symbol"].nunique(), n_samples, f"ibf_threshold={ibf_threshold}"))
    expr = select_probes(donors, probes, probe_selection, donor_probes).expression
    report.append(("probe selection", probes["gene_symbol"].nunique(), probes["gene_symbol"].nunique(), n_samples, probe_selection))
    labels, normed, samples = {}, {}, {}
    kept_h = kept_m = 0
    for k, d in donors.items():
        annot = annotate_samples(d, corrected_mni=corrected_mni)
        ok = hemisphere_matches(annot)
        annot, e = annot[ok], expr[k][ok]
        kept_h += int(ok.sum())
        if lr_mirror:
            mirrored = mirror_samples(annot, e, lr_mirror)
            annot, e = mirrored.annotation, mirrored.expression
        lab = assign_regions(annot, atlas, tolerance=tolerance, constrain=constrain)
        if norm_matched:
            keep = (lab != 0).to_numpy()
            annot, e, lab = annot[keep], e[keep], lab[keep]
        kept_m += int((lab != 0).sum())
        if sample_norm:
            e = normalize(e.T, sample_norm).T
        if gene_norm:
            e = normalize(e, gene_norm)
        labels[k], normed[k] = lab, e
        samples[k] = annot.assign(label=lab.to_numpy())
    report.append(("hemisphere check" + (f" + mirror ({lr_mirror})" if lr_mirror else ""), np.nan, np.nan, kept_h, "ontology hemisphere vs sign of x"))
    report.append(("atlas assignment", np.nan, np.nan, kept_m, f"tolerance={tolerance} mm, constrain={constrain}"))
    out = aggregate_regions(normed, labels, region_agg, agg_metric)
    report.append(("aggregate", np.nan, out.shape[1], kept_m, f"{region_agg}/{agg_metric}; {out.notna().any(axis=1).sum()} regions"))
    counts = pd.DataFrame({k: lab.value_counts() for k, lab in labels.items()}).reindex(atlas.info.index).fillna(0).astype(int)
    counts.index.name = "label"
    report = pd.DataFrame(report, columns=["step", "probes", "genes", "samples", "note"])
    return AhbaResult(out.reindex(atlas.info.index), counts, report, samples, normed)
