"""hmba_toolkit: analysis of the Allen Institute's brain gene-expression atlases.

Modules
-------
io
    Loaders: the ABC atlas cache (HMBA-BG), h5ad subsets, AHBA donor folders, mouse ISH
    grids and ontology, Allen RMA queries, BrainSpan.
datasets
    The embedded demo release in the real Allen layouts.
normalize
    log2(CPM+1) / log2(CPT+1) exactly as the release, QC summaries.
de
    Differential expression: Wilcoxon, pseudobulk (DESeq2), AHBA region groups.
ahba
    The AHBA processing pipeline (probes, samples, normalization, regions).
gsea
    Gene-set enrichment: ORA, preranked GSEA, brain-map enrichment with spatial nulls,
    per-sample scores, gene-set libraries.
pl
    Plots of the tidy result tables.
weights, autocorrelation
    Spatial weights; Moran's I and Geary's C with analytic and permutation p-values.
nulls
    Spatial null models (variogram matching, spatial lag, Moran spectral randomisation) and map
    correlation tests.
variograms
    Smoothed variograms and the goodness of fit of surrogate maps.
coexpression
    Gene x gene co-expression (cells, pseudobulk, regions); correlated gene expression between
    regions and its distance dependence.
spatial
    Region polygons of the spatial slabs and cell-to-region assignment.
cross_species
    Group-level comparison of human, macaque and marmoset profiles on the aligned genes.
stream
    Out-of-core kernels for the multi-GB h5ad matrices: one-pass group aggregation (also on
    Dask), a gene-major index for fast gene queries.
mouse
    The Allen mouse ISH atlas: the 200 um reference, per-structure summaries ("unionize") of one
    or thousands of grids, and a genes x voxels store packed locally or downloaded in bulk.
mapping
    Map your own cells onto a taxonomy (MapMyCells-compatible): reference statistics, markers, hierarchical and flat
    correlation mapping, Allen's files and command lines.
patchseq
    Morpho-electric properties of transcriptomic types from Patch-seq cells: features by type, donor-aware tests
    across types, gene-feature correlations.
get
    Values out of AnnData objects as tidy tables (genes and ``obs`` columns by cell, as scanpy's ``get.obs_df``).
errors
    The exceptions raised on bad input.
"""

import importlib

from ._session import session_info

__version__ = "0.1.0"
_SUBMODULES = ("ahba", "autocorrelation", "coexpression", "cross_species", "datasets", "de", "errors", "get", "gsea", "io",
               "mapping", "mouse", "normalize", "nulls", "patchseq", "pl", "spatial", "stream", "variograms", "weights")
__all__ = [*_SUBMODULES, "session_info", "__version__"]


def __getattr__(name: str):
    """Import submodules on first use (``hmba_toolkit.pl`` loads matplotlib only when a plot is asked for)."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hmba_toolkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
