"""Loaders for the Allen data, each reading the real published format unchanged."""

from .abc_cache import DEFAULT_BASE_URL, TAXONOMY_LEVELS, AbcCache, read_abc_csv
from .download import download_file
from .h5ad import read_h5ad_obs_names, read_h5ad_subset, read_h5ad_var
from .manifest import FileEntry, Manifest

__all__ = [
    "AbcCache", "DEFAULT_BASE_URL", "TAXONOMY_LEVELS", "FileEntry", "Manifest",
    "download_file", "read_abc_csv", "read_h5ad_obs_names", "read_h5ad_subset", "read_h5ad_var",
]
