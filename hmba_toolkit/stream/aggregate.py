"""One streaming pass over a cells x genes h5ad: per-group sums, sums of squares, expressing cells.

The fused kernel visits every stored value once and updates three group x gene accumulators, so
pseudobulk counts, means, variances and fractions expressing of any grouping (Group x donor x
region, ...) come from one inflate of the file. Memory is the accumulators plus one block of
``chunk_nnz`` values, whatever the file's size. With ``client=`` runs of row blocks become tasks
on a ``dask.distributed`` cluster, added in task order; each worker opens the file by path, so on a
cluster the h5ad must sit on a shared filesystem.

References
----------
Squair JW et al. (2021) Nat Commun 12:5692 and Crowell HL et al. (2020) Nat Commun 11:6077
(pseudobulk sums per donor and cell type); Allen Institute ``abc_atlas_access`` (log2 CPM =
log2(counts / total * 1e6 + 1)); Rocklin M (2015) Dask, Proc. SciPy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numba
import numpy as np
import pandas as pd
from tqdm import tqdm

from .._groups import group_codes
from ..errors import HmbaToolkitError
from ..io.h5ad import read_h5ad_obs_names, read_h5ad_var
from ._blocks import iter_blocks, open_csr, row_blocks, row_scale_log2cpm

__all__ = ["aggregate", "NORMALIZATIONS"]

NORMALIZATIONS = (None, "log2cpm")


@numba.njit(cache=True, nogil=True)
def _accumulate(data, indices, ptr, codes, scale, use_scale, sums, sumsq, nexpr):
    for r in range(ptr.size - 1):
        g = codes[r]
        if g < 0:
            continue
        for k in range(ptr[r], ptr[r + 1]):
            v = np.float64(data[k])
            if use_scale:
                v = np.log2(v * scale[r] + 1.0)
            j = indices[k]
            sums[g, j] += v
            sumsq[g, j] += v * v
            if v != 0.0:
                nexpr[g, j] += 1


def _run_blocks(path, key_layer, blocks, codes_by_block, n_groups, n_var, normalize, progress_total=None, desc=""):
    csr = open_csr(path, key_layer)
    sums = np.zeros((n_groups, n_var))
    sumsq = np.zeros((n_groups, n_var))
    nexpr = np.zeros((n_groups, n_var), dtype=np.int64)
    bar = tqdm(total=progress_total, unit="value", unit_scale=True, desc=desc, disable=progress_total is None, leave=False)
    use = normalize == "log2cpm"

    def work(data, indices, ptr, codes):
        scale = row_scale_log2cpm(data, ptr) if use else np.zeros(0)
        _accumulate(data, indices, ptr, codes, scale, use, sums, sumsq, nexpr)
        bar.update(int(ptr[-1]))

    # h5py inflates the next block (holding the GIL) while the GIL-free kernel adds up this one:
    # the pass costs about max(inflate, compute) instead of their sum
    with bar, ThreadPoolExecutor(1) as pool:
        pending = None
        for (a, b, data, indices, ptr), codes in zip(iter_blocks(csr, blocks), codes_by_block):
            if pending is not None:
                pending.result()
            pending = pool.submit(work, data, indices, ptr, codes)
        if pending is not None:
            pending.result()
    return sums, sumsq, nexpr


def _partial(path, layer, blocks, codes_by_block, n_groups, n_var, normalize):
    """One Dask task: the three accumulators of a run of row blocks."""
    return _run_blocks(path, layer, blocks, codes_by_block, n_groups, n_var, normalize)


def aggregate(
    path: str | os.PathLike,
    obs: pd.DataFrame,
    by: Sequence[str],
    *,
    layer: str | None = None,
    normalize: str | None = None,
    chunk_nnz: int = 20_000_000,
    progress: bool = True,
    client=None,
    n_tasks: int | None = None,
) -> ad.AnnData:
    """Per-group sums, sums of squares and expressing cells of an h5ad, in one streaming pass.

    Parameters
    ----------
    path
        An Allen-style cells x genes h5ad (CSR ``X``, gzip chunks), e.g. ``*-raw.h5ad``.
    obs
        Cell metadata indexed by ``cell_label`` (e.g. ``AbcCache.get_cell_metadata``) holding the
        ``by`` columns. Cells of the file missing from ``obs``, or with a missing ``by`` value,
        are left out (counted in ``uns["cells_left_out"]``).
    by
        Columns defining the groups, e.g. ``["Group", "donor_label"]``.
    layer
        A ``layers/`` matrix instead of ``X``.
    normalize
        None (values as stored: raw counts give pseudobulk counts) or ``"log2cpm"``: each cell's
        raw counts become log2(count / total * 1e6 + 1) on the fly, as Allen's ``-log2`` files.
    chunk_nnz
        Values read per block (memory ~ 12 bytes each plus the accumulators, 3 x groups x genes x 8 bytes).
    progress
        A progress bar over the stored values.
    client
        A ``dask.distributed.Client``, ``"local"`` (a two-worker ``LocalCluster``), or None for one process.
    n_tasks
        Dask tasks (row ranges); default two per worker.

    Returns
    -------
    anndata.AnnData
        One row per group (index ``"a|b"``, ``obs`` = ``by`` columns + ``n_cells``), ``var`` from
        the file; ``X`` = sum; layers ``sum_sq``, ``n_expressing``, ``mean`` and ``variance``
        (sample variance over the group's cells, zeros included).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> path = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> cells = cache.get_cell_metadata("HMBA-10xMultiome-BG-Aligned")  # doctest: +SKIP
    >>> pb = aggregate(path, cells, ["Group", "donor_label"], progress=False)  # doctest: +SKIP

    References
    ----------
    Squair JW et al. (2021) Nat Commun 12:5692 (pseudobulk); Rocklin M (2015) Dask.
    """
    if normalize not in NORMALIZATIONS:
        raise HmbaToolkitError(f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}")
    path = Path(path)
    csr = open_csr(path, layer)
    var = read_h5ad_var(path)
    codes, combos = group_codes(obs, by, read_h5ad_obs_names(path), source=str(path))
    n_groups = len(combos)
    blocks = row_blocks(csr.indptr, chunk_nnz)
    codes_by_block = [codes[a:b] for a, b in blocks]
    if client is None:
        sums, sumsq, nexpr = _run_blocks(path, layer, blocks, codes_by_block, n_groups, csr.n_var, normalize,
                                         progress_total=csr.nnz if progress else None, desc=path.name)
    else:
        sums, sumsq, nexpr = _on_dask(client, path, layer, blocks, codes_by_block, n_groups, csr.n_var, normalize, n_tasks)
    n_cells = np.bincount(codes[codes >= 0], minlength=n_groups)
    obs_out = combos.astype(str)
    obs_out["n_cells"] = n_cells
    obs_out.index = pd.Index(["|".join(r) for r in combos.astype(str).itertuples(index=False, name=None)], name="pseudobulk")
    out = ad.AnnData(X=sums, obs=obs_out, var=var.copy())
    n = n_cells[:, None].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / n
        variance = np.where(n > 1, (sumsq - n * mean**2) / (n - 1), np.nan)
    out.layers["sum_sq"] = sumsq
    out.layers["n_expressing"] = nexpr
    out.layers["mean"] = mean
    out.layers["variance"] = np.maximum(variance, 0, where=~np.isnan(variance), out=variance)
    out.uns["cells_left_out"] = int((codes < 0).sum())
    out.uns["normalize"] = str(normalize)
    return out


def _on_dask(client, path, layer, blocks, codes_by_block, n_groups, n_var, normalize, n_tasks):
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the scale extra is in the locked environment
        raise HmbaToolkitError("client= needs dask and distributed: pip install 'hmba_toolkit[scale]'") from exc
    own = None
    if isinstance(client, str):
        if client != "local":
            raise HmbaToolkitError(f"client must be a distributed.Client, 'local' or None, not {client!r}")
        own = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
        client = own
    try:
        workers = max(1, len(client.scheduler_info()["workers"]))
        n_tasks = n_tasks or 2 * workers
        groups = np.array_split(np.arange(len(blocks)), min(n_tasks, len(blocks)))
        futures = [client.submit(_partial, str(path), layer, [blocks[i] for i in idx], [codes_by_block[i] for i in idx],
                                 n_groups, n_var, normalize, pure=False) for idx in groups]
        # partial results are added in task order (the same sums whichever worker finishes first) and each is
        # released as soon as it is added, instead of stacking all partials into one array before summing
        sums = sumsq = nexpr = None
        for future in futures:
            s, q, n = future.result()
            future.release()
            if sums is None:
                sums, sumsq, nexpr = s, q, n
            else:
                sums += s
                sumsq += q
                nexpr += n
            del s, q, n
    finally:
        if own is not None:
            cluster = own.cluster
            own.close()
            cluster.close()
    return sums, sumsq, nexpr
