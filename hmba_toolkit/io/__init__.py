"""Loaders for the Allen data, each reading the real published format unchanged."""

from .abc_cache import DEFAULT_BASE_URL, TAXONOMY_LEVELS, AbcCache, read_abc_csv
from .abc_project_cache import AbcProjectCache, get_gene_data
from .download import download_file, fetch_bytes
from .h5ad import read_h5ad_obs_names, read_h5ad_subset, read_h5ad_var
from .manifest import FileEntry, Manifest

__all__ = [
    "AbcCache", "AbcProjectCache", "get_gene_data", "DEFAULT_BASE_URL", "TAXONOMY_LEVELS", "FileEntry", "Manifest",
    "download_file", "fetch_bytes", "read_abc_csv", "read_h5ad_obs_names", "read_h5ad_subset", "read_h5ad_var",
]

from .ahba import AhbaDonor, read_ahba_donor, read_ahba_donors  # noqa: E402
from .brainspan import DEVELOPMENTAL_PERIODS, age_in_years, developmental_period, read_brainspan  # noqa: E402
from .archives import AHBA_DONORS, fetch_ahba, fetch_brainspan  # noqa: E402
from .mouse_ish import VOLUMES, read_gene_ish_grid, read_gene_ish_grids, read_ish_grid, read_mhd_header, write_ish_grid  # noqa: E402
from .ontology import StructureTree, read_ontology  # noqa: E402
from . import rma  # noqa: E402
from .gene_index import read_genes  # noqa: E402

__all__ += [
    "AhbaDonor", "read_ahba_donor", "read_ahba_donors", "age_in_years", "read_brainspan", "DEVELOPMENTAL_PERIODS", "developmental_period",
    "AHBA_DONORS", "fetch_ahba", "fetch_brainspan", "read_genes", "VOLUMES", "read_gene_ish_grid", "read_gene_ish_grids", "read_ish_grid", "read_mhd_header",
    "write_ish_grid", "StructureTree", "read_ontology", "rma",
]
