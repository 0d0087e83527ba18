"""The real download code against a local HTTP stand-in of the bucket (127.0.0.1 only)."""

from __future__ import annotations

import json
import shutil

import pytest

from hmba_toolkit._files import md5sum
from hmba_toolkit.errors import HmbaToolkitError, IntegrityError, ManifestError, OfflineError
from hmba_toolkit.io import AbcCache, download_file
from hmba_toolkit.io.download import partial_path

TAX = "HMBA-BG-taxonomy-CCN20250428"
H5AD = ("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")


DEMO = "releases/20260228/manifest.json"  # hmba_toolkit.datasets.DEMO_MANIFEST


def _remote(tmp_path, bucket, **kw):
    kw.setdefault("manifest", DEMO)
    return AbcCache(tmp_path / "cache", base_url=bucket.url, progress=False, **kw)


def test_clean_download_matches_manifest(tmp_path, bucket, demo_root):
    cache = _remote(tmp_path, bucket)
    assert cache.current_manifest == DEMO
    path = cache.get_file_path(*H5AD)
    entry = cache.manifest.file_entry(*H5AD)
    assert path == (tmp_path / "cache" / entry.relative_path).resolve()
    assert path.stat().st_size == entry.size and md5sum(path) == entry.md5
    assert str(path) in json.loads((tmp_path / "cache" / "_downloaded_data.json").read_text())
    assert (tmp_path / "cache" / "_manifest_last_used.txt").read_text() == DEMO
    # a metadata table reads with string keys
    df = cache.get_metadata_dataframe(TAX, "cluster")
    assert df["label"].str.startswith("CS20250428_CLUST_").all()


def test_resume_after_connection_cut(tmp_path, bucket):
    cache = _remote(tmp_path, bucket)
    entry = cache.manifest.file_entry(*H5AD)
    cut = entry.size // 3
    bucket.cut_after[entry.relative_path] = cut
    path = cache.get_file_path(*H5AD)
    assert md5sum(path) == entry.md5
    ranges = [r for p, r in bucket.requests if p == entry.relative_path]
    assert ranges[0] is None
    # the second request resumed where the first stopped, not from zero
    assert ranges[1] is not None and int(ranges[1].split("=")[1].rstrip("-")) > 0
    assert not partial_path(path).exists()


def test_md5_mismatch_leaves_nothing_under_final_name(tmp_path, bucket):
    cache = _remote(tmp_path, bucket)
    entry = cache.manifest.file_entry(TAX, "cluster")
    bucket.corrupt.add(entry.relative_path)
    with pytest.raises(IntegrityError, match="md5"):
        cache.get_file_path(TAX, "cluster")
    final = tmp_path / "cache" / entry.relative_path
    assert not final.exists() and not partial_path(final).exists()


def test_offline_cache_hit_and_clear_offline_error(tmp_path, bucket):
    cache = _remote(tmp_path, bucket)
    got = cache.get_file_path(TAX, "cluster")
    url = bucket.url
    bucket.httpd.shutdown()
    bucket.httpd.server_close()
    # a new session with the server gone: manifest and file come from the cache
    offline = AbcCache(tmp_path / "cache", base_url=url, progress=False)
    assert offline.current_manifest == DEMO  # the newest release in the cache
    assert offline.get_file_path(TAX, "cluster") == got
    with pytest.raises(OfflineError, match="offline"):
        offline.get_file_path(TAX, "cell_to_cluster_membership")
    assert not (tmp_path / "cache" / offline.manifest.file_entry(TAX, "cell_to_cluster_membership").relative_path).exists()


def test_download_file_offline_raises_offline_error(tmp_path):
    with pytest.raises(OfflineError):
        download_file("http://127.0.0.1:9/nothing.csv", tmp_path / "x.csv", size=3, md5="0" * 32, progress=False, max_attempts=2)
    assert not (tmp_path / "x.csv").exists()


def test_hostile_manifest_path_is_refused(tmp_path, bucket, demo_root):
    hostile_root = tmp_path / "bucket"
    shutil.copytree(demo_root / "releases", hostile_root / "releases")
    manifest_path = hostile_root / DEMO
    m = json.loads(manifest_path.read_text())
    attrs = m["file_listing"][TAX]["metadata"]["cluster"]["files"]["csv"]
    attrs["relative_path"] = "../../outside/cluster.csv"
    manifest_path.write_text(json.dumps(m))
    from _http import BucketServer

    with BucketServer(hostile_root) as server:
        with pytest.raises(ManifestError, match="leaves the cache root"):
            AbcCache(tmp_path / "cache", base_url=server.url, progress=False, manifest=DEMO)
    assert not (tmp_path / "outside").exists()
    with pytest.raises(ManifestError, match="releases/<YYYYMMDD>/manifest.json|leaves the cache root"):
        AbcCache(tmp_path / "cache2", base_url=bucket.url, manifest="../releases/20251031/manifest.json")


def test_pinned_release_and_newest_default(tmp_path, bucket, demo_root):
    newest = AbcCache(tmp_path / "cache", base_url=bucket.url, progress=False)
    assert newest.current_manifest == "releases/20261031/manifest.json"
    assert newest.list_manifest_file_names == [f"releases/{v}/manifest.json" for v in ("20251031", "20260228", "20261031")]
    # the newest release renames two directories; either spelling resolves
    assert newest.manifest.resolve_directory("HMBA-10xMultiome-BG-Aligned") == "HMBA-10xMultiome-BG-Cross-Species"
    assert newest.manifest.resolve_directory("HMBA-BG-taxonomy-CCN20250428") == "HMBA-BG-taxonomy"
    pinned = _remote(tmp_path, bucket, manifest="releases/20251031/manifest.json")
    assert pinned.manifest.version == "20251031"
    assert "HMBA-Macaque-PatchSeq" not in pinned.list_directories
    assert "HMBA-Macaque-PatchSeq" in _remote(tmp_path, bucket).list_directories


def test_a_cached_file_truncated_later_is_not_trusted(tmp_path, bucket):
    cache = _remote(tmp_path, bucket)
    path = cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "donor")  # verified once, recorded as downloaded
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # cut short by a full disk or a careless copy
    assert cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "donor").read_bytes() == good  # fetched again
    path.write_bytes(good[:-10])
    local = AbcCache(tmp_path / "cache", base_url=None, manifest=DEMO)
    with pytest.raises(HmbaToolkitError, match=r"donor\.csv: size or md5 does not match"):
        local.get_metadata_dataframe("HMBA-10xMultiome-BG-Aligned", "donor")


def test_files_written_atomically_honour_the_umask(tmp_path):
    import os
    import stat

    from hmba_toolkit._files import write_text_atomic

    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
