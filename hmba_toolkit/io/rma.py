"""Allen Brain Atlas API (RMA) client for mouse ISH experiments: listings, grid downloads, StructureUnionize records.

Query grammar from the Allen API documentation ("RMA" model/criteria/include/options);
grid download endpoint ``/grid_data/download/<SectionDataSet id>?include=energy``; structure summaries
``model::StructureUnionize`` (one experiment's records, paged).

Reference: Allen Brain Atlas API documentation, help.brain-map.org/display/api.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .._files import file_lock, write_text_atomic
from ..errors import DataFormatError, DownloadError, IntegrityError, NotFoundError, ParameterError
from .download import download_file, fetch_bytes

__all__ = [
    "API_URL", "section_data_sets_query", "grid_download_url", "structure_graph_query", "query_section_data_sets",
    "list_section_data_sets", "download_grid", "check_grid_zip", "SECTION_DATA_SET_COLUMNS",
    "STRUCTURE_UNIONIZE_FIELDS", "structure_unionizes_query", "download_structure_unionizes",
]

#: Columns of :func:`list_section_data_sets` (and of the demo ``section_data_sets.csv``).
SECTION_DATA_SET_COLUMNS = ["id", "gene_acronym", "plane_of_section", "entrez_id"]
_PLANE_IDS = {1: "coronal", 2: "sagittal"}
API_URL = "https://api.brain-map.org/"
_PLANES = ("coronal", "sagittal")
_VOLUMES = ("energy", "density", "intensity")
_SAFE = ":,[]$='"


def section_data_sets_query(gene: str | None = None, plane: str | None = "coronal", *, product: str = "Mouse",
                            start_row: int = 0, num_rows: int = 2000, base_url: str = API_URL) -> str:
    """URL listing ISH SectionDataSets (not failed) of a gene, with their genes included.

    Examples
    --------
    >>> section_data_sets_query("Pdyn")[:60]
    'https://api.brain-map.org/api/v2/data/query.json?criteria=mo'
    """
    if plane is not None and plane not in _PLANES:
        raise ParameterError(f"plane must be one of {_PLANES} or None, not {plane!r}")
    crit = f"model::SectionDataSet,rma::criteria,[failed$eq'false'],products[abbreviation$eq'{product}']"
    if plane:
        crit += f",plane_of_section[name$eq'{plane}']"
    if gene:
        crit += f",genes[acronym$eq'{gene}']"
    crit += f",rma::include,genes,plane_of_section,rma::options[start_row$eq{start_row}][num_rows$eq{num_rows}][order$eq'id']"
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={quote(crit, safe=_SAFE)}"


def grid_download_url(section_data_set_id: int, volumes=("energy",), base_url: str = API_URL) -> str:
    """URL of the zipped 200 um grid(s) of one SectionDataSet (``energy``, ``density``, ``intensity``)."""
    bad = [v for v in volumes if v not in _VOLUMES]
    if bad:
        raise ParameterError(f"volumes must be among {_VOLUMES}, got {bad}")
    return f"{base_url.rstrip('/')}/grid_data/download/{int(section_data_set_id)}?include={','.join(volumes)}"


def structure_graph_query(graph_id: int = 1, base_url: str = API_URL) -> str:
    """URL of the flat structure table of an ontology graph (1 = adult mouse)."""
    crit = f"model::Structure,rma::criteria,[graph_id$eq{int(graph_id)}],rma::options[num_rows$eq'all'][order$eq'graph_order']"
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={quote(crit, safe=_SAFE)}"


def query_section_data_sets(gene: str | None, plane: str | None = "coronal", *, base_url: str = API_URL, page: int = 2000) -> list[dict]:
    """Run :func:`section_data_sets_query` (all pages) and return the SectionDataSet records.

    ``gene=None`` lists every (non-failed) experiment of the plane, about 4,300 coronal and
    21,700 sagittal ones, 2,000 records per request.
    """
    out: list[dict] = []
    start = 0
    while True:
        doc = json.loads(fetch_bytes(section_data_sets_query(gene, plane, start_row=start, num_rows=page, base_url=base_url)))
        if not doc.get("success", False):
            raise DownloadError(f"Allen API query for {gene!r} failed: {doc.get('msg')}")
        out.extend(doc["msg"])
        start += page
        if start >= int(doc.get("total_rows", 0)):
            return out


def _plane(record: dict) -> str:
    pos = record.get("plane_of_section")
    if isinstance(pos, dict) and pos.get("name"):
        return str(pos["name"])
    return _PLANE_IDS.get(record.get("plane_of_section_id"), "unknown")


def list_section_data_sets(
    gene: str | None = None, plane: str | None = "coronal", *, base_url: str = API_URL, page: int = 2000
) -> pd.DataFrame:
    """Mouse ISH experiments (SectionDataSets) with their gene and plane, as a table.

    Parameters
    ----------
    gene
        A gene acronym (``"Pdyn"``); None lists every gene's experiments.
    plane
        ``"coronal"``, ``"sagittal"`` or None for both.
    base_url
        The Allen API (``https://api.brain-map.org/``), or a mirror.
    page
        Records per request.

    Returns
    -------
    pandas.DataFrame
        ``id, gene_acronym, plane_of_section, entrez_id`` (``Int64``), one row per
        experiment sorted by id; failed experiments and records without a gene are left out.

    Examples
    --------
    >>> # not run: calls the Allen API (network); tests/test_mouse_ish.py runs it against a loopback twin
    >>> list_section_data_sets("Pdyn")  # doctest: +SKIP
             id gene_acronym plane_of_section  entrez_id
    0  71717084         Pdyn          coronal      18610

    References
    ----------
    Allen Brain Atlas API, "Downloading 3-D expression grid data" (RMA SectionDataSet query).
    """
    rows = []
    for rec in query_section_data_sets(gene, plane, base_url=base_url, page=page):
        if rec.get("failed") in (True, "true"):
            continue
        genes = rec.get("genes") or []
        if not genes:
            continue
        rows.append({"id": int(rec["id"]), "gene_acronym": str(genes[0].get("acronym")),
                     "plane_of_section": _plane(rec), "entrez_id": genes[0].get("entrez_id")})
    table = pd.DataFrame(rows, columns=SECTION_DATA_SET_COLUMNS)
    table["id"] = table["id"].astype("int64")
    table["entrez_id"] = pd.to_numeric(table["entrez_id"], errors="coerce").astype("Int64")
    return table.sort_values("id", kind="stable").reset_index(drop=True)


def check_grid_zip(path: str | os.PathLike, volumes=("energy",)) -> None:
    """Raise unless ``path`` is an intact grid zip holding ``<volume>.mhd`` and its data file.

    Raises
    ------
    IntegrityError
        The zip is truncated or fails its CRC check.
    DataFormatError
        The zip is intact but lacks a requested volume (the experiment has no such grid).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = {Path(n).name for n in zf.namelist()}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise IntegrityError(f"{path}: not a complete zip ({exc})") from exc
    if bad is not None:
        raise IntegrityError(f"{path}: member {bad} fails its CRC check")
    missing = [v for v in volumes if f"{v}.mhd" not in names or f"{v}.raw" not in names]
    if missing:
        raise DataFormatError(f"{path}: no {missing} grid inside; it holds {sorted(names)}")


def download_grid(
    section_data_set_id: int,
    cache_dir: str | os.PathLike,
    volumes=("energy",),
    *,
    base_url: str = API_URL,
    max_attempts: int = 5,
    backoff: float = 0.5,
    progress: bool = False,
    timeout: float = 60.0,
    unpack: bool = False,
) -> Path:
    """Download one experiment's 200 um grid zip into ``cache_dir`` (cached, verified, atomic).

    The zip appears as ``cache_dir/<id>.zip`` (``<id>_<volumes>.zip`` for other volumes) only
    after it passed :func:`check_grid_zip`; a cached zip is returned without a request.
    Dropped connections resume, transient HTTP answers are retried with exponential backoff.
    :func:`~hmba_toolkit.io.read_ish_grid` reads the zip directly; ``unpack=True`` also
    extracts it (``<volume>.mhd``, ``.raw``, ``data_set.xml``) into ``cache_dir/<id>/`` for
    tools that want MetaImage files, and returns that folder.

    Examples
    --------
    >>> # not run: calls the Allen API (network); tests/test_mouse_ish.py runs it against a loopback twin
    >>> path = download_grid(71717084, "~/.cache/hmba_toolkit/mouse_ish")  # doctest: +SKIP
    >>> from hmba_toolkit.io import read_ish_grid
    >>> # not run: calls the Allen API (network); tests/test_mouse_ish.py runs it against a loopback twin
    >>> read_ish_grid(path).shape  # doctest: +SKIP
    (67, 41, 58)
    """
    cache_dir = Path(cache_dir).expanduser()
    volumes = tuple(volumes)
    suffix = "" if volumes == ("energy",) else "_" + "-".join(volumes)
    final = cache_dir / f"{int(section_data_set_id)}{suffix}.zip"
    if final.is_file():
        return _unpacked(final, volumes) if unpack else final
    with file_lock(cache_dir / f".{final.name}.lock"):  # another process may be fetching it right now
        if not final.is_file():
            _fetch_grid(section_data_set_id, final, volumes, base_url, max_attempts, backoff, progress, timeout)
    return _unpacked(final, volumes) if unpack else final


def _fetch_grid(section_data_set_id, final: Path, volumes, base_url, max_attempts, backoff, progress, timeout) -> None:
    staging = final.with_name(f".{final.name}.download")
    url = grid_download_url(section_data_set_id, volumes, base_url)
    try:
        download_file(url, staging, progress=progress, max_attempts=max_attempts, timeout=timeout, backoff=backoff)
        check_grid_zip(staging, volumes)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise
    os.replace(staging, final)


def _unpacked(archive: Path, volumes: tuple[str, ...]) -> Path:
    from .archives import unpack_zip

    folder = archive.with_suffix("")
    if not folder.is_dir():
        unpack_zip(archive, folder, [f"{v}.{ext}" for v in volumes for ext in ("mhd", "raw")])
    return folder


# -- StructureUnionize records: Allen's per-structure expression summaries of one experiment --------------------

#: Fields of an ISH StructureUnionize record (Allen API data model; abagen and cocoframer request the same list).
STRUCTURE_UNIONIZE_FIELDS = (
    "id", "section_data_set_id", "structure_id", "expression_density", "expression_energy",
    "sum_expressing_pixel_intensity", "sum_expressing_pixels", "sum_pixel_intensity", "sum_pixels",
    "voxel_energy_cv", "voxel_energy_mean",
)


def structure_unionizes_query(section_data_set_id: int, *, start_row: int = 0, num_rows: int = 2000,
                              base_url: str = API_URL) -> str:
    """URL of one page of an experiment's StructureUnionize records, each with its structure included.

    Examples
    --------
    >>> url = structure_unionizes_query(71717084)
    >>> "model::StructureUnionize" in url and "[section_data_set_id$eq71717084]" in url
    True
    """
    crit = (f"model::StructureUnionize,rma::criteria,[section_data_set_id$eq{int(section_data_set_id)}],"
            f"rma::include,structure,rma::options[num_rows$eq{int(num_rows)}][start_row$eq{int(start_row)}][order$eq'id']")
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={quote(crit, safe=_SAFE)}"


def _answer_page(body: bytes, url: str) -> dict:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise DownloadError(f"{url}: the answer is not JSON ({exc}); a proxy or an outage page?") from exc
    if not isinstance(doc, dict) or "msg" not in doc:
        raise DownloadError(f"{url}: not an Allen API answer (no 'msg')")
    if not doc.get("success", False):
        raise DownloadError(f"{url}: the Allen API refused the query: {doc.get('msg')}")
    if not isinstance(doc["msg"], list):
        raise DownloadError(f"{url}: the answer's 'msg' is not a list of records: {str(doc['msg'])[:200]}")
    return doc


def _intact_unionize_answer(path: Path) -> bool:
    """A cached answer is trusted only while it parses and holds the number of records it announces."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("msg"), list) and len(doc["msg"]) == doc.get("total_rows")


def download_structure_unionizes(
    section_data_set_id: int,
    cache_dir: str | os.PathLike,
    *,
    base_url: str = API_URL,
    page: int = 2000,
    max_attempts: int = 5,
    backoff: float = 0.5,
    timeout: float = 60.0,
) -> Path:
    """Fetch every StructureUnionize record of one experiment into ``cache_dir/<id>.json`` (cached, atomic).

    The records are requested ``page`` at a time (each page retried with backoff after throttling or a
    cut connection) and saved as one answer in the API's own JSON shape (``success, start_row, num_rows,
    total_rows, msg``), so :func:`hmba_toolkit.mouse.read_structure_unionizes` reads a cached file and a
    saved answer alike. The file appears only once every page arrived and the pages agree on the total;
    a cached file is reused without a request while it parses and holds ``total_rows`` records.

    Raises
    ------
    NotFoundError
        The API has no record for this id (not an ISH SectionDataSet, or a failed experiment).
    DownloadError
        A page failed after its retries, or the pages disagree (the records changed during the fetch).

    Examples
    --------
    >>> # not run: calls the Allen API (network); tests/test_structure_unionize.py runs it against a loopback twin
    >>> path = download_structure_unionizes(71717084, "~/.cache/hmba_toolkit/structure_unionizes")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    '71717084.json'
    """
    if page < 1:
        raise ParameterError(f"page must be >= 1, got {page}")
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{int(section_data_set_id)}.json"
    if final.is_file() and _intact_unionize_answer(final):
        return final
    with file_lock(cache_dir / f".{final.name}.lock"):
        if final.is_file() and _intact_unionize_answer(final):
            return final
        records: list[dict] = []
        total = None
        start = 0
        while total is None or start < total:
            url = structure_unionizes_query(section_data_set_id, start_row=start, num_rows=page, base_url=base_url)
            doc = _answer_page(fetch_bytes(url, timeout=timeout, max_attempts=max_attempts, backoff=backoff), url)
            announced = int(doc.get("total_rows", len(doc["msg"])))
            if total is not None and announced != total:
                raise DownloadError(f"SectionDataSet {section_data_set_id}: the API announced {total} records, then "
                                    f"{announced}; the records changed during the fetch, nothing was saved")
            total = announced
            if not doc["msg"] and start < total:
                raise DownloadError(f"{url}: an empty page at row {start} of {total}; nothing was saved")
            records.extend(doc["msg"])
            start += len(doc["msg"])
        if total == 0:
            raise NotFoundError(f"the Allen API has no StructureUnionize record for SectionDataSet {section_data_set_id} "
                                f"({base_url}): not an ISH experiment id, or a failed experiment")
        answer = {"success": True, "id": 0, "start_row": 0, "num_rows": len(records), "total_rows": len(records), "msg": records}
        write_text_atomic(final, json.dumps(answer, separators=(",", ":")))
    return final
