"""Fetch the Allen archives that come as one zip each: the six AHBA microarray donors and BrainSpan.

Allen serves them as "well-known files" (``<api>/api/v2/well_known_file_download/<id>``)
without published checksums, so a download is verified as an intact zip (every member's
CRC) holding the files its format needs, then unpacked into a hidden folder that is renamed
to its final name only when complete. Dropped connections resume with ``Range`` requests and
transient HTTP answers (408, 429, 5xx) are retried with exponential backoff
(:func:`hmba_toolkit.io.download_file`). The AHBA layout is abagen's
(``<data_dir>/microarray/normalized_microarray_donor<uid>/``), so folders fetched by either
tool serve both.

References
----------
Hawrylycz MJ et al. (2012) Nature 489:391-399 (AHBA). Markello RD et al. (2021) eLife
10:e72129 (abagen; the donors' well-known file ids). Miller JA et al. (2014) Nature 508:199-206
(BrainSpan); BrainSpan "RNA-Seq Gencode v10 summarized to genes", well-known file 267666525.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .._files import atomic_dir, file_lock
from .._paths import data_home
from ..errors import DataFormatError, HmbaToolkitError, ParameterError
from .download import download_file

__all__ = ["AHBA_DONORS", "AHBA_URL", "BRAINSPAN_URL", "BRAINSPAN_FILE_ID", "fetch_ahba", "fetch_brainspan", "unpack_zip"]

AHBA_URL = "https://human.brain-map.org/"
BRAINSPAN_URL = "https://www.brainspan.org/"
BRAINSPAN_FILE_ID = 267666525
#: The six AHBA donors and the well-known file ids of their normalized microarray zips.
AHBA_DONORS = pd.DataFrame(
    [("H0351.2001", 9861, 178238387), ("H0351.2002", 10021, 178238373), ("H0351.1009", 12876, 178238359),
     ("H0351.1012", 14380, 178238316), ("H0351.1015", 15496, 178238266), ("H0351.1016", 15697, 178236545)],
    columns=["donor", "uid", "microarray_file_id"],
)
_AHBA_FILES = ("MicroarrayExpression.csv", "PACall.csv", "Probes.csv", "SampleAnnot.csv", "Ontology.csv")
_BRAINSPAN_FILES = ("expression_matrix.csv", "rows_metadata.csv", "columns_metadata.csv")
_MARKER = ".hmba_toolkit_complete"


def _default_dir(data_dir) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return data_home()


def unpack_zip(archive: str | os.PathLike, folder: str | os.PathLike, required: Iterable[str]) -> Path:
    """Verify a zip and unpack its files (flattened) into ``folder``, atomically.

    Members are checked against their CRCs and must include every name in ``required``
    (matched by file name, whatever folder they sit in inside the zip). Files are written
    to a hidden sibling folder, which is renamed to ``folder`` only once complete.

    Raises
    ------
    IntegrityError
        The zip is truncated or corrupt.
    DataFormatError
        A required file is missing from it.
    """
    from ..errors import IntegrityError

    archive, folder = Path(archive), Path(folder)
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise IntegrityError(f"{archive}: member {bad} fails its CRC check")
            members = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir() and Path(i.filename).name}
            missing = [r for r in required if r not in members]
            if missing:
                raise DataFormatError(f"{archive}: lacks {missing}; it holds {sorted(members)}")
            with atomic_dir(folder, folder.with_name(f".{folder.name}.unpacking")) as staging:
                for name, info in sorted(members.items()):
                    with zf.open(info) as src, open(staging / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                (staging / _MARKER).write_text("\n".join(sorted(members)) + "\n", encoding="utf-8")
    except (zipfile.BadZipFile, EOFError) as exc:
        raise IntegrityError(f"{archive}: not a complete zip ({exc})") from exc
    return folder


def _fetch_archive(url: str, folder: Path, required, *, max_attempts, backoff, progress, keep_zip) -> Path:
    with file_lock(folder.with_name(f".{folder.name}.lock")):  # one process fetches; the others wait and reuse
        return _fetch_archive_locked(url, folder, required, max_attempts=max_attempts, backoff=backoff,
                                     progress=progress, keep_zip=keep_zip)


def _fetch_archive_locked(url: str, folder: Path, required, *, max_attempts, backoff, progress, keep_zip) -> Path:
    if (folder / _MARKER).is_file() and all((folder / r).is_file() for r in required):
        return folder
    archive = folder.with_name(f"{folder.name}.zip")
    try:
        if not archive.is_file():
            download_file(url, archive, progress=progress, max_attempts=max_attempts, backoff=backoff)
        unpack_zip(archive, folder, required)
    except HmbaToolkitError:
        with contextlib.suppress(FileNotFoundError):
            archive.unlink()  # a corrupt or wrong zip is not kept (a partial download is, to resume)
        raise
    if not keep_zip:
        archive.unlink()
    return folder


def _donor_rows(donors) -> pd.DataFrame:
    if isinstance(donors, str) and donors == "all":
        return AHBA_DONORS
    donors = [donors] if isinstance(donors, (str, int)) else list(donors)
    rows = []
    for d in donors:
        hit = AHBA_DONORS[(AHBA_DONORS["donor"] == str(d)) | (AHBA_DONORS["uid"].astype(str) == str(d))]
        if hit.empty:
            raise ParameterError(f"donors: {d!r} is not an AHBA donor; choose from {AHBA_DONORS['uid'].tolist()} "
                                   f"or {AHBA_DONORS['donor'].tolist()}")
        rows.append(hit)
    return pd.concat(rows).drop_duplicates()


def fetch_ahba(
    data_dir: str | os.PathLike | None = None,
    donors: str | int | Iterable[str | int] = "all",
    *,
    base_url: str = AHBA_URL,
    max_attempts: int = 5,
    backoff: float = 1.0,
    progress: bool = True,
    keep_zip: bool = False,
) -> dict[int, Path]:
    """Download, verify and unpack AHBA donors' normalized microarray data (about 4 GB for all six).

    Parameters
    ----------
    data_dir
        Root folder; donors land in ``<data_dir>/microarray/normalized_microarray_donor<uid>/``
        (abagen's layout). Default: the toolkit's data home (``$HMBA_TOOLKIT_DATA``).
    donors
        ``"all"``, or uids (``9861``) / names (``"H0351.2001"``).
    base_url
        The Allen human API, or a mirror.
    keep_zip
        Keep ``normalized_microarray_donor<uid>.zip`` after unpacking.

    Returns
    -------
    dict
        uid -> donor folder, ready for :func:`hmba_toolkit.io.read_ahba_donor`.

    Examples
    --------
    >>> # not run: downloads from the Allen servers (network, GB); datasets.fetch_demo_ahba() / fetch_demo_brainspan() are the twins that run
    >>> folders = fetch_ahba("~/allen", donors=[9861, 10021])  # doctest: +SKIP
    >>> from hmba_toolkit.io import read_ahba_donor
    >>> # not run: downloads from the Allen servers (network, GB); datasets.fetch_demo_ahba() / fetch_demo_brainspan() are the twins that run
    >>> donor = read_ahba_donor(folders[9861])  # doctest: +SKIP

    References
    ----------
    Hawrylycz MJ et al. (2012) Nature 489:391-399; Markello RD et al. (2021) eLife 10:e72129.
    """
    root = _default_dir(data_dir) / "microarray"
    out = {}
    for row in _donor_rows(donors).itertuples(index=False):
        url = f"{base_url.rstrip('/')}/api/v2/well_known_file_download/{row.microarray_file_id}"
        folder = root / f"normalized_microarray_donor{row.uid}"
        out[int(row.uid)] = _fetch_archive(url, folder, _AHBA_FILES, max_attempts=max_attempts, backoff=backoff,
                                           progress=progress, keep_zip=keep_zip)
    return out


def fetch_brainspan(
    data_dir: str | os.PathLike | None = None,
    *,
    base_url: str = BRAINSPAN_URL,
    file_id: int = BRAINSPAN_FILE_ID,
    max_attempts: int = 5,
    backoff: float = 1.0,
    progress: bool = True,
    keep_zip: bool = False,
) -> Path:
    """Download, verify and unpack BrainSpan's RNA-seq genes matrix (Gencode v10, 524 samples).

    Returns the folder (``<data_dir>/brainspan/genes_matrix_csv``) for
    :func:`hmba_toolkit.io.read_brainspan`.

    Examples
    --------
    >>> from hmba_toolkit.io import read_brainspan
    >>> # not run: downloads from the Allen servers (network, GB); datasets.fetch_demo_ahba() / fetch_demo_brainspan() are the twins that run
    >>> bs = read_brainspan(fetch_brainspan("~/allen"))  # doctest: +SKIP

    References
    ----------
    Miller JA et al. (2014) Nature 508:199-206; BrainSpan technical white paper
    "Transcriptome profiling by RNA sequencing and exon microarray".
    """
    folder = _default_dir(data_dir) / "brainspan" / "genes_matrix_csv"
    url = f"{base_url.rstrip('/')}/api/v2/well_known_file_download/{int(file_id)}"
    return _fetch_archive(url, folder, _BRAINSPAN_FILES, max_attempts=max_attempts, backoff=backoff,
                          progress=progress, keep_zip=keep_zip)
