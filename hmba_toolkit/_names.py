"""Closest valid names for "did you mean" hints (bottom layer: imports nothing from the package)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest_names", "did_you_mean"]


def closest_names(name: str, choices: Iterable, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``name``: the same spelling in another case when there is one (mouse
    ``Drd1`` -> human ``DRD1``, and nothing else), else :func:`difflib.get_close_matches`, case-sensitive and
    case-folded.

    Examples
    --------
    >>> closest_names("Drd1", ["DRD1", "DRD2", "PENK"])
    ['DRD1']
    >>> closest_names("DRD7", ["DRD1", "DRD2", "PENK"])  # equally close: difflib's order
    ['DRD2', 'DRD1']
    >>> closest_names("HMBA-Macaque-PatchSq", ["HMBA-Macaque-PatchSeq", "HMBA-10xMultiome-BG"])
    ['HMBA-Macaque-PatchSeq']
    """
    name = str(name)
    unique = list(dict.fromkeys(str(c) for c in choices))
    folded: dict[str, list[str]] = {}
    for choice in unique:
        folded.setdefault(choice.casefold(), []).append(choice)
    same = [c for c in folded.get(name.casefold(), []) if c != name]
    if same:
        return same[:n]
    close = difflib.get_close_matches(name, unique, n=n, cutoff=cutoff)
    close_folded = [c for key in difflib.get_close_matches(name.casefold(), list(folded), n=n, cutoff=cutoff) for c in folded[key]]
    return [c for c in dict.fromkeys(same + close + close_folded) if c != name][:n]


def did_you_mean(names: Iterable, choices: Iterable, n: int = 3, limit: int = 5) -> str:
    """``"'Drd1': did you mean ['DRD1']?; ..."`` for the first ``limit`` names that have close choices, or ``""``.

    Examples
    --------
    >>> did_you_mean(["Drd1", "zzz"], ["DRD1", "DRD2"])
    "'Drd1': did you mean ['DRD1']?"
    """
    choices = list(choices)
    hints = {str(g): closest_names(g, choices, n=n) for g in list(names)[:limit]}
    return "; ".join(f"{g!r}: did you mean {h}?" for g, h in hints.items() if h)
