"""Structure-level summaries of 200 um expression grids ("unionize"), one gene or thousands.

A structure's value is the mean over the voxels annotated with the structure **or any of its
descendants** that carry data (NaN, i.e. the Allen ``-1``, excluded), as the Allen
StructureUnionize records pool a structure's subtree (their ``voxel_energy_mean``). Pooling is
one sparse structure x voxel membership matrix ``M`` (row s marks the voxels of s's subtree),
so many genes are summarised by one sparse-dense product: sums = ``M @ X``, counts =
``M @ valid``.

References
----------
Lein ES et al. (2007) Nature 445:168-176. Allen Mouse Brain Atlas API documentation,
"Quantified data by structures" (StructureUnionize: per structure and SectionDataSet,
hemisphere 1 = left, 2 = right, 3 = both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._compat import LegacyTuple, warn, warn_renamed
from ..errors import DataFormatError, ParameterError, ParameterTypeError
from ..io.ontology import StructureTree
from .atlas import check_ontology, hemisphere_mask, load_annotation, load_ontology

if TYPE_CHECKING:
    from .store import GridStore

__all__ = ["StructureMembership", "structure_membership", "unionize", "unionize_genes"]

_INFO_COLUMNS = ["structure_id", "acronym", "name", "depth", "graph_order", "color_hex_triplet"]


def _reference(annotation, ontology) -> tuple[np.ndarray, StructureTree]:
    annotation = load_annotation() if annotation is None else np.asarray(annotation)
    ontology = load_ontology() if ontology is None else ontology
    check_ontology(ontology)
    if annotation.ndim != 3 or annotation.dtype.kind not in "iu":
        raise DataFormatError(f"annotation must be a 3-D integer grid of structure ids, got {annotation.dtype} {annotation.shape}")
    return annotation, ontology


@dataclass(frozen=True, repr=False)
class StructureMembership(LegacyTuple):
    """Structures of the 200 um reference and their voxels (:func:`structure_membership`)."""

    info: pd.DataFrame
    membership: sp.csr_matrix
    voxels: np.ndarray
    _legacy_fields = ("info", "membership", "voxels")

    def __repr__(self) -> str:
        return f"StructureMembership({len(self.info)} structures x {self.voxels.size} voxels)"


def structure_membership(
    annotation: np.ndarray | None = None,
    ontology: StructureTree | None = None,
    *,
    structures: Sequence[int | str] | None = None,
    hemisphere: str = "both",
) -> StructureMembership:
    """The subtree-pooling matrix: which annotated voxels belong to which structure.

    Parameters
    ----------
    annotation, ontology
        The annotation grid and its structure tree; default the shipped 200 um reference
        (:func:`~hmba_toolkit.mouse.load_annotation`, :func:`~hmba_toolkit.mouse.load_ontology`).
    structures
        Ids or acronyms to keep; default every structure with at least one voxel in its subtree.
    hemisphere
        ``"both"``, ``"left"`` or ``"right"`` (z < 29 is left in coronal space).

    Returns
    -------
    StructureMembership
        Three attributes:

    info : pandas.DataFrame
        One row per structure in ontology (``graph_order``) order: ``structure_id, acronym,
        name, depth, graph_order, color_hex_triplet, n_voxels`` (annotated voxels of the subtree).
    membership : scipy.sparse.csr_matrix
        Structures x voxels, 1 where the voxel lies in the structure's subtree.
    voxels : numpy.ndarray
        Flat (C-order) indices into the grid of the membership matrix's columns.

    Examples
    --------
    >>> sm = structure_membership(structures=["STR", "CP"])
    >>> sm.info["n_voxels"].tolist(), sm.membership.shape
    ([5165, 3012], (2, 62529))
    """
    annotation, ontology = _reference(annotation, ontology)
    inside = (annotation > 0) & hemisphere_mask(annotation.shape, hemisphere)
    voxels = np.flatnonzero(inside)
    labels = annotation.ravel()[voxels]
    ids, inverse = np.unique(labels, return_inverse=True)
    unknown = [int(i) for i in ids if int(i) not in ontology.table.index]
    if unknown:
        raise DataFormatError(f"annotation ids {unknown[:10]} are not structures of {ontology.source}")
    # label -> its chain (self and ancestors); one (structure, label) pair per link
    pairs_s, pairs_l = [], []
    for k, lab in enumerate(ids):
        chain = ontology.ancestors(int(lab)) + [int(lab)]
        pairs_s += chain
        pairs_l += [k] * len(chain)
    structs = np.unique(pairs_s)
    row_of = {int(s): r for r, s in enumerate(structs)}
    link = sp.csr_matrix((np.ones(len(pairs_s)), ([row_of[s] for s in pairs_s], pairs_l)), shape=(len(structs), len(ids)))
    voxel_label = sp.csr_matrix((np.ones(len(voxels)), (inverse.ravel(), np.arange(len(voxels)))), shape=(len(ids), len(voxels)))
    membership = (link @ voxel_label).tocsr()
    table = ontology.table.loc[structs]
    info = pd.DataFrame({
        "structure_id": structs.astype(np.int64),
        "acronym": table["acronym"].astype(str).to_numpy(),
        "name": table["name"].astype(str).to_numpy(),
        "depth": pd.to_numeric(table.get("depth", pd.Series(np.nan, index=table.index)), errors="coerce").to_numpy(),
        "graph_order": pd.to_numeric(table.get("graph_order", pd.Series(np.arange(len(table)), index=table.index)), errors="coerce").to_numpy(),
        "color_hex_triplet": table.get("color_hex_triplet", pd.Series("", index=table.index)).astype(str).to_numpy(),
        "n_voxels": np.asarray(membership.sum(axis=1)).ravel().astype(np.int64),
    })
    if structures is not None:
        wanted = [ontology.id_of(s) for s in structures]
        absent = [s for s, w in zip(structures, wanted) if w not in row_of]
        if absent:
            raise ParameterError(f"structures {absent} have no annotated voxels in the {hemisphere!r} hemisphere(s)")
        keep = np.array([row_of[w] for w in wanted])
    else:
        keep = np.argsort(info["graph_order"].to_numpy(), kind="stable")
    return StructureMembership(info=info.iloc[keep].reset_index(drop=True), membership=membership[keep], voxels=voxels)


def unionize(
    grid: np.ndarray,
    annotation: np.ndarray | None = None,
    ontology: StructureTree | None = None,
    *,
    structures: Sequence[int | str] | None = None,
    hemisphere: str = "both",
) -> pd.DataFrame:
    """Per-structure mean of one expression grid, pooling each structure's subtree.

    Parameters
    ----------
    grid
        An energy (or density, intensity) grid shaped like ``annotation``, NaN = no data.
    annotation, ontology
        Default: the shipped 200 um reference.
    structures
        Ids or acronyms; default every structure with annotated voxels, in ontology order.
    hemisphere
        ``"both"``, ``"left"`` or ``"right"``.

    Returns
    -------
    pandas.DataFrame
        ``structure_id, acronym, name, depth, graph_order, color_hex_triplet, n_voxels,
        n_valid, mean, hemisphere``: ``n_voxels`` annotated voxels of the subtree,
        ``n_valid`` those with data, ``mean`` their mean (NaN when ``n_valid`` is 0).

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> from hmba_toolkit.io import read_gene_ish_grid
    >>> grid = read_gene_ish_grid(fetch_demo_mouse_ish(), "Pdyn")
    >>> table = unionize(grid, structures=["CP", "Isocortex"]).set_index("acronym")
    >>> bool(table.at["CP", "mean"] > 10 * table.at["Isocortex", "mean"])
    True

    References
    ----------
    Allen Mouse Brain Atlas API, "Quantified data by structures" (StructureUnionize).
    """
    annotation, ontology = _reference(annotation, ontology)
    grid = np.asarray(grid)
    if grid.shape != annotation.shape:
        raise DataFormatError(f"grid has shape {grid.shape}, the annotation {annotation.shape}")
    sm = structure_membership(annotation, ontology, structures=structures, hemisphere=hemisphere)
    info, membership, voxels = sm.info, sm.membership, sm.voxels
    values = grid.ravel()[voxels].astype(np.float64)
    valid = ~np.isnan(values)
    if not valid.any():
        warn("unionize: the grid has no data (every annotated voxel is NaN): every mean is NaN")
    n_valid = membership @ valid.astype(np.float64)
    sums = membership @ np.where(valid, values, 0.0)
    out = info.copy()
    out["n_valid"] = n_valid.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean"] = np.where(n_valid > 0, sums / np.maximum(n_valid, 1), np.nan)
    out["hemisphere"] = hemisphere
    return out


def _chunks(grids, voxels: np.ndarray, chunk_size: int):
    """Yield (labels, values[c, n_voxels]) from a mapping of grids or a GridStore."""
    from .store import GridStore

    if isinstance(grids, GridStore):
        yield from grids.iter_voxel_chunks(voxels, chunk_size)
        return
    if not isinstance(grids, Mapping):
        raise ParameterTypeError(f"grids must be a {{label: grid}} mapping or a GridStore, not {type(grids).__name__}")
    items = list(grids.items())
    for start in range(0, len(items), chunk_size):
        part = items[start:start + chunk_size]
        yield [k for k, _ in part], np.stack([np.asarray(g, dtype=np.float32).ravel()[voxels] for _, g in part])


def unionize_genes(
    grids: Mapping[str, np.ndarray] | GridStore,
    annotation: np.ndarray | None = None,
    ontology: StructureTree | None = None,
    *,
    structures: Sequence[int | str] | None = None,
    hemisphere: str = "both",
    min_valid: int = 1,
    chunk_size: int = 512,
    value: str = "mean",
    return_counts: bool = False,
) -> pd.DataFrame:
    """Structure x gene table of subtree means for many grids at once.

    Parameters
    ----------
    grids
        ``{label: grid}`` (labels become columns), or a :class:`~hmba_toolkit.mouse.GridStore`
        (columns are its labels, e.g. ``Pdyn_71717084``), read ``chunk_size`` grids at a time.
    annotation, ontology, structures, hemisphere
        As in :func:`unionize`.
    min_valid
        Structures with fewer voxels with data than this get NaN for that grid.
    chunk_size
        Grids summarised per sparse product (memory ~ ``chunk_size`` x 62,529 x 4 bytes).
    value
        What the table holds: ``"mean"`` (subtree mean of the voxels with data) or ``"n_valid"`` (how many
        voxels with data each mean pools).
    return_counts
        Deprecated (a flag that switched the return type to a tuple): use ``value="n_valid"``.

    Returns
    -------
    pandas.DataFrame
        Index: structure acronyms (named ``acronym``) in ontology order; columns: grid labels.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> from hmba_toolkit.io import read_gene_ish_grid
    >>> root = fetch_demo_mouse_ish()
    >>> grids = {gene: read_gene_ish_grid(root, gene) for gene in ["Pdyn", "Nrp1"]}
    >>> table = unionize_genes(grids, structures=["CP", "CB"])
    >>> table.shape, bool(table.loc["CP", "Pdyn"] > table.loc["CB", "Pdyn"])
    ((2, 2), True)

    References
    ----------
    Allen Mouse Brain Atlas API, "Quantified data by structures" (StructureUnionize).
    """
    if min_valid < 1:
        raise ParameterError(f"min_valid must be >= 1, got {min_valid}")
    if value not in ("mean", "n_valid"):
        raise ParameterError(f"value must be 'mean' or 'n_valid', not {value!r}")
    if return_counts:
        warn_renamed("unionize_genes(return_counts=True)", "unionize_genes(value='n_valid')", "hmba_toolkit.mouse")
    if chunk_size < 1:
        raise ParameterError(f"chunk_size must be >= 1, got {chunk_size}")
    from .store import GridStore

    if not isinstance(grids, (Mapping, GridStore)):
        raise ParameterTypeError(f"grids must be a {{label: grid}} mapping or a GridStore, not {type(grids).__name__}")
    if isinstance(grids, Mapping) and not grids:
        raise ParameterError("grids is empty: pass {label: grid} with at least one grid, or a GridStore")
    annotation, ontology = _reference(annotation, ontology)
    shapes = {tuple(np.shape(g)) for g in grids.values()} if isinstance(grids, Mapping) else {tuple(grids.shape)}
    bad = shapes - {annotation.shape}
    if bad:
        raise DataFormatError(f"grids have shape(s) {sorted(bad)}, the annotation {annotation.shape}")
    sm = structure_membership(annotation, ontology, structures=structures, hemisphere=hemisphere)
    info, membership, voxels = sm.info, sm.membership, sm.voxels
    # CSC times the chunk's transpose (a free F-ordered view) runs ~3x faster than CSR here
    membership = membership.tocsc()
    labels_all, means, counts = [], [], []
    for labels, values in _chunks(grids, voxels, chunk_size):
        valid = ~np.isnan(values)
        n_valid = np.rint(membership @ valid.T.astype(np.float32)).astype(np.int64)
        sums = membership @ np.where(valid, values, np.float32(0)).T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(n_valid >= min_valid, sums / np.maximum(n_valid, 1), np.nan))
        counts.append(n_valid)
        labels_all += list(labels)
    index = pd.Index(info["acronym"], name="acronym")
    mean_table = pd.DataFrame(np.hstack(means) if means else np.empty((len(info), 0)), index=index, columns=pd.Index(labels_all, name="grid"))
    count_table = pd.DataFrame(np.hstack(counts) if counts else np.empty((len(info), 0), dtype=np.int64), index=index,
                               columns=mean_table.columns)
    if return_counts:
        return mean_table, count_table
    return mean_table if value == "mean" else count_table
