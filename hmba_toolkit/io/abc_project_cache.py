"""A drop-in for Allen's ``abc_atlas_access`` client: :class:`AbcProjectCache` and :func:`get_gene_data`.

Code written for Allen's client runs after changing only its imports::

    # from abc_atlas_access.abc_atlas_cache.abc_project_cache import AbcProjectCache
    # from abc_atlas_access.abc_atlas_cache.anndata_utils import get_gene_data
    from hmba_toolkit.io import AbcProjectCache, get_gene_data

:class:`AbcProjectCache` has Allen's constructors (``from_cache_dir``, ``from_s3_cache``, ``from_local_cache``),
properties, methods and keyword arguments (``force_download``, ``skip_hash_check``), Allen's release semantics
(``load_manifest()`` with no name reloads the release this folder used last, recorded in
``_manifest_last_used.txt``, and warns when a newer one exists; ``load_latest_manifest()`` moves on), and reads
metadata with plain ``pandas.read_csv`` as Allen's does. It is an :class:`~hmba_toolkit.io.AbcCache`, so the
toolkit's additions (``cell_table``, ``taxonomy``, ``read_expression``) work on the same object. Files are
fetched over HTTPS from the public bucket with the toolkit's verified, resumable downloads (no AWS SDK); set
``$HMBA_TOOLKIT_ABC_URL`` to use a mirror.

Reference: Allen Institute, ``abc_atlas_access`` v1.1.1 (``AbcProjectCache``, ``anndata_utils.get_gene_data``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._compat import warn
from .._names import did_you_mean
from ..errors import DataFormatError, ManifestError, ParameterError, ParameterTypeError
from .abc_cache import DEFAULT_BASE_URL, AbcCache

__all__ = ["AbcProjectCache", "get_gene_data", "ABC_URL_ENV"]

#: Environment variable naming a mirror of the ABC atlas bucket (``https://...``) for the drop-in's constructors.
ABC_URL_ENV = "HMBA_TOOLKIT_ABC_URL"
_DEFAULT_BUCKET = "allen-brain-cell-atlas"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _bucket_url(s3_bucket: str | None, auth_required: bool) -> str:
    if auth_required:
        raise ParameterError("auth_required=True is not supported: the ABC atlas bucket is public and is read over "
                             "HTTPS without credentials; leave auth_required=False")
    if s3_bucket is None or s3_bucket == _DEFAULT_BUCKET:
        return os.environ.get(ABC_URL_ENV) or DEFAULT_BASE_URL
    if not isinstance(s3_bucket, str) or not _BUCKET_RE.match(s3_bucket):
        raise ParameterError(f"s3_bucket {s3_bucket!r} is not an S3 bucket name (lower-case letters, digits, '.', '-')")
    return f"https://{s3_bucket}.s3.amazonaws.com/"


class AbcProjectCache(AbcCache):
    """Allen's ``AbcProjectCache``, on the toolkit's downloads, with the toolkit's additions.

    Open one with :meth:`from_cache_dir` (as Allen's notebooks do), :meth:`from_s3_cache` or
    :meth:`from_local_cache`. Without a ``manifest``, the release used last in this folder is loaded again
    (a warning names a newer one when it exists); the first use of a folder loads the newest release.

    Examples
    --------
    >>> abc_cache = AbcProjectCache.from_demo()  # the demo mirror; AbcProjectCache.from_cache_dir(path) for the bucket
    >>> abc_cache.current_manifest
    'releases/20260228/manifest.json'
    >>> cell = abc_cache.get_metadata_dataframe(directory="HMBA-10xMultiome-BG-Aligned", file_name="cell_metadata",
    ...                                         dtype={"cell_label": str})
    >>> list(cell.columns[:2]), abc_cache.get_directory_metadata_size("HMBA-10xMultiome-BG-Aligned")[-2:]
    (['cell_label', 'cell_barcode'], 'MB')
    """

    @classmethod
    def from_s3_cache(cls, cache_dir: str | os.PathLike, s3_bucket: str | None = None,
                      auth_required: bool = False) -> AbcProjectCache:
        """A cache that downloads on demand from the bucket (``$HMBA_TOOLKIT_ABC_URL`` when set) into ``cache_dir``."""
        return cls(cache_dir, base_url=_bucket_url(s3_bucket, auth_required))

    @classmethod
    def from_local_cache(cls, cache_dir: str | os.PathLike, manifest: str | None = None) -> AbcProjectCache:
        """A cache of files already on disk: nothing is downloaded."""
        return cls(cache_dir, base_url=None, manifest=manifest)

    @classmethod
    def from_cache_dir(cls, cache_dir: str | os.PathLike, s3_bucket: str | None = None,
                       auth_required: bool = False) -> AbcProjectCache:
        """Allen's usual entry point: download on demand when ``cache_dir`` is writable (or new), else read it locally.

        Examples
        --------
        >>> # not run: lists and downloads from the public bucket (network); tests/test_abc_project_cache.py runs it on a loopback mirror
        >>> abc_cache = AbcProjectCache.from_cache_dir("~/abc_atlas")  # doctest: +SKIP
        """
        path = Path(cache_dir).expanduser()
        if not path.exists() or os.access(path, os.W_OK):
            return cls.from_s3_cache(path, s3_bucket=s3_bucket, auth_required=auth_required)
        return cls.from_local_cache(path)

    def load_manifest(self, manifest_name: str | None = None) -> None:
        """Switch to ``manifest_name``; without one, reload the release this folder used last (Allen's semantics).

        The first use of a folder loads the newest release. When the release used last is not the newest, it is
        loaded anyway with a warning that names the newer one, :meth:`load_latest_manifest` and
        :meth:`compare_manifests`, so that a new release never moves an analysis silently.
        """
        if manifest_name is None:
            manifest_name = self._last_used_manifest()
        super().load_manifest(manifest_name)

    def _last_used_manifest(self) -> str:
        names = self.list_manifest_file_names
        if not names:
            raise ManifestError(f"no release manifest found for {self.root} ({self.base_url or 'local only'})")
        latest = names[-1]
        marker = self.root / "_manifest_last_used.txt"
        if not marker.is_file():
            return latest
        last = marker.read_text(encoding="utf-8").strip()
        if last not in names:
            warn(f"{marker} names {last!r}, which is not a release of this cache ({names}); loading the newest, {latest!r}")
            return latest
        if last != latest:
            warn(f"loading {last!r}, the release this cache used last; a newer one, {latest!r}, exists. "
                 f"load_latest_manifest() moves to it; compare_manifests({latest!r}, {last!r}) lists what changed")
        return last

    def get_metadata_dataframe(self, directory: str, file_name: str, force_download: bool = False,
                               skip_hash_check: bool = False, **kwargs) -> pd.DataFrame:
        """A metadata table read with ``pandas.read_csv(**kwargs)``, exactly as Allen's client reads it.

        Unlike :meth:`AbcCache.get_metadata_dataframe`, key columns are not forced to strings: pass ``dtype=``
        as Allen's notebooks do (``brain_section_barcode`` is otherwise read as a number).
        """
        path = self.get_file_path(directory, file_name, force_download=force_download, skip_hash_check=skip_hash_check)
        try:
            return pd.read_csv(path, **kwargs)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{path}: not a readable CSV table ({exc})") from exc
        except (TypeError, ValueError, KeyError) as exc:
            raise ParameterError(f"pandas.read_csv({path.name}, **{sorted(kwargs)}) failed: {exc}") from exc

    def __repr__(self) -> str:
        where = self.base_url or "local only"
        return f"AbcProjectCache(root={str(self.root)!r}, manifest={self.current_manifest!r}, source={where!r})"


def get_gene_data(
    abc_atlas_cache: AbcCache,
    all_cells: pd.DataFrame,
    all_genes: pd.DataFrame,
    selected_genes: Sequence[str],
    data_type: str = "log2",
    chunk_size: int = 8192,
) -> pd.DataFrame:
    """Expression of a few genes for a table of cells, with the signature and result of Allen's ``get_gene_data``.

    Parameters
    ----------
    abc_atlas_cache
        An :class:`AbcProjectCache` (or :class:`~hmba_toolkit.io.AbcCache`).
    all_cells
        Cells indexed by ``cell_label`` with ``dataset_label`` and ``feature_matrix_label`` columns (a
        ``cell_metadata`` table).
    all_genes
        A gene table indexed by ``gene_identifier`` with a ``gene_symbol`` column.
    selected_genes
        Gene symbols. Symbols absent from ``all_genes`` are skipped, as Allen's are, with a warning that names them
        and the closest symbols.
    data_type
        ``"log2"`` or ``"raw"``.
    chunk_size
        Accepted for compatibility: only the requested cells' rows are read (or, when the file has a gene index,
        :func:`hmba_toolkit.stream.build_gene_index`, only the genes' columns), never the whole file.

    Returns
    -------
    pandas.DataFrame
        Index ``all_cells.index``; one column per matched gene in gene-table order, named by symbol; values in the
        file's dtype; NaN for cells that are in no matrix read.

    Examples
    --------
    >>> cache = AbcProjectCache.from_demo()
    >>> cells = cache.get_metadata_dataframe("HMBA-10xMultiome-BG-Aligned", "cell_metadata", dtype={"cell_label": str}
    ...                                      ).set_index("cell_label")
    >>> genes = cache.get_metadata_dataframe("HMBA-10xMultiome-BG-Aligned", "gene").set_index("gene_identifier")
    >>> data = get_gene_data(cache, cells.head(100), genes, ["PPP1R1B", "DRD1"])
    >>> data.shape, str(data.dtypes.iloc[0])
    ((100, 2), 'float32')

    References
    ----------
    Allen Institute ``abc_atlas_access`` v1.1.1, ``anndata_utils.get_gene_data``.
    """
    from .gene_index import has_gene_index, read_genes
    from .h5ad import read_h5ad_subset, read_h5ad_var

    if not isinstance(abc_atlas_cache, AbcCache):
        raise ParameterTypeError(f"abc_atlas_cache must be an AbcProjectCache, not {type(abc_atlas_cache).__name__}")
    if data_type not in ("log2", "raw"):
        raise ParameterError(f"data_type must be 'log2' or 'raw', not {data_type!r}")
    if isinstance(selected_genes, str):
        raise ParameterTypeError(f"selected_genes must be a list of gene symbols, not the string {selected_genes!r}")
    if int(chunk_size) < 1:
        raise ParameterError(f"chunk_size must be >= 1, got {chunk_size}")
    for name, table, columns in (("all_cells", all_cells, ("dataset_label", "feature_matrix_label")),
                                 ("all_genes", all_genes, ("gene_symbol",))):
        if not isinstance(table, pd.DataFrame):
            raise ParameterTypeError(f"{name} must be a DataFrame, not {type(table).__name__}")
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataFormatError(f"{name} has no column(s) {missing}; columns: {list(table.columns)[:12]}")
    if not all_cells.index.is_unique:
        raise DataFormatError("all_cells has duplicated index values; index it by cell_label (unique)")
    symbols = all_genes["gene_symbol"].astype(str)
    known = set(symbols)
    unknown = [g for g in selected_genes if g not in known]
    if unknown:
        hint = did_you_mean(unknown, symbols.unique(), n=2)
        warn(f"selected_genes {unknown[:10]} are not in all_genes['gene_symbol'] and are skipped" + (f" ({hint})" if hint else ""))
    chosen = all_genes[symbols.isin(list(selected_genes)).to_numpy()]
    if len(chosen) > len(set(selected_genes)):
        warn(f"you asked for {len(set(selected_genes))} genes but {len(chosen)} rows of all_genes carry those symbols "
             "(symbols shared by several genes); every one is returned")
    identifiers = [str(i) for i in chosen.index]
    values: np.ndarray | None = None
    for (dataset, label), group in all_cells.groupby(["dataset_label", "feature_matrix_label"], sort=True):
        path = abc_atlas_cache.get_file_path(dataset, f"{label}/{data_type}")
        var_names = read_h5ad_var(path).index.astype(str)
        in_matrix = set(var_names)
        foreign = [i for i in identifiers if i not in in_matrix]
        if foreign:  # per-species matrices have their own identifiers (human Ensembl, macaque/marmoset NCBI Gene)
            raise DataFormatError(
                f"all_genes identifiers {foreign[:3]} are not genes of the {label} matrix ({path.name}, identifiers like "
                f"{list(var_names[:2])}): pass the gene table of that matrix's species (e.g. "
                f"{[t for t in abc_atlas_cache.list_metadata_files(dataset) if t.endswith('gene')]}) for its cells, "
                "or use the aligned set for cross-species work")
        if has_gene_index(path):  # gene-major index: read the genes' columns, not the cells' rows
            block = read_genes(path, identifiers, index=True, progress=False)
            present = group.index.intersection(block.index, sort=False)
            data = block.loc[present].to_numpy()
            rows = all_cells.index.get_indexer(present)
        else:
            sub = read_h5ad_subset(path, cells=group.index, genes=identifiers, gene_column=None, missing_cells="skip")
            data = sub.X.toarray() if hasattr(sub.X, "toarray") else np.asarray(sub.X)
            rows = all_cells.index.get_indexer(sub.obs_names)
        if values is None:
            dtype = data.dtype if data.dtype.kind == "f" else np.float64  # NaN marks cells in no matrix
            values = np.full((len(all_cells), len(identifiers)), np.nan, dtype=dtype)
        values[rows] = data
    if values is None:
        values = np.full((len(all_cells), len(identifiers)), np.nan, dtype=np.float32)
    out = pd.DataFrame(values, index=all_cells.index, columns=pd.Index(chosen["gene_symbol"].to_numpy(), name="gene_symbol"))
    return out
