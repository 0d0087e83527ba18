"""Neighbourhood enrichment of cell types, side by side with squidpy's ``nhood_enrichment`` on the same graph.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_neighborhood.py [--squidpy PYTHON] [--cells N] [--large N]

The case: N cells in sections of ~50,000 cells (3 mm x 3 mm, cell density of a MERSCOPE section), 24 cell types laid
out like the striatum (striosome patches of D1/D2 striosome MSNs in a matrix of D1/D2 matrix MSNs, interneurons
scattered, glia enriched at a white-matter border), a 6-nearest-neighbour graph within each section. The toolkit
(this process) computes exact z-scores; squidpy 1.8 (``--squidpy PATH/TO/python`` of a venv with squidpy; it is not a
dependency of the toolkit) is given the very same graph in ``obsp["spatial_connectivities"]`` and the same labels,
and estimates its z-scores with 1,000 permutations, ``n_jobs=1`` (it crashes with two on this machine). Printed:
seconds of each, the ratio, and the Pearson correlation of the two z-scores over type pairs. ``--large N`` also runs
the toolkit alone on N cells (5,400,000: the human spatial set) in a fresh process and reports time and peak memory,
then ``co_occurrence`` of the same cells within 25, 50 and 100 um (coordinates are in mm).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

N_TYPES = 24
PER_SECTION = 50_000


def make_cells(n: int, seed: int = 0) -> pd.DataFrame:
    """Cells in square sections with a striosome/matrix layout and a glia-rich border."""
    rng = np.random.default_rng(seed)
    n_sections = max(1, n // PER_SECTION)
    section = np.repeat(np.arange(n_sections), -(-n // n_sections))[:n]
    x, y = rng.random(n) * 3.0, rng.random(n) * 3.0
    centres = rng.random((n_sections, 12, 2)) * 3.0  # 12 striosome patches per section, radius 0.25 mm
    d = np.sqrt(((np.stack([x, y], 1)[:, None, :] - centres[section]) ** 2).sum(-1)).min(1)
    striosome = d < 0.25
    border = x > 2.7
    kind = rng.random(n)
    types = np.where(striosome, np.where(kind < 0.5, 0, 1), np.where(kind < 0.45, 2, 3))  # MSN types
    inter = rng.random(n) < 0.05
    types = np.where(inter, 4 + rng.integers(0, 8, n), types)  # 8 interneuron types, scattered
    glia = rng.random(n) < np.where(border, 0.6, 0.15)
    types = np.where(glia, 12 + rng.integers(0, 12, n), types)  # 12 glial/other types, denser at the border
    names = np.array([f"T{t:02d}" for t in range(N_TYPES)])
    return pd.DataFrame({"x": x, "y": y, "Group": names[types], "section": [f"S{s:03d}" for s in section]},
                        index=[f"c{i}" for i in range(n)])


SQUIDPY_RUN = """
import sys, time, numpy as np, pandas as pd, scipy.sparse as sp, anndata as ad, squidpy as sq
d = np.load(sys.argv[1], allow_pickle=True)
A = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
adata = ad.AnnData(obs=pd.DataFrame({"Group": pd.Categorical(d["labels"])}, index=[str(i) for i in range(A.shape[0])]))
adata.obsp["spatial_connectivities"] = A
adata.uns["spatial_neighbors"] = {"connectivities_key": "spatial_connectivities", "distances_key": "spatial_distances"}
t = time.perf_counter()
z, counts = sq.gr.nhood_enrichment(adata, cluster_key="Group", n_perms=1000, seed=0, n_jobs=1, copy=True, show_progress_bar=False)
seconds = time.perf_counter() - t
np.savez(sys.argv[2], z=z, counts=counts, categories=np.asarray(adata.obs["Group"].cat.categories), seconds=seconds)
"""


def run_squidpy(python: str, A: sp.csr_matrix, labels: np.ndarray, workdir: Path) -> dict:
    inp, out = workdir / "graph.npz", workdir / "squidpy.npz"
    np.savez(inp, data=A.data, indices=A.indices, indptr=A.indptr, shape=np.array(A.shape), labels=labels)
    script = workdir / "run_squidpy.py"
    script.write_text(SQUIDPY_RUN)
    subprocess.run([python, str(script), str(inp), str(out)], check=True, capture_output=True, text=True)
    r = np.load(out, allow_pickle=True)
    z = pd.DataFrame(r["z"], index=r["categories"], columns=r["categories"])
    return {"seconds": float(r["seconds"]), "z": z}


def run_large(n: int) -> dict:
    code = ("import sys, time, warnings; sys.path.insert(0, 'bench'); from bench_neighborhood import make_cells; "
            "from hmba_toolkit import spatial; cells = make_cells(int(sys.argv[1])); t = time.perf_counter(); "
            "res = spatial.neighborhood_enrichment(cells, 'Group', section_key='section'); s = time.perf_counter() - t; "
            "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "t = time.perf_counter(); co = spatial.co_occurrence(cells, 'Group', section_key='section', "
            "distances=(0.025, 0.05, 0.1)); c = time.perf_counter() - t; "
            "hwm2 = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print(s, hwm / 1e6, res.attrs['n_sections'], c, hwm2 / 1e6, int(co['n_pairs'].sum()))")
    out = subprocess.run([sys.executable, "-c", code, str(n)], check=True, capture_output=True, text=True).stdout.split()
    return {"cells": n, "seconds": float(out[0]), "peak_rss_gb": float(out[1]), "sections": int(out[2]),
            "co_seconds": float(out[3]), "co_peak_rss_gb": float(out[4]), "co_pairs": int(out[5])}


def main() -> None:
    from hmba_toolkit import spatial

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squidpy", default=None, help="python of a venv with squidpy")
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--large", type=int, default=0, help="also time N cells alone (5400000: the human spatial set)")
    args = parser.parse_args()
    cells = make_cells(args.cells)
    spatial.neighborhood_enrichment(cells.iloc[:2000], "Group")  # compile the numba kernels outside the timing
    t = time.perf_counter()
    graph = spatial.neighborhood_graph(cells, section_key="section")
    # squidpy relabels over all cells: the toolkit does the same (no section_key) on the graph built within sections
    res = spatial.neighborhood_enrichment(cells, "Group", graph=graph)
    ours = time.perf_counter() - t
    print(f"toolkit: {args.cells:,} cells, {res.attrs['n_edges']:,} edges, {N_TYPES} types: {ours:.2f} s (graph included)")
    if args.squidpy:
        with tempfile.TemporaryDirectory() as tmp:
            sq = run_squidpy(args.squidpy, graph, cells["Group"].to_numpy(), Path(tmp))
        ours_z = res.pivot(index="cluster_a", columns="cluster_b", values="zscore").loc[sq["z"].index, sq["z"].columns]
        ok = np.isfinite(sq["z"].to_numpy()) & np.isfinite(ours_z.to_numpy())
        r = np.corrcoef(sq["z"].to_numpy()[ok], ours_z.to_numpy()[ok])[0, 1]
        print(f"squidpy nhood_enrichment (1,000 permutations, n_jobs=1): {sq['seconds']:.2f} s; "
              f"toolkit {sq['seconds'] / ours:.1f}x faster; z-scores Pearson r = {r:.4f} over {int(ok.sum())} type pairs")
    if args.large:
        big = run_large(args.large)
        print(f"toolkit alone: {big['cells']:,} cells in {big['sections']} sections: {big['seconds']:.1f} s, "
              f"peak memory {big['peak_rss_gb']:.2f} GB")
        print(f"co_occurrence within 25/50/100 um on the same cells: {big['co_seconds']:.1f} s, "
              f"{big['co_pairs']:,} ordered pairs counted, peak memory (the whole run) {big['co_peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
