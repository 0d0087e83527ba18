"""Verified, resumable, atomic HTTP downloads (the transport under :class:`AbcCache`).

Files are fetched over plain HTTPS from the public bucket (the manifest's ``url``
field). A transfer is written to a stable partial file beside the target
(``.<name>.part``); after a dropped connection the next attempt resumes from the
partial file's size with an HTTP ``Range`` request. Only a file whose size and md5
match the manifest is moved to its final name (``os.replace``, atomic on POSIX), so
nothing half-written ever appears under a final name.
"""

from __future__ import annotations

import errno
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from .._files import file_lock, md5sum
from ..errors import DownloadError, IntegrityError, OfflineError, ParameterError

__all__ = ["download_file", "fetch_bytes", "list_bucket_prefixes", "partial_path", "check_url", "ALLOW_HTTP_ENV"]

#: Set this environment variable to 1 to allow plain ``http://`` sources (a mirror on your own network, tests).
ALLOW_HTTP_ENV = "HMBA_TOOLKIT_ALLOW_HTTP"


def check_url(url: str) -> str:
    """Refuse any source but ``https://`` (``http://`` only when ``$HMBA_TOOLKIT_ALLOW_HTTP=1``).

    Examples
    --------
    >>> check_url("https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/releases/")[:8]
    'https://'
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        return url
    if scheme == "http" and os.environ.get(ALLOW_HTTP_ENV) == "1":
        return url
    if scheme == "http":
        raise DownloadError(f"refusing to fetch {url} over plain http; use https, or set {ALLOW_HTTP_ENV}=1 to allow it "
                            "(e.g. for a mirror on your own network)")
    raise DownloadError(f"refusing to fetch {url!r}: only https:// sources are allowed (scheme {scheme or 'none'!r})")

_CHUNK = 1 << 16  # a dropped connection loses at most this much of a transfer
#: HTTP statuses worth retrying (throttling, server overload, gateway trouble).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """A transient server answer: retry after a pause."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def partial_path(dest: str | os.PathLike) -> Path:
    """Where an unfinished download of ``dest`` is kept between attempts."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def _connection_errors() -> tuple[type[BaseException], ...]:
    return (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.Timeout,
    )


def fetch_bytes(url: str, *, timeout: float = 30.0, session: requests.Session | None = None, max_attempts: int = 4,
                backoff: float = 0.5) -> bytes:
    """GET a small resource (a manifest, a listing, an API answer) and return its body.

    Transient answers (HTTP 408, 429, 5xx) and connections cut mid-answer are retried with
    exponential backoff (pause ``backoff * 2**(k-1)`` s before retry k, or the server's
    ``Retry-After`` when it is shorter than 30 s), like :func:`download_file`.

    Raises
    ------
    OfflineError
        When no attempt reached the host (no byte came back).
    DownloadError
        On an HTTP error status, or when every attempt failed after the server answered.

    Examples
    --------
    >>> # not run: fetches from the network; tests/test_download_faults.py runs it against a loopback server
    >>> fetch_bytes("https://api.brain-map.org/api/v2/data/query.json?criteria=model::Gene")[:11]  # doctest: +SKIP
    b'{"success":'
    """
    check_url(url)
    if max_attempts < 1:
        raise ParameterError(f"max_attempts must be >= 1, got {max_attempts}")
    http = session or requests
    reached = False
    last_error: BaseException | None = None
    pause = 0.0
    for attempt in range(max_attempts):
        if attempt and pause > 0:
            time.sleep(pause)
        pause = min(30.0, backoff * 2 ** attempt)
        try:
            resp = http.get(url, timeout=timeout)
        except requests.exceptions.ConnectionError as exc:  # refused, DNS, connect timeout: nothing came back
            last_error = exc
            continue
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.Timeout) as exc:  # cut or stalled mid-answer
            reached = True
            last_error = exc
            continue
        reached = True
        if resp.status_code in RETRY_STATUSES:
            last_error = _Retryable(resp.status_code)
            pause = _retry_after(resp, pause)
            continue
        if resp.status_code != 200:
            raise DownloadError(f"GET {url} returned HTTP {resp.status_code}", status=resp.status_code)
        return resp.content
    if not reached:
        raise OfflineError(
            f"cannot reach {url}: {last_error.__class__.__name__} ({max_attempts} attempts). Are you offline? "
            "Files already in the cache can still be read with AbcCache(root, base_url=None)."
        ) from last_error
    raise DownloadError(f"GET {url} failed after {max_attempts} attempts although the server answered ({last_error!r})",
                        status=getattr(last_error, "status", None)) from last_error


def _retry_after(resp, default: float) -> float:
    """The server's ``Retry-After`` (seconds form) when it is shorter than 30 s, else ``default``."""
    try:
        value = float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return default
    return value if 0 <= value <= 30 else default


def list_bucket_prefixes(base_url: str, prefix: str, *, timeout: float = 30.0) -> list[str]:
    """List the keys and sub-prefixes under ``prefix`` of an S3 bucket served over HTTP.

    Uses the S3 ``ListObjectsV2`` REST call (``?list-type=2&prefix=...&delimiter=/``),
    which the public Allen bucket answers without credentials; follows continuation
    tokens. Returns keys and common prefixes, sorted.
    """
    base_url = base_url.rstrip("/") + "/"
    found: list[str] = []
    token = None
    with requests.Session() as session:
        while True:
            params = {"list-type": "2", "prefix": prefix, "delimiter": "/"}
            if token:
                params["continuation-token"] = token
            req = requests.Request("GET", base_url, params=params).prepare()
            body = fetch_bytes(req.url, timeout=timeout, session=session)
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise DownloadError(f"{req.url}: not an S3 ListObjectsV2 answer ({exc})") from exc
            for node in root.iter():
                tag = node.tag.replace(_S3_NS, "")
                if tag in ("Key", "Prefix") and node.text and node.text != prefix:
                    found.append(node.text)
            truncated = root.findtext(f"{_S3_NS}IsTruncated") or root.findtext("IsTruncated")
            token = root.findtext(f"{_S3_NS}NextContinuationToken") or root.findtext("NextContinuationToken")
            if truncated != "true" or not token:
                break
    return sorted(set(found))


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    md5: str | None = None,
    progress: bool = True,
    max_attempts: int = 5,
    timeout: float = 60.0,
    chunk_size: int = _CHUNK,
    backoff: float = 0.5,
    force: bool = False,
) -> Path:
    """Download ``url`` to ``dest``, resuming after dropped connections, verifying size and md5.

    Parameters
    ----------
    url
        Source address (``http(s)://``).
    dest
        Final local path. It appears only once the file is complete and verified.
    size, md5
        Expected byte count and md5 hex digest (from the manifest). A mismatch after
        a complete transfer discards the partial file, retries once from scratch and
        then raises :class:`~hmba_toolkit.errors.IntegrityError`.
    progress
        Show a tqdm progress bar.
    max_attempts
        Attempts in total; each after a dropped connection resumes with ``Range``.
        Transient HTTP answers (408, 429, 5xx) are retried too; other statuses raise at once.
    backoff
        Pause before retry k is ``backoff * 2**(k-1)`` seconds (capped at 30 s).
    force
        Fetch again even when ``dest`` is complete; the old file stays in place until the new one is verified.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Examples
    --------
    >>> # not run: downloads from the network; tests/test_download.py runs it against a loopback server
    >>> download_file("https://example.org/x.csv", "x.csv", size=10, md5="...")  # doctest: +SKIP
    """
    check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # one process downloads a given file at a time; the others wait, then find it complete
    with file_lock(dest.with_name(f".{dest.name}.lock")):
        if not force and dest.is_file() and (size is None or dest.stat().st_size == size) and (md5 is None or md5sum(dest) == md5):
            return dest
        return _download_locked(url, dest, size, md5, progress, max_attempts, timeout, chunk_size, backoff)


def _download_locked(url, dest: Path, size, md5, progress, max_attempts, timeout, chunk_size, backoff) -> Path:
    part = partial_path(dest)
    integrity_retries = 1
    last_error: BaseException | None = None
    state = {"reached_server": False}
    attempt = 0
    with requests.Session() as session:
        while attempt < max_attempts:
            if attempt and last_error is not None and backoff > 0:
                time.sleep(min(30.0, backoff * 2 ** (attempt - 1)))
            attempt += 1
            offset = part.stat().st_size if part.exists() else 0
            if size is not None and offset > size:
                part.unlink()
                offset = 0
            if size is not None and offset == size:
                complete = True
            else:
                try:
                    complete = _transfer(session, url, part, offset, size, progress, timeout, chunk_size, state)
                except (_Retryable, *_connection_errors()) as exc:
                    last_error = exc
                    continue
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        part.unlink(missing_ok=True)
                        need = f"{size / 1e9:.2f} GB" if size else "the file's size"
                        raise DownloadError(f"no space left on the device while writing {dest}: free {need} there "
                                            f"and retry; the partial file was removed, nothing was written under {dest.name}") from exc
                    raise
            if not complete:
                continue
            got = part.stat().st_size
            if size is not None and got != size:
                last_error = IntegrityError(f"{dest.name}: got {got} bytes, manifest says {size}")
                part.unlink()
                continue
            if md5 is not None:
                actual = md5sum(part)
                if actual != md5:
                    part.unlink()
                    if integrity_retries > 0:
                        integrity_retries -= 1
                        attempt = min(attempt, max_attempts - 1)
                        continue
                    raise IntegrityError(
                        f"{url}: md5 of the downloaded file is {actual}, the manifest says {md5}; "
                        f"the partial file was removed and {dest} was not written"
                    )
            os.replace(part, dest)
            return dest
    if not state["reached_server"] and isinstance(last_error, requests.exceptions.ConnectionError):
        raise OfflineError(
            f"cannot download {url}: the server is unreachable ({last_error.__class__.__name__}). "
            f"Are you offline? Nothing was written to {dest}."
        ) from last_error
    raise DownloadError(
        f"download of {url} failed after {max_attempts} attempts ({last_error!r}); "
        f"the partial file {part.name} is kept and the next call resumes from it",
        status=getattr(last_error, "status", None),
    ) from last_error


def _transfer(session, url, part: Path, offset: int, size, progress, timeout, chunk_size, state) -> bool:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        state["reached_server"] = True
        if resp.status_code == 416 and offset:
            part.unlink()  # our partial file is not a prefix of the remote file
            return False
        if resp.status_code in RETRY_STATUSES:
            raise _Retryable(resp.status_code)
        if resp.status_code not in (200, 206):
            raise DownloadError(f"GET {url} returned HTTP {resp.status_code}", status=resp.status_code)
        mode = "ab" if resp.status_code == 206 and offset else "wb"
        start = offset if mode == "ab" else 0
        bar = tqdm(
            total=size,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=Path(url).name,
            disable=not progress,
            leave=False,
        )
        with bar, open(part, mode) as fh:
            for block in resp.iter_content(chunk_size=chunk_size):
                fh.write(block)
                bar.update(len(block))
    return True
