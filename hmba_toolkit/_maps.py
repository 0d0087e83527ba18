"""Maps that carry their location labels, where no locations are involved: a second map or a table aligned to a
map's labels, surrogate maps given as a DataFrame (columns: labels) ordered by them. Arrays keep their positional
meaning. (With locations, :class:`hmba_toolkit.spatial.Geometry` does the aligning.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._checks import numeric_array
from .errors import ParameterError

__all__ = ["surrogates_by_label", "labelled_surrogates", "align_to"]


def align_to(table: pd.DataFrame | pd.Series, labels: pd.Index, what: str, name: str = "x"):
    """``table``'s rows in the order of ``labels``; an error names the labels it lacks."""
    missing = labels.difference(table.index)
    if len(missing):
        raise ParameterError(f"{what} has no row for {len(missing)} locations of {name}, e.g. {list(missing[:5])}")
    return table.loc[labels]


def surrogates_by_label(surrogates, labels: pd.Index | None, name: str = "surrogates", of: str = "the map") -> np.ndarray:
    """Surrogate maps as an (n, N) array in the order of ``labels`` (those of ``of``): a DataFrame by its column labels,
    an array as is."""
    if isinstance(surrogates, pd.DataFrame) and labels is not None:
        missing = labels.difference(surrogates.columns)
        if len(missing):
            raise ParameterError(f"{name} has no column for {len(missing)} locations of {of}, e.g. {list(missing[:5])}")
        surrogates = surrogates.loc[:, labels]
    return numeric_array(surrogates, name)


def labelled_surrogates(surrogates: np.ndarray, labels: pd.Index | None):
    """Surrogate maps (n, N) as a DataFrame with the map's labels as columns (unchanged without labels)."""
    if labels is None:
        return surrogates
    return pd.DataFrame(surrogates, columns=labels, index=pd.RangeIndex(len(surrogates), name="surrogate"))
