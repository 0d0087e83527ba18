"""The Allen Human Brain Atlas processing pipeline, as a chain of small documented steps.

``probes`` (re-annotation, intensity-based filtering, probe selection), ``samples``
(corrected coordinates, structural classes, hemisphere checks, mirroring, atlas assignment),
``normalize`` (sample and gene normalization), ``pipeline`` (all steps with a report).
Reading donor folders: :func:`hmba_toolkit.io.read_ahba_donor`.
"""

from ._normalize import METHODS as NORMALIZATION_METHODS
from ._normalize import normalize
from .pipeline import AhbaResult, aggregate_regions, process
from .regions import region_groups
from .probes import SELECTION_METHODS, ProbeSelection, filter_probes, reannotate_probes, select_probes
from .samples import Atlas, MirroredSamples, annotate_samples, assign_regions, desikan_killiany, mirror_samples, read_atlas

__all__ = [
    "NORMALIZATION_METHODS", "SELECTION_METHODS", "AhbaResult", "Atlas", "aggregate_regions", "annotate_samples",
    "assign_regions", "desikan_killiany", "filter_probes", "mirror_samples", "normalize", "process",
    "read_atlas", "reannotate_probes", "region_groups", "select_probes", "ProbeSelection", "MirroredSamples",
]
