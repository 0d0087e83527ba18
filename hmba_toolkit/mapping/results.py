"""Mapping results as Allen's files: the CSV (``#`` header lines, one row per cell) and the extended JSON.

The CSV reads back with ``pd.read_csv(path, comment="#")``; its columns and header lines are those of
cell_type_mapper's ``--csv_result_path`` (``docs/output.md``), the JSON those of ``--extended_result_path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import __version__
from .._files import atomic_path, write_text_atomic
from ..errors import ParameterError
from .assign import MappingResult

__all__ = ["write_csv", "write_extended_json", "write_hann_hdf5", "CODEBASE"]

CODEBASE = "https://github.com/hmba-toolkit/hmba_toolkit"


def _fmt(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"


def write_csv(result: MappingResult, path: str | os.PathLike, *, verbose: bool = True,
              metadata_path: str | os.PathLike | None = None) -> Path:
    """Write the CSV of a mapping (atomically).

    Parameters
    ----------
    result
        From :func:`~hmba_toolkit.mapping.map_cells`.
    path
        Output file.
    verbose
        Allen's ``verbose_csv``: aggregate probabilities and correlations besides the bootstrapping probabilities
        (hierarchical) or correlations (flat).
    metadata_path
        The extended JSON written beside it, named in the first header line.

    Examples
    --------
    >>> import pandas as pd
    >>> # result.to_csv("mapping.csv"); pd.read_csv("mapping.csv", comment="#")
    """
    tree = result.tree
    frame = result.assignments
    flat = result.algorithm == "correlation"
    cols = []
    for lv in tree.hierarchy:
        cols += [f"{lv}_label", f"{lv}_name"] + ([f"{lv}_alias"] if lv == tree.leaf_level else [])
        if verbose:
            cols += [f"{lv}_bootstrapping_probability", f"{lv}_aggregate_probability", f"{lv}_correlation_coefficient"]
        else:
            cols += [f"{lv}_correlation_coefficient" if flat else f"{lv}_bootstrapping_probability"]
    lines = []
    if metadata_path is not None:
        lines.append(f"# metadata = {Path(metadata_path).name}")
    lines.append(f"# taxonomy hierarchy = {json.dumps(tree.hierarchy)}")
    lines.append(f"# algorithm: '{result.algorithm}'; codebase: {CODEBASE}; version: {__version__}")
    lines.append(",".join(["cell_id", *cols]))
    numeric = [c.endswith(("_probability", "_coefficient")) for c in cols]
    values = [frame[c].to_numpy() for c in cols]
    for i, cell in enumerate(frame.index):
        row = [str(cell)] + [_fmt(v[i]) if num else _csv_text(v[i]) for v, num in zip(values, numeric)]
        lines.append(",".join(row))
    write_text_atomic(path, "\n".join(lines) + "\n")
    return Path(path)


def _csv_text(x) -> str:
    s = str(x)
    return f'"{s}"' if ("," in s or '"' in s) else s


def _clean(x):
    return None if isinstance(x, float) and np.isnan(x) else x


def _run_metadata(result: MappingResult) -> dict:
    """What Allen's extended JSON and HANN file hold besides the results: markers, taxonomy, configuration, log."""
    return {"marker_genes": result.marker_genes, "taxonomy_tree": result.tree.data,
            "n_unmapped_genes": result.n_unmapped_genes, "gene_identifier_mapping": {}, "config": result.config,
            "log": result.log, "metadata": {"module": "hmba_toolkit.mapping", "version": __version__, "codebase": CODEBASE}}


def write_extended_json(result: MappingResult, path: str | os.PathLike) -> Path:
    """Write the extended JSON of a mapping (atomically): per cell and level the assignment, probabilities,
    correlation, runners-up and whether it was voted on, with the markers, taxonomy, configuration and log."""
    tree = result.tree
    frame = result.assignments
    runners = {}
    for (cell, level), g in result.runners_up.sort_values(["cell_id", "level", "rank"]).groupby(["cell_id", "level"], sort=False):
        runners[(cell, level)] = g
    cells = []
    for cell, row in zip(frame.index, frame.to_dict("records")):
        entry = {}
        for lv in tree.hierarchy:
            g = runners.get((cell, lv))
            entry[lv] = {
                "assignment": row[f"{lv}_label"],
                "bootstrapping_probability": _clean(float(row[f"{lv}_bootstrapping_probability"])),
                "aggregate_probability": _clean(float(row[f"{lv}_aggregate_probability"])),
                "avg_correlation": _clean(float(row[f"{lv}_correlation_coefficient"])),
                "runner_up_assignment": [] if g is None else g["label"].tolist(),
                "runner_up_correlation": [] if g is None else [_clean(float(x)) for x in g["correlation"]],
                "runner_up_probability": [] if g is None else [float(x) for x in g["probability"]],
                "directly_assigned": bool(result.directly_assigned.at[cell, lv]),
            }
        entry["cell_id"] = str(cell)
        cells.append(entry)
    out = {**_run_metadata(result), "results": cells}
    write_text_atomic(path, json.dumps(out))
    return Path(path)


def write_hann_hdf5(result: MappingResult, path: str | os.PathLike) -> Path:
    """Write the votes of a HANN mapping as Allen's ``--hdf5_result_path`` file (atomically).

    Datasets as cell_type_mapper 1.7.1 writes them for ``--type_assignment.algorithm hann``: ``cell_identifiers`` and
    ``cluster_identifiers`` (byte strings; clusters sorted, as in Allen's file), ``votes`` (cells x clusters, the
    descents ending in each cluster; unsigned integers) and ``correlation`` (cells x clusters, the mean correlation of
    those descents; 0 without votes), and ``metadata`` (a JSON string: markers, taxonomy, configuration, log). Both
    matrices are dense, as in Allen's file: about 9 bytes per cell and cluster are held in memory while writing.

    Parameters
    ----------
    result
        From :func:`~hmba_toolkit.mapping.map_cells` with ``algorithm="hann"``.
    path
        Output file.

    Examples
    --------
    >>> # write_hann_hdf5(map_cells(query, stats, lookup, algorithm="hann"), "hann.h5")
    """
    if result.leaf_votes is None:
        raise ParameterError(f"write_hann_hdf5 needs a HANN mapping (algorithm='hann'), not {result.algorithm!r}")
    tree = result.tree
    cells = pd.Index(result.assignments.index.astype(str))
    clusters = pd.Index(tree.nodes(tree.leaf_level))
    lv = result.leaf_votes
    r, c = cells.get_indexer(lv["cell_id"].astype(str)), clusters.get_indexer(lv["cluster"])
    votes = np.zeros((len(cells), len(clusters)), dtype=np.min_scalar_type(result.config["bootstrap_iteration"]))
    corr = np.zeros((len(cells), len(clusters)))
    votes[r, c] = lv["votes"].to_numpy()
    corr[r, c] = np.nan_to_num(lv["correlation"].to_numpy())
    text = h5py.string_dtype()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("cell_identifiers", data=np.array([x.encode() for x in cells], dtype=object), dtype=text)
        f.create_dataset("cluster_identifiers", data=np.array([x.encode() for x in clusters], dtype=object), dtype=text)
        f.create_dataset("votes", data=votes)
        f.create_dataset("correlation", data=corr)
        f.create_dataset("metadata", data=json.dumps(_run_metadata(result)).encode(), dtype=h5py.string_dtype("ascii"))
    return Path(path)
