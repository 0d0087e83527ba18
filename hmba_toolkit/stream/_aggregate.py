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

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numba
import numpy as np
import pandas as pd
from tqdm import tqdm

from .._checks import check_layer
from .._groups import group_codes
from ..errors import ParameterError, ParameterTypeError
from ..io.h5ad import read_h5ad_obs_names, read_h5ad_var
from .._compat import renamed_parameters, warn, warn_renamed
from .._log2cpm import CPM, LOG2CPM, LOG2CPM_LABEL, NORMALIZATIONS, check_normalization, log2_per_total_jit, row_totals
from ..io._csr_blocks import iter_blocks, memory_blocks, open_csr, row_blocks

__all__ = ["aggregate", "NORMALIZATIONS"]


@numba.njit(cache=True, nogil=True)
def _accumulate(data, indices, ptr, codes, totals, use_totals, sums, sumsq, nexpr):
    for r in range(ptr.size - 1):
        g = codes[r]
        if g < 0:
            continue
        for k in range(ptr[r], ptr[r + 1]):
            v = np.float64(data[k])
            if use_totals:
                v = log2_per_total_jit(v, totals[r], CPM)
            j = indices[k]
            sums[g, j] += v
            sumsq[g, j] += v * v
            if v != 0.0:
                nexpr[g, j] += 1


def _run_blocks(path, key_layer, blocks, codes_by_block, n_groups, n_var, normalize, progress_total=None, desc="",
                source=None):
    """Accumulate the blocks of a file (``path``) or of an in-memory ``source = (block iterator, codes)``."""
    sums = np.zeros((n_groups, n_var))
    sumsq = np.zeros((n_groups, n_var))
    nexpr = np.zeros((n_groups, n_var), dtype=np.int64)
    bar = tqdm(total=progress_total, unit="value", unit_scale=True, desc=desc, disable=progress_total is None, leave=False)
    use = normalize == LOG2CPM

    def work(data, indices, ptr, codes):
        totals = row_totals(data, ptr) if use else np.zeros(0)
        _accumulate(data, indices, ptr, codes, totals, use, sums, sumsq, nexpr)
        bar.update(int(ptr[-1]))

    # h5py inflates the next block (holding the GIL) while the GIL-free kernel adds up this one:
    # the pass costs about max(inflate, compute) instead of their sum
    with bar, ThreadPoolExecutor(1) as pool:
        pending = None
        if source is None:
            pairs = zip(iter_blocks(open_csr(path, key_layer), blocks), codes_by_block)
        else:
            pairs = ((blk, source[1][blk[0]:blk[1]]) for blk in source[0])
        for (a, b, data, indices, ptr), codes in pairs:
            if pending is not None:
                pending.result()
            pending = pool.submit(work, data, indices, ptr, codes)
        if pending is not None:
            pending.result()
    return sums, sumsq, nexpr


def _partial(path, layer, blocks, codes_by_block, n_groups, n_var, normalize):
    """One Dask task: the three accumulators of a run of row blocks."""
    return _run_blocks(path, layer, blocks, codes_by_block, n_groups, n_var, normalize)


def _accepts_old_order(func):
    """``aggregate(path, obs, by)`` (the order before 0.2) keeps working for one release, with a FutureWarning."""

    @functools.wraps(func)
    def wrapper(data, groupby=None, *args, **kwargs):
        if isinstance(groupby, pd.DataFrame):
            if "obs" in kwargs or len(args) != 1:
                raise ParameterTypeError("aggregate(data, groupby, *, obs=...): pass the cell table as obs=")
            warn_renamed("aggregate(path, obs, by)", "aggregate(path, groupby, obs=obs)", "hmba_toolkit.stream.aggregate")
            kwargs["obs"], groupby, args = groupby, args[0], ()
        if args:
            raise ParameterTypeError("aggregate takes data and groupby positionally; the rest by keyword")
        return func(data, groupby, **kwargs)

    return wrapper


@_accepts_old_order
@renamed_parameters(by="groupby", normalize="normalization")
def aggregate(
    data: ad.AnnData | str | os.PathLike,
    groupby: str | Sequence[str],
    *,
    obs: pd.DataFrame | None = None,
    layer: str | None = None,
    normalization: str | None = None,
    chunk_nnz: int = 20_000_000,
    progress: bool = True,
    client=None,
    n_tasks: int | None = None,
) -> ad.AnnData:
    """Sum, mean, variance and expressing cells of every gene per group of cells, in one pass.

    The toolkit's one aggregation: pseudobulk counts for DE, mean profiles for cross-species comparison, and
    summaries of files larger than memory all come from here, with scanpy's ``get.aggregate`` layout.

    Parameters
    ----------
    data
        An AnnData in memory (``X`` or ``layer``), or the path of an Allen-style cells x genes h5ad (CSR ``X``, gzip
        chunks, e.g. ``*-raw.h5ad``) read block by block, never whole. A backed AnnData is read from its file.
    groupby
        ``obs`` column(s) defining the groups, e.g. ``["Group", "donor_label"]``.
    obs
        Cell metadata indexed by ``cell_label`` holding the ``groupby`` columns; required for a path, defaults to
        ``data.obs`` for an AnnData. Cells missing from it, or with a missing ``groupby`` value, are left out
        (counted in ``uns["cells_left_out"]``).
    layer
        A layer instead of ``X``.
    normalization
        None or ``"raw"`` (values as stored: raw counts give pseudobulk counts) or ``"log2cpm"``: each cell's raw
        counts become log2(count / total * 1e6 + 1) on the fly, as Allen's ``-log2`` files.
    chunk_nnz
        Values read per block (memory ~ 12 bytes each plus the accumulators, 3 x groups x genes x 8 bytes).
    progress
        A progress bar over the stored values (files only).
    client
        A ``dask.distributed.Client``, ``"local"`` (a two-worker ``LocalCluster``), or None for one process (files only).
    n_tasks
        Dask tasks (row ranges); default two per worker.

    Returns
    -------
    anndata.AnnData
        One row per group (index ``"a|b"``; ``obs`` = the ``groupby`` columns and ``n_obs_aggregated``), ``var`` from
        the data. Layers (scanpy's names): ``sum``, ``mean``, ``var`` (sample variance over the group's cells,
        zeros included; NaN for one cell) and ``count_nonzero`` (cells with a non-zero value). ``X`` is ``sum``.
        ``uns``: ``cells_left_out``, ``normalization`` (``"log2(CPM+1)"``, or the input's own label).

    Examples
    --------
    >>> from hmba_toolkit.io import AbcCache
    >>> cache = AbcCache.from_demo()
    >>> path = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")
    >>> cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
    >>> pb = aggregate(path, ["Group", "donor_label"], obs=cells, progress=False)
    >>> sorted(pb.layers), int(pb.obs["n_obs_aggregated"].sum()) == int(cells["Group"].notna().sum())
    (['count_nonzero', 'mean', 'sum', 'var'], True)
    >>> raw = cache.read_expression("HMBA-10xMultiome-BG-Aligned", normalization="raw", obs=["Group", "donor_label"])
    >>> bool((aggregate(raw, ["Group", "donor_label"]).layers["sum"] == pb.layers["sum"]).all())
    True

    References
    ----------
    Squair JW et al. (2021) Nat Commun 12:5692 (pseudobulk); Wolf FA et al. (2018) Genome Biol 19:15 (scanpy's
    ``get.aggregate`` layout); Rocklin M (2015) Dask.
    """
    normalize = check_normalization(normalization)
    groupby = [groupby] if isinstance(groupby, str) else list(groupby)
    if isinstance(data, ad.AnnData) and data.isbacked and layer is None:
        obs = data.obs if obs is None else obs
        data = data.filename
    if isinstance(data, ad.AnnData):
        if client is not None:
            raise ParameterError("client= distributes the pass over a file: pass the h5ad path, not an AnnData in memory")
        check_layer(data, layer, "data")
        obs = data.obs if obs is None else obs
        codes, combos = group_codes(obs, groupby, data.obs_names if obs is not data.obs else None, source="aggregate")
        n_groups, n_var = len(combos), data.n_vars
        X = data.layers[layer] if layer else data.X
        sums, sumsq, nexpr = _run_blocks(None, None, None, None, n_groups, n_var, normalize,
                                         source=(memory_blocks(X, chunk_nnz), codes))
        var = data.var
        stored = data.uns.get("normalization", "as stored")
    else:
        if obs is None:
            raise ParameterError("aggregate(path, groupby, obs=...): a file needs the cell table (indexed by cell_label) as obs=")
        path = Path(data)
        csr = open_csr(path, layer)
        var = read_h5ad_var(path)
        codes, combos = group_codes(obs, groupby, read_h5ad_obs_names(path), source=str(path))
        stored = "as stored"
        n_groups, n_var = len(combos), csr.n_var
        blocks = row_blocks(csr.indptr, chunk_nnz)
        codes_by_block = [codes[a:b] for a, b in blocks]
        if client is None:
            sums, sumsq, nexpr = _run_blocks(path, layer, blocks, codes_by_block, n_groups, n_var, normalize,
                                             progress_total=csr.nnz if progress else None, desc=path.name)
        else:
            sums, sumsq, nexpr = _on_dask(client, path, layer, blocks, codes_by_block, n_groups, n_var, normalize, n_tasks)
    n_cells = np.bincount(codes[codes >= 0], minlength=n_groups)
    obs_out = combos.astype(str)
    obs_out["n_obs_aggregated"] = n_cells
    obs_out.index = pd.Index(["|".join(r) for r in combos.astype(str).itertuples(index=False, name=None)], name="group")
    n = n_cells[:, None].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / n
        variance = np.where(n > 1, (sumsq - n * mean**2) / (n - 1), np.nan)
    np.maximum(variance, 0, where=~np.isnan(variance), out=variance)  # rounding can give -1e-17
    if np.isnan(sums).any():
        bad = np.isnan(sums).any(axis=0)
        warn(f"aggregate: the data hold NaN values: the sums of {int(bad.sum())} genes (e.g. {list(var.index[bad][:3])}) are NaN")
    out = ad.AnnData(X=sums, obs=obs_out, var=var.copy())
    out.layers["sum"] = sums
    out.layers["mean"] = mean
    out.layers["var"] = variance
    out.layers["count_nonzero"] = nexpr
    out.uns["cells_left_out"] = int((codes < 0).sum())
    # sums of normalised values are not counts: the label travels so that log2_cpm refuses to normalise them again
    out.uns["normalization"] = LOG2CPM_LABEL if normalize else stored
    return out


def _on_dask(client, path, layer, blocks, codes_by_block, n_groups, n_var, normalize, n_tasks):
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the scale extra is in the locked environment
        raise ParameterError("client= needs dask and distributed: pip install 'hmba_toolkit[scale]'") from exc
    own = None
    if isinstance(client, str):
        if client != "local":
            raise ParameterTypeError(f"client must be a distributed.Client, 'local' or None, not {client!r}")
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
