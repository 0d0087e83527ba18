"""Fault injection against a loopback server: random cuts, stalls, kills, two processes, a full disk, schemes."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hmba_toolkit._files import md5sum
from hmba_toolkit.errors import DownloadError
from hmba_toolkit.io import download, download_file
from hmba_toolkit.io.download import partial_path

H5AD = ("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")


@pytest.fixture
def big(cache):
    entry = cache.manifest.file_entry(*H5AD)
    return entry


def test_resume_after_cuts_at_random_offsets(tmp_path, bucket, big):
    rng = np.random.default_rng(7)
    for k, cut in enumerate(sorted(rng.integers(1, big.size - 1, 6))):
        bucket.cut_after[big.relative_path] = int(cut)
        dest = tmp_path / f"{k}.h5ad"
        download_file(bucket.url + big.relative_path, dest, size=big.size, md5=big.md5, progress=False, backoff=0)
        assert md5sum(dest) == big.md5 and not partial_path(dest).exists()


def test_a_stalled_server_times_out_instead_of_hanging(tmp_path, bucket, big):
    bucket.stall[big.relative_path] = 5.0
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download_file(bucket.url + big.relative_path, tmp_path / "x.h5ad", size=big.size, md5=big.md5, progress=False,
                      max_attempts=2, timeout=0.3, backoff=0)
    assert time.perf_counter() - t0 < 4.0
    assert not (tmp_path / "x.h5ad").exists()
    # silence in the middle of the body is a timeout too; the next attempt resumes the bytes kept
    del bucket.stall[big.relative_path]
    bucket.stall_after[big.relative_path] = (200_000, 5.0)
    with pytest.raises(DownloadError):
        download_file(bucket.url + big.relative_path, tmp_path / "y.h5ad", size=big.size, md5=big.md5, progress=False,
                      max_attempts=1, timeout=0.3, backoff=0)
    kept = partial_path(tmp_path / "y.h5ad").stat().st_size
    assert kept > 0 and not (tmp_path / "y.h5ad").exists()
    del bucket.stall_after[big.relative_path]
    download_file(bucket.url + big.relative_path, tmp_path / "y.h5ad", size=big.size, md5=big.md5, progress=False, backoff=0)
    assert md5sum(tmp_path / "y.h5ad") == big.md5
    assert bucket.requests[-1] == (big.relative_path, f"bytes={kept}-")


_CHILD = textwrap.dedent("""
    import os, sys
    os.environ["HMBA_TOOLKIT_ALLOW_HTTP"] = "1"
    from hmba_toolkit.io import download_file
    download_file(sys.argv[1], sys.argv[2], size=int(sys.argv[3]), md5=sys.argv[4], progress=False, backoff=0)
    print("done", flush=True)
""")


def _child(url, dest, entry):
    return subprocess.Popen([sys.executable, "-c", _CHILD, url, str(dest), str(entry.size), entry.md5],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_download_leaves_no_final_file_and_resumes(tmp_path, bucket, big):
    bucket.stall_after[big.relative_path] = (300_000, 30.0)
    dest = tmp_path / "killed.h5ad"
    proc = _child(bucket.url + big.relative_path, dest, big)
    part = partial_path(dest)
    deadline = time.time() + 20
    while time.time() < deadline and not (part.exists() and part.stat().st_size > 0):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert part.exists() and part.stat().st_size > 0 and not dest.exists()
    del bucket.stall_after[big.relative_path]
    download_file(bucket.url + big.relative_path, dest, size=big.size, md5=big.md5, progress=False, backoff=0)
    assert md5sum(dest) == big.md5
    assert int(bucket.requests[-1][1].split("=")[1].rstrip("-")) > 0  # resumed, not restarted


def test_two_processes_fetching_one_file_download_it_once(tmp_path, bucket, big):
    bucket.delay = 0.5
    dest = tmp_path / "shared.h5ad"
    procs = [_child(bucket.url + big.relative_path, dest, big) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [r for r in bucket.requests if r[0] == big.relative_path] == [(big.relative_path, None)]
    assert md5sum(dest) == big.md5


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, bucket, big, monkeypatch):
    def full(session, url, part, offset, size, progress, timeout, chunk_size, state):
        Path(part).write_bytes(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download, "_transfer", full)
    dest = tmp_path / "full.h5ad"
    with pytest.raises(DownloadError, match=r"no space left on the device while writing .*full\.h5ad.*free 0\.00 GB"):
        download_file(bucket.url + big.relative_path, dest, size=big.size, md5=big.md5, progress=False)
    assert not dest.exists() and not partial_path(dest).exists()


def test_only_https_unless_http_is_allowed_explicitly(tmp_path, bucket, big, monkeypatch):
    for url in ("ftp://example.org/x.csv", "file:///etc/passwd", "x.csv"):
        with pytest.raises(DownloadError, match="only https"):
            download_file(url, tmp_path / "x", progress=False)
    monkeypatch.delenv("HMBA_TOOLKIT_ALLOW_HTTP")
    with pytest.raises(DownloadError, match="plain http.*HMBA_TOOLKIT_ALLOW_HTTP=1"):
        download_file(bucket.url + big.relative_path, tmp_path / "x", progress=False)
    assert bucket.requests == []  # refused before any connection
    from hmba_toolkit.io import AbcCache

    with pytest.raises(DownloadError, match="plain http"):
        AbcCache(tmp_path / "c", base_url=bucket.url, progress=False).get_file_path(*H5AD)
