"""The taxonomy tree of a MapMyCells reference, in Allen's ``taxonomy_tree`` JSON schema.

The schema (cell_type_mapper's ``docs/input_data_files/taxonomy_tree.md``): ``hierarchy`` lists the levels from
the root down; one dict per level maps each node to its children (the leaf level maps each leaf to the reference
rows or a count of cells); optional ``name_mapper`` maps level -> node -> ``{"name": ..., "alias": ...}`` (machine
labels such as ``CS20250428_GROUP_0012`` to readable names). Marker lookups key parents as ``"<level>/<node>"`` and
the root as ``"None"``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence

import pandas as pd

from ..errors import DataFormatError, ParameterError

__all__ = ["TaxonomyTree", "ROOT"]

#: The key of the root node in Allen's marker lookups.
ROOT = "None"


class TaxonomyTree:
    """A taxonomy as a tree: levels from the root down, children of every node, leaves in order.

    Parameters
    ----------
    data
        Allen's ``taxonomy_tree`` dict (as stored in ``precomputed_stats.h5``).

    Examples
    --------
    >>> obs = pd.DataFrame({"Class": ["A", "A", "B"], "Type": ["a1", "a2", "b1"]})
    >>> tree = TaxonomyTree.from_obs(obs, ["Class", "Type"])
    >>> tree.leaves, tree.children("Class", "A"), tree.parent_key("Type", "b1")
    (['a1', 'a2', 'b1'], ['a1', 'a2'], 'Class/B')
    """

    def __init__(self, data: dict):
        if not isinstance(data, dict) or "hierarchy" not in data:
            raise DataFormatError("a taxonomy tree is a dict with a 'hierarchy' list of levels (Allen's taxonomy_tree)")
        self.data = data
        self.hierarchy: list[str] = list(data["hierarchy"])
        if not self.hierarchy:
            raise DataFormatError("the taxonomy tree has no levels")
        missing = [lv for lv in self.hierarchy if lv not in data]
        if missing:
            raise DataFormatError(f"the taxonomy tree lists levels {missing} in 'hierarchy' but has no entry for them")
        self._parent: dict[tuple[str, str], str] = {}
        for upper, lower in zip(self.hierarchy[:-1], self.hierarchy[1:]):
            for node, children in data[upper].items():
                for child in children:
                    if (lower, child) in self._parent:
                        raise DataFormatError(
                            f"the taxonomy is not a tree: {lower} {child!r} has two parents at level {upper} "
                            f"({self._parent[(lower, child)]!r} and {node!r})")
                    if child not in data[lower]:
                        raise DataFormatError(f"the taxonomy tree lists {child!r} as a child of {upper} {node!r} "
                                              f"but level {lower} has no node {child!r}")
                    self._parent[(lower, child)] = node
            orphans = [c for c in data[lower] if (lower, c) not in self._parent]
            if orphans:
                raise DataFormatError(f"the taxonomy is not a tree: {lower} node(s) {orphans[:5]} have no parent at level {upper}")
        self.leaf_level = self.hierarchy[-1]
        self.leaves: list[str] = sorted(data[self.leaf_level])

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_obs(cls, obs: pd.DataFrame, hierarchy: Sequence[str]) -> "TaxonomyTree":
        """Build the tree from cell metadata holding one column per level (each cell's membership).

        Cells with a missing label at any level are left out. Raises if a node has two parents.
        """
        hierarchy = _check_hierarchy(hierarchy, obs.columns)
        labels = obs[hierarchy].astype("string")
        ok = labels.notna().all(axis=1).to_numpy()
        if not ok.any():
            raise ParameterError(f"no cell has a label at every level of {hierarchy}")
        labels = labels[ok]
        data: dict = {"hierarchy": hierarchy}
        for upper, lower in zip(hierarchy[:-1], hierarchy[1:]):
            pairs = labels[[upper, lower]].drop_duplicates()
            twice = pairs[lower][pairs[lower].duplicated()]
            if len(twice):
                child = twice.iloc[0]
                parents = sorted(pairs.loc[pairs[lower] == child, upper])
                raise DataFormatError(f"the taxonomy is not a tree: {lower} {child!r} sits under {upper} {parents}; "
                                      f"every node needs one parent")
            data[upper] = {p: sorted(g[lower]) for p, g in pairs.groupby(upper, sort=True)}
        rows = pd.Series(range(len(obs)))[ok]
        leaf = hierarchy[-1]
        data[leaf] = {k: [int(i) for i in v] for k, v in rows.groupby(labels[leaf].to_numpy(), sort=True)}
        return cls(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> "TaxonomyTree":
        try:
            return cls(json.loads(text))
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"the taxonomy tree is not valid JSON: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.data)

    # ---- queries ------------------------------------------------------------------------------------------------
    def nodes(self, level: str) -> list[str]:
        self._check_level(level)
        return sorted(self.data[level])

    def children(self, level: str, node: str) -> list[str]:
        """Children of ``node`` at ``level`` (the leaves themselves have none)."""
        self._check_level(level)
        if level == self.leaf_level:
            return []
        return list(self.data[level][node])

    def parent(self, level: str, node: str) -> str | None:
        """The parent node of ``node`` (None for the top level)."""
        return self._parent.get((level, node))

    def parent_key(self, level: str, node: str) -> str:
        """Allen's lookup key of a node's parent: ``"<level>/<node>"`` or ``"None"`` for the root."""
        i = self.hierarchy.index(level)
        return ROOT if i == 0 else f"{self.hierarchy[i - 1]}/{self._parent[(level, node)]}"

    def leaves_under(self, level: str | None, node: str | None) -> list[str]:
        """The leaves descending from ``node`` (all leaves for the root, ``level=None``)."""
        if level is None:
            return list(self.leaves)
        i = self.hierarchy.index(level)
        nodes = [node]
        for lv in self.hierarchy[i:-1]:
            nodes = [c for x in nodes for c in self.data[lv][x]]
        return sorted(nodes)

    def ancestors(self, leaf: str) -> dict[str, str]:
        """``{level: node}`` from the top level down to ``leaf`` itself."""
        out = {self.leaf_level: leaf}
        node = leaf
        for lower in reversed(self.hierarchy[1:]):
            node = self._parent[(lower, node)]
            out[self.hierarchy[self.hierarchy.index(lower) - 1]] = node
        return {lv: out[lv] for lv in self.hierarchy}

    def parent_keys(self) -> list[str]:
        """Every key a marker lookup needs: ``"None"`` and ``"<level>/<node>"`` for each node with children."""
        keys = [ROOT]
        for lv in self.hierarchy[:-1]:
            keys += [f"{lv}/{n}" for n in sorted(self.data[lv])]
        return keys

    def name(self, level: str, node: str) -> str:
        """The readable name of a node (its label when the tree has no ``name_mapper``)."""
        return self.data.get("name_mapper", {}).get(level, {}).get(node, {}).get("name", node)

    def alias(self, level: str, node: str) -> str:
        entry = self.data.get("name_mapper", {}).get(level, {}).get(node, {})
        return str(entry.get("alias", entry.get("name", node)))

    # ---- transformations ----------------------------------------------------------------------------------------
    def drop_level(self, level: str) -> "TaxonomyTree":
        """The tree without ``level`` (its nodes' children attach to their grandparents); not the leaf level."""
        self._check_level(level)
        if level == self.leaf_level:
            raise ParameterError(f"drop_level={level!r} is the leaf level; drop one of {self.hierarchy[:-1]}")
        if len(self.hierarchy) < 3:
            raise ParameterError(f"drop_level: a two-level taxonomy {self.hierarchy} has no level to drop")
        data = copy.deepcopy(self.data)
        i = self.hierarchy.index(level)
        if i > 0:
            upper = self.hierarchy[i - 1]
            data[upper] = {p: sorted(c for x in kids for c in self.data[level][x]) for p, kids in self.data[upper].items()}
        del data[level]
        data["hierarchy"] = [lv for lv in self.hierarchy if lv != level]
        data.get("name_mapper", {}).pop(level, None)
        return TaxonomyTree(data)

    def flatten(self) -> "TaxonomyTree":
        """A one-level tree: the root's children are the leaves (correlation mapping)."""
        data = {"hierarchy": [self.leaf_level], self.leaf_level: copy.deepcopy(self.data[self.leaf_level])}
        if "name_mapper" in self.data and self.leaf_level in self.data["name_mapper"]:
            data["name_mapper"] = {self.leaf_level: self.data["name_mapper"][self.leaf_level]}
        return TaxonomyTree(data)

    def _check_level(self, level: str) -> None:
        if level not in self.hierarchy:
            raise ParameterError(f"{level!r} is not a level of the taxonomy; levels: {self.hierarchy}")

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lv}: {len(self.data[lv])}" for lv in self.hierarchy)
        return f"TaxonomyTree({sizes})"


def _check_hierarchy(hierarchy, columns) -> list[str]:
    from .._names import did_you_mean

    if isinstance(hierarchy, str):
        try:
            hierarchy = json.loads(hierarchy)
        except json.JSONDecodeError:
            raise ParameterError(f"hierarchy must list the level columns from the root down, e.g. "
                                 f"['Class', 'Subclass', 'Cluster'], not the string {hierarchy!r}") from None
    hierarchy = [str(h) for h in hierarchy]
    if not hierarchy:
        raise ParameterError("hierarchy is empty: list the level columns from the root down")
    if len(set(hierarchy)) < len(hierarchy):
        raise ParameterError(f"hierarchy {hierarchy} repeats a level")
    missing = [h for h in hierarchy if h not in columns]
    if missing:
        hint = did_you_mean(missing, [str(c) for c in columns])
        raise ParameterError(f"hierarchy: the cell table has no column(s) {missing}" + (f" ({hint})" if hint else "")
                             + f"; columns: {list(columns)[:20]}")
    return hierarchy
