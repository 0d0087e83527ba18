"""Input checks shared by the DE methods."""

from __future__ import annotations

import pandas as pd

from ..errors import HmbaToolkitError

_FINER_THAN_GROUP = ("Cluster", "cluster_alias", "cluster_label", "Cluster_label")


def check_cross_species(obs: pd.DataFrame, groupby: str, species: str = "species_genus") -> None:
    """Refuse comparisons finer than Group across species (the taxonomy aligns species to Group only)."""
    if groupby in _FINER_THAN_GROUP and species in obs and obs[species].nunique() > 1:
        raise HmbaToolkitError(
            f"obs[{groupby!r}] is finer than the Group level and the cells span species "
            f"{sorted(obs[species].dropna().unique())}: cross-species comparisons are defined down to Group "
            "only (CCN20250428). Compare Groups, or subset one species."
        )
