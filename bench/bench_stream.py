"""Out-of-core access to an Allen-style h5ad: gene queries and the aggregation pass, side by side.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_stream.py [cells] [genes] [genes_per_cell] [file]

Writes a synthetic Allen-style file (``bench/make_allen_h5ad.py``; default 200,000 cells x 20,000
genes x ~1,500 values per cell) unless ``file`` exists, then runs every method in its own
process (peak RSS per method):

one gene across all cells
  * ``io.read_genes`` with the gene index, and without it (one streaming pass);
  * anndata backed mode, column slicing ``adata[:, [j]].X``;
  * Allen's ``abc_atlas_access.get_gene_data`` approach: backed ``chunked_X(8192)`` then
    ``chunk.toarray()[:, mask]``.

the full aggregation pass (sums, expressing cells; 720 donor x Group groups)
  * ``stream.aggregate``;
  * anndata backed ``chunked_X(50,000)`` + ``scanpy.get.aggregate`` per chunk, summed;
  * the floor: merely inflating ``data`` and ``indices`` (h5py reads, no compute).

Targets (issue 6): gene query with the index >= 100x faster than backed column slicing; the pass
within 1.5x the bare decompression; peak memory under 2 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GENE = "G7"  # a frequently expressed gene of the synthetic file


def _run(method: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--method", method, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def method(name: str, path: Path) -> dict:
    import anndata as ad
    import h5py
    import pandas as pd

    from hmba_toolkit import stream
    from hmba_toolkit.io import read_genes

    t0 = time.perf_counter()
    extra = {}
    if name == "index_build":
        stream.build_gene_index(path, progress=False, overwrite=True)
    elif name == "read_genes_index":
        df = read_genes(path, [GENE], gene_column="gene_symbol", index=True, progress=False)
        extra["checksum"] = float(df[GENE].sum())
    elif name == "read_genes_stream":
        df = read_genes(path, [GENE], gene_column="gene_symbol", index=False, progress=False)
        extra["checksum"] = float(df[GENE].sum())
    elif name == "anndata_backed_column":
        a = ad.read_h5ad(path, backed="r")
        j = int(np.flatnonzero(a.var["gene_symbol"].to_numpy() == GENE)[0])
        col = a[:, [j]].X
        extra["checksum"] = float(col.sum())
    elif name == "allen_get_gene_data":
        a = ad.read_h5ad(path, backed="r")
        mask = a.var["gene_symbol"].to_numpy() == GENE
        out = np.zeros(a.n_obs, dtype=np.float32)
        for chunk, lo, hi in a.chunked_X(8192):
            out[lo:hi] = chunk.toarray()[:, mask][:, 0]
        extra["checksum"] = float(out.sum())
    elif name == "stream_aggregate":
        a = ad.read_h5ad(path, backed="r")
        obs = a.obs.copy()
        res = stream.aggregate(path, ["donor_label", "Group"], obs=obs, progress=False)
        extra["checksum"] = float(res.layers["sum"].sum())
    elif name == "scanpy_backed_aggregate":
        import scanpy as sc

        a = ad.read_h5ad(path, backed="r")
        total = None
        for chunk, lo, hi in a.chunked_X(50_000):
            part = ad.AnnData(chunk, obs=a.obs.iloc[lo:hi].copy())
            agg = sc.get.aggregate(part, by=["donor_label", "Group"], func=["sum", "count_nonzero"])
            s = pd.DataFrame(agg.layers["sum"], index=agg.obs_names)
            total = s if total is None else total.add(s, fill_value=0)
        extra["checksum"] = float(total.to_numpy().sum())
    elif name == "decompress_floor":
        with h5py.File(path, "r") as f:
            d, i = f["X/data"], f["X/indices"]
            step = 20_000_000
            n = 0
            for lo in range(0, d.shape[0], step):
                n += d[lo:lo + step].size + i[lo:lo + step].size
        extra["values"] = n
    else:
        raise SystemExit(f"unknown method {name}")
    seconds = time.perf_counter() - t0
    # VmHWM of this process (ru_maxrss would carry the parent's peak over fork + exec)
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1e6
    return {"method": name, "seconds": seconds, "peak_gb": peak, **extra}


def main(n_cells: int = 200_000, n_genes: int = 20_000, per_cell: int = 1_500, file: str | None = None) -> None:
    sys.path.insert(0, str(HERE))
    from make_allen_h5ad import make

    path = Path(file) if file else Path(f"/tmp/hmba_bench_{n_cells}x{n_genes}x{per_cell}.h5ad")
    if not path.exists():
        t0 = time.perf_counter()
        make(path, n_cells, n_genes, per_cell)
        print(f"wrote {path.name}: {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.0f} s")
    import h5py

    with h5py.File(path, "r") as f:
        nnz = f["X/data"].shape[0]
    print(f"file {path.name}: {n_cells} cells x {n_genes} genes, {nnz / 1e6:.0f} M values, {path.stat().st_size / 1e9:.2f} GB gzip")
    r = {m: _run(m, path) for m in ("decompress_floor", "index_build", "read_genes_index", "read_genes_stream",
                                    "anndata_backed_column", "allen_get_gene_data", "stream_aggregate", "scanpy_backed_aggregate")}
    for k in ("read_genes_stream", "anndata_backed_column", "allen_get_gene_data"):
        assert abs(r[k]["checksum"] - r["read_genes_index"]["checksum"]) <= 1e-3 * abs(r["read_genes_index"]["checksum"]), k
    assert abs(r["stream_aggregate"]["checksum"] - r["scanpy_backed_aggregate"]["checksum"]) <= 1e-6 * r["stream_aggregate"]["checksum"]
    row = "  {:<34} {:>9.3f} s  peak {:>5.2f} GB  {}"
    print("one gene across all cells")
    base = r["read_genes_index"]["seconds"]
    for k in ("read_genes_index", "read_genes_stream", "anndata_backed_column", "allen_get_gene_data"):
        print(row.format(k, r[k]["seconds"], r[k]["peak_gb"], f"{r[k]['seconds'] / base:,.0f}x the index"))
    print(row.format("index_build (one-time)", r["index_build"]["seconds"], r["index_build"]["peak_gb"], ""))
    print("aggregation pass (sum + expressing cells, donor x Group)")
    floor = r["decompress_floor"]["seconds"]
    for k in ("decompress_floor", "stream_aggregate", "scanpy_backed_aggregate"):
        print(row.format(k, r[k]["seconds"], r[k]["peak_gb"], f"{r[k]['seconds'] / floor:.2f}x the floor"))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--method":
        print(json.dumps(method(sys.argv[2], Path(sys.argv[3]))))
    else:
        main(*(int(a) for a in sys.argv[1:4]), *(sys.argv[4:5]))
