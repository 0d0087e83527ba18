"""``python -m hmba_toolkit.mapping.pipeline``: reference statistics and query markers from a labelled h5ad in one go.

Example::

    python -m hmba_toolkit.mapping.pipeline --h5ad_path reference.h5ad \
        --hierarchy '["Class", "Subclass", "Cluster"]' --normalization raw --output_dir mapping_files

writes ``mapping_files/precomputed_stats.h5``, ``reference_markers.h5`` and ``query_markers.json`` (Allen's
layouts), ready for ``python -m hmba_toolkit.mapping`` or Allen's own mapper. ``--query_path query.h5ad`` chooses the
query markers among the genes that query measures (a spatial panel, a targeted library).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import anndata as ad

from ..errors import DataFormatError, HmbaToolkitError, MissingFileError
from .assign import measured_genes
from .markers import query_markers, reference_markers
from .stats import precompute_stats

__all__ = ["build_reference"]


def build_reference(h5ad_path, hierarchy, output_dir, *, normalization: str = "raw", n_per_utility: int = 30,
                    query_genes=None) -> dict:
    """Statistics, reference markers and query markers of a labelled reference h5ad, written to ``output_dir``.

    Parameters
    ----------
    h5ad_path
        Reference cells x genes with the taxonomy levels in ``obs``.
    hierarchy
        The level columns from the root down.
    output_dir
        Receives ``precomputed_stats.h5``, ``reference_markers.h5`` and ``query_markers.json``.
    normalization
        ``"raw"`` or ``"log2CPM"``.
    n_per_utility
        Query markers per (pair of leaves, direction).
    query_genes
        Restrict the query markers to these genes (a panel), or an h5ad path: the genes (``var_names``) of a query,
        matched to the reference as :func:`~hmba_toolkit.mapping.measured_genes` matches them.

    Returns
    -------
    dict
        The paths written and the seconds each step took.

    Examples
    --------
    >>> # build_reference("reference.h5ad", ["Class", "Subclass", "Cluster"], "mapping_files")
    """
    path = Path(h5ad_path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such reference h5ad")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t = time.perf_counter()
    try:
        obs = ad.read_h5ad(path, backed="r").obs
    except (OSError, KeyError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot be read as an h5ad ({exc})") from None
    stats = precompute_stats(path, hierarchy, obs=obs, normalization=normalization,
                             output_path=out / "precomputed_stats.h5")
    times["precompute"] = time.perf_counter() - t
    t = time.perf_counter()
    markers = reference_markers(stats, output_path=out / "reference_markers.h5")
    times["reference_markers"] = time.perf_counter() - t
    t = time.perf_counter()
    if isinstance(query_genes, (str, os.PathLike)):
        query_genes = measured_genes(query_genes, stats)
    query_markers(markers, stats.tree, n_per_utility=n_per_utility, genes=query_genes,
                  output_path=out / "query_markers.json")
    times["query_markers"] = time.perf_counter() - t
    return {"precomputed_stats": out / "precomputed_stats.h5", "reference_markers": out / "reference_markers.h5",
            "query_markers": out / "query_markers.json", "seconds": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hmba_toolkit.mapping.pipeline",
                                description="precomputed_stats.h5 and query_markers.json from a labelled reference h5ad")
    p.add_argument("--h5ad_path", required=True)
    p.add_argument("--hierarchy", required=True, help="JSON list of the level columns, root first")
    p.add_argument("--normalization", default="raw")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--n_per_utility", type=int, default=30)
    p.add_argument("--query_path", default=None,
                   help="h5ad of a query measuring few genes (a panel): markers are chosen among its genes")
    args = p.parse_args(argv)
    try:
        try:
            hierarchy = json.loads(args.hierarchy)
        except json.JSONDecodeError:
            hierarchy = args.hierarchy
        done = build_reference(args.h5ad_path, hierarchy, args.output_dir, normalization=args.normalization,
                               n_per_utility=args.n_per_utility, query_genes=args.query_path)
    except HmbaToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for step, sec in done["seconds"].items():
        print(f"{step}: {sec:.2f} s")
    print(f"wrote {done['precomputed_stats']}, {done['reference_markers']}, {done['query_markers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
