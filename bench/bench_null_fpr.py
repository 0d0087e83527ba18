"""False-positive rate of every null the toolkit offers, against the strength of autocorrelation, beside BrainSMASH.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_null_fpr.py [--geometry points|parcels] [--points 300]
        [--simulations 200] [--surrogates 300] [--strengths 0.001,0.1,0.3,0.5] [--methods ...] [--brainsmash PYTHON]

For each autocorrelation strength (the length scale of an exponential covariance, as a fraction of the median distance
between locations: from 0.001, practically independent values, to 0.5, strongly autocorrelated), ``--simulations``
pairs of independent Gaussian random fields are tested for correlation against each null, and a calibrated null
rejects about 5% of the pairs at alpha = 0.05.

* ``--geometry points``: the fields live on ``--points`` random 2-D points (cells, voxels).
* ``--geometry parcels``: the fields live on ``--fine`` random points and are averaged within ``--points`` Voronoi
  parcels (regions of a parcellation, like the Desikan-Killiany maps of notebook 09); the nulls see the parcel means
  at the parcel centroids.

Nulls: naive permutation, Moran spectral randomisation (singleton and pair), spatial-lag and variogram-matching
surrogates, variogram matching with refinement forced on every surrogate (``refine=True``), and, with
``--brainsmash PYTHON`` (a Python with ``pip install brainsmash``; it is GPL and never a dependency of the toolkit),
BrainSMASH's ``Base`` (all pairs) or ``Sampled`` (above 5,000 locations) on the same maps and distances, in the same
run. Each null draws ``--surrogates`` surrogates of the first map of a pair, and the p-value of the pair's
correlation is ``(1 + #{|r_null| >= |r|}) / (1 + surrogates)``.
Printed: one row per strength, one column per null, with the 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("naive", "moran", "moran_pair", "spatial_lag", "variogram", "variogram_refined")

_PEER = r'''
import json, sys
import numpy as np
data = np.load(sys.argv[1])
X, Y, n, D = data["X"], data["Y"], int(data["n"]), data["D"]
N = X.shape[1]
def pvalue(x, y, S):
    z = lambda a: (a - a.mean(axis=-1, keepdims=True)) / a.std(axis=-1, keepdims=True)
    r = float((z(x) * z(y)).mean())
    rn = (z(S) * z(y)[None, :]).mean(axis=1)
    return (1 + np.sum(np.abs(rn) >= abs(r) - 1e-12)) / (1 + len(rn))
if N <= 5000:
    from brainsmash.mapgen.base import Base
    make = lambda x, i: Base(x, D, seed=i)(n=n, batch_size=min(n, 50))
else:
    from brainsmash.mapgen.sampled import Sampled
    index = np.argsort(D, axis=1)[:, 1:1001]
    Ds = np.take_along_axis(D, index, axis=1)
    make = lambda x, i: Sampled(x, Ds, index, seed=i)(n=n)
print(json.dumps([float(pvalue(X[i], Y[i], make(X[i], i))) for i in range(len(X))]))
'''


def _parcels(n_parcels: int, n_fine: int, rng: np.random.Generator):
    """Random fine points, each assigned to the nearest of ``n_parcels`` random seeds: (fine points, parcel of each,
    parcel centroids)."""
    from scipy.spatial import cKDTree

    fine = rng.random((n_fine, 2))
    seeds = rng.random((n_parcels, 2))
    parcel = cKDTree(seeds).query(fine)[1]
    centroids = pd.DataFrame(fine).groupby(parcel).mean().to_numpy()
    return fine, parcel, centroids


def _fields(geometry: str, args, strength: float, rng_seed: int):
    """(2 * simulations, N) independent fields on the locations the nulls see, and those locations."""
    from hmba_toolkit import nulls

    rng = np.random.default_rng(0)
    if geometry == "points":
        xy = rng.random((args.points, 2))
        return nulls.random_fields(xy, 2 * args.simulations, length_scale=strength, seed=rng_seed), xy
    fine, parcel, centroids = _parcels(args.points, args.fine, rng)
    F = nulls.random_fields(fine, 2 * args.simulations, length_scale=strength, seed=rng_seed)
    means = pd.DataFrame(F.T).groupby(parcel).mean().to_numpy().T  # parcels in order 0..P-1
    return means, centroids


def _brainsmash(python: str, X, Y, n: int, D) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maps.npz"
        np.savez(path, X=X, Y=Y, n=n, D=D)
        out = subprocess.run([python, "-c", _PEER, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    from hmba_toolkit import nulls
    from hmba_toolkit.spatial import Geometry

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--geometry", choices=("points", "parcels"), default="points")
    parser.add_argument("--points", type=int, default=300, help="locations the nulls see (points or parcels)")
    parser.add_argument("--fine", type=int, default=3000, help="fine points under the parcels")
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--surrogates", type=int, default=300)
    parser.add_argument("--strengths", default="0.001,0.05,0.1,0.2,0.3,0.5")
    parser.add_argument("--methods", default=",".join(METHODS), help="the toolkit's nulls to run ('none': only the peer)")
    parser.add_argument("--brainsmash", help="a Python interpreter with brainsmash installed")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m and m != "none"]  # "none": BrainSMASH alone
    rows = []
    for strength in map(float, args.strengths.split(",")):
        t = time.perf_counter()
        fields, xy = _fields(args.geometry, args, strength, rng_seed=1)
        where = Geometry(xy)  # pairs, neighbours and distances computed once for every map
        X, Y = fields[0::2], fields[1::2]
        eig = nulls.moran_eigenvectors(where) if any(m.startswith("moran") for m in methods) else None
        make = {
            "naive": lambda x, i: nulls.naive(x, n_permutations=args.surrogates, seed=i),
            "moran": lambda x, i: nulls.moran(x, n_permutations=args.surrogates, seed=i, eigenvectors=eig),
            "moran_pair": lambda x, i: nulls.moran(x, n_permutations=args.surrogates, seed=i, eigenvectors=eig,
                                                   procedure="pair"),
            "spatial_lag": lambda x, i: nulls.spatial_lag(x, where, n_permutations=args.surrogates, seed=i),
            "variogram": lambda x, i: nulls.variogram(x, where, n_permutations=args.surrogates, seed=i),
            "variogram_refined": lambda x, i: nulls.variogram(x, where, n_permutations=args.surrogates, seed=i,
                                                              refine=True),
        }
        timing = {}
        for method in methods:
            t0 = time.perf_counter()
            with warnings.catch_warnings():  # the rate is what is measured: no warning that it may be high
                warnings.simplefilter("ignore", UserWarning)
                p = [nulls.correlate(X[i], Y[i], make[method](X[i], i)).pvalue for i in range(len(X))]
            timing[method] = time.perf_counter() - t0
            rows.append({"length_scale": strength, "method": method, **_rate(np.array(p))})
            print(f"  {method}: {rows[-1]['rate']:.3f} ({timing[method]:.0f} s)", flush=True)
        if args.brainsmash:
            t0 = time.perf_counter()
            p = _brainsmash(args.brainsmash, X, Y, args.surrogates, where.distances)
            timing["brainsmash"] = time.perf_counter() - t0
            rows.append({"length_scale": strength, "method": "brainsmash", **_rate(np.array(p))})
            print(f"  brainsmash: {rows[-1]['rate']:.3f} ({timing['brainsmash']:.0f} s)", flush=True)
        print(f"length scale {strength}: {time.perf_counter() - t:.0f} s ("
              + ", ".join(f"{m} {s:.0f} s" for m, s in timing.items()) + ")", flush=True)
    table = pd.DataFrame(rows)
    table["fpr"] = [f"{r.rate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" for r in table.itertuples()]
    table = table.pivot(index="length_scale", columns="method", values="fpr")
    what = (f"{args.points} random points" if args.geometry == "points"
            else f"{args.points} Voronoi parcels of {args.fine} points (parcel means at parcel centroids)")
    print(f"\nfalse-positive rate at alpha 0.05, {what}, {args.simulations} pairs of independent maps, "
          f"{args.surrogates} surrogates each")
    print(table[[m for m in methods + (["brainsmash"] if args.brainsmash else [])]].to_string())
    sys.stdout.flush()


def _rate(p: np.ndarray, alpha: float = 0.05) -> dict:
    """The rejection rate at ``alpha`` and its 95% Wilson interval."""
    n, rate = len(p), float((p < alpha).mean())
    z = 1.959963984540054
    centre = (rate + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return {"rate": rate, "ci_low": max(0.0, centre - half), "ci_high": min(1.0, centre + half)}


if __name__ == "__main__":
    main()
