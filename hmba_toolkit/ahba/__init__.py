"""The Allen Human Brain Atlas processing pipeline, as a chain of small documented steps.

Steps implemented so far: probe re-annotation and intensity-based filtering, probe
selection (``probes``), sample and gene normalization (``normalize``). Reading the donor
folders is :func:`hmba_toolkit.io.read_ahba_donor`.
"""

from .normalize import METHODS as NORMALIZATION_METHODS
from .normalize import normalize
from .probes import SELECTION_METHODS, filter_probes, reannotate_probes, select_probes

__all__ = ["NORMALIZATION_METHODS", "SELECTION_METHODS", "filter_probes", "normalize", "reannotate_probes", "select_probes"]
