"""A compact on-disk genes x voxels matrix of ISH grids, built from local zips or downloaded in bulk.

Allen offers no single download of "every gene's expression in the mouse brain": each of the
~26,000 SectionDataSets (~20,000 genes) is its own 200 um grid zip behind the RMA API. The
:class:`GridStore` keeps them as one float32 matrix of experiments x brain voxels (62,529 of
the 159,326 grid voxels; NaN where an experiment has no data), about 6.5 GB for every
experiment, opened lazily with ``numpy.load(mmap_mode="r")`` so a laptop reads only the rows
it needs.

Layout of a store directory::

    store.json        format, version, grid shape, spacing, volume, dtype, counts
    voxels.npy        int64 flat (C-order [x, y, z]) indices of the stored voxels
    experiments.csv   id, gene_acronym, plane_of_section, entrez_id, status, label
    expression.npy    float32 (n_experiments, n_voxels), NumPy .npy (memory-mappable)

A store is built under ``<name>.partial/`` with a journal of finished experiments; an
interrupted build resumes from the journal, and only a complete build is renamed to its final
name, so nothing half-written ever appears as a store.

References
----------
Lein ES et al. (2007) Nature 445:168-176; Allen Brain Atlas API, "Downloading 3-D expression
grid data"; Fulcher BD & Fornito A (2016) PNAS 113:1435 (whole-brain mouse gene x region data).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .._files import write_text_atomic
from ..errors import DataFormatError, DownloadError, IntegrityError, NotFoundError, OfflineError, ParameterError
from ..io import rma
from ..io.mouse_ish import read_ish_grid
from .atlas import GRID_SHAPE, SPACING_UM, load_annotation

__all__ = ["GridStore", "pack_grids", "download_grids", "STORE_FORMAT"]

STORE_FORMAT = "hmba_toolkit.GridStore"
_VERSION = 1
_STATUSES = ("ok", "missing")  # final statuses; "failed" keeps the build partial


class GridStore:
    """Experiments x voxels matrix of 200 um ISH grids on disk (read-only, lazy).

    Open one with :meth:`GridStore.open`; build one with :func:`pack_grids` (local zips) or
    :func:`download_grids` (the Allen API).

    Attributes
    ----------
    path : pathlib.Path
    experiments : pandas.DataFrame
        ``id, gene_acronym, plane_of_section, entrez_id, status, label``; row i is matrix row i.
    voxels : numpy.ndarray
        Flat grid indices of the matrix columns.
    matrix : numpy.memmap
        float32 (n_experiments, n_voxels); NaN = no data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import pandas as pd
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> root = fetch_demo_mouse_ish()  # section_data_sets.csv + grids/<id>.zip, as downloaded
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mouse_energy.store"
    >>> pack_grids(root / "grids", path, pd.read_csv(root / "section_data_sets.csv"))
    GridStore(...)
    >>> store = GridStore.open(path)
    >>> store.grid("Pdyn").shape
    (67, 41, 58)
    """

    def __init__(self, path: Path, meta: dict, experiments: pd.DataFrame, voxels: np.ndarray, matrix: np.ndarray):
        self.path = path
        self.meta = meta
        self.experiments = experiments
        self.voxels = voxels
        self.matrix = matrix

    @classmethod
    def open(cls, path: str | os.PathLike) -> GridStore:
        """Open a finished store (the matrix is memory-mapped, nothing is read yet)."""
        path = Path(path)
        meta_path = path / "store.json"
        if not meta_path.is_file():
            partial = path.with_name(path.name + ".partial")
            hint = f"; an unfinished build is in {partial}, run the build again to resume it" if partial.exists() else ""
            raise DataFormatError(f"{path}: not a grid store (no store.json){hint}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != STORE_FORMAT:
            raise DataFormatError(f"{meta_path}: format is {meta.get('format')!r}, expected {STORE_FORMAT!r}")
        experiments = pd.read_csv(path / "experiments.csv", dtype={"gene_acronym": str, "label": str})
        experiments["entrez_id"] = pd.to_numeric(experiments["entrez_id"], errors="coerce").astype("Int64")
        voxels = np.load(path / "voxels.npy")
        matrix = np.load(path / "expression.npy", mmap_mode="r")
        if matrix.shape != (len(experiments), len(voxels)):
            raise DataFormatError(f"{path / 'expression.npy'}: shape {matrix.shape}, experiments.csv and voxels.npy say {(len(experiments), len(voxels))}")
        return cls(path, meta, experiments, voxels, matrix)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one grid."""
        return tuple(self.meta["grid_shape"])

    @property
    def labels(self) -> list[str]:
        """Column labels used by :func:`~hmba_toolkit.mouse.unionize_genes`: ``<gene>_<id>``."""
        return self.experiments["label"].tolist()

    def __len__(self) -> int:
        return len(self.experiments)

    def __repr__(self) -> str:
        n_ok = int((self.experiments["status"] == "ok").sum())
        return (f"GridStore({str(self.path)!r}: {len(self)} experiments ({n_ok} with data), "
                f"{self.experiments['gene_acronym'].nunique()} genes, {len(self.voxels)} voxels, {self.meta['volume']})")

    def row_of(self, key: int | str) -> int:
        """Matrix row of a SectionDataSet id, a label or a gene acronym (its first experiment)."""
        exp = self.experiments
        if isinstance(key, (int, np.integer)):
            hit = np.flatnonzero(exp["id"].to_numpy() == int(key))
        else:
            hit = np.flatnonzero(exp["label"].to_numpy() == key)
            if not hit.size:
                hit = np.flatnonzero(exp["gene_acronym"].to_numpy() == key)
        if not hit.size:
            raise NotFoundError(f"{self.path}: no experiment, label or gene {key!r}")
        return int(hit[0])

    def grid(self, key: int | str) -> np.ndarray:
        """One experiment as a full 3-D grid (NaN outside the stored voxels)."""
        out = np.full(int(np.prod(self.shape)), np.nan, dtype=np.float32)
        out[self.voxels] = self.matrix[self.row_of(key)]
        return out.reshape(self.shape)

    def iter_voxel_chunks(self, voxels: np.ndarray, chunk_size: int = 512) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield ``(labels, values)`` with values (chunk, len(voxels)) at the given flat voxels."""
        if np.array_equal(voxels, self.voxels):  # the usual case: every stored voxel, no gather needed
            for start in range(0, len(self), chunk_size):
                yield self.labels[start:start + chunk_size], np.asarray(self.matrix[start:start + chunk_size])
            return
        pos = np.searchsorted(self.voxels, voxels)
        pos = np.minimum(pos, len(self.voxels) - 1)
        stored = self.voxels[pos] == voxels
        labels = self.labels
        for start in range(0, len(self), chunk_size):
            block = np.asarray(self.matrix[start:start + chunk_size])
            values = np.full((block.shape[0], len(voxels)), np.nan, dtype=np.float32)
            values[:, stored] = block[:, pos[stored]]
            yield labels[start:start + chunk_size], values


# -- building -------------------------------------------------------------------------------

def _experiment_table(experiments) -> pd.DataFrame:
    if isinstance(experiments, pd.DataFrame):
        table = experiments.copy()
    else:
        table = pd.DataFrame({"id": list(experiments)})
    if "id" not in table.columns:
        raise DataFormatError(f"experiments need an 'id' column (SectionDataSet ids); got {list(table.columns)}")
    for col in ("gene_acronym", "plane_of_section", "entrez_id"):
        if col not in table.columns:
            table[col] = pd.NA
    table = table[rma.SECTION_DATA_SET_COLUMNS].copy()
    table["id"] = pd.to_numeric(table["id"], errors="raise").astype(np.int64)
    if table["id"].duplicated().any():
        raise DataFormatError(f"experiments: duplicated SectionDataSet ids {table.loc[table['id'].duplicated(), 'id'].tolist()[:5]}")
    gene = table["gene_acronym"].astype("string").fillna("sds")
    table["label"] = gene + "_" + table["id"].astype(str)
    return table.reset_index(drop=True)


def _journal(partial: Path) -> dict[int, str]:
    done: dict[int, str] = {}
    path = partial / "journal.txt"
    if path.is_file():
        for line in path.read_text(encoding="ascii").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] in _STATUSES:
                done[int(parts[0])] = parts[1]
    return done


def _start_partial(partial: Path, table: pd.DataFrame, voxels: np.ndarray, volume: str) -> None:
    partial.mkdir(parents=True)
    np.save(partial / "voxels.npy", voxels)
    table.to_csv(partial / "experiments.csv", index=False, lineterminator="\n")
    mat = np.lib.format.open_memmap(partial / "expression.npy", mode="w+", dtype=np.float32, shape=(len(table), len(voxels)))
    mat[:] = np.nan
    mat.flush()
    del mat
    meta = {"format": STORE_FORMAT, "version": _VERSION, "grid_shape": list(GRID_SHAPE), "spacing_um": SPACING_UM,
            "volume": volume, "dtype": "float32", "n_experiments": len(table), "n_voxels": int(len(voxels))}
    write_text_atomic(partial / "build.json", json.dumps(meta, indent=1))


def _check_partial(partial: Path, table: pd.DataFrame, volume: str) -> None:
    meta = json.loads((partial / "build.json").read_text(encoding="utf-8"))
    planned = pd.read_csv(partial / "experiments.csv")["id"].to_numpy()
    if meta.get("volume") != volume or not np.array_equal(planned, table["id"].to_numpy()):
        raise ParameterError(
            f"{partial} holds an unfinished build of other experiments or another volume "
            f"({meta.get('volume')}, {len(planned)} experiments); resume it with the same list, or delete it")


def _build(
    path: Path, experiments, load: Callable[[int], np.ndarray | None], *, volume: str, max_workers: int,
    progress: bool, annotation: np.ndarray | None,
) -> GridStore:
    """Shared build loop: ``load(id)`` returns a grid, None (no data: "missing") or raises."""
    path = Path(path)
    table = _experiment_table(experiments)
    if path.exists():
        store = GridStore.open(path)
        if not np.array_equal(store.experiments["id"].to_numpy(), table["id"].to_numpy()) or store.meta["volume"] != volume:
            raise ParameterError(f"{path} already holds a store of other experiments; choose another path or delete it")
        return store
    annotation = load_annotation() if annotation is None else np.asarray(annotation)
    if annotation.shape != GRID_SHAPE:
        raise DataFormatError(f"annotation has shape {annotation.shape}, the 200 um grids {GRID_SHAPE}")
    voxels = np.flatnonzero(annotation > 0)
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        _check_partial(partial, table, volume)
    else:
        _start_partial(partial, table, voxels, volume)
    done = _journal(partial)
    row_of = {int(i): r for r, i in enumerate(table["id"])}
    todo = [int(i) for i in table["id"] if int(i) not in done]
    mat = np.load(partial / "expression.npy", mmap_mode="r+")
    failures: dict[int, str] = {}
    offline: list[OfflineError] = []
    bar = tqdm(total=len(table), initial=len(table) - len(todo), unit="grid", desc=path.name, disable=not progress)
    with open(partial / "journal.txt", "a", encoding="ascii") as journal, bar, ThreadPoolExecutor(max(1, max_workers)) as pool:
        pending: dict[Future, int] = {}
        queue = iter(todo)
        window = 4 * max(1, max_workers)

        def refill() -> None:
            if offline:  # the server is unreachable: stop asking
                return
            for sds in queue:
                pending[pool.submit(load, sds)] = sds
                if len(pending) >= window:
                    return

        refill()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                sds = pending.pop(fut)
                try:
                    grid = fut.result()
                except (DownloadError, DataFormatError, OSError) as exc:
                    if isinstance(exc, OfflineError):
                        offline.append(exc)
                    failures[sds] = str(exc)
                    bar.update(1)
                    continue
                if grid is not None:
                    if grid.shape != GRID_SHAPE:
                        failures[sds] = f"grid shape {grid.shape}, expected {GRID_SHAPE}"
                        bar.update(1)
                        continue
                    mat[row_of[sds]] = grid.ravel()[voxels]
                    mat.flush()
                status = "ok" if grid is not None else "missing"
                journal.write(f"{sds} {status}\n")
                journal.flush()
                os.fsync(journal.fileno())
                done[sds] = status
                bar.update(1)
            refill()
    del mat
    if offline:
        raise OfflineError(
            f"{offline[0]} The build stopped; the {len(done)} finished experiments are kept in {partial} "
            "and the next call resumes from there") from offline[0]
    if failures:
        first = ", ".join(f"{k} ({v})" for k, v in list(failures.items())[:3])
        raise DownloadError(
            f"{len(failures)} of {len(table)} experiments could not be stored, e.g. {first}; "
            f"the {len(done)} finished ones are kept in {partial} and the next call resumes from there")
    table["status"] = [done[int(i)] for i in table["id"]]
    table.to_csv(partial / "experiments.csv", index=False, lineterminator="\n")
    os.replace(partial / "build.json", partial / "store.json")
    (partial / "journal.txt").unlink()
    os.replace(partial, path)
    return GridStore.open(path)


def pack_grids(
    zips: Mapping[int, str | os.PathLike] | str | os.PathLike,
    path: str | os.PathLike,
    experiments: pd.DataFrame | Sequence[int] | None = None,
    *,
    volume: str = "energy",
    max_workers: int = 2,
    progress: bool = False,
    annotation: np.ndarray | None = None,
) -> GridStore:
    """Pack grid zips already on disk (``<id>.zip``, as the API names them) into a :class:`GridStore`.

    Parameters
    ----------
    zips
        ``{SectionDataSet id: zip path}``, or a folder of ``<id>.zip`` files.
    path
        The store directory to create (built under ``<path>.partial``, renamed when complete).
    experiments
        Table with ``id`` (and ``gene_acronym, plane_of_section, entrez_id``), or ids; default
        every zip, ordered by id. Rows fix the matrix order.
    volume
        ``"energy"``, ``"density"`` or ``"intensity"``.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> import pandas as pd, tempfile, pathlib
    >>> root = fetch_demo_mouse_ish()
    >>> sds = pd.read_csv(root / "section_data_sets.csv").head(3)
    >>> store = pack_grids(root / "grids", pathlib.Path(tempfile.mkdtemp()) / "demo.store", sds)
    >>> store.matrix.shape
    (3, 62529)
    """
    if not isinstance(zips, Mapping):
        folder = Path(zips)
        if not folder.is_dir():
            raise DataFormatError(f"{folder}: not a folder of grid zips")
        zips = {int(p.stem): p for p in sorted(folder.glob("*.zip")) if p.stem.isdigit()}
    if experiments is None:
        experiments = sorted(zips)
    table = _experiment_table(experiments)
    absent = [int(i) for i in table["id"] if int(i) not in zips]
    if absent:
        raise DataFormatError(f"no zip for experiments {absent[:10]} ({len(absent)} in all)")

    def load(sds: int) -> np.ndarray:
        return read_ish_grid(zips[sds], volume=volume)

    return _build(Path(path), table, load, volume=volume, max_workers=max_workers, progress=progress, annotation=annotation)


def download_grids(
    experiments: pd.DataFrame | Sequence[int],
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    volume: str = "energy",
    base_url: str = rma.API_URL,
    max_workers: int = 4,
    max_attempts: int = 5,
    backoff: float = 0.5,
    keep_zips: bool = False,
    progress: bool = True,
    annotation: np.ndarray | None = None,
) -> GridStore:
    """Download many experiments' grids from the Allen API into one :class:`GridStore`.

    Each grid is fetched with :func:`hmba_toolkit.io.rma.download_grid` (resumed after dropped
    connections, retried with exponential backoff on 408/429/5xx, verified as an intact zip),
    at most ``max_workers`` requests at a time, then written into the store's matrix and
    recorded in the build journal. Run it again after an interruption (or a failure) and it
    resumes where it stopped. An experiment the API has no grid for (HTTP 404, or a zip
    without the volume) is stored as NaN with status ``missing``.

    Parameters
    ----------
    experiments
        A table from :func:`hmba_toolkit.io.rma.list_section_data_sets` (``id, gene_acronym,
        plane_of_section, entrez_id``), or SectionDataSet ids.
    path
        The store directory to create.
    cache_dir
        Where zips are downloaded; default ``<path>.partial/zips``. Removed once packed unless
        ``keep_zips``.
    volume
        ``"energy"``, ``"density"`` or ``"intensity"``.
    base_url
        The Allen API, or a mirror (tests use a server on 127.0.0.1).
    max_workers
        Concurrent requests (be polite to the Allen servers: 4 is plenty).
    max_attempts, backoff
        Retries per grid and the base pause (seconds, doubled per retry).

    Raises
    ------
    DownloadError
        Some experiments still failed after their retries; the rest are kept for the next call.

    Examples
    --------
    >>> from hmba_toolkit.io.rma import list_section_data_sets
    >>> # not run: builds or downloads a store of thousands of grids (network, GB); notebook 10 runs the demo twin
    >>> coronal = list_section_data_sets(plane="coronal")  # doctest: +SKIP
    >>> store = download_grids(coronal, "mouse_coronal_energy.store")  # doctest: +SKIP

    References
    ----------
    Allen Brain Atlas API, "Downloading 3-D expression grid data".
    """
    path = Path(path)
    table = _experiment_table(experiments)
    zips_dir = Path(cache_dir) if cache_dir is not None else path.with_name(path.name + ".partial") / "zips"

    def load(sds: int) -> np.ndarray | None:
        for attempt in range(2):  # one more full download if the zip arrives corrupt
            try:
                zip_path = rma.download_grid(sds, zips_dir, (volume,), base_url=base_url,
                                             max_attempts=max_attempts, backoff=backoff)
            except DownloadError as exc:
                if exc.status == 404:
                    return None
                if isinstance(exc, IntegrityError) and attempt == 0:
                    time.sleep(backoff)
                    continue
                raise
            except DataFormatError:
                return None  # an intact zip without this volume
            try:
                return read_ish_grid(zip_path, volume=volume)
            finally:
                if not keep_zips:
                    with contextlib.suppress(FileNotFoundError):
                        zip_path.unlink()
        raise IntegrityError(f"SectionDataSet {sds}: the grid zip arrived corrupt twice")

    store = _build(path, table, load, volume=volume, max_workers=max_workers, progress=progress, annotation=annotation)
    if cache_dir is None:
        shutil.rmtree(path / "zips", ignore_errors=True)
    return store
