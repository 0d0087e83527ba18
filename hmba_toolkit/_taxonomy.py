"""Rules of the HMBA-BG consensus taxonomy shared by every comparison (bottom layer)."""

from __future__ import annotations

import pandas as pd

from .errors import ParameterError

__all__ = ["check_cross_species"]

_FINER_THAN_GROUP = ("Cluster", "cluster_alias", "cluster_label", "Cluster_label")


def check_cross_species(obs: pd.DataFrame, groupby: str, species: str = "species_genus") -> None:
    """Refuse comparisons finer than Group across species (CCN20250428 aligns species down to Group only).

    Examples
    --------
    >>> obs = pd.DataFrame({"Cluster": ["a", "b"], "species_genus": ["Human", "Macaque"]})
    >>> check_cross_species(obs, "Group")
    >>> check_cross_species(obs, "Cluster")
    Traceback (most recent call last):
    ...
    hmba_toolkit.errors.ParameterError: obs['Cluster'] is finer than the Group level ...
    """
    if groupby in _FINER_THAN_GROUP and species in obs and obs[species].nunique() > 1:
        raise ParameterError(
            f"obs[{groupby!r}] is finer than the Group level and the cells span species "
            f"{sorted(obs[species].dropna().unique())}: cross-species comparisons are defined down to Group "
            "only (CCN20250428). Compare Groups, or subset one species."
        )
