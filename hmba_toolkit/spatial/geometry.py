"""Where a map's values are: one object for a set of locations, checked once, its distances and neighbours cached.

Every function of the toolkit that needs to know where values sit (:mod:`~hmba_toolkit.weights`,
:mod:`~hmba_toolkit.nulls`, :mod:`~hmba_toolkit.variograms`, :func:`~hmba_toolkit.coexpression.fit_distance_decay`,
:func:`~hmba_toolkit.gsea.map_enrichment`, :mod:`~hmba_toolkit.spatial.neighborhood`) takes a :class:`Geometry`, or
builds one from what it is given (an (N, d) array, a DataFrame of coordinates indexed by region or cell label, or an
(N, N) distance matrix) through :func:`as_geometry`, with the same checks and the same messages everywhere:

* labels: a map given as a pandas Series is matched to the locations by label (the geometry may hold more locations
  than the map; the map picks its own, in its own order), and surrogate maps come back as a DataFrame with those
  labels as columns, so a map and its surrogates cannot disagree on order;
* sections: cells of different tissue sections are never neighbours, their distance is infinite, and the nulls
  draw surrogates within each section;
* 2-D or 3-D coordinates, or a precomputed (e.g. geodesic) distance matrix;
* checked once: NaN or infinite coordinates, duplicated locations, duplicated labels, a distance matrix that is
  not square, symmetric and non-negative all get an error naming the argument.

Build one ``Geometry`` and pass it to many calls to compute the pair distances, the k-d tree and the
neighbour table once.

References
----------
Cliff AD, Ord JK (1981) Spatial Processes: Models and Applications. Pion. Burt JB et al. (2020) NeuroImage
220:117038 (variograms from pair distances and neighbour tables).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial import cKDTree

from .._checks import check_count, numeric_array
from .._maps import labelled_surrogates, surrogates_by_label
from ..errors import ParameterError, ParameterTypeError

__all__ = ["Geometry", "Neighbors", "Pairs", "as_geometry"]

#: Largest number of locations for which a full distance matrix is built (8 bytes x N^2: 3.2 GB at 20,000).
MAX_DENSE = 20_000


@dataclass(frozen=True)
class Neighbors:
    """Each location's ``k`` nearest other locations (within its section), nearest first: ``indices`` and
    ``distances``, both (N, k)."""

    indices: np.ndarray
    distances: np.ndarray


@dataclass(frozen=True)
class Pairs:
    """Unordered pairs of locations of the same section closer than a radius: positions ``i < j`` and ``distances``."""

    i: np.ndarray
    j: np.ndarray
    distances: np.ndarray


class Geometry:
    """A set of locations: coordinates or a distance matrix, optional labels and sections, checked once.

    Parameters
    ----------
    coords : array (N, d) or DataFrame, optional
        Positions (2-D or 3-D; a 1-D array is one coordinate per location). A DataFrame's index gives the labels.
    distances : array (N, N) or DataFrame, optional
        Or a precomputed distance matrix (e.g. geodesic); a DataFrame's index gives the labels.
    labels : sequence, optional
        Location labels (region or cell names), when ``coords``/``distances`` do not carry them.
    sections : sequence, optional
        The tissue section of every location: no neighbours, pairs or surrogate values across sections.
    name : str
        The argument named in error messages.

    Examples
    --------
    >>> xy = pd.DataFrame({"x": [0.0, 1, 0, 3], "y": [0.0, 0, 2, 2]}, index=list("abcd"))
    >>> g = Geometry(xy)
    >>> g
    Geometry(4 locations, 2-D coordinates, labelled)
    >>> g.neighbors(2).indices.tolist()
    [[1, 2], [0, 2], [0, 1], [1, 2]]
    >>> g.subset(["d", "a"]).distances.round(3).tolist()
    [[0.0, 3.606], [3.606, 0.0]]

    References
    ----------
    Cliff AD, Ord JK (1981) Spatial Processes: Models and Applications. Pion.
    """

    def __init__(self, coords=None, *, distances=None, labels=None, sections=None, name: str = "coords"):
        if coords is not None and distances is not None:
            raise ParameterError(f"give {name} (N x d positions) or distances (N x N), not both")
        if coords is None and distances is None:
            raise ParameterError(f"the locations are needed: pass {name} (N x 2 or N x 3 positions, or a Geometry) or "
                                 "distances (N x N)")
        self.name = name if coords is not None else "distances"
        self._coords = self._distances = None
        own_labels = None
        if coords is not None:
            if isinstance(coords, (pd.DataFrame, pd.Series)):
                own_labels = coords.index
            c = numeric_array(coords, name)
            if c.ndim == 1:
                c = c[:, None]
            if c.ndim != 2:
                raise ParameterError(f"{name} must be an (N, d) array of positions, got shape {c.shape}")
            n = len(c)
        else:
            if isinstance(distances, pd.DataFrame):
                own_labels = distances.index
                if not distances.columns.equals(distances.index):
                    if set(distances.columns) != set(distances.index):
                        raise ParameterError("distances must have the same labels on its rows and columns")
                    distances = distances.loc[:, distances.index]
            D = numeric_array(distances, "distances")
            if D.ndim != 2 or D.shape[0] != D.shape[1]:
                raise ParameterError(f"distances must be a square (N, N) matrix, got shape {D.shape}")
            n = len(D)
        if n == 0:
            raise ParameterError(f"{self.name} holds no locations")
        self.labels = self._check_labels(labels if labels is not None else own_labels, n)
        self._set_sections(sections, n)
        if coords is not None:
            bad = ~np.isfinite(c).all(axis=1)
            if bad.any():
                raise ParameterError(f"{name} has {int(bad.sum())} locations with NaN or infinite values "
                                     f"(e.g. {self._examples(np.flatnonzero(bad))}); drop them (and their values) first")
            self._coords = c
            self._check_distinct_points()
        else:
            self._check_distance_matrix(D)
            self._distances = D
        self.n = n
        self._tree: cKDTree | None = None
        self._neighbors: Neighbors | None = None

    # ------------------------------------------------------------------ checks, once
    def _examples(self, positions, k: int = 3) -> list:
        positions = np.asarray(positions)[:k]
        return list(self.labels[positions]) if self.labels is not None else [int(p) for p in positions]

    @staticmethod
    def _check_labels(labels, n: int) -> pd.Index | None:
        if labels is None:
            return None
        labels = pd.Index(labels)
        if len(labels) != n:
            raise ParameterError(f"labels has {len(labels)} entries for {n} locations")
        if labels.has_duplicates:
            raise ParameterError(f"the location labels are duplicated, e.g. {list(labels[labels.duplicated()][:3])}")
        if isinstance(labels, pd.RangeIndex):  # a default index carries no labels
            return None
        return labels

    def _set_sections(self, sections, n: int) -> None:
        if sections is None:
            self.section_codes, self.section_names = np.zeros(n, dtype=np.int64), None
            return
        s = pd.Series(np.asarray(sections, dtype=object))
        if len(s) != n:
            raise ParameterError(f"sections has {len(s)} entries for {n} locations")
        if s.isna().any():
            raise ParameterError(f"sections has {int(s.isna().sum())} locations without a section")
        cat = pd.Categorical(s.astype(str))
        self.section_codes, self.section_names = cat.codes.astype(np.int64), cat.categories

    def _check_distinct_points(self) -> None:
        c = self._coords
        keyed = np.column_stack([self.section_codes, c])
        order = np.lexsort(keyed.T[::-1])
        same = (np.diff(keyed[order], axis=0) == 0).all(axis=1)
        if same.any():
            dup = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))
            raise ParameterError(f"{self.name} has {dup.size} locations that share their coordinates with another "
                                 f"(duplicated locations, e.g. {self._examples(np.sort(dup))}): their neighbours and "
                                 "pair distances are ambiguous; merge (average) or drop them first")

    def _check_distance_matrix(self, D: np.ndarray) -> None:
        if not np.isfinite(D).all() or (D < 0).any():
            raise ParameterError("distances has NaN, infinite or negative entries")
        if not np.allclose(D, D.T, rtol=1e-6, atol=1e-9 * max(float(D.max()), 1e-300)):
            raise ParameterError("distances is not symmetric (d_ij must equal d_ji)")
        off = ~np.eye(len(D), dtype=bool)
        if (D[off] <= 0).any():
            rows = np.unique(np.nonzero((D <= 0) & off)[0])
            raise ParameterError(f"distances has zero distances between different locations (duplicated locations, "
                                 f"e.g. {self._examples(rows)}): merge or drop them first")

    # ------------------------------------------------------------------ what it holds
    @property
    def coords(self) -> np.ndarray | None:
        """The (N, d) positions (None for a geometry given by distances)."""
        return self._coords

    @property
    def sectioned(self) -> bool:
        """Whether the locations are grouped into more than one section."""
        return self.section_names is not None and len(self.section_names) > 1

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        what = f"{self._coords.shape[1]}-D coordinates" if self._coords is not None else "distances"
        parts = [f"{self.n} locations", what]
        if self.section_names is not None:
            parts.append(f"{len(self.section_names)} sections")
        if self.labels is not None:
            parts.append("labelled")
        return f"Geometry({', '.join(parts)})"

    @property
    def section_sizes(self) -> np.ndarray:
        """The number of locations of each section (one entry without sections)."""
        return np.bincount(self.section_codes)

    def sections(self):
        """Positions of the locations of each section: an iterator of ``(section name or None, positions)``."""
        if self.section_names is None:
            yield None, np.arange(self.n)
            return
        order = np.argsort(self.section_codes, kind="stable")
        bounds = np.searchsorted(self.section_codes[order], np.arange(len(self.section_names) + 1))
        for s, name in enumerate(self.section_names):
            yield name, order[bounds[s]:bounds[s + 1]]

    @property
    def distances(self) -> np.ndarray:
        """The (N, N) distance matrix (computed once; infinite between sections)."""
        if self._distances is None:
            if self.n > MAX_DENSE:
                raise ParameterError(f"{self.name} has {self.n} locations: an all-pairs distance matrix needs "
                                     f"{8 * self.n**2 / 1e9:.0f} GB; use a method built on neighbours (sparse or sampled)")
            c = self._coords
            D = np.sqrt(np.maximum(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1), 0.0))
            if self.sectioned:
                D[self.section_codes[:, None] != self.section_codes[None, :]] = np.inf
            self._distances = D
        return self._distances

    def pair_distances(self) -> np.ndarray:
        """Distances of every pair of locations in the same section (upper triangle), for percentiles and scales."""
        iu, ju = np.triu_indices(self.n, k=1)
        d = self.distances[iu, ju]
        return d[np.isfinite(d)]

    @property
    def tree(self) -> cKDTree:
        """A k-d tree of the coordinates (built once)."""
        if self._coords is None:
            raise ParameterError("this geometry is given by distances only: it has no coordinates for a k-d tree")
        if self._tree is None:
            self._tree = cKDTree(self._coords)
        return self._tree

    # ------------------------------------------------------------------ neighbours
    def _section_tree(self, rows: np.ndarray) -> cKDTree | None:
        """The k-d tree of one section's locations (the whole set's cached tree without sections; None for a geometry
        given by distances)."""
        if self._coords is None:
            return None
        return cKDTree(self._coords[rows]) if self.sectioned else self.tree

    def neighbors(self, k: int) -> Neighbors:
        """Each location's ``k`` nearest other locations within its section, nearest first (cached for the largest
        ``k`` asked; memory ``12 N k`` bytes, in chunks of the k-d tree's output)."""
        k = check_count(k, "k")
        smallest = int(self.section_sizes.min())
        if k >= smallest:
            where = "a section of" if self.sectioned else ""
            raise ParameterError(f"k={k} neighbours needs more locations: {where} {self.name} has {smallest} (k must be "
                                 f"at most {smallest - 1})".replace("  ", " "))
        if self._neighbors is None or self._neighbors.indices.shape[1] < k:
            self._neighbors = self._query(k)
        nb = self._neighbors
        if nb.indices.shape[1] == k:
            return nb
        return Neighbors(nb.indices[:, :k], nb.distances[:, :k])

    def _query(self, k: int) -> Neighbors:
        idx = np.empty((self.n, k), dtype=np.int64 if self.n > 2**31 - 1 else np.int32)
        dist = np.empty((self.n, k), dtype=np.float64 if self.n <= 6000 else np.float32)
        step = max(1, int(2e7 // (k + 1)))  # bound the k-d tree's float64 + int64 output
        for _, rows in self.sections():
            tree = self._section_tree(rows)
            for s in range(0, rows.size, step):
                part = rows[s:s + step]
                if tree is not None:
                    d, j = tree.query(self._coords[part], k=k + 1)
                    j = rows[j] if self.sectioned else j
                else:
                    Dp = self.distances[np.ix_(part, rows)]
                    sel = np.argpartition(Dp, k, axis=1)[:, : k + 1]
                    dp = np.take_along_axis(Dp, sel, axis=1)
                    o = np.argsort(dp, axis=1, kind="stable")
                    j, d = rows[np.take_along_axis(sel, o, axis=1)], np.take_along_axis(dp, o, axis=1)
                # locations are distinct, so each one is its own nearest: drop that column
                idx[part], dist[part] = j[:, 1:], d[:, 1:]
        return Neighbors(idx, dist)

    def pairs_within(self, radius: float) -> Pairs:
        """Every pair of locations of the same section at most ``radius`` apart (a k-d tree per section, or the
        distance matrix); memory grows with the number of such pairs."""
        if not np.isfinite(radius) or radius <= 0:
            raise ParameterError(f"radius must be a positive distance, got {radius}")
        parts = []
        for _, rows in self.sections():
            if self._coords is not None:
                p = self._section_tree(rows).query_pairs(radius, output_type="ndarray")
                i, j = rows[p[:, 0]], rows[p[:, 1]]
                d = np.linalg.norm(self._coords[i] - self._coords[j], axis=1)
            else:
                D = self.distances[np.ix_(rows, rows)]
                a, b = np.nonzero(np.triu(D <= radius, k=1))
                i, j, d = rows[a], rows[b], D[a, b]
            lo, hi = np.minimum(i, j), np.maximum(i, j)
            parts.append((lo, hi, d))
        i, j, d = (np.concatenate(v) for v in zip(*parts))
        order = np.lexsort((j, i))
        return Pairs(i[order].astype(np.int64), j[order].astype(np.int64), d[order])

    def knn_graph(self, k: int) -> sp.csr_matrix:
        """The directed kNN graph within sections: row i has a 1 at each of its ``k`` nearest locations."""
        nb = self.neighbors(k)
        indptr = np.arange(0, self.n * k + 1, k, dtype=np.int64)
        return sp.csr_matrix((np.ones(self.n * k), nb.indices.ravel().astype(np.int64), indptr), shape=(self.n, self.n))

    # ------------------------------------------------------------------ maps on it
    def subset(self, which, what: str = "the map") -> Geometry:
        """The geometry of some locations: by label (when labelled) or by position, in the order given; an error
        names the labels missing and ``what`` asked for them."""
        return self._at(self._positions(which, what))

    def _positions(self, which, what: str) -> np.ndarray:
        """Positions of ``which``: labels of a labelled geometry (integers too, when the labels are), else positions."""
        which = pd.Index(which)
        if self.labels is not None and not (which.dtype.kind in "iu" and self.labels.dtype.kind not in "iu"):
            missing = which.difference(self.labels)
            if len(missing):
                raise ParameterError(f"{self.name} has no row for {len(missing)} locations of {what}, e.g. {list(missing[:5])}")
            return self.labels.get_indexer(which)
        pos = np.asarray(which, dtype=np.int64)
        if pos.size and (pos.min() < -self.n or pos.max() >= self.n):
            raise ParameterError(f"positions out of range for {self.n} locations")
        return pos

    def _at(self, pos: np.ndarray) -> Geometry:
        """The geometry of the locations at ``pos`` (itself for all of them in order), cached for a few subsets."""
        if np.array_equal(pos, np.arange(self.n)):
            return self
        key = pos.tobytes()
        cache = self.__dict__.setdefault("_subsets", {})
        if key in cache:  # the same map's locations again: reuse its distances, neighbours and variogram pairs
            return cache[key]
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[key] = g = self._take(pos)
        return g

    def _take(self, pos: np.ndarray) -> Geometry:
        g = object.__new__(Geometry)
        g.name, g.n = self.name, pos.size
        g._coords = None if self._coords is None else self._coords[pos]
        g._distances = None if self._distances is None else self._distances[np.ix_(pos, pos)]
        g.labels = None if self.labels is None else self.labels[pos]
        g.section_codes, g.section_names = self.section_codes[pos], self.section_names
        if g.section_names is not None:
            used = np.unique(g.section_codes)
            g.section_names = self.section_names[used]
            g.section_codes = np.searchsorted(used, g.section_codes).astype(np.int64)
        g._tree, g._neighbors = None, None
        return g

    def for_map(self, x, name: str = "x") -> Geometry:
        """The geometry of map ``x``'s locations: a Series picks its labels from a labelled geometry (kept in the
        geometry's order, so that results do not depend on the map's), and labels an unlabelled one (positionally);
        an array keeps the geometry as it is."""
        if not isinstance(x, pd.Series) or (isinstance(x.index, pd.RangeIndex) and self.labels is None):
            return self
        if x.index.has_duplicates:
            raise ParameterError(f"the map has duplicated location labels, e.g. {list(x.index[x.index.duplicated()][:3])}")
        if self.labels is None:
            if len(x) != self.n:
                raise ParameterError(f"the map has {len(x)} values for {self.n} locations ({self.name})")
            g = copy.copy(self)  # shares the cached distances, tree and neighbours
            g.labels = x.index
            return g
        # the geometry's own order, whatever the map's: surrogates do not depend on how the map was sorted
        return self._at(np.sort(self._positions(x.index, name)))

    def values(self, x, name: str = "x") -> np.ndarray:
        """Map ``x`` as a float array in this geometry's order (a Series by label, an array by position)."""
        if isinstance(x, pd.Series) and self.labels is not None:
            missing = self.labels.difference(x.index)
            if len(missing):
                raise ParameterError(f"{name} has no value for {len(missing)} locations of {self.name}, e.g. "
                                     f"{list(missing[:5])}")
            x = x.loc[self.labels]
        v = numeric_array(x, name)
        if v.ndim != 1:
            raise ParameterError(f"{name} must be one map (a 1-D array of N values), got shape {v.shape}")
        if v.size != self.n:
            raise ParameterError(f"{name} has {v.size} values for {self.n} locations ({self.name})")
        return v

    def surrogate_values(self, surrogates, name: str = "surrogates") -> np.ndarray:
        """Surrogate maps as an (n, N) array in this geometry's order (a DataFrame by its column labels)."""
        S = surrogates_by_label(surrogates, self.labels, name, of=self.name)
        if S.ndim != 2 or S.shape[1] != self.n:
            raise ParameterError(f"{name} must be an (n, {self.n}) array of maps on the locations of {self.name}, got "
                                 f"shape {S.shape}")
        return S

    def labelled(self, surrogates: np.ndarray):
        """Surrogate maps (n, N) as a DataFrame with this geometry's labels as columns (an array when unlabelled)."""
        return labelled_surrogates(surrogates, self.labels)


def as_geometry(coords=None, *, distances=None, x=None, name: str = "coords", required: bool = True) -> Geometry | None:
    """The one entry of "where": ``coords`` if it is a :class:`Geometry`, else a Geometry built from ``coords`` or
    ``distances``; restricted and ordered to map ``x``'s labels when ``x`` is a Series (:meth:`Geometry.for_map`).

    Examples
    --------
    >>> xy = np.random.default_rng(0).random((5, 2))
    >>> as_geometry(xy)
    Geometry(5 locations, 2-D coordinates)
    >>> as_geometry(None, required=False) is None
    True
    """
    if isinstance(coords, Geometry):
        if distances is not None:
            raise ParameterError(f"{name} is a Geometry: leave distances out (the geometry holds the locations)")
        g = coords
    elif coords is None and distances is None:
        if required:
            raise ParameterError(f"the locations are needed: pass {name} (N x 2 or N x 3 positions, or a Geometry) or "
                                 "distances (N x N)")
        return None
    elif isinstance(coords, (str, bytes)) or (coords is not None and not hasattr(coords, "__len__")):
        raise ParameterTypeError(f"{name} must be a Geometry, an (N, d) array or a DataFrame of positions, not "
                                 f"{type(coords).__name__}")
    else:
        g = Geometry(coords, distances=distances, name=name)
    return g if x is None else g.for_map(x)
