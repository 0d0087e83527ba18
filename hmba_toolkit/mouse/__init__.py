"""The Allen mouse brain ISH atlas: the 200 um reference, structure summaries, a genes x voxels store.

- :mod:`~hmba_toolkit.mouse.atlas`: the shipped annotation grid and ontology, hemispheres, coarse labels.
- :func:`~hmba_toolkit.mouse.unionize` / :func:`~hmba_toolkit.mouse.unionize_genes`: per-structure subtree means of one grid or thousands.
- :func:`~hmba_toolkit.mouse.structure_unionizes` / :func:`~hmba_toolkit.mouse.read_structure_unionizes`: Allen's own
  StructureUnionize records (energy, density, pixel sums) for a gene list, or from a saved XML/JSON answer, as one
  tidy table; :func:`~hmba_toolkit.mouse.compare_unionizes` sets them beside the grid means.
- :mod:`~hmba_toolkit.mouse.orthologs`: human orthologs of the ISH genes (Allen homolog ids).
- :mod:`~hmba_toolkit.mouse.store`: :class:`GridStore`, packed from local zips or downloaded in bulk
  from the Allen API (resumable, bounded concurrency, retries with backoff).

The API client itself (listing experiments, downloading one grid) is :mod:`hmba_toolkit.io.rma`.
"""

from .atlas import GRID_SHAPE, HEMISPHERES, MAJOR_DIVISIONS, SPACING_UM, hemisphere_mask, load_annotation, load_ontology, relabel
from .orthologs import human_orthologs, to_human
from .store import GridStore, download_grids, pack_grids
from ._unionize import StructureMembership, structure_membership, unionize, unionize_genes
from ._structure_unionize import STRUCTURE_UNIONIZE_COLUMNS, UnionizeComparison, compare_unionizes, read_structure_unionizes, structure_unionizes

__all__ = [
    "GRID_SHAPE", "HEMISPHERES", "MAJOR_DIVISIONS", "SPACING_UM", "GridStore", "StructureMembership", "download_grids", "hemisphere_mask",
    "STRUCTURE_UNIONIZE_COLUMNS", "UnionizeComparison", "compare_unionizes", "read_structure_unionizes", "structure_unionizes",
    "human_orthologs", "load_annotation", "load_ontology", "pack_grids", "relabel", "structure_membership", "to_human", "unionize", "unionize_genes",
]
