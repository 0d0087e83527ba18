"""``python -m hmba_toolkit.mapping``: map cells with the arguments of Allen's ``from_specified_markers``.

A script written for ``python -m cell_type_mapper.cli.from_specified_markers`` runs unchanged with the module name
changed: the same argument names (``--precomputed_stats.path``, ``--type_assignment.bootstrap_factor``, ...), booleans
spelled ``True``/``False``, and the same CSV and extended JSON outputs.

Example::

    python -m hmba_toolkit.mapping --query_path query.h5ad \
        --precomputed_stats.path precomputed_stats.HMBA.BG.2025-08-04.h5 \
        --query_markers.serialized_lookup query_markers.HMBA.BG.2025-08-04.json \
        --type_assignment.normalization raw --csv_result_path mapping.csv --extended_result_path mapping.json
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import HmbaToolkitError, ParameterError

#: Allen's options that change nothing here (resources and logging); accepted so that scripts keep working.
IGNORED = ("--tmp_dir", "--max_gb", "--cloud_safe", "--log_level", "--log_path", "--verbose_stdout",
           "--type_assignment.log_level", "--precomputed_stats.log_level", "--query_markers.log_level",
           "--query_markers.collapse_markers", "--obsm_clobber")


def _bool(text: str) -> bool:
    if text in ("True", "true", "1"):
        return True
    if text in ("False", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, not {text!r}")


def _none_or(kind):
    def parse(text):
        return None if text in ("None", "null", "") else kind(text)
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hmba_toolkit.mapping",
                                description="Map query cells onto a taxonomy (arguments of Allen's from_specified_markers).")
    p.add_argument("--query_path", required=True, help="query h5ad (cells x genes)")
    p.add_argument("--precomputed_stats.path", dest="stats_path", required=True)
    p.add_argument("--query_markers.serialized_lookup", dest="markers_path", required=True)
    p.add_argument("--csv_result_path", default=None)
    p.add_argument("--extended_result_path", default=None)
    p.add_argument("--hdf5_result_path", default=None, help="HANN only: the votes and correlations, as Allen's file")
    p.add_argument("--flatten", type=_bool, default=False)
    p.add_argument("--drop_level", type=_none_or(str), default=None)
    p.add_argument("--verbose_csv", type=_bool, default=False)
    p.add_argument("--query_gene_id_col", type=_none_or(str), default=None)
    p.add_argument("--type_assignment.normalization", dest="normalization", default="raw")
    p.add_argument("--type_assignment.bootstrap_factor", dest="bootstrap_factor", type=float, default=0.5)
    p.add_argument("--type_assignment.bootstrap_iteration", dest="bootstrap_iteration", type=int, default=100)
    p.add_argument("--type_assignment.rng_seed", dest="seed", type=int, default=11235813)
    p.add_argument("--type_assignment.n_processors", dest="n_processors", type=int, default=1)
    p.add_argument("--type_assignment.chunk_size", dest="chunk_size", type=int, default=10_000)
    p.add_argument("--type_assignment.n_runners_up", dest="n_runners_up", type=int, default=5)
    p.add_argument("--type_assignment.min_markers", dest="min_markers", type=int, default=10)
    p.add_argument("--type_assignment.algorithm", dest="algorithm", default="hierarchical")
    for name in IGNORED:
        p.add_argument(name, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from . import map_cells, read_query_markers, read_stats, write_hann_hdf5

    args = build_parser().parse_args(argv)
    if args.csv_result_path is None and args.extended_result_path is None and args.hdf5_result_path is None:
        print("error: give --csv_result_path, --extended_result_path and/or --hdf5_result_path", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        if args.algorithm not in ("hierarchical", "hann"):
            raise ParameterError(f"--type_assignment.algorithm {args.algorithm!r} is not supported: 'hierarchical' "
                                 f"(with --flatten True for correlation mapping) or 'hann'")
        if args.hdf5_result_path is not None and args.algorithm != "hann":
            raise ParameterError("--hdf5_result_path holds HANN votes here: give it with --type_assignment.algorithm "
                                 "hann (use --extended_result_path for the hierarchical results)")
        result = map_cells(args.query_path, read_stats(args.stats_path), read_query_markers(args.markers_path),
                           normalization=args.normalization, flatten=args.flatten, algorithm=args.algorithm,
                           drop_level=args.drop_level,
                           bootstrap_factor=args.bootstrap_factor, bootstrap_iteration=args.bootstrap_iteration,
                           seed=args.seed, n_runners_up=args.n_runners_up, min_markers=args.min_markers,
                           chunk_size=args.chunk_size, query_gene_id_col=args.query_gene_id_col)
        result.config.update({"query_path": args.query_path, "precomputed_stats": {"path": args.stats_path},
                              "query_markers": {"serialized_lookup": args.markers_path},
                              "csv_result_path": args.csv_result_path, "extended_result_path": args.extended_result_path,
                              "hdf5_result_path": args.hdf5_result_path,
                              "verbose_csv": args.verbose_csv})
        if args.extended_result_path:
            result.to_extended_json(args.extended_result_path)
        if args.hdf5_result_path:
            write_hann_hdf5(result, args.hdf5_result_path)
        if args.csv_result_path:
            result.to_csv(args.csv_result_path, verbose=args.verbose_csv, metadata_path=args.extended_result_path)
    except HmbaToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"mapped {len(result.assignments)} cells in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
