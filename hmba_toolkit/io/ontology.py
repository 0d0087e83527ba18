"""Allen structure ontologies as a tree: the mouse CCF/ARA graph and the AHBA ontology.

Reads the flat tables Allen publishes (RMA ``model::Structure`` CSV with
``id, acronym, name, parent_structure_id, structure_id_path, color_hex_triplet, ...``;
AHBA ``Ontology.csv`` with the same key columns) and the nested JSON structure graph
(``structure_graph_download/1.json``, ``{"msg": [root]}`` with ``children``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError, MissingFileError, NotFoundError

__all__ = ["StructureTree", "read_ontology"]

_REQUIRED = ("id", "acronym", "name", "parent_structure_id")


class StructureTree:
    """An Allen structure ontology with parent, ancestor and descendant queries.

    Parameters
    ----------
    table
        One row per structure with at least ``id, acronym, name, parent_structure_id``.

    Examples
    --------
    >>> from importlib import resources
    >>> path = resources.files("hmba_toolkit.datasets") / "data" / "allen_structure_tree.csv"  # the shipped copy
    >>> tree = read_ontology(path)
    >>> tree.get("CP")["name"]
    'Caudoputamen'
    >>> 672 in tree.descendants("STR")
    True
    """

    def __init__(self, table: pd.DataFrame, source: str = "ontology") -> None:
        missing = [c for c in _REQUIRED if c not in table.columns]
        if missing:
            raise DataFormatError(f"{source}: ontology table lacks columns {missing}")
        t = table.dropna(subset=["id"]).copy()
        t = t[t["acronym"].astype(str) != "void"]
        t["id"] = t["id"].astype(np.int64)
        t["parent_structure_id"] = pd.to_numeric(t["parent_structure_id"], errors="coerce").astype("Int64")
        if t["id"].duplicated().any():
            raise DataFormatError(f"{source}: duplicated structure ids {t.loc[t['id'].duplicated(), 'id'].tolist()[:5]}")
        self.table = t.set_index("id", drop=False)
        self.source = source
        self._children: dict[int, list[int]] = {}
        for sid, parent in zip(t["id"], t["parent_structure_id"]):
            if pd.notna(parent):
                self._children.setdefault(int(parent), []).append(int(sid))
        self._by_acronym = dict(zip(t["acronym"].astype(str), t["id"]))

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, key) -> bool:
        try:
            self.id_of(key)
            return True
        except KeyError:
            return False

    def id_of(self, key: int | str) -> int:
        """Structure id of an id or acronym."""
        if isinstance(key, (int, np.integer)) and int(key) in self.table.index:
            return int(key)
        if isinstance(key, str) and key in self._by_acronym:
            return int(self._by_acronym[key])
        raise NotFoundError(f"{self.source}: no structure {key!r}")

    def get(self, key: int | str) -> pd.Series:
        """The ontology row of a structure."""
        return self.table.loc[self.id_of(key)]

    def parent(self, key: int | str) -> int | None:
        """Id of the parent structure (None at the root)."""
        p = self.table.at[self.id_of(key), "parent_structure_id"]
        return None if pd.isna(p) else int(p)

    def ancestors(self, key: int | str) -> list[int]:
        """Ids from the root down to the structure's parent."""
        out, p = [], self.parent(key)
        while p is not None:
            out.append(p)
            p = self.parent(p)
        return out[::-1]

    def children(self, key: int | str) -> list[int]:
        """Ids of the direct children."""
        return sorted(self._children.get(self.id_of(key), []))

    def descendants(self, key: int | str, include_self: bool = True) -> set[int]:
        """Ids of every structure below (and by default including) ``key``."""
        start = self.id_of(key)
        out, stack = set(), [start]
        while stack:
            s = stack.pop()
            out.add(s)
            stack.extend(self._children.get(s, []))
        if not include_self:
            out.discard(start)
        return out

    def mask(self, annotation: np.ndarray, key: int | str) -> np.ndarray:
        """Boolean mask of the voxels of ``annotation`` inside ``key`` or its descendants."""
        return np.isin(annotation, np.fromiter(self.descendants(key), dtype=annotation.dtype))

    def acronyms(self, ids: Iterable[int]) -> list[str]:
        """Acronyms of structure ids."""
        return [str(self.table.at[int(i), "acronym"]) for i in ids]


def _flatten(node: dict, rows: list[dict]) -> None:
    rows.append({k: v for k, v in node.items() if k != "children"})
    for child in node.get("children", []):
        _flatten(child, rows)


def read_ontology(path: str | os.PathLike) -> StructureTree:
    """Read an Allen ontology: flat CSV (RMA Structure table, AHBA ``Ontology.csv``) or nested JSON."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist (a structure ontology as .json or .csv)")
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            roots = doc.get("msg", [doc]) if isinstance(doc, dict) else doc
            rows: list[dict] = []
            for r in roots:
                _flatten(r, rows)
            table = pd.DataFrame(rows)
        else:
            table = pd.read_csv(path)
    except (UnicodeDecodeError, ValueError, AttributeError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{path}: not an ontology table (.csv) or structure graph (.json): {type(exc).__name__}: "
                              f"{str(exc)[:120]}") from None
    return StructureTree(table, source=str(path))
