"""Group codes of cells from metadata columns (shared by in-memory and streaming aggregation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ParameterError, ParameterTypeError


def group_codes(obs: pd.DataFrame, groupby: Sequence[str], cells: pd.Index | None = None, *, source: str = "obs"):
    """Integer group of every cell (-1 = left out) and the table of groups, sorted by ``groupby``.

    ``cells`` aligns the codes to another cell order (e.g. a file's rows): cells absent from
    ``obs`` get -1. Missing ``groupby`` values also give -1.
    """
    if not isinstance(obs, pd.DataFrame):
        raise ParameterTypeError(f"{source}: obs must be a cell table (DataFrame indexed by cell label), not {type(obs).__name__}")
    by = [groupby] if isinstance(groupby, str) else list(groupby)
    if not by:
        raise ParameterError("groupby must name at least one column")
    missing = [c for c in by if c not in obs.columns]
    if missing:
        raise ParameterError(f"{source}: obs has no column(s) {missing}")
    keys = obs[by].astype("string")
    if cells is not None:
        if obs.index.duplicated().any():
            raise ParameterError(f"{source}: obs index has duplicated cell labels, e.g. {list(obs.index[obs.index.duplicated()][:3])}")
        if len(cells) and not pd.Index(cells).isin(obs.index).any():
            hint = " (it has a 'cell_label' column: use obs.set_index('cell_label'))" if "cell_label" in obs.columns else ""
            raise ParameterError(
                f"{source}: none of its {len(cells)} cells is in the index of obs (e.g. {list(pd.Index(cells)[:2])} vs "
                f"{list(obs.index[:2])}); obs must be indexed by cell label{hint}")
        keys = keys.reindex(cells)
    ok = keys.notna().all(axis=1).to_numpy()
    codes = np.full(len(keys), -1, dtype=np.int64)
    codes[ok] = keys[ok].groupby(by, sort=True).ngroup().to_numpy()
    combos = keys[ok].drop_duplicates().sort_values(by).reset_index(drop=True)
    return codes, combos
