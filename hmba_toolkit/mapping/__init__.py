"""Map your own cells onto a taxonomy: MapMyCells-compatible statistics, markers and mapping.

Reads and writes the files of Allen's ``cell_type_mapper`` unchanged (``precomputed_stats.h5``,
``reference_markers.h5``, ``query_markers.json``, the CSV and extended JSON results), so the HMBA release's own
mapping files (``precomputed_stats.HMBA.BG.2025-08-04.h5``, ``query_markers.HMBA.BG.2025-08-04.json``) work as they
are, and ``python -m hmba_toolkit.mapping`` takes the arguments of Allen's ``from_specified_markers``.

Steps
-----
precompute_stats
    Per-leaf sums, sums of squares and expressing cells of a labelled reference (one streaming pass).
reference_markers
    Marker genes of every pair of leaf clusters (t-test with Holm correction, penetrance filters).
query_markers
    Markers of every parent node, chosen greedily by utility (among the genes a query measures: ``measured_genes``).
map_cells
    Hierarchical mapping with bootstrapping, or flat correlation mapping.
write_csv, write_extended_json, write_hann_hdf5
    Allen's result files (the last: HANN's votes).
agreement, agreement_by_probability, confusions
    Agreement with known labels per level, by bootstrapping probability, and the labels confused.

References
----------
Daniel SF et al. (2026) MapMyCells, bioRxiv 10.64898/2026.03.06.710160; Tasic B et al. (2018) Nature 563:72;
Yao Z et al. (2023) Nature 624:317.
"""

from ._tree import ROOT, TaxonomyTree
from .assign import MappingResult, map_cells, measured_genes
from .evaluate import agreement, agreement_by_probability, confusions
from .markers import (ReferenceMarkers, query_markers, read_query_markers, read_reference_markers, reference_markers,
                      write_query_markers)
from .results import write_csv, write_extended_json, write_hann_hdf5
from .stats import ReferenceStats, precompute_stats, read_stats

__all__ = ["ROOT", "TaxonomyTree", "ReferenceStats", "precompute_stats", "read_stats", "ReferenceMarkers",
           "reference_markers", "read_reference_markers", "query_markers", "read_query_markers", "write_query_markers",
           "MappingResult", "map_cells", "measured_genes", "write_csv", "write_extended_json", "write_hann_hdf5", "agreement", "agreement_by_probability", "confusions"]
