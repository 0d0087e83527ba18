"""One gene across every cell, once the gene index exists: the first query of a session and the ones after it.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gene_query.py FILE.h5ad [FILE.h5ad ...]

Each file is an Allen-style CSR h5ad (``bench/make_allen_h5ad.py``: e.g. 200,000 cells x 3,000 genes, and
1,700,000 cells x 2,000 genes, the human 10X file's cell count). The index is built once per file (timed), then
every method runs in its own fresh process:

* ``first_query``: ``io.read_genes(path, [gene])`` in a new process (opening the index, reading the cell labels
  it keeps);
* ``next_queries``: the median of 20 further queries of other genes in that process (the cell labels and the gene
  table are kept in memory between queries);
* ``anndata_backed_column``: anndata backed mode, ``read_h5ad(path, backed="r")[:, [j]].X`` (open included);
* ``allen_get_gene_data``: Allen's ``get_gene_data`` approach, backed ``chunked_X(8192)`` + ``toarray()[:, mask]``
  (open included).

Set ``HMBA_TOOLKIT_INDEX_DIR`` to keep the indexes out of the data home. Prints seconds, peak RSS and ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _run(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--method", method, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _genes(path: Path, n: int) -> list[str]:
    from hmba_toolkit.io import read_h5ad_var

    symbols = read_h5ad_var(path)["gene_symbol"].astype(str).to_numpy()
    return list(symbols[np.linspace(5, len(symbols) - 1, n).astype(int)])


def method(name: str, path: Path) -> dict:
    import anndata as ad

    from hmba_toolkit import stream
    from hmba_toolkit.io import read_genes

    genes = _genes(path, 21)
    extra: dict = {}
    t0 = time.perf_counter()
    if name == "index_build":
        stream.build_gene_index(path, progress=False, overwrite=True)
    elif name == "first_query":
        df = read_genes(path, [genes[0]], gene_column="gene_symbol", index=True, progress=False)
        extra["checksum"] = float(df.iloc[:, 0].sum())
    elif name == "next_queries":
        read_genes(path, [genes[0]], gene_column="gene_symbol", index=True, progress=False)
        times = []
        for gene in genes[1:]:
            t = time.perf_counter()
            df = read_genes(path, [gene], gene_column="gene_symbol", index=True, progress=False)
            times.append(time.perf_counter() - t)
        extra["median"] = float(np.median(times))
        extra["max"] = float(np.max(times))
    elif name == "anndata_backed_column":
        a = ad.read_h5ad(path, backed="r")
        j = int(np.flatnonzero(a.var["gene_symbol"].astype(str).to_numpy() == genes[0])[0])
        extra["checksum"] = float(a[:, [j]].X.sum())
    elif name == "allen_get_gene_data":
        a = ad.read_h5ad(path, backed="r")
        mask = a.var["gene_symbol"].astype(str).to_numpy() == genes[0]
        out = np.zeros(a.n_obs, dtype=np.float32)
        for chunk, lo, hi in a.chunked_X(8192):
            out[lo:hi] = chunk.toarray()[:, mask][:, 0]
        extra["checksum"] = float(out.sum())
    else:
        raise SystemExit(f"unknown method {name}")
    seconds = time.perf_counter() - t0
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1e6
    return {"method": name, "seconds": seconds, "peak_gb": peak, **extra}


def main(files: list[str]) -> None:
    import h5py

    for file in files:
        path = Path(file)
        with h5py.File(path, "r") as f:
            n_obs, n_var = f["X/indptr"].shape[0] - 1, f["var"][f["var"].attrs["_index"]].shape[0]
        print(f"{path.name}: {n_obs:,} cells x {n_var:,} genes, {path.stat().st_size / 1e9:.2f} GB")
        r = {m: _run(m, path) for m in ("index_build", "first_query", "next_queries", "anndata_backed_column", "allen_get_gene_data")}
        for k in ("anndata_backed_column", "allen_get_gene_data"):
            assert abs(r[k]["checksum"] - r["first_query"]["checksum"]) <= 1e-3 * max(1.0, abs(r["first_query"]["checksum"])), k
        row = "  {:<26} {:>9.4f} s  peak {:>5.2f} GB  {}"
        first, nxt = r["first_query"]["seconds"], r["next_queries"]["median"]
        print(row.format("index_build (once)", r["index_build"]["seconds"], r["index_build"]["peak_gb"], ""))
        print(row.format("first_query", first, r["first_query"]["peak_gb"], ""))
        print(row.format("next_queries (median)", nxt, r["next_queries"]["peak_gb"], f"max {r['next_queries']['max']:.4f} s"))
        for k in ("anndata_backed_column", "allen_get_gene_data"):
            s = r[k]["seconds"]
            print(row.format(k, s, r[k]["peak_gb"], f"{s / first:,.0f}x the first query, {s / nxt:,.0f}x the next ones"))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--method":
        print(json.dumps(method(sys.argv[2], Path(sys.argv[3]))))
    else:
        main(sys.argv[1:])
