"""Structure x gene summaries of mouse ISH grids: one sparse product vs the per-structure mask loop.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_unionize.py [grids]

Default: 1,000 grids (the 200 demo grids repeated with noise) x all 843 structures with voxels in
the 200 um annotation (subtree-pooled), from a GridStore. The peer is the loop community scripts
write (cocoframer's and brainrender's examples, and this toolkit's own former
``regions.structure_means``): for every structure, a subtree mask with ``np.isin``, then a
``nanmean`` per grid; it is timed on 20 grids and scaled. Allen's own access code (AllenSDK) has
no local grid summary: its StructureUnionize records are computed server-side, one request per
experiment. The results are compared for equality.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(n_grids: int = 1000) -> None:
    from hmba_toolkit import mouse
    from hmba_toolkit.datasets import fetch_demo_mouse_ish
    from hmba_toolkit.io import read_ish_grid

    root = fetch_demo_mouse_ish()
    sds = pd.read_csv(root / "section_data_sets.csv")
    base = [read_ish_grid(root / "grids" / f"{i}.zip") for i in sds["id"]]
    ann, tree = mouse.load_annotation(), mouse.load_ontology()
    rng = np.random.default_rng(0)
    grids = {f"g{k}": (base[k % len(base)] * rng.lognormal(0, 0.1, base[0].shape)).astype(np.float32) for k in range(n_grids)}
    with tempfile.TemporaryDirectory() as tmp:
        zips = {}
        from hmba_toolkit.io import write_ish_grid

        t0 = time.perf_counter()
        for k, (name, g) in enumerate(grids.items()):
            zips[k + 1] = write_ish_grid(Path(tmp) / f"{k + 1}.zip", g)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        store = mouse.pack_grids(zips, Path(tmp) / "bench.store", max_workers=2)
        t_pack = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = mouse.unionize_genes(store)
        t_ours = time.perf_counter() - t0

    structures = list(ours.index)
    n_loop = min(20, n_grids)
    t0 = time.perf_counter()
    masks = {s: tree.mask(ann, s) for s in structures}
    loop = {}
    for name in list(grids)[:n_loop]:
        g = grids[name]
        loop[name] = [float(np.nanmean(g[m])) if np.isfinite(g[m]).any() else np.nan for m in masks.values()]
    t_loop = (time.perf_counter() - t0) * n_grids / n_loop
    ref = pd.DataFrame(loop, index=structures)
    got = ours.iloc[:, :n_loop].to_numpy()
    np.testing.assert_allclose(got, ref.to_numpy(), rtol=2e-5, equal_nan=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"grids {n_grids} x structures {len(structures)}")
    print(f"  write {n_grids} grid zips: {t_write:.2f} s; pack_grids into a GridStore: {t_pack:.2f} s")
    print(f"  unionize_genes (GridStore, sparse membership): {t_ours:.2f} s")
    print(f"  per-structure mask loop (timed on {n_loop} grids, scaled): {t_loop:.1f} s")
    print(f"  ratio: {t_loop / t_ours:.0f}x; results equal (rtol 2e-5); peak RSS {peak:.2f} GB")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
