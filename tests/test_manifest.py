from __future__ import annotations

import pytest

from hmba_toolkit.errors import HmbaToolkitError, ManifestError
from hmba_toolkit.io import Manifest
from hmba_toolkit.io.manifest import safe_relative_path


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../b", "a\\b", "C:/x", "a//b", "a/./"])
def test_unsafe_relative_paths_are_refused(bad):
    with pytest.raises(ManifestError):
        safe_relative_path(bad)


def test_errors_share_one_base_class():
    assert issubclass(ManifestError, HmbaToolkitError)


def test_real_manifest_excerpt_parses(fixtures_dir):
    m = Manifest.from_path(fixtures_dir / "hmba_reference" / "manifest_20250531_HMBA_excerpt.json")
    assert m.version == "20250531"
    e = m.file_entry("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/log2")
    assert e.size == 17308829774 and e.md5 == "15551f46a92fbcb3b9ddfd64fe255e19"
    assert e.relative_path.endswith("HMBA-10xMultiome-BG-Aligned-log2.h5ad")
    # the announced renamed directories resolve to the current ones
    assert m.resolve_directory("HMBA-10xMultiome-BG-Cross-Species") == "HMBA-10xMultiome-BG-Aligned"
    assert m.resolve_directory("HMBA-BG-taxonomy") == "HMBA-BG-taxonomy-CCN20250428"
    with pytest.raises(ManifestError, match="names several files"):
        m.file_entry("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned")
    with pytest.raises(ManifestError, match="not in release"):
        m.resolve_directory("WMB-10Xv3")


def test_malformed_manifest_names_the_key():
    with pytest.raises(ManifestError, match="file_listing"):
        Manifest({"version": "1", "directory_listing": {}}, name="x.json")
    bad = {"version": "1", "directory_listing": {}, "file_listing": {"D": {"metadata": {"t": {"files": {"csv": {"relative_path": "a.csv"}}}}}}}
    with pytest.raises(ManifestError, match="size"):
        Manifest(bad, name="x.json")
