"""Spatial-lag (SAR) surrogates: the dense model vs the sparse conjugate-gradient path, one run.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_spatial_lag.py [N_compare] [N_large] [surrogates]

Defaults: a Gaussian random field on 2,500 random 2-D points (exponential covariance), 100
surrogates with the dense path (all pairs, dense LU, ML fit on every point) and the sparse path
(pairs within 6 d0, conjugate gradients, ML fit on 1,500 points), each scored with
``nulls.variogram_fit``; then the sparse path alone on 30,000 random 3-D points, where the dense
one would need a 7 GB distance matrix and an O(N^3) factorisation. Peak memory is the process's
VmHWM. BrainSMASH has no SAR generator; its variogram method is in bench_variogram.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy import linalg


def _peak_gb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1e6


def main(n_compare: int = 2500, n_large: int = 30000, n: int = 100) -> None:
    from hmba_toolkit import nulls

    rng = np.random.default_rng(0)
    xy = rng.random((n_compare, 2)) * 10
    D = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    x = linalg.cholesky(np.exp(-D / 1.5) + 1e-8 * np.eye(n_compare), lower=True) @ rng.standard_normal(n_compare)
    res = {}
    for method in ("dense", "sparse"):
        t0 = time.perf_counter()
        s = nulls.spatial_lag(x, xy, n_permutations=n, seed=0, method=method)
        res[method] = (time.perf_counter() - t0, float(nulls.variogram_fit(x, s, xy)["r2"].median()))
    print(f"N = {n_compare} (2-D), {n} surrogates")
    for method, (sec, r2) in res.items():
        print(f"  {method:6s} {sec:7.2f} s   median variogram r2 {r2:.3f}")
    print(f"  sparse is {res['dense'][0] / res['sparse'][0]:.1f}x faster")
    big = rng.random((n_large, 3)) * 20
    xb = np.sin(big[:, 0] / 3) + np.cos(big[:, 1] / 4) + 0.3 * rng.standard_normal(n_large)
    t0 = time.perf_counter()
    s = nulls.spatial_lag(xb, big, n_permutations=n, seed=0)
    print(f"N = {n_large} (3-D), {n} surrogates, sparse: {time.perf_counter() - t0:.1f} s, peak {_peak_gb():.2f} GB (process)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
