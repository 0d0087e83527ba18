"""Wilcoxon rank-sum: hmba_toolkit.de.wilcoxon vs scanpy.tl.rank_genes_groups in one run.

Data: a synthetic log2(CPM+1) sparse matrix shaped like a 10X subset (cells x genes, ~8%
non-zero, 20 groups). Prints wall times, the ratio, and the largest statistic difference.

    .venv/bin/python bench/bench_wilcoxon.py [n_cells] [n_genes]
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

from hmba_toolkit.de import wilcoxon


def make(n_cells: int, n_genes: int, n_groups: int = 20, density: float = 0.08, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    X = sp.random(n_cells, n_genes, density=density, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.poisson(3, k) + 1).astype(np.float32)
    X.data = np.log2(X.data * 100 + 1).astype(np.float32)
    obs = pd.DataFrame({"group": rng.integers(0, n_groups, n_cells).astype(str)}, index=[f"c{i}" for i in range(n_cells)])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))


def main(n_cells: int = 50_000, n_genes: int = 2_000) -> None:
    a = make(n_cells, n_genes)
    wilcoxon(a[:200].copy(), "group")  # compile the numba kernel outside the timing
    for reference in ("rest", "0"):
        t0 = time.perf_counter()
        ours = wilcoxon(a, "group", reference=reference, log_base=2, tie_correct=True)
        t_ours = time.perf_counter() - t0
        b = a.copy()
        b.uns["log1p"] = {"base": 2}
        t0 = time.perf_counter()
        sc.tl.rank_genes_groups(b, "group", method="wilcoxon", reference=reference, tie_correct=True, n_genes=n_genes)
        t_sc = time.perf_counter() - t0
        ref = sc.get.rank_genes_groups_df(b, None).rename(columns={"names": "gene"})
        m = ours.merge(ref, on=["group", "gene"])
        dz = float(np.max(np.abs(m["statistic"] - m["scores"])))
        print(f"wilcoxon vs {reference:>4}: {n_cells} cells x {n_genes} genes, 20 groups | "
              f"hmba_toolkit {t_ours:.2f} s | scanpy {version('scanpy')} {t_sc:.2f} s | ratio {t_sc / t_ours:.1f}x | max |dz| {dz:.1e}")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:3]))
