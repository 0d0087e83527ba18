"""Cell-type mapping, side by side with Allen's cell_type_mapper 1.7.1 on the same synthetic case and the same cores.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_mapping.py [--allen PYTHON] [--cells N] [--million]

The case has the shape of the one Allen's tool was timed on (44 s for 20,000 cells x 281 types, 1 process): a 4-level
taxonomy (5 classes > 20 subclasses > 70 supertypes > 281 clusters), 60 reference cells per cluster (16,860), 20,000
query cells with 5,400 of the 6,000 reference genes, raw counts with planted markers at every level. Every step runs
for the toolkit (in this process) and, with ``--allen PATH/TO/python`` of a venv holding cell_type_mapper
(git-only, not on PyPI; built beside the repository by the team's oracle install script), for Allen's command-line
tools with ``n_processors 1``: precompute, reference markers, query markers, flat mapping, deterministic and
bootstrapped (0.5 x 100) hierarchical mapping, and HANN (0.5 x 100). Printed:
seconds, ratios, agreement between the two tools' assignments and accuracy against the planted truth.
``--million`` also maps 1,000,000 query cells of a 500-gene panel from an h5ad file in a fresh process and reports
its time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

LEVELS = ["Class", "Subclass", "Supertype", "Cluster"]
FAN = (5, 20, 70, 281)


def make_case(root: Path, n_query: int, seed: int = 7, n_genes: int = 6000, n_query_genes: int = 5400,
              per_cluster: int = 60) -> dict:
    """Reference and query h5ad files with planted markers at every level, and the query's truth."""
    rng = np.random.default_rng(seed)
    n_leaf = FAN[-1]
    parents = [np.arange(n) * FAN[i] // n for i, n in enumerate(FAN[1:])]  # node -> parent at the level above
    base = rng.lognormal(-1.5, 1.2, n_genes)
    log_mean = np.tile(np.log(base), (n_leaf, 1))
    node_of_leaf = [np.arange(n_leaf)]
    for p in reversed(parents):
        node_of_leaf.insert(0, p[node_of_leaf[0]])
    for depth, n_nodes in enumerate(FAN):
        n_markers, effect = (40, 2.5) if depth < 3 else (12, 1.8)
        for node in range(n_nodes):
            genes = rng.choice(n_genes, n_markers, replace=False)
            log_mean[np.ix_(node_of_leaf[depth] == node, genes)] += effect * rng.uniform(0.6, 1.4, n_markers)
    mean = np.exp(log_mean)
    mean /= mean.sum(1, keepdims=True)

    def cells(leaves):
        lib = rng.lognormal(np.log(4000), 0.35, leaves.size)
        lam = mean[leaves] * lib[:, None]
        return sp.csr_matrix(rng.poisson(lam).astype(np.float32))

    names = [[f"{lv}_{i:03d}" for i in range(n)] for lv, n in zip(LEVELS, FAN)]
    genes = [f"ENSG{90000000000 + i:011d}" for i in range(n_genes)]

    def obs(leaves, prefix):
        return pd.DataFrame({lv: np.array(names[d])[node_of_leaf[d][leaves]] for d, lv in enumerate(LEVELS)},
                            index=[f"{prefix}{i}" for i in range(leaves.size)])

    ref_leaves = np.repeat(np.arange(n_leaf), per_cluster)
    ref = ad.AnnData(cells(ref_leaves), obs=obs(ref_leaves, "ref"), var=pd.DataFrame(index=genes))
    ref.write_h5ad(root / "reference.h5ad")
    q_leaves = rng.integers(0, n_leaf, n_query)
    keep = np.sort(rng.choice(n_genes, n_query_genes, replace=False))
    truth = obs(q_leaves, "q")
    query = ad.AnnData(cells(q_leaves)[:, keep], obs=pd.DataFrame(index=truth.index),
                       var=pd.DataFrame(index=np.array(genes)[keep]))
    query.write_h5ad(root / "query.h5ad")
    truth.to_csv(root / "truth.csv")
    return {"reference": root / "reference.h5ad", "query": root / "query.h5ad", "truth": root / "truth.csv"}


def run_ours(case: dict, out: Path) -> dict:
    from hmba_toolkit import mapping

    t = {}
    start = time.perf_counter()
    ref = ad.read_h5ad(case["reference"])
    stats = mapping.precompute_stats(ref, LEVELS, output_path=out / "precomputed_stats.h5")
    t["precompute"] = time.perf_counter() - start
    start = time.perf_counter()
    markers = mapping.reference_markers(stats)
    t["reference_markers"] = time.perf_counter() - start
    start = time.perf_counter()
    lookup = mapping.query_markers(markers, stats.tree, output_path=out / "query_markers.json")
    t["query_markers"] = time.perf_counter() - start
    query = ad.read_h5ad(case["query"])
    for mode, kwargs in MODES.items():
        start = time.perf_counter()
        result = mapping.map_cells(query, stats, lookup, **kwargs)
        if mode == "map_hann":
            mapping.write_hann_hdf5(result, out / f"ours_{mode}.h5")
        t[mode] = time.perf_counter() - start
        result.to_csv(out / f"ours_{mode}.csv", verbose=True)
    return t


MODES = {"map_flat": dict(flatten=True, bootstrap_factor=1.0, bootstrap_iteration=1),
         "map_hier_det": dict(bootstrap_factor=1.0, bootstrap_iteration=1),
         "map_hier_boot": dict(bootstrap_factor=0.5, bootstrap_iteration=100),
         "map_hann": dict(algorithm="hann", bootstrap_factor=0.5, bootstrap_iteration=100)}


def run_allen(python: str, case: dict, out: Path) -> dict:
    """Allen's tools on our reference files (so both map with the same statistics and markers), then on theirs."""
    def timed(args):
        start = time.perf_counter()
        subprocess.run([python, "-m", *args], check=True, capture_output=True, cwd=out)
        return time.perf_counter() - start

    t = {"precompute": timed(["cell_type_mapper.cli.precompute_stats_scrattch", "--h5ad_path", str(case["reference"]),
                              "--hierarchy", json.dumps(LEVELS), "--normalization", "raw", "--output_path",
                              str(out / "allen_stats.h5"), "--n_processors", "1", "--clobber", "True"])}
    t["reference_markers"] = timed(["cell_type_mapper.cli.reference_markers", "--precomputed_path_list",
                                    json.dumps([str(out / "allen_stats.h5")]), "--output_dir", str(out / "allen_ref"),
                                    "--n_processors", "1", "--clobber", "True"])
    t["query_markers"] = timed(["cell_type_mapper.cli.query_markers", "--reference_marker_path_list",
                                json.dumps([str(out / "allen_ref" / "reference_markers.h5")]), "--output_path",
                                str(out / "allen_query_markers.json"), "--n_processors", "1"])
    for mode, kwargs in MODES.items():
        args = ["cell_type_mapper.cli.from_specified_markers", "--query_path", str(case["query"]),
                "--precomputed_stats.path", str(out / "precomputed_stats.h5"),
                "--query_markers.serialized_lookup", str(out / "query_markers.json"),
                *(["--type_assignment.algorithm", "hann", "--hdf5_result_path", str(out / f"allen_{mode}.h5")]
                  if mode == "map_hann" else
                  ["--csv_result_path", str(out / f"allen_{mode}.csv"), "--extended_result_path",
                   str(out / f"allen_{mode}.json"), "--verbose_csv", "True", "--flatten", str(mode == "map_flat")]),
                "--type_assignment.normalization", "raw", "--type_assignment.n_processors", "1",
                "--type_assignment.chunk_size", "5000",
                "--type_assignment.bootstrap_factor", str(kwargs["bootstrap_factor"]),
                "--type_assignment.bootstrap_iteration", str(kwargs["bootstrap_iteration"])]
        t[mode] = timed(args)
    return t


def agreement(out: Path, truth: pd.DataFrame, have_allen: bool) -> pd.DataFrame:
    rows = []
    for mode in MODES:
        if mode == "map_hann":  # Allen's HANN writes votes only: compare the leaf most descents ended in
            top = {who: _hann_top(out / f"{who}_{mode}.h5").loc[truth.index] for who in ("ours", "allen")
                   if who == "ours" or have_allen}
            rows.append({"mode": mode, "level": LEVELS[-1] + " (most votes)",
                         "ours_accuracy": (top["ours"] == truth[LEVELS[-1]]).mean(),
                         "allen_accuracy": (top["allen"] == truth[LEVELS[-1]]).mean() if have_allen else np.nan,
                         "ours_vs_allen": (top["ours"] == top["allen"]).mean() if have_allen else np.nan})
            continue
        ours = pd.read_csv(out / f"ours_{mode}.csv", comment="#").set_index("cell_id").loc[truth.index]
        allen = (pd.read_csv(out / f"allen_{mode}.csv", comment="#").set_index("cell_id").loc[truth.index]
                 if have_allen else None)
        for lv in LEVELS:
            rows.append({"mode": mode, "level": lv,
                         "ours_accuracy": (ours[f"{lv}_label"] == truth[lv]).mean(),
                         "allen_accuracy": (allen[f"{lv}_label"] == truth[lv]).mean() if have_allen else np.nan,
                         "ours_vs_allen": (ours[f"{lv}_label"] == allen[f"{lv}_label"]).mean() if have_allen else np.nan})
    return pd.DataFrame(rows).round(4)


def _hann_top(path: Path) -> pd.Series:
    import h5py

    with h5py.File(path, "r") as f:
        clusters = f["cluster_identifiers"][()].astype(str)
        return pd.Series(clusters[f["votes"][()].argmax(axis=1)], index=f["cell_identifiers"][()].astype(str))


def million(root: Path, n: int = 1_000_000, panel: int = 500) -> dict:
    """Map ``n`` query cells of a ``panel``-gene h5ad file in a fresh process: seconds and peak RSS."""
    stats_path, markers_path = root / "precomputed_stats.h5", root / "query_markers.json"
    from hmba_toolkit import mapping

    stats = mapping.read_stats(stats_path)
    lookup = mapping.read_query_markers(markers_path)
    genes = sorted({g for v in lookup.values() for g in v})[:panel]
    rng = np.random.default_rng(11)
    col = {g: i for i, g in enumerate(stats.genes)}
    mean = np.clip(stats.mean[:, [col[g] for g in genes]], 0, None)
    path = root / "million.h5ad"
    blocks = []
    for a in range(0, n, 100_000):
        leaves = rng.integers(0, len(stats.clusters), min(100_000, n - a))
        lam = np.expm1(mean[leaves] * np.log(2)) * 4000 / 1e6
        blocks.append(sp.csr_matrix(rng.poisson(lam).astype(np.float32)))
    X = sp.vstack(blocks).tocsr()
    X[np.asarray(X.sum(1)).ravel() == 0, 0] = 1
    ad.AnnData(X, obs=pd.DataFrame(index=[f"m{i}" for i in range(n)]), var=pd.DataFrame(index=genes)).write_h5ad(path)
    del X, blocks
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's at fork, VmHWM restarts at exec
    code = ("import time, sys; from hmba_toolkit import mapping; s = mapping.read_stats(sys.argv[1]); "
            "m = mapping.read_query_markers(sys.argv[2]); t = time.perf_counter(); "
            "r = mapping.map_cells(sys.argv[3], s, m, chunk_size=50000); "
            "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print(time.perf_counter() - t, hwm / 1e6, len(r.assignments))")
    out = subprocess.run([sys.executable, "-c", code, str(stats_path), str(markers_path), str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    return {"cells": int(out[2]), "seconds": float(out[0]), "peak_rss_gb": float(out[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allen", default=None, help="python of a venv with cell_type_mapper")
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--million", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        case = make_case(root, args.cells)
        ours = run_ours(case, root)
        allen = run_allen(args.allen, case, root) if args.allen else {}
        table = pd.DataFrame({"toolkit_s": ours, "allen_s": allen or {k: np.nan for k in ours}})
        table["allen_over_toolkit"] = table["allen_s"] / table["toolkit_s"]
        print(f"{args.cells} query cells, {FAN[-1]} clusters, 1 process, OMP threads as set")
        print(table.round(2).to_string())
        truth = pd.read_csv(case["truth"], index_col=0)
        print(agreement(root, truth, bool(args.allen)).to_string(index=False))
        if args.million:
            print("one million query cells (500-gene panel, from a file):", million(root))
    print("peak RSS of this process (GB):", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))


if __name__ == "__main__":
    main()
