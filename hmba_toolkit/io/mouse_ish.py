"""Readers for the Allen Mouse Brain Atlas ISH 3-D expression grids (MetaImage .mhd/.raw).

An Allen grid download (``api.brain-map.org/grid_data/download/<SectionDataSet id>``) is a
zip of ``data_set.xml``, ``energy.mhd`` and ``energy.raw``. The header gives ``DimSize``
(67 41 58 at 200 um), ``ElementType`` (``MET_FLOAT`` for energy/density/intensity,
``MET_UINT`` for the annotation grid) and the byte order; the raw file stores x fastest
(MetaImage order). Axes of coronal data (ReferenceSpace 9): x anterior->posterior,
y superior->inferior, z left->right. ``-1`` marks voxels without data.

Reference: Lein et al. 2007, Nature 445:168; Allen Mouse Brain Atlas technical white paper
"Informatics data processing"; MetaImage format (ITK).
"""

from __future__ import annotations

import io as _io
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._files import atomic_path
from .._names import closest_names
from ..errors import DataFormatError, MissingFileError, NotFoundError, OutputExistsError, ParameterError, ParameterTypeError

__all__ = ["read_mhd_header", "read_ish_grid", "read_gene_ish_grid", "read_gene_ish_grids", "write_ish_grid", "MET_TYPES", "VOLUMES"]

#: The grids of an ISH experiment: expression energy, density (fraction of expressing pixels) and intensity.
VOLUMES = ("energy", "density", "intensity")

#: MetaImage element types and their numpy dtypes (little-endian; byte order from the header).
MET_TYPES = {
    "MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2",
    "MET_UINT": "u4", "MET_INT": "i4", "MET_ULONG": "u8", "MET_LONG": "i8",
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_REQUIRED = ("NDims", "DimSize", "ElementType", "ElementDataFile")


def _parse_header(text: str, source: str) -> dict[str, str]:
    header = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "=" not in line:
            raise DataFormatError(f"{source}: line {n} is not 'Key = Value': {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        header[key] = value
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise DataFormatError(f"{source}: MetaImage header lacks {missing}")
    return header


def read_mhd_header(path: str | os.PathLike) -> dict[str, str]:
    """Parse a MetaImage ``.mhd`` header into a dict of strings."""
    path = Path(path)
    return _parse_header(path.read_text(encoding="ascii", errors="replace"), str(path))


def _decode(header: dict[str, str], raw: bytes, source: str) -> np.ndarray:
    dims = tuple(int(v) for v in header["DimSize"].split())
    if len(dims) != int(header["NDims"]):
        raise DataFormatError(f"{source}: DimSize {dims} does not have NDims={header['NDims']} entries")
    etype = header["ElementType"]
    if etype not in MET_TYPES:
        raise DataFormatError(f"{source}: unsupported ElementType {etype!r}")
    if header.get("CompressedData", "False").lower() == "true":
        import zlib

        raw = zlib.decompress(raw)
    msb = header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")).lower() == "true"
    dtype = np.dtype(MET_TYPES[etype]).newbyteorder(">" if msb else "<")
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(
            f"{source}: data file has {len(raw)} bytes; DimSize {dims} x {etype} needs {expected}"
        )
    flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    # MetaImage stores x fastest: reshape reversed, then transpose to index [x, y, z]
    return np.ascontiguousarray(flat.reshape(dims[::-1]).transpose())


def read_ish_grid(path: str | os.PathLike, volume: str = "energy") -> np.ndarray:
    """Read an Allen ISH grid (or the 200 um annotation grid) as an array indexed [x, y, z].

    Parameters
    ----------
    path
        The ``.mhd`` header (its ``ElementDataFile`` is read beside it), or the ``.zip``
        the Allen grid API returns (then ``<volume>.mhd`` inside it is read).
    volume
        For zips: ``"energy"``, ``"density"`` or ``"intensity"``.

    Returns
    -------
    numpy.ndarray
        Shape ``DimSize`` (x is the file's fastest axis), e.g. (67, 41, 58) at 200 um.
        Float grids map ``-1`` (no data) to NaN; integer grids (annotation, ``MET_UINT``)
        keep their dtype and values.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> zips = sorted((fetch_demo_mouse_ish() / "grids").glob("*.zip"))  # or an unpacked folder's energy.mhd
    >>> grid = read_ish_grid(zips[0])
    >>> grid.shape
    (67, 41, 58)

    References
    ----------
    Lein ES et al. (2007) Genome-wide atlas of gene expression in the adult mouse brain.
    Nature 445:168-176.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist (a grid .mhd or the .zip the Allen grid API returns)")
    if path.suffix == ".zip":
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise DataFormatError(f"{path}: not a complete zip ({exc}); download it again") from exc
        with zf:
            names = {Path(n).name: n for n in zf.namelist()}
            if f"{volume}.mhd" not in names:
                raise DataFormatError(f"{path}: no {volume}.mhd inside; it holds {sorted(names)}")
            header = _parse_header(zf.read(names[f"{volume}.mhd"]).decode("ascii"), f"{path}:{volume}.mhd")
            data_name = Path(header["ElementDataFile"]).name
            if data_name not in names:
                raise DataFormatError(f"{path}: {data_name} named by {volume}.mhd is missing")
            raw = zf.read(names[data_name])
    else:
        header = read_mhd_header(path)
        data_path = path.parent / header["ElementDataFile"]
        if not data_path.is_file():
            raise DataFormatError(f"{path}: ElementDataFile {data_path} does not exist")
        raw = data_path.read_bytes()
    arr = _decode(header, raw, str(path))
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32 if arr.dtype.itemsize == 4 else arr.dtype, copy=False)
        arr[arr == -1] = np.nan
    return arr


def read_gene_ish_grid(folder: str | os.PathLike, gene: str, *, volume: str = "energy",
                       experiment: int | None = None) -> np.ndarray:
    """The 200 um grid of one gene from a folder of downloaded experiments.

    The folder holds ``section_data_sets.csv`` (``id, gene_acronym, ...``, as
    :func:`hmba_toolkit.io.rma.list_section_data_sets` writes it) and ``grids/<id>.zip``, the layout of
    :func:`hmba_toolkit.datasets.fetch_demo_mouse_ish`. A gene with several experiments gives the one with the
    smallest id unless ``experiment`` names another.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> grid = read_gene_ish_grid(fetch_demo_mouse_ish(), "Pdyn")
    >>> grid.shape, grid.dtype
    ((67, 41, 58), dtype('float32'))
    """
    import pandas as pd

    folder = Path(folder)
    table_path = folder / "section_data_sets.csv"
    if not table_path.is_file():
        raise MissingFileError(f"{table_path} does not exist: the folder must hold section_data_sets.csv and grids/<id>.zip")
    table = pd.read_csv(table_path)
    for column in ("id", "gene_acronym"):
        if column not in table.columns:
            raise DataFormatError(f"{table_path}: no column {column!r} (columns: {list(table.columns)})")
    rows = table[table["gene_acronym"].astype(str) == gene]
    if rows.empty:
        close = closest_names(gene, table["gene_acronym"].astype(str).tolist())
        raise NotFoundError(f"gene {gene!r} has no experiment in {table_path}" + (f"; did you mean {close}?" if close else ""))
    ids = sorted(int(i) for i in rows["id"])
    if experiment is not None and int(experiment) not in ids:
        raise NotFoundError(f"experiment {experiment} is not one of {gene}'s: {ids}")
    return read_ish_grid(folder / "grids" / f"{experiment if experiment is not None else ids[0]}.zip", volume=volume)


def read_gene_ish_grids(folder: str | os.PathLike, gene: str, *, volumes: Sequence[str] = VOLUMES,
                        experiment: int | None = None) -> dict[str, np.ndarray]:
    """Several grids of one gene's experiment (energy, density, intensity) as ``{volume: grid}``.

    The mapping goes straight into :func:`hmba_toolkit.mouse.unionize_genes`, which then summarises each
    volume by structure (one column per volume). Folder layout and ``experiment`` as in
    :func:`read_gene_ish_grid`; the experiment's zip must hold every volume asked for (the API's
    ``?include=energy,density,intensity`` answer, :func:`hmba_toolkit.io.rma.download_grid` with ``volumes=``).

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> grids = read_gene_ish_grids(fetch_demo_mouse_ish(), "Pdyn")
    >>> sorted(grids), grids["density"].shape
    (['density', 'energy', 'intensity'], (67, 41, 58))
    """
    if isinstance(volumes, str):
        raise ParameterTypeError(f"volumes must be a list of volume names such as {list(VOLUMES)}, not the string {volumes!r}")
    bad = [v for v in volumes if v not in VOLUMES]
    if bad or not volumes:
        raise ParameterError(f"volumes must be among {VOLUMES}, got {list(volumes)}")
    return {v: read_gene_ish_grid(folder, gene, volume=v, experiment=experiment) for v in volumes}


def _header_text(shape: tuple[int, ...], etype: str, data_file: str, spacing: float) -> str:
    return (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nCenterOfRotation = 0 0 0\n"
        "AnatomicalOrientation = RAI\n"
        f"ElementSpacing = {spacing:g} {spacing:g} {spacing:g}\n"
        f"DimSize = {' '.join(str(s) for s in shape)}\nElementType = {etype}\nElementDataFile = {data_file}\n"
    )


def _encode(array: np.ndarray) -> tuple[str, bytes]:
    etype = {v: k for k, v in MET_TYPES.items()}.get(np.dtype(array.dtype).str.lstrip("<>=|"))
    if etype is None:
        raise DataFormatError(f"cannot store dtype {array.dtype} in a MetaImage grid")
    data = np.asarray(array)
    if data.dtype.kind == "f":
        data = np.where(np.isnan(data), -1, data).astype(data.dtype)
    return etype, data.transpose().astype(data.dtype.newbyteorder("<")).tobytes()


def write_ish_grid(path: str | os.PathLike, array: np.ndarray | Mapping[str, np.ndarray], *, spacing: float = 200.0,
                   data_set_xml: str | None = None, overwrite: bool = False) -> Path:
    """Write a grid as Allen does: ``.mhd`` + ``.raw``, or a download-style ``.zip``.

    ``array`` is indexed [x, y, z]; NaN is written as -1. A path ending in ``.zip`` writes
    ``energy.mhd``, ``energy.raw`` (and ``data_set.xml`` when given) into one zip; ``array`` may then be a
    ``{volume: grid}`` mapping (``energy``, ``density``, ``intensity``), as the API's
    ``?include=energy,density,intensity`` answer holds them.
    Files appear atomically; an existing file is replaced only with ``overwrite=True``.
    """
    path = Path(path)
    targets = [path] if path.suffix == ".zip" else [path, path.with_suffix(".raw")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists; pass overwrite=True to replace it")
    volumes = dict(array) if isinstance(array, Mapping) else {"energy": array}
    bad = [v for v in volumes if v not in VOLUMES]
    if bad or not volumes:
        raise ParameterError(f"volumes must be among {VOLUMES}, got {list(volumes)}")
    if isinstance(array, Mapping) and path.suffix != ".zip":
        raise ParameterError(f"{path}: several volumes need a .zip path (a .mhd holds one grid)")
    if path.suffix == ".zip":
        members: list[tuple[str, str | bytes | None]] = [("data_set.xml", data_set_xml)]
        for volume, grid in volumes.items():
            etype, raw = _encode(grid)
            members += [(f"{volume}.mhd", _header_text(np.shape(grid), etype, f"{volume}.raw", spacing)), (f"{volume}.raw", raw)]
        buf = _io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, payload in members:
                if payload is None:
                    continue
                info = zipfile.ZipInfo(name, date_time=(2010, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, payload)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        return path
    etype, raw = _encode(array)
    data_path = path.with_suffix(".raw")
    with atomic_path(data_path) as tmp:
        tmp.write_bytes(raw)
    with atomic_path(path) as tmp:
        tmp.write_text(_header_text(array.shape, etype, data_path.name, spacing), encoding="ascii")
    return path
