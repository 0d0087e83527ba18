"""Write a synthetic Allen-style cells x genes h5ad at a chosen scale, offline.

Layout as Allen's writer (``cell_type_mapper`` ``amalgamate_csr_to_x``): CSR ``X``, ``data`` and
``indices`` in 20,000-element chunks with gzip level 4, int64 ``indices``/``indptr`` (as in the
1.68 M-cell human file), float32 raw counts; ``obs`` indexed by ``cell_label`` and ``var`` by
``gene_identifier`` with ``gene_symbol``. Counts follow a per-gene gamma-Poisson with realistic
sparsity (a few thousand genes per cell). Written block by block, so the file can be larger than
memory.

    .venv/bin/python bench/make_allen_h5ad.py OUT.h5ad [cells] [genes] [genes_per_cell]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata.io import write_elem

CHUNK = 20_000


def make(out: Path, n_cells: int = 200_000, n_genes: int = 20_000, per_cell: int = 1_500, seed: int = 0, block: int = 20_000) -> Path:
    rng = np.random.default_rng(seed)
    gene_p = rng.gamma(0.3, 1.0, n_genes)
    gene_p /= gene_p.sum()
    mean_count = rng.gamma(1.0, 1.5, n_genes) + 1
    with h5py.File(out, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        g = f.create_group("X")
        g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        g.attrs["shape"] = np.array([n_cells, n_genes])
        kw = dict(chunks=(CHUNK,), compression="gzip", compression_opts=4, maxshape=(None,))
        data = g.create_dataset("data", shape=(0,), dtype=np.float32, **kw)
        indices = g.create_dataset("indices", shape=(0,), dtype=np.int64, **kw)
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        at = 0
        for a in range(0, n_cells, block):
            b = min(a + block, n_cells)
            k = rng.poisson(per_cell, b - a).clip(1, n_genes)
            rows = np.repeat(np.arange(b - a, dtype=np.int64), k)
            key = np.sort(rows * n_genes + rng.choice(n_genes, size=int(k.sum()), p=gene_p))  # by row, then gene
            key = key[np.concatenate([[True], key[1:] != key[:-1]])]  # np.unique's hash path is 7x slower here
            r, cc = key // n_genes, key % n_genes
            vv = rng.poisson(mean_count[cc]).astype(np.float32) + 1
            indptr[a + 1:b + 1] = at + np.cumsum(np.bincount(r, minlength=b - a))
            data.resize((at + cc.size,))
            indices.resize((at + cc.size,))
            data[at:] = vv
            indices[at:] = cc
            at += cc.size
        g.create_dataset("indptr", data=indptr, compression="gzip", compression_opts=4)
        obs = pd.DataFrame({"donor_label": rng.integers(0, 12, n_cells).astype(str), "Group": rng.integers(0, 60, n_cells).astype(str)},
                           index=pd.Index([f"cell{i:08d}" for i in range(n_cells)], name="cell_label"))
        var = pd.DataFrame({"gene_symbol": [f"G{j}" for j in range(n_genes)]},
                           index=pd.Index([f"ENSG{j:011d}" for j in range(n_genes)], name="gene_identifier"))
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        for k in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            write_elem(f, k, {})
    return out


if __name__ == "__main__":
    t0 = time.perf_counter()
    args = sys.argv[1:]
    p = make(Path(args[0]), *(int(a) for a in args[1:]))
    print(f"wrote {p} ({p.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
