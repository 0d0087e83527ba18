"""Variogram-matching surrogates: hmba_toolkit.nulls.variogram vs BrainSMASH (Burt et al. 2020), one run.

Usage (after ``make bench-env``)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=2 .venv/bin/python bench/bench_variogram.py [N ...]

For each N (default 1000 2000): the same autocorrelated map on N random 3-D points, surrogates from
BrainSMASH ``Base`` with ``batch_size`` equal to the number of surrogates (its fastest setting) and
with its defaults (``batch_size=1``, timed on fewer surrogates and reported per surrogate), and from
``hmba_toolkit.nulls.variogram`` with its defaults. Fit quality is scored for both with the same
yardstick, :func:`hmba_toolkit.nulls.variogram_fit` (r2 of each surrogate's smoothed variogram
against the map's over the same pairs). Then N = 50,000 with the sampled variant, in a subprocess
whose peak resident memory is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import numpy as np

N_SURR = 100
N_DEFAULT = 10  # BrainSMASH with batch_size=1 is slow: timed on fewer surrogates, compared per surrogate


def _map(N: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.random((N, 3)) * 100
    # smooth field (sum of random Gaussian bumps) plus noise: autocorrelated, not stationary-perfect
    centres = rng.random((20, 3)) * 100
    amp = rng.standard_normal(20)
    d2 = ((xy[:, None, :] - centres[None]) ** 2).sum(-1)
    x = (amp * np.exp(-d2 / (2 * 15.0**2))).sum(1) + 0.2 * rng.standard_normal(N)
    return xy, x


def _peak_gb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it does not inherit the parent's peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def _large(N: int) -> None:
    from hmba_toolkit import nulls

    xy, x = _map(N, 1)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the per-surrogate generation fit (k, alpha, beta, r2) is only there until issue 17
        warnings.simplefilter("ignore", FutureWarning)
        _, fit = nulls.variogram(x, xy, n_permutations=N_SURR, seed=1, return_fit=True)
    dt = time.perf_counter() - t0
    peak = _peak_gb()
    print(json.dumps({"N": N, "seconds": dt, "r2_median": float(fit["r2"].median()), "peak_gb": peak,
                      "sampled": bool(fit.attrs["sampled"]), "knn": fit.attrs["knn"]}))


def main(sizes: list[int]) -> None:
    from brainsmash.mapgen.base import Base
    from scipy.spatial.distance import cdist

    from hmba_toolkit import nulls

    rows = []
    for N in sizes:
        xy, x = _map(N)
        D = cdist(xy, xy)
        # warm the numba kernels outside the timing
        nulls.variogram(x[:50], xy[:50], n_permutations=2, seed=0)
        t0 = time.perf_counter()
        ours = nulls.variogram(x, xy, n_permutations=N_SURR, seed=1)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen = Base(x, D, seed=1)
        bs_fast = gen(n=N_SURR, batch_size=N_SURR)
        t_bs_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen = Base(x, D, seed=1)
        gen(n=N_DEFAULT)
        t_bs_default = (time.perf_counter() - t0) / N_DEFAULT * N_SURR
        r2_ours = nulls.variogram_fit(x, ours, xy)["r2"]
        r2_bs = nulls.variogram_fit(x, bs_fast, xy)["r2"]
        rows.append((N, t_ours, t_bs_fast, t_bs_default, r2_ours.median(), r2_bs.median(), r2_ours.quantile(0.1),
                     r2_bs.quantile(0.1)))
    print(f"\n{N_SURR} surrogates each (BrainSMASH defaults timed on {N_DEFAULT}, scaled to {N_SURR})")
    print(f"{'N':>6} {'ours s':>8} {'BS batch=n s':>13} {'ratio':>7} {'BS default s':>13} {'ratio':>7} "
          f"{'r2 ours (median / p10)':>24} {'r2 BrainSMASH':>16}")
    for N, a, b, c, m1, m2, q1, q2 in rows:
        print(f"{N:>6} {a:8.2f} {b:13.2f} {b / a:6.1f}x {c:13.1f} {c / a:6.1f}x {m1:13.3f} / {q1:.3f} {m2:9.3f} / {q2:.3f}")
    N = 50_000
    res = subprocess.run([sys.executable, __file__, "--large", str(N)], capture_output=True, text=True, check=True)
    big = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"\nN = {N:,} (sampled={big['sampled']}, knn={big['knn']}): {N_SURR} surrogates in {big['seconds']:.1f} s, "
          f"median r2 {big['r2_median']:.3f}, peak memory {big['peak_gb']:.2f} GB (whole process)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--large":
        _large(int(sys.argv[2]))
    else:
        main([int(a) for a in sys.argv[1:]] or [1000, 2000])
