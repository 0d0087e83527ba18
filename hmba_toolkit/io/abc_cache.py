"""Manifest-driven access to the Allen Brain Cell atlas bucket (HMBA-BG and the rest).

:class:`AbcCache` mirrors the bucket under a local root exactly as Allen's
``abc_atlas_access.AbcProjectCache`` does (``releases/<v>/manifest.json``,
``metadata/<dir>/<ver>/...``, ``expression_matrices/...``, ``image_volumes/...``,
``_manifest_last_used.txt``, ``_downloaded_data.json``) and uses Allen's method names and
keywords; :class:`hmba_toolkit.io.AbcProjectCache` is the drop-in with Allen's constructors and
release semantics, on which code written for Allen's package runs after changing its imports. It
adds joined cell tables (:meth:`AbcCache.cell_table`), the taxonomy as one table
(:meth:`AbcCache.taxonomy`) and AnnData subsets (:meth:`AbcCache.read_expression`).

Reference: Allen Institute, ``abc_atlas_access`` v1.1.1 (``abc_project_cache.py``,
``cloud_cache.py``, ``manifest.py``); HMBA-BG release notes (manifests 20250531-20251031).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from .._files import md5sum, write_text_atomic
from ..errors import (DataFormatError, DownloadError, IntegrityError, ManifestError, MissingFileError, OfflineError,
                      ParameterError, ParameterTypeError)
from .download import download_file, fetch_bytes, list_bucket_prefixes
from .h5ad import read_h5ad_subset
from .manifest import FileEntry, Manifest, safe_relative_path

__all__ = ["AbcCache", "DEFAULT_BASE_URL", "PATCHSEQ_FEATURE_TABLES", "TAXONOMY_LEVELS", "read_abc_csv"]

#: The public, unsigned HTTPS endpoint of ``s3://allen-brain-cell-atlas/``.
DEFAULT_BASE_URL = "https://allen-brain-cell-atlas.s3.us-west-2.amazonaws.com/"

#: Levels of the CCN20250428 taxonomy, root first.
TAXONOMY_LEVELS = ("Neighborhood", "Class", "Subclass", "Group", "Cluster")

_MANIFEST_RE = re.compile(r"^releases/(\d{8})/manifest\.json$")
_STR_COLUMNS = {
    "label", "cell_barcode", "abc_sample_id", "alignment_job_id", "brain_section_barcode",
    "gene_identifier", "gene_symbol", "donor_nhash_id", "library_nhash_id", "cluster_alias",
    "slab_nhash_id", "specimen_dissected_roi_nhash_id", "parcellation_term_symbol",
}
#: Electrophysiology and morphology tables of the Patch-seq release, joined by :meth:`AbcCache.cell_table`.
PATCHSEQ_FEATURE_TABLES = ("ap_features", "sweep_features", "chirp_features", "cross_sweep_long_square_features",
                           "morphology_features")
_ADJACENT = "Adjacent"
_ADJACENT_COLOR = "#808080"


def read_abc_csv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """Read an ABC metadata CSV with the key columns as strings.

    Every ``*_label`` column and the identifier columns (``cell_barcode``,
    ``alignment_job_id``, ``cluster_alias``, ``gene_identifier``, ...) are read as
    ``str`` (Allen's own notebooks otherwise hit ``DtypeWarning: mixed types`` on
    ``alignment_job_id``); ``number_of_cells`` as nullable ``Int64``.
    """
    path = Path(path)
    try:
        header = pd.read_csv(path, nrows=0).columns
        dtype = {c: str for c in header if c.endswith("_label") or c in _STR_COLUMNS}
        if "number_of_cells" in header:
            dtype["number_of_cells"] = "Int64"
        dtype.update(kwargs.pop("dtype", {}) or {})
        return pd.read_csv(path, dtype=dtype, keep_default_na=True, **kwargs)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise DataFormatError(f"{path}: not a readable CSV table ({type(exc).__name__}: {str(exc)[:160]})") from None


class AbcCache:
    """A local mirror of the ABC atlas bucket, downloading on demand.

    Parameters
    ----------
    root
        Cache directory; files live at ``root / relative_path`` exactly as in the bucket.
    base_url
        HTTP(S) root of the bucket. ``None`` means local only: nothing is downloaded and
        missing files raise.
    manifest
        ``"releases/<YYYYMMDD>/manifest.json"`` to pin a release. Without it the newest
        release on the server is used (or, offline, the newest one in the cache).
    progress
        Show progress bars for downloads.

    Examples
    --------
    >>> cache = AbcCache.from_demo()
    >>> cache.current_manifest
    'releases/20260228/manifest.json'
    >>> cache.list_metadata_files("HMBA-10xMultiome-BG-Aligned")[:3]
    ['cell_metadata', 'donor', 'example_gene_expression']

    The real bucket (network needed):

    >>> # not run: a local copy of the real bucket (tens of GB); AbcCache.from_demo() is the twin that runs
    >>> cache = AbcCache("~/abc_atlas")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        base_url: str | None = DEFAULT_BASE_URL,
        manifest: str | None = None,
        *,
        progress: bool = True,
    ) -> None:
        self.root = Path(root).expanduser()
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self.progress = progress
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        self.load_manifest(manifest)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_demo(cls, **kwargs) -> AbcCache:
        """Open the embedded demo mirror (generated on first use, see :func:`fetch_demo`) on the tutorials' release
        (:data:`hmba_toolkit.datasets.DEMO_MANIFEST`) unless ``manifest=`` names another."""
        from ..datasets import DEMO_MANIFEST, fetch_demo

        kwargs.setdefault("manifest", DEMO_MANIFEST)
        return cls(fetch_demo(), base_url=None, **kwargs)

    @classmethod
    def from_local_cache(cls, root: str | os.PathLike, manifest: str | None = None) -> AbcCache:
        """Open an existing mirror read-only (Allen's ``from_local_cache``)."""
        return cls(root, base_url=None, manifest=manifest)

    # -- manifests ------------------------------------------------------------------------
    @property
    def list_manifest_file_names(self) -> list[str]:
        """Release manifests available (on the server when online, else in the cache), oldest first."""
        if self.base_url:
            try:
                keys = list_bucket_prefixes(self.base_url, "releases/")
                names = sorted({f"{k.rstrip('/')}/manifest.json" if k.endswith("/") else k for k in keys})
                return [n for n in names if _MANIFEST_RE.match(n)]
            except OfflineError:
                pass
        return self.list_all_downloaded_manifests

    @property
    def list_all_downloaded_manifests(self) -> list[str]:
        """Release manifests present in the local cache, oldest first."""
        found = (p.relative_to(self.root).as_posix() for p in self.root.glob("releases/*/manifest.json"))
        return sorted(n for n in found if _MANIFEST_RE.match(n))

    @property
    def current_manifest(self) -> str:
        """The manifest in use, e.g. ``'releases/20260228/manifest.json'``."""
        return self._manifest_name

    @property
    def latest_manifest_file(self) -> str:
        """The newest release manifest available."""
        names = self.list_manifest_file_names
        if not names:
            raise ManifestError(f"no release manifest found under {self.root / 'releases'}")
        return names[-1]

    @property
    def latest_downloaded_manifest_file(self) -> str:
        """The newest release manifest already in the local cache (Allen's name)."""
        names = self.list_all_downloaded_manifests
        if not names:
            raise ManifestError(f"no release manifest in the local cache {self.root / 'releases'}")
        return names[-1]

    def _read_manifest(self, manifest_name: str) -> Manifest:
        """Parse a release manifest, fetching it into the cache first when needed (nothing is switched)."""
        manifest_name = safe_relative_path(manifest_name, source="manifest argument")
        if not _MANIFEST_RE.match(manifest_name):
            raise ManifestError(
                f"manifest {manifest_name!r} is not of the form 'releases/<YYYYMMDD>/manifest.json'"
            )
        local = self.root / manifest_name
        if not local.exists():
            if not self.base_url:
                raise ManifestError(
                    f"{local} does not exist and this cache is local only (base_url=None); "
                    f"local releases: {self.list_all_downloaded_manifests}"
                )
            try:
                body = fetch_bytes(self.base_url + manifest_name)
            except DownloadError as exc:
                if exc.status not in (403, 404):
                    raise
                raise ManifestError(f"release {manifest_name!r} is not in the bucket {self.base_url}; releases: "
                                    f"{self.list_manifest_file_names}") from exc
            try:
                json.loads(body)  # refuse to cache something that is not JSON
            except ValueError as exc:
                raise ManifestError(f"{self.base_url + manifest_name}: the answer is not a JSON manifest ({exc})") from exc
            local.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(local, body.decode("utf-8"))
        manifest = Manifest.from_path(local, name=manifest_name)
        manifest.other_releases = self._releases_with_directory
        return manifest

    def _releases_with_directory(self, directory: str) -> list[str]:
        """Releases in the local cache whose manifest holds ``directory`` (for error messages)."""
        found = []
        for name in self.list_all_downloaded_manifests:
            try:
                data = json.loads((self.root / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if directory in data.get("directory_listing", {}) or directory in data.get("file_listing", {}):
                found.append(name.split("/")[1])
        return found

    def load_manifest(self, manifest_name: str | None = None) -> None:
        """Switch to ``manifest_name`` (default: the newest release), fetching it if needed."""
        if manifest_name is None:
            manifest_name = self.latest_manifest_file  # server listing, or the cache when offline
        self.manifest = self._read_manifest(manifest_name)
        self._manifest_name = self.manifest.name
        self._frames.clear()
        if os.access(self.root, os.W_OK):
            write_text_atomic(self.root / "_manifest_last_used.txt", self._manifest_name)

    def load_latest_manifest(self) -> None:
        """Switch to the newest release (Allen's name)."""
        self.load_manifest(self.latest_manifest_file)

    def compare_manifests(self, manifest_newer_name: str, manifest_older_name: str) -> dict[str, dict[str, list[str]]]:
        """What changed from one release to a later one, in the shape of Allen's ``compare_manifests``.

        Returns
        -------
        dict
            ``directory_changes`` (``new_dirs``, ``removed_dirs``) and, per kind (``metadata_changes``,
            ``expression_matrix_file_changes``, ``image_volume_file_changes``, ``mapmycells_file_changes``), the
            ``"<directory>: <file>"`` entries that are ``new_<kind>``, ``removed_<kind>``, ``changed_<kind>``
            (another version) and ``manifest_error_<kind>`` (other attributes under the same version); lists sorted.

        Examples
        --------
        >>> cache = AbcCache.from_demo()
        >>> diff = cache.compare_manifests("releases/20260228/manifest.json", "releases/20251031/manifest.json")
        >>> diff["directory_changes"]["new_dirs"]
        ['HMBA-Macaque-PatchSeq']
        """
        if manifest_older_name > manifest_newer_name:
            raise ParameterError(f"compare_manifests takes the newer release first: {manifest_newer_name!r} is older than "
                                 f"{manifest_older_name!r}; swap them")
        new, old = self._read_manifest(manifest_newer_name), self._read_manifest(manifest_older_name)
        out: dict[str, dict[str, list[str]]] = {"directory_changes": {
            "new_dirs": sorted(set(new.directories) - set(old.directories)),
            "removed_dirs": sorted(set(old.directories) - set(new.directories)),
        }}
        names = {"metadata": "metadata_changes", "expression_matrices": "expression_matrix_file_changes",
                 "image_volumes": "image_volume_file_changes", "mapmycells": "mapmycells_file_changes"}
        for kind, key in names.items():
            a = {f"{e.directory}: {e.tag}": e for e in new.entries() if e.kind == kind}
            b = {f"{e.directory}: {e.tag}": e for e in old.entries() if e.kind == kind}
            both = sorted(set(a) & set(b))
            differs = [n for n in both if (a[n].size, a[n].md5, a[n].relative_path, a[n].url)
                       != (b[n].size, b[n].md5, b[n].relative_path, b[n].url) or a[n].version != b[n].version]
            out[key] = {
                f"new_{kind}": sorted(set(a) - set(b)),
                f"removed_{kind}": sorted(set(b) - set(a)),
                f"changed_{kind}": [n for n in differs if a[n].version != b[n].version],
                f"manifest_error_{kind}": [n for n in differs if a[n].version == b[n].version],
            }
        return out

    # -- listing ---------------------------------------------------------------------------
    @property
    def list_directories(self) -> list[str]:
        """Directories of the current release (a property, as in Allen's cache)."""
        return self.manifest.directories

    def list_metadata_files(self, directory: str) -> list[str]:
        """Tags of the metadata tables of ``directory``."""
        return self.manifest.list_files(directory, "metadata")

    def list_expression_matrix_files(self, directory: str) -> list[str]:
        """Tags of the expression matrices (``'<label>/log2'``, ``'<label>/raw'``)."""
        return self.manifest.list_files(directory, "expression_matrices")

    def list_image_volume_files(self, directory: str) -> list[str]:
        """Tags of the image volumes (region polygons of the spatial slabs)."""
        return self.manifest.list_files(directory, "image_volumes")

    def list_mapmycells_files(self, directory: str) -> list[str]:
        """Tags of the MapMyCells files."""
        return self.manifest.list_files(directory, "mapmycells")

    def list_data_files(self, directory: str) -> list[str]:
        """Tags of every non-metadata file of ``directory`` (Allen's v0.x call)."""
        d = self.manifest.resolve_directory(directory)
        kinds = self.manifest.directory_versions(d)
        return sorted(t for k in kinds if k != "metadata" for t in self.manifest.list_files(d, k))

    # -- file access -----------------------------------------------------------------------
    def _local_path(self, entry: FileEntry) -> Path:
        path = (self.root / entry.relative_path).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ManifestError(f"{self.current_manifest}: {entry.relative_path!r} leaves the cache root; refused")
        return path

    def _downloaded(self) -> set[str]:
        p = self.root / "_downloaded_data.json"
        try:
            return set(json.loads(p.read_text(encoding="utf-8")))
        except (FileNotFoundError, json.JSONDecodeError):
            return set()

    def _record_downloaded(self, path: Path) -> None:
        done = self._downloaded() | {str(path)}
        write_text_atomic(self.root / "_downloaded_data.json", json.dumps(sorted(done), indent=1))

    def file_table(self, directory: str | None = None) -> pd.DataFrame:
        """Every file of the release (or of one directory) as a tidy table.

        Columns ``directory, kind, file_name, size_mb, version, relative_path``, sorted by
        directory, kind and file name. Sizes are the manifest's (the real files can be
        tens of GB; nothing is downloaded).
        """
        rows = [
            {"directory": e.directory, "kind": e.kind, "file_name": e.tag, "size_mb": round(e.size / 2**20, 2),
             "version": e.version, "relative_path": e.relative_path}
            for e in self.manifest.entries(directory)
        ]
        return pd.DataFrame(rows).sort_values(["directory", "kind", "file_name"], ignore_index=True)

    def get_file_path(
        self,
        directory: str,
        file_name: str,
        force_download: bool = False,
        skip_hash_check: bool = False,
    ) -> Path:
        """Local path of one file of the release, downloading and verifying it when needed.

        ``file_name`` is the manifest tag: ``'cell_metadata'``, ``'<label>/log2'``, a slab
        plane label for a polygon file. A file already in the cache is trusted once its
        md5 has matched (recorded in ``_downloaded_data.json``) and only while its size is still the
        manifest's (one ``stat`` per read: a file truncated later is caught); otherwise its md5 is
        checked now, and a mismatch triggers a fresh download (or an error when local only).
        """
        entry = self.manifest.file_entry(directory, file_name)
        path = self._local_path(entry)
        if path.exists() and not force_download:
            intact_size = path.stat().st_size == entry.size
            if intact_size and (skip_hash_check or str(path) in self._downloaded()):
                return path
            if intact_size and md5sum(path) == entry.md5:
                if os.access(self.root, os.W_OK):
                    self._record_downloaded(path)
                return path
            if not self.base_url:
                raise IntegrityError(
                    f"{path}: size or md5 does not match {self.current_manifest} "
                    f"(expected {entry.size} bytes, md5 {entry.md5}); the local copy is damaged"
                )
        if not self.base_url:
            raise MissingFileError(
                f"{path} is not in the local cache and this cache is local only (base_url=None)"
            )
        url = self.base_url + entry.relative_path
        download_file(
            url, path, size=entry.size, md5=None if skip_hash_check else entry.md5, progress=self.progress,
            force=force_download,
        )
        self._record_downloaded(path)
        return path

    def get_metadata_path(self, directory: str, file_name: str, **kwargs) -> Path:
        """Path of a metadata table (Allen's name)."""
        return self.get_file_path(directory, file_name, **kwargs)

    def get_data_path(self, directory: str, file_name: str, **kwargs) -> Path:
        """Path of a data file: expression matrix, image volume, MapMyCells file (Allen's name)."""
        return self.get_file_path(directory, file_name, **kwargs)

    def _get_directory(self, directory: str, kind: str, force_download: bool, skip_hash_check: bool) -> list[Path]:
        tags = self.manifest.list_files(directory, kind)
        return [self.get_file_path(directory, t, force_download=force_download, skip_hash_check=skip_hash_check) for t in tags]

    def get_directory_metadata(self, directory: str, force_download: bool = False, skip_hash_check: bool = False) -> list[Path]:
        """Fetch every metadata table of ``directory``."""
        return self._get_directory(directory, "metadata", force_download, skip_hash_check)

    def get_directory_expression_matrices(self, directory: str, force_download: bool = False,
                                          skip_hash_check: bool = False) -> list[Path]:
        """Fetch every expression matrix of ``directory`` (multi-GB on the real bucket)."""
        return self._get_directory(directory, "expression_matrices", force_download, skip_hash_check)

    def get_directory_image_volumes(self, directory: str, force_download: bool = False, skip_hash_check: bool = False) -> list[Path]:
        """Fetch every image volume of ``directory`` (region polygons of the spatial slabs)."""
        return self._get_directory(directory, "image_volumes", force_download, skip_hash_check)

    def get_directory_mapmycells(self, directory: str, force_download: bool = False, skip_hash_check: bool = False) -> list[Path]:
        """Fetch every MapMyCells file of ``directory``."""
        return self._get_directory(directory, "mapmycells", force_download, skip_hash_check)

    def get_directory_size_by_kind(self, directory: str, data_kind: str) -> str:
        """Total manifest size of one kind of files of ``directory``, as Allen prints it (``"1.23 GB"`` or ``"45.6 MB"``).

        Examples
        --------
        >>> AbcCache.from_demo().get_directory_size_by_kind("HMBA-10xMultiome-BG-Aligned", "metadata")[-2:]
        'MB'
        """
        kinds = ("metadata", "expression_matrices", "image_volumes", "mapmycells")
        if data_kind not in kinds:
            raise ParameterError(f"data_kind must be one of {kinds}, not {data_kind!r}")
        total = sum(e.size for e in self.manifest.entries(directory) if e.kind == data_kind) / 1024**3
        if not any(e.kind == data_kind for e in self.manifest.entries(directory)):
            self.manifest.list_files(directory, data_kind)  # raises, naming the kinds the directory has
        return f"{round(total, 2)} GB" if total >= 1 else f"{round(total * 1024, 2)} MB"

    def get_directory_metadata_size(self, directory: str) -> str:
        """Size of the metadata of ``directory`` (Allen's name)."""
        return self.get_directory_size_by_kind(directory, "metadata")

    def get_directory_expression_matrix_size(self, directory: str) -> str:
        """Size of the expression matrices of ``directory`` (Allen's name)."""
        return self.get_directory_size_by_kind(directory, "expression_matrices")

    def get_directory_image_volume_size(self, directory: str) -> str:
        """Size of the image volumes of ``directory`` (Allen's name)."""
        return self.get_directory_size_by_kind(directory, "image_volumes")

    def get_directory_mapmycells_size(self, directory: str) -> str:
        """Size of the MapMyCells files of ``directory`` (Allen's name)."""
        return self.get_directory_size_by_kind(directory, "mapmycells")

    def get_metadata_dataframe(self, directory: str, file_name: str, force_download: bool = False, skip_hash_check: bool = False,
                               **kwargs) -> pd.DataFrame:
        """A metadata table as a DataFrame, key columns read as strings (see :func:`read_abc_csv`)."""
        path = self.get_file_path(directory, file_name, force_download=force_download, skip_hash_check=skip_hash_check)
        return read_abc_csv(path, **kwargs)

    # -- tables ------------------------------------------------------------------------------
    def _table(self, directory: str, name: str, index: str | None = None) -> pd.DataFrame:
        key = (self.manifest.resolve_directory(directory), name)
        if key not in self._frames:
            df = read_abc_csv(self.get_file_path(*key))  # not get_metadata_dataframe: AbcProjectCache reads as Allen's does
            self._frames[key] = df.set_index(index) if index else df
        return self._frames[key].copy()

    @property
    def taxonomy_directory(self) -> str:
        """The taxonomy directory of the release (current or announced name)."""
        return self.manifest.resolve_directory("HMBA-BG-taxonomy-CCN20250428")

    def taxonomy(self) -> pd.DataFrame:
        """One row per cluster alias with the name, label, colour and order of every level.

        Columns ``Neighborhood ... Cluster`` (names), ``<level>_label``, ``<level>_color``,
        ``<level>_order``; index ``cluster_alias``. This is the pivot Allen's notebooks build
        from ``cluster_to_cluster_annotation_membership`` and ``cluster_annotation_term``.
        """
        tax = self.taxonomy_directory
        terms = self._table(tax, "cluster_annotation_term", "label")
        sets = self._table(tax, "cluster_annotation_term_set").sort_values("order")
        member = self._table(tax, "cluster_to_cluster_annotation_membership")
        m = member.join(terms[["color_hex_triplet", "term_order"]], on="cluster_annotation_term_label")
        wide = m.pivot(
            index="cluster_alias",
            columns="cluster_annotation_term_set_name",
            values=["cluster_annotation_term_name", "cluster_annotation_term_label", "color_hex_triplet", "term_order"],
        )
        levels = list(sets["name"])
        out = pd.DataFrame(index=wide.index)
        for lvl in levels:
            out[lvl] = wide[("cluster_annotation_term_name", lvl)]
        for lvl in levels:
            out[f"{lvl}_label"] = wide[("cluster_annotation_term_label", lvl)]
            out[f"{lvl}_color"] = wide[("color_hex_triplet", lvl)]
            out[f"{lvl}_order"] = wide[("term_order", lvl)].astype("Int64")
        out.index.name = "cluster_alias"
        return out.sort_values(f"{levels[-1]}_order")

    def cell_table(self, directory: str, *, fill_adjacent: bool = True) -> pd.DataFrame:
        """The joined cell table of a 10X or spatial directory.

        10X: ``cell_metadata`` + ``donor`` + ``library`` (suffix ``_library_table``) + the
        taxonomy (``cell_to_cluster_membership`` of the taxonomy directory). Cells without a
        cluster keep NaN taxonomy columns.

        Spatial: ``cell_metadata`` + ``specimen_metadata`` (suffix ``_specimen``) +
        ``slab_plane_coordinates`` + ``cell_anatomical_annotations`` + the directory's own
        ``cell_to_cluster_membership`` + the taxonomy. Cells mapped outside the released
        taxonomy are labelled ``"Adjacent"`` at every level (colour ``#808080``) when
        ``fill_adjacent``, as Allen's notebooks do.

        Patch-seq (``HMBA-Macaque-PatchSeq``): ``cell_metadata`` + ``donor`` + ``library`` + the taxonomy of the
        directory's ``cell_to_cluster_membership`` + the MapMyCells results (``<level>_bootstrapping_probability``,
        ``<level>_aggregate_probability``, ``<level>_correlation_coefficient``) + every electrophysiology and
        morphology feature table (:data:`PATCHSEQ_FEATURE_TABLES`; NaN for cells without the measurement, e.g. cells
        that were not reconstructed).

        Index ``cell_label``; cells are those of ``cell_metadata`` (QC-failed spatial cells
        included: filter on ``qc_pass``).

        Examples
        --------
        >>> cells = AbcCache.from_demo().cell_table("HMBA-Macaque-PatchSeq")
        >>> cells[["Group", "Group_bootstrapping_probability", "width_rheo_ms", "soma_surface_area"]].notna().sum().tolist()
        [180, 180, 180, 120]
        """
        d = self.manifest.resolve_directory(directory)
        tags = set(self.list_metadata_files(d))
        cells = self._table(d, "cell_metadata", "cell_label")
        spatial = "specimen_metadata" in tags
        patchseq = bool(tags & set(PATCHSEQ_FEATURE_TABLES))
        if spatial:
            cells = cells.join(self._table(d, "specimen_metadata", "brain_section_label"), on="brain_section_label", rsuffix="_specimen")
            if "slab_plane_coordinates" in tags:
                coords = self._table(d, "slab_plane_coordinates", "cell_label")
                cells = cells.join(coords.drop(columns=[c for c in coords if c in cells]), how="left")
            if "cell_anatomical_annotations" in tags:
                cells = cells.join(self._table(d, "cell_anatomical_annotations", "cell_label"), how="left")
        else:  # 10X and Patch-seq
            if "donor" in tags:
                cells = cells.join(self._table(d, "donor", "donor_label"), on="donor_label")
            if "library" in tags:
                cells = cells.join(self._table(d, "library", "library_label"), on="library_label", rsuffix="_library_table")
        # spatial and Patch-seq cells are mapped in their own directory; 10X cells in the taxonomy's
        mapped_in = d if spatial or patchseq else self.taxonomy_directory
        membership = self._table(mapped_in, "cell_to_cluster_membership", "cell_label")[["cluster_alias", "cluster_label"]]
        cells = cells.join(membership, how="left")
        tax = self.taxonomy()
        cells = cells.join(tax, on="cluster_alias")
        if patchseq:
            if "mmc_results" in tags:
                mmc = self._table(d, "mmc_results", "cell_label")
                scores = [c for c in mmc.columns if c.endswith(("_bootstrapping_probability", "_aggregate_probability",
                                                                 "_correlation_coefficient"))]
                cells = cells.join(mmc[scores], how="left")
            for name in PATCHSEQ_FEATURE_TABLES:
                if name in tags:
                    features = self._table(d, name, "cell_label")
                    cells = cells.join(features.drop(columns=[c for c in features if c in cells]), how="left")
        if spatial and fill_adjacent:
            # Adjacent: a cluster outside the released taxonomy, or no cluster row at all (Allen's fill_adjacent_data)
            unmapped = cells["Cluster"].isna()
            for col in ("cluster_alias", "cluster_label"):
                cells.loc[unmapped & cells[col].isna(), col] = _ADJACENT
            for lvl in TAXONOMY_LEVELS:
                cells.loc[unmapped, lvl] = _ADJACENT
                cells.loc[unmapped, f"{lvl}_color"] = _ADJACENT_COLOR
                cells.loc[unmapped, f"{lvl}_order"] = int(tax[f"{lvl}_order"].max()) + 1
        cells.index.name = "cell_label"
        return cells

    # -- expression -----------------------------------------------------------------------
    def read_expression(
        self,
        directory: str,
        *,
        cells: Sequence[str] | pd.Index | None = None,
        genes: Sequence[str] | None = None,
        normalization: str = "log2",
        matrix: str | None = None,
        gene_column: str | None = "gene_symbol",
        obs: Sequence[str] | bool | None = None,
    ) -> ad.AnnData:
        """A subset of an expression matrix as AnnData, reading only the rows asked for.

        Parameters
        ----------
        directory
            e.g. ``"HMBA-10xMultiome-BG-Aligned"`` or ``"HMBA-MERSCOPE-H22.30.001-BG"``.
        cells
            ``cell_label`` values; ``None`` for all cells of the file.
        genes
            Gene symbols (or identifiers with ``gene_column=None``); ``None`` for all.
        normalization
            ``"log2"`` (log2(CPM+1) for 10X, log2(CPT+1) for spatial) or ``"raw"`` counts.
        matrix
            Feature matrix label when a directory holds several (per-species 10X).
        gene_column
            The ``var`` column ``genes`` are matched on (None: the gene identifiers of ``var_names``).
        obs
            Columns of :meth:`cell_table` to join onto ``obs`` (taxonomy levels, donor, region, colours), or True
            for all of them; None keeps the matrix's own ``obs``.

        Returns
        -------
        anndata.AnnData
            Cells x genes, ``var_names`` the gene identifiers, ``var`` with ``gene_symbol``, ``uns["normalization"]``
            ``"log2"`` or ``"raw"``.

        Examples
        --------
        >>> cache = AbcCache.from_demo()
        >>> cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
        >>> msn = cells.index[cells["Group"] == "STRd D1 Matrix MSN"]
        >>> raw = cache.read_expression("HMBA-10xMultiome-BG-Aligned", cells=msn, normalization="raw",
        ...                             obs=["Group", "donor_label", "species_genus"])
        >>> sorted(raw.obs["Group"].unique()), raw.uns["normalization"]
        (['STRd D1 Matrix MSN'], 'raw')
        """
        if normalization not in ("log2", "raw"):
            raise ParameterError(f"normalization must be 'log2' or 'raw', not {normalization!r}")
        d = self.manifest.resolve_directory(directory)
        labels = sorted({t.split("/")[0] for t in self.list_expression_matrix_files(d)})
        if matrix is None:
            if len(labels) != 1:
                raise ParameterError(f"{d} holds several matrices {labels}; pass matrix=")
            matrix = labels[0]
        elif matrix not in labels:
            raise ParameterError(f"matrix {matrix!r} is not in {d}; choose from {labels}")
        path = self.get_file_path(d, f"{matrix}/{normalization}")
        out = read_h5ad_subset(path, cells=cells, genes=genes, gene_column=gene_column)
        out.uns["normalization"] = normalization  # as the release's files say it (normalize refuses to redo "log2")
        if obs is not None and obs is not False:
            table = self.cell_table(d)
            if obs is True:
                obs = list(table.columns)
            elif isinstance(obs, str):
                raise ParameterTypeError(f"obs must be a list of cell-table columns or True, not one string; use [{obs!r}]")
            missing = [c for c in obs if c not in table.columns]
            if missing:
                raise ParameterError(f"obs: {missing} are not columns of the {d} cell table; columns: {list(table.columns)}")
            new = [c for c in obs if c not in out.obs.columns]
            out.obs = out.obs.join(table[new].reindex(out.obs_names))
        return out

    def get_gene_data(
        self,
        all_cells: pd.DataFrame,
        all_genes: pd.DataFrame,
        selected_genes: Sequence[str],
        data_type: str = "log2",
    ) -> pd.DataFrame:
        """Expression of ``selected_genes`` (symbols) for the cells of ``all_cells``.

        Same contract as Allen's ``anndata_utils.get_gene_data``: ``all_cells`` carries
        ``dataset_label`` and ``feature_matrix_label``; ``all_genes`` is a gene table
        (index ``gene_identifier``, column ``gene_symbol``); the result is indexed like
        ``all_cells`` with one column per symbol, NaN for cells absent from the matrix.
        Unlike Allen's, only the requested cells' rows are decompressed, and when a gene index of the
        file exists (:func:`hmba_toolkit.stream.build_gene_index`) it is used instead of the matrix.
        """
        missing = [g for g in selected_genes if g not in set(all_genes["gene_symbol"])]
        if missing:
            raise ParameterError(f"selected_genes not in all_genes['gene_symbol']: {missing}")
        out = pd.DataFrame(index=all_cells.index, columns=list(selected_genes), dtype="float32")
        from .gene_index import has_gene_index, read_genes

        for (dataset, label), group in all_cells.groupby(["dataset_label", "feature_matrix_label"], sort=True):
            path = self.get_file_path(dataset, f"{label}/{data_type}")
            if has_gene_index(path):  # a gene-major index exists: no pass over the cell-major file
                cols = read_genes(path, list(selected_genes), gene_column="gene_symbol", index=True, progress=False)
                present = group.index.intersection(cols.index, sort=False)
                out.loc[present, list(selected_genes)] = cols.loc[present].to_numpy()
                continue
            sub = read_h5ad_subset(path, cells=group.index, genes=list(selected_genes), gene_column="gene_symbol",
                                   missing_cells="skip")
            if sub.n_obs:
                out.loc[sub.obs_names, list(selected_genes)] = sub.X.toarray()
        out.columns.name = "gene_symbol"
        return out

    def __repr__(self) -> str:
        where = self.base_url or "local only"
        return f"AbcCache(root={str(self.root)!r}, manifest={self.current_manifest!r}, source={where!r})"
