"""Parse the release manifests of the Allen Brain Cell (ABC) atlas bucket.

A release is described by ``releases/<YYYYMMDD>/manifest.json`` with the keys
``version``, ``resource_uri``, ``directory_listing`` and ``file_listing``
(schema of ``abc_atlas_access``'s ``manifest.py``). ``file_listing[directory][kind][tag]``
is either ``{"files": {ext: attrs}}`` or, for expression matrices,
``{"log2": {"files": ...}, "raw": {"files": ...}}``; ``attrs`` holds
``version, relative_path, url, size, file_hash`` (md5 hex).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._names import closest_names
from ..errors import ManifestError

__all__ = ["FileEntry", "Manifest", "DIRECTORY_ALIASES", "KINDS", "safe_relative_path"]

#: Data kinds of the bucket, in the order Allen's cache lists them.
KINDS = ("metadata", "expression_matrices", "image_volumes", "mapmycells")

#: Directory names announced for a later release (Allen staging layout) and the names
#: they replace. Either spelling resolves to whichever the manifest holds.
DIRECTORY_ALIASES = {
    "HMBA-10xMultiome-BG-Aligned": "HMBA-10xMultiome-BG-Cross-Species",
    "HMBA-BG-taxonomy-CCN20250428": "HMBA-BG-taxonomy",
}
_REVERSE_ALIASES = {v: k for k, v in DIRECTORY_ALIASES.items()}


@dataclass(frozen=True)
class FileEntry:
    """One file of a release, as the manifest describes it."""

    directory: str
    kind: str
    tag: str
    extension: str
    relative_path: str
    url: str
    size: int
    md5: str
    version: str

    @property
    def name(self) -> str:
        """The file's base name, e.g. ``cell_metadata.csv``."""
        return posixpath.basename(self.relative_path)


def safe_relative_path(relative_path: str, *, source: str = "manifest") -> str:
    """Return ``relative_path`` normalised, or raise if it could leave the cache root.

    Absolute paths, drive letters, backslashes and any ``..`` component are refused:
    a manifest is data from the network and must never choose where we write.
    """
    if not isinstance(relative_path, str) or not relative_path:
        raise ManifestError(f"{source}: empty or non-string relative_path {relative_path!r}")
    if "\\" in relative_path or "\x00" in relative_path:
        raise ManifestError(f"{source}: relative_path {relative_path!r} has forbidden characters")
    if relative_path.startswith("/") or (len(relative_path) > 1 and relative_path[1] == ":"):
        raise ManifestError(f"{source}: relative_path {relative_path!r} is absolute; refused")
    parts = relative_path.split("/")
    if any(p in ("..", "") for p in parts[:-1]) or parts[-1] in ("..", "", "."):
        raise ManifestError(
            f"{source}: relative_path {relative_path!r} leaves the cache root or is malformed; refused"
        )
    return posixpath.normpath(relative_path)


class Manifest:
    """A parsed release manifest.

    Parameters
    ----------
    data
        The decoded JSON document.
    name
        Where it came from (``releases/<v>/manifest.json``), used in messages.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo
    >>> m = Manifest.from_path(fetch_demo() / "releases/20251031/manifest.json")
    >>> "HMBA-BG-taxonomy-CCN20250428" in m.directories
    True
    """

    def __init__(self, data: dict[str, Any], name: str = "manifest.json") -> None:
        self.name = name
        for key in ("version", "directory_listing", "file_listing"):
            if key not in data:
                raise ManifestError(f"{name}: missing top-level key {key!r}")
        if not isinstance(data["file_listing"], dict) or not isinstance(data["directory_listing"], dict):
            raise ManifestError(f"{name}: 'file_listing' and 'directory_listing' must be objects")
        self.data = data
        self.version = str(data["version"])
        self.resource_uri = data.get("resource_uri", "")
        #: Optional ``directory -> [release, ...]`` lookup (set by the cache) naming other releases in error messages.
        self.other_releases: Callable[[str], list[str]] | None = None
        self._entries = self._parse_entries()

    @classmethod
    def from_path(cls, path: str | os.PathLike, name: str | None = None) -> Manifest:
        """Read a manifest from a local JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
        return cls(data, name=name or str(path))

    # -- parsing ---------------------------------------------------------------------------
    def _parse_entries(self) -> dict[str, dict[str, dict[str, FileEntry]]]:
        out: dict[str, dict[str, dict[str, FileEntry]]] = {}
        for directory, kinds in self.data["file_listing"].items():
            for kind, tags in kinds.items():
                for tag, node in tags.items():
                    if "files" in node:
                        self._add(out, directory, kind, tag, node["files"])
                    else:  # {"log2": {"files": ...}, "raw": {"files": ...}}
                        for norm, sub in node.items():
                            if not isinstance(sub, dict) or "files" not in sub:
                                raise ManifestError(
                                    f"{self.name}: file_listing[{directory!r}][{kind!r}][{tag!r}]"
                                    f"[{norm!r}] has no 'files'"
                                )
                            self._add(out, directory, kind, f"{tag}/{norm}", sub["files"])
        return out

    def _add(self, out, directory: str, kind: str, tag: str, files: dict) -> None:
        for ext, attrs in files.items():
            where = f"{self.name}: file_listing[{directory!r}][{kind!r}][{tag!r}]"
            try:
                rel = safe_relative_path(attrs["relative_path"], source=where)
                entry = FileEntry(
                    directory=directory,
                    kind=kind,
                    tag=tag,
                    extension=ext,
                    relative_path=rel,
                    url=str(attrs.get("url", "")),
                    size=int(attrs["size"]),
                    md5=str(attrs["file_hash"]),
                    version=str(attrs.get("version", "")),
                )
            except KeyError as exc:
                raise ManifestError(f"{where}: missing attribute {exc.args[0]!r}") from None
            except (TypeError, ValueError) as exc:
                raise ManifestError(f"{where}: size {attrs.get('size')!r} is not a number of bytes ({exc})") from None
            out.setdefault(directory, {}).setdefault(kind, {})[tag] = entry

    # -- queries ---------------------------------------------------------------------------
    @property
    def directories(self) -> list[str]:
        """Sorted directory names of the release."""
        return sorted(set(self.data["directory_listing"]) | set(self._entries))

    def resolve_directory(self, directory: str) -> str:
        """Map a directory name (current or announced spelling) to the one this release uses."""
        if directory in self._entries or directory in self.data["directory_listing"]:
            return directory
        for alt in (DIRECTORY_ALIASES.get(directory), _REVERSE_ALIASES.get(directory)):
            if alt and (alt in self._entries or alt in self.data["directory_listing"]):
                return alt
        close = closest_names(directory, self.directories, n=2)
        elsewhere = self.other_releases(directory) if self.other_releases is not None else []
        raise ManifestError(
            f"{self.name}: directory {directory!r} is not in release {self.version}"
            + (f"; it is in release(s) {', '.join(elsewhere)} (load_manifest('releases/<YYYYMMDD>/manifest.json'))" if elsewhere else "")
            + (f"; did you mean {close}?" if close else "")
            + f"; available: {', '.join(self.directories)}"
        )

    def directory_versions(self, directory: str) -> dict[str, str]:
        """Data version of every kind of ``directory`` (kinds may differ)."""
        directory = self.resolve_directory(directory)
        listing = self.data["directory_listing"].get(directory, {}).get("directories", {})
        return {kind: str(v.get("version", "")) for kind, v in listing.items()}

    def list_files(self, directory: str, kind: str | None = None) -> list[str]:
        """Sorted file tags of ``directory`` (of one ``kind`` or all of them)."""
        directory = self.resolve_directory(directory)
        kinds = self._entries.get(directory, {})
        if kind is not None and kind not in kinds:
            raise ManifestError(
                f"{self.name}: directory {directory!r} has no {kind!r} files; it has {sorted(kinds)}"
            )
        selected = [kinds[kind]] if kind else list(kinds.values())
        return sorted(tag for tags in selected for tag in tags)

    def entries(self, directory: str | None = None) -> list[FileEntry]:
        """Every file entry (of one directory, or of the whole release)."""
        dirs = [self.resolve_directory(directory)] if directory else list(self._entries)
        return [e for d in dirs for tags in self._entries.get(d, {}).values() for e in tags.values()]

    def file_entry(self, directory: str, file_name: str, kind: str | None = None) -> FileEntry:
        """Look one file up by tag, e.g. ``"cell_metadata"`` or ``"MERSCOPE-H22.30.001-BG/log2"``."""
        directory = self.resolve_directory(directory)
        kinds = self._entries.get(directory, {})
        candidates = [kinds[kind]] if kind in kinds else ([] if kind else list(kinds.values()))
        for tags in candidates:
            if file_name in tags:
                return tags[file_name]
        matches = sorted(t for tags in candidates for t in tags if t.split("/")[0] == file_name)
        if matches:
            raise ManifestError(
                f"{self.name}: {file_name!r} in {directory!r} names several files: {matches}; "
                "ask for one of them"
            )
        available = sorted(t for tags in candidates for t in tags)
        close = closest_names(file_name, available)
        raise ManifestError(
            f"{self.name}: no file {file_name!r} in directory {directory!r}"
            + (f"; did you mean {close}?" if close else "") + f"; available: {available}"
        )
