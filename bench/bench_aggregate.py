"""Pseudobulk aggregation in memory: hmba_toolkit.stream.aggregate vs scanpy.get.aggregate in one run.

Synthetic raw counts shaped like a 10X subset (cells x genes, ~8% non-zero), grouped by
donor x cell type. Both compute per-group sums and expressing-cell counts.

    .venv/bin/python bench/bench_aggregate.py [n_cells] [n_genes] [n_groups]
"""

from __future__ import annotations

import sys
import time

from importlib.metadata import version

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from hmba_toolkit.stream import aggregate


def main(n_cells: int = 200_000, n_genes: int = 5_000, n_types: int = 60) -> None:
    rng = np.random.default_rng(0)
    X = sp.random(n_cells, n_genes, density=0.08, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.poisson(2, k) + 1).astype(np.float32)
    obs = pd.DataFrame({"donor": rng.integers(0, 10, n_cells).astype(str), "cell_type": rng.integers(0, n_types, n_cells).astype(str)},
                       index=[f"c{i}" for i in range(n_cells)])
    a = ad.AnnData(X=X, obs=obs)
    t0 = time.perf_counter()
    ours = aggregate(a, ["donor", "cell_type"])
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = sc.get.aggregate(a, by=["donor", "cell_type"], func=["sum", "mean", "var", "count_nonzero"])
    t_sc = time.perf_counter() - t0
    same = np.allclose(np.sort(ours.layers["sum"].sum(1)), np.sort(np.asarray(theirs.layers["sum"]).sum(1)))
    print(f"aggregate sum+mean+var+count_nonzero: {n_cells} cells x {n_genes} genes, {ours.n_obs} groups | "
          f"hmba_toolkit {t_ours:.2f} s | scanpy {version('scanpy')} {t_sc:.2f} s | ratio {t_sc / t_ours:.1f}x | same sums: {same}")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:4]))
