"""hmba_toolkit: analysis of the Allen Institute's brain gene-expression atlases.

Modules
-------
io
    Loaders: the ABC atlas cache (HMBA-BG), h5ad subsets, AHBA donor folders, mouse ISH
    grids and ontology, Allen RMA queries, BrainSpan.
datasets
    The embedded demo release in the real Allen layouts.
regions
    Summaries of 3-D volumes by brain structure.
errors
    The exceptions raised on bad input.
"""

from . import ahba, datasets, de, errors, gsea, io, normalize, pl, regions
from ._session import session_info

__version__ = "0.1.0"
__all__ = ["ahba", "datasets", "de", "errors", "gsea", "io", "normalize", "pl", "regions", "session_info", "__version__"]
