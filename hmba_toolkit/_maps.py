"""Maps that carry their location labels: a map and its coordinates and surrogates aligned by label, once.

A map given as a pandas Series (index: region or cell labels) fixes the order; coordinates given as a DataFrame are
reordered to it by label, surrogate maps given as a DataFrame (columns: labels) too, and surrogates drawn from a
labelled map come back as a DataFrame with its labels as columns. Arrays keep their positional meaning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._checks import numeric_array
from .errors import ParameterError

__all__ = ["labelled_map", "labelled_surrogates", "surrogates_by_label", "align_to"]


def labelled_map(x, coords=None, name: str = "x"):
    """``(values, coords, labels)``: the map's values, its coordinates in its own order, and its labels (or None)."""
    if not isinstance(x, pd.Series):
        return x, coords, None
    labels = x.index
    if labels.has_duplicates:
        raise ParameterError(f"{name} has duplicated location labels, e.g. {list(labels[labels.duplicated()][:3])}")
    if isinstance(coords, pd.DataFrame):
        coords = align_to(coords, labels, "coords", name)
    return numeric_array(x, name), coords, labels


def align_to(table: pd.DataFrame | pd.Series, labels: pd.Index, what: str, name: str = "x"):
    """``table``'s rows in the order of ``labels``; an error names the labels it lacks."""
    missing = labels.difference(table.index)
    if len(missing):
        raise ParameterError(f"{what} has no row for {len(missing)} locations of {name}, e.g. {list(missing[:5])}")
    return table.loc[labels]


def labelled_surrogates(surrogates: np.ndarray, labels: pd.Index | None):
    """Surrogates as a DataFrame with the map's labels as columns (unchanged without labels)."""
    if labels is None:
        return surrogates
    return pd.DataFrame(surrogates, columns=labels, index=pd.RangeIndex(len(surrogates), name="surrogate"))


def surrogates_by_label(surrogates, labels: pd.Index | None, name: str = "surrogates") -> np.ndarray:
    """Surrogate maps as an (n, N) array in the order of ``labels``: a DataFrame by its column labels, an array as is."""
    if isinstance(surrogates, pd.DataFrame) and labels is not None:
        missing = labels.difference(surrogates.columns)
        if len(missing):
            raise ParameterError(f"{name} has no column for {len(missing)} locations of the map, e.g. {list(missing[:5])}")
        surrogates = surrogates.loc[:, labels]
    return numeric_array(surrogates, name)
