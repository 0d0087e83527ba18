"""Allen's own structure summaries of ISH experiments (StructureUnionize records) as one tidy table.

For every ISH experiment (SectionDataSet) Allen summarises the expression of each structure of the
adult mouse ontology at full section resolution and serves it as *StructureUnionize* records:
``sum_pixels`` (pixels of the structure's subtree sampled in the sections), ``sum_expressing_pixels``,
``sum_pixel_intensity``, ``sum_expressing_pixel_intensity``, and from them

- ``expression_density`` = sum_expressing_pixels / sum_pixels,
- expression intensity = sum_expressing_pixel_intensity / sum_expressing_pixels,
- ``expression_energy`` = sum_expressing_pixel_intensity / sum_pixels (density x intensity),

plus ``voxel_energy_mean`` and ``voxel_energy_cv`` over the structure's 200 um grid voxels. The API
answers in XML or JSON, nested under SectionDataSets or flat; :func:`read_structure_unionizes` turns
any of those answers (saved by a browser, ``curl`` or this toolkit) into one tidy table keyed by the
shipped ontology, and :func:`structure_unionizes` fetches the records of a gene list in bulk.

References
----------
Lein ES et al. (2007) Nature 445:168-176. Allen Mouse Brain Atlas API documentation, "Quantified data
by structures" (StructureUnionize) and the technical white paper "Informatics data processing"
(expression density, intensity and energy).
"""

from __future__ import annotations

import json
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._names import did_you_mean
from .._paths import data_home
from ..errors import (DataFormatError, DownloadError, MissingFileError, NotFoundError, OfflineError, ParameterError,
                      ParameterTypeError)
from ..io import rma
from ..io.ontology import StructureTree
from ._unionize import unionize_genes
from .atlas import load_ontology

__all__ = ["STRUCTURE_UNIONIZE_COLUMNS", "UnionizeComparison", "compare_unionizes", "read_structure_unionizes", "structure_unionizes"]

#: Columns of :func:`read_structure_unionizes` and :func:`structure_unionizes`, in order.
STRUCTURE_UNIONIZE_COLUMNS = [
    "section_data_set_id", "gene_acronym", "plane_of_section", "structure_id", "acronym", "name", "depth", "graph_order",
    "hemisphere", "expression_energy", "expression_density", "expression_intensity", "voxel_energy_mean",
    "voxel_energy_cv", "sum_pixels", "sum_expressing_pixels", "sum_pixel_intensity", "sum_expressing_pixel_intensity",
    "structure_unionize_id",
]
_MEASURES = ["expression_energy", "expression_density", "voxel_energy_mean", "voxel_energy_cv", "sum_pixels",
             "sum_expressing_pixels", "sum_pixel_intensity", "sum_expressing_pixel_intensity"]
_HEMISPHERES = {1: "left", 2: "right", 3: "both"}
_PLANES = {1: "coronal", 2: "sagittal"}


# -- parsing: XML and JSON answers, flat or nested under SectionDataSets -------------------------------------------

def _xml_value(node: ET.Element):
    if node.get("nil") == "true":
        return None
    if len(node):
        if node.get("type") == "array" or all(node.tag == child.tag + "s" for child in node):  # <genes><gene>...
            return [_xml_record(child) for child in node]
        return _xml_record(node)
    text = node.text.strip() if node.text else ""
    kind = node.get("type")
    if kind == "integer":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "boolean":
        return text == "true"
    return text


def _xml_record(node: ET.Element) -> dict:
    return {child.tag.replace("-", "_"): _xml_value(child) for child in node}


def _parse_xml(text: str, source: str) -> list[dict]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DataFormatError(f"{source}: not well-formed XML ({exc}); a truncated or partial answer?") from exc
    if root.get("success") == "false":
        raise DataFormatError(f"{source}: the answer reports a failed query: {(root.text or '').strip()[:200]}")
    found = root.findall("structure-unionizes/structure-unionize")
    sets = root.findall("section-data-sets/section-data-set")
    records = [_xml_record(node) for node in found]
    for sds in sets:
        record = _xml_record(sds)
        units = sds.findall("structure-unionizes/structure-unionize")
        record["structure_unionizes"] = [_xml_record(node) for node in units]
        records.append(record)
    if not found and not sets:
        raise DataFormatError(f"{source}: an XML document without structure-unionize or section-data-set records "
                              f"(root <{root.tag}>); not an Allen API answer about StructureUnionize")
    return records


def _parse_json(text: str, source: str) -> list[dict]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DataFormatError(f"{source}: not valid JSON ({exc}); a truncated or partial answer?") from exc
    if isinstance(doc, dict):
        if "msg" not in doc:
            raise DataFormatError(f"{source}: a JSON object without 'msg'; not an Allen API answer (keys: {sorted(doc)[:10]})")
        if not doc.get("success", True):
            raise DataFormatError(f"{source}: the answer reports a failed query: {str(doc['msg'])[:200]}")
        records = doc["msg"]
        total = doc.get("total_rows")
        if isinstance(records, list) and isinstance(total, int) and doc.get("start_row", 0) == 0 and len(records) < total:
            warnings.warn(f"{source}: holds {len(records)} of the {total} records the API announced (one page of a "
                          "paged answer); hmba_toolkit.mouse.structure_unionizes fetches every page", UserWarning, stacklevel=4)
    else:
        records = doc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataFormatError(f"{source}: 'msg' is not a list of records")
    return records


def _flatten(records: list[dict], source: str) -> list[dict]:
    """StructureUnionize dicts, each with the gene and plane of its SectionDataSet when the answer nests them."""
    rows = []
    for record in records:
        if "structure_unionizes" in record:  # a SectionDataSet with its records included
            gene, plane = _gene_and_plane(record)
            units = record["structure_unionizes"] or []
            if isinstance(units, dict):
                units = [units]
            for unit in units:
                unit = dict(unit)
                unit.setdefault("section_data_set_id", record.get("id"))
                unit.setdefault("_gene", gene)
                unit.setdefault("_plane", plane)
                rows.append(unit)
        elif "structure_id" in record and "section_data_set_id" in record:
            if isinstance(record.get("section_data_set"), dict):  # include=section_data_set(genes)
                gene, plane = _gene_and_plane(record["section_data_set"])
                record = {**record, "_gene": gene, "_plane": plane}
            rows.append(record)
        else:
            raise DataFormatError(f"{source}: a record with neither 'structure_id' and 'section_data_set_id' nor "
                                  f"'structure_unionizes' (keys: {sorted(record)[:12]}); not a StructureUnionize answer")
    return rows


def _gene_and_plane(sds: dict) -> tuple[str | None, str | None]:
    """The gene acronym and plane name of a SectionDataSet record, when the answer includes them."""
    genes = sds.get("genes") or []
    if isinstance(genes, dict):
        genes = [genes]
    gene = genes[0].get("acronym") if genes and isinstance(genes[0], dict) else None
    plane = sds.get("plane_of_section")
    plane = plane.get("name") if isinstance(plane, dict) else _PLANES.get(sds.get("plane_of_section_id"))
    return gene, plane


def _source_text(source) -> tuple[str, str]:
    if isinstance(source, bytes):
        return source.decode("utf-8", errors="replace"), "the answer"
    if isinstance(source, str) and source.lstrip()[:1] in ("<", "{", "["):
        return source, "the answer"
    if not isinstance(source, (str, os.PathLike)):
        raise ParameterTypeError(f"source must be a path, or the answer as str or bytes, not {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist" + (" (a folder: pass one answer file)" if path.is_dir() else ""))
    return path.read_text(encoding="utf-8", errors="replace"), str(path)


def read_structure_unionizes(source: str | bytes | os.PathLike, *, ontology: StructureTree | None = None) -> pd.DataFrame:
    """Allen StructureUnionize records from a saved API answer (XML or JSON) as one tidy table.

    Reads every shape the API answers in: ``model::StructureUnionize`` queries (flat records, as
    :func:`structure_unionizes` caches them) and ``SectionDataSet/query.xml?id=<id>&include=structure_unionizes
    (structure)`` answers (records nested under their experiment, with its genes when included), in
    XML or JSON.

    Parameters
    ----------
    source
        A path to a ``.xml`` / ``.json`` answer, or the answer itself (``str`` or ``bytes``).
    ontology
        The structure tree that names the structures; default the shipped adult mouse ontology
        (:func:`~hmba_toolkit.mouse.load_ontology`). Records of structures it lacks keep the acronym of the
        answer (when included) and are named in a warning.

    Returns
    -------
    pandas.DataFrame
        One row per experiment, structure and hemisphere, sorted by ``section_data_set_id`` then ontology
        order; columns :data:`STRUCTURE_UNIONIZE_COLUMNS`: the experiment (``section_data_set_id``,
        ``gene_acronym`` and ``plane_of_section`` when the answer includes them), the structure
        (``structure_id, acronym, name, depth, graph_order``), ``hemisphere`` (``"both"`` unless the record
        says otherwise: ISH records pool both hemispheres), the measures (``expression_energy``,
        ``expression_density``, ``expression_intensity`` = sum_expressing_pixel_intensity /
        sum_expressing_pixels, NaN without expressing pixels, ``voxel_energy_mean``, ``voxel_energy_cv``) and
        the pixel sums they come from, and Allen's record id (``structure_unionize_id``).

    Raises
    ------
    DataFormatError
        The file is not an API answer about StructureUnionize (another model, a truncated file, an error page).

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> answer = fetch_demo_mouse_ish() / "structure_unionizes" / "71717084.xml"  # SectionDataSet/query.xml, as saved
    >>> table = read_structure_unionizes(answer)
    >>> table.set_index("acronym").loc["CP", ["gene_acronym", "plane_of_section", "hemisphere"]].tolist()
    ['Pdyn', 'coronal', 'both']
    >>> bool((table["expression_energy"] >= 0).all())
    True

    References
    ----------
    Allen Mouse Brain Atlas API, "Quantified data by structures" (StructureUnionize).
    """
    text, name = _source_text(source)
    stripped = text.lstrip()
    if not stripped:
        raise DataFormatError(f"{name}: empty; not an Allen API answer")
    records = _parse_xml(stripped, name) if stripped.startswith("<") else _parse_json(stripped, name)
    return _tidy(_flatten(records, name), name, load_ontology() if ontology is None else ontology)


def _number(rows: list[dict], key: str) -> np.ndarray:
    return pd.to_numeric(pd.Series([r.get(key) for r in rows], dtype=object), errors="coerce").to_numpy(dtype=np.float64)


def _tidy(rows: list[dict], source: str, ontology: StructureTree) -> pd.DataFrame:
    missing = [f for f in ("structure_id", "section_data_set_id", "expression_energy") if rows and f not in rows[0]]
    if missing:
        raise DataFormatError(f"{source}: records lack {missing}; not StructureUnionize records")
    sid = _number(rows, "structure_id")
    sds = _number(rows, "section_data_set_id")
    if np.isnan(sid).any() or np.isnan(sds).any():
        raise DataFormatError(f"{source}: {int(np.isnan(sid).sum() + np.isnan(sds).sum())} record(s) without a "
                              "structure_id or section_data_set_id")
    table = pd.DataFrame({"section_data_set_id": sds.astype(np.int64), "structure_id": sid.astype(np.int64)})
    table["gene_acronym"] = pd.Series([r.get("_gene") for r in rows], dtype=object)
    table["plane_of_section"] = pd.Series([r.get("_plane") for r in rows], dtype=object)
    tree = ontology.table
    known = table["structure_id"].isin(tree.index).to_numpy()
    answer_acronym = [(r.get("structure") or {}).get("acronym") if isinstance(r.get("structure"), dict) else None for r in rows]
    table["acronym"] = np.where(known, tree["acronym"].reindex(table["structure_id"]).astype(object).to_numpy(), answer_acronym)
    table["name"] = tree["name"].reindex(table["structure_id"]).to_numpy() if "name" in tree else None
    for column in ("depth", "graph_order"):
        values = tree[column] if column in tree else pd.Series(np.nan, index=tree.index)
        table[column] = pd.to_numeric(values, errors="coerce").reindex(table["structure_id"]).to_numpy()
    if not known.all():
        unknown = sorted(set(table.loc[~known, "structure_id"].tolist()))
        warnings.warn(f"{source}: {len(unknown)} structure id(s) are not in {ontology.source}: {unknown[:10]}; their rows keep "
                      "the answer's acronym and have no name, depth or graph order", UserWarning, stacklevel=3)
    hemi = _number(rows, "hemisphere_id")
    table["hemisphere"] = [_HEMISPHERES.get(int(h), "both") if not np.isnan(h) else "both" for h in hemi]
    for measure in _MEASURES:
        table[measure] = _number(rows, measure)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["expression_intensity"] = np.where(table["sum_expressing_pixels"] > 0,
                                                 table["sum_expressing_pixel_intensity"] / table["sum_expressing_pixels"], np.nan)
    table["structure_unionize_id"] = pd.array(_number(rows, "id"), dtype="Float64").astype("Int64") if rows else pd.array([], dtype="Int64")
    bad = table[_MEASURES].lt(0).any(axis=1) & table["sum_pixels"].notna()
    if bad.any():
        raise DataFormatError(f"{source}: negative expression measures in {int(bad.sum())} record(s) "
                              f"(structures {table.loc[bad, 'structure_id'].tolist()[:5]}); not StructureUnionize values")
    table = table.sort_values(["section_data_set_id", "graph_order", "structure_id", "hemisphere"], kind="stable", na_position="last")
    return table[STRUCTURE_UNIONIZE_COLUMNS].reset_index(drop=True)


# -- bulk: every experiment of a gene list ---------------------------------------------------------------------------

def _experiments(genes, experiments, plane, base_url, page) -> pd.DataFrame:
    if isinstance(genes, str):
        genes = [genes]
    if genes is not None and not len(genes):
        raise ParameterError("genes is empty: pass gene acronyms, or None for every experiment")
    if experiments is None:
        if base_url is None:
            raise ParameterError("experiments is required when base_url is None (no API to list them): pass the "
                                 "section_data_sets.csv of a downloaded folder")
        if genes is not None and len(genes) <= 20:
            parts = [rma.list_section_data_sets(g, plane, base_url=base_url, page=page) for g in genes]
            table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=rma.SECTION_DATA_SET_COLUMNS)
        else:
            table = rma.list_section_data_sets(None, plane, base_url=base_url, page=page)
    elif isinstance(experiments, (str, os.PathLike)):
        path = Path(experiments).expanduser()
        if not path.is_file():
            raise MissingFileError(f"experiments table {path} does not exist")
        table = pd.read_csv(path, dtype={"gene_acronym": str, "plane_of_section": str}, keep_default_na=False, na_values=[""])
    elif isinstance(experiments, pd.DataFrame):
        table = experiments.copy()
    else:
        table = pd.DataFrame({"id": list(experiments)})
    if "id" not in table.columns:
        raise DataFormatError(f"the experiments table has no 'id' column (columns: {list(table.columns)})")
    for column in rma.SECTION_DATA_SET_COLUMNS[1:]:
        if column not in table.columns:
            table[column] = None
    if plane is not None and table["plane_of_section"].notna().any():
        table = table[table["plane_of_section"] == plane]
    if genes is not None:
        wanted = [str(g) for g in genes]
        known = set(table["gene_acronym"].astype(str))
        absent = [g for g in wanted if g not in known]
        if absent:
            if experiments is None and len(genes) <= 20:  # listed gene by gene: the full list names close acronyms
                try:
                    known = set(rma.list_section_data_sets(None, plane, base_url=base_url, page=page)["gene_acronym"].astype(str))
                except DownloadError:
                    pass
            hint = did_you_mean(absent, sorted(known), n=2)
            message = f"no {plane or 'ISH'} experiment for gene(s) {absent[:10]}" + (f" ({hint})" if hint else "")
            if len(absent) == len(wanted):
                raise NotFoundError(message)
            warnings.warn(message + "; they get no rows", UserWarning, stacklevel=3)
        table = table[table["gene_acronym"].astype(str).isin(wanted)]
    return table.drop_duplicates("id").sort_values("id", kind="stable").reset_index(drop=True)


def structure_unionizes(
    genes: Sequence[str] | str | None = None,
    *,
    experiments: pd.DataFrame | Sequence[int] | str | os.PathLike | None = None,
    plane: str | None = "coronal",
    structures: Sequence[int | str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = rma.API_URL,
    max_workers: int = 4,
    max_attempts: int = 5,
    backoff: float = 0.5,
    page: int = 2000,
) -> pd.DataFrame:
    """Allen's StructureUnionize records of every experiment of a gene list, as one tidy table.

    Lists the experiments (:func:`hmba_toolkit.io.rma.list_section_data_sets`), fetches each one's records
    once (:func:`hmba_toolkit.io.rma.download_structure_unionizes`: paged, retried after throttling or a cut
    connection, saved atomically as ``cache_dir/<id>.json``), at most ``max_workers`` at a time, and joins
    them with the experiments' genes and planes. A second call reads the cache; an interrupted call
    resumes where it stopped (finished experiments are not fetched again).

    Parameters
    ----------
    genes
        Gene acronyms (``["Pdyn", "Penk"]``); None takes every experiment of ``experiments`` (or, without
        it, every experiment of the plane: ~4,300 coronal, ~21,700 sagittal, about 1,000 records each).
    experiments
        The experiments to consider: a table with ``id, gene_acronym, plane_of_section, entrez_id`` (as
        :func:`~hmba_toolkit.io.rma.list_section_data_sets` returns it, or a ``section_data_sets.csv``
        path), or SectionDataSet ids. Default: listed from the API.
    plane
        ``"coronal"``, ``"sagittal"`` or None for both.
    structures
        Ids or acronyms to keep; default every structure with a record.
    cache_dir
        Where answers are kept; default ``data_home()/mouse_ish/structure_unionizes``. A folder of saved
        answers (``<id>.json``, such as the demo's ``structure_unionizes/``) works as a cache.
    base_url
        The Allen API, a mirror, or None to read only what ``cache_dir`` holds (offline).
    max_workers
        Concurrent requests (4 is polite to the Allen servers).
    max_attempts, backoff, page
        Retries per request, the base pause (seconds, doubled per retry) and records per request.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`STRUCTURE_UNIONIZE_COLUMNS` plus ``entrez_id``; one row per experiment, structure and
        hemisphere, sorted by ``gene_acronym``, ``section_data_set_id`` and ontology order.

    Raises
    ------
    NotFoundError
        No experiment of the plane for any of the genes (a did-you-mean names close acronyms).
    DownloadError
        Some experiments still failed after their retries (the others are cached for the next call).
    OfflineError
        The API cannot be reached and an experiment is not in the cache.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> root = fetch_demo_mouse_ish()  # its structure_unionizes/ folder holds saved answers
    >>> table = structure_unionizes(["Pdyn", "Penk"], experiments=root / "section_data_sets.csv",
    ...                             structures=["CP", "CB"], cache_dir=root / "structure_unionizes", base_url=None)
    >>> table[["gene_acronym", "acronym"]].to_numpy().tolist()
    [['Pdyn', 'CP'], ['Pdyn', 'CB'], ['Penk', 'CP'], ['Penk', 'CB']]

    References
    ----------
    Allen Mouse Brain Atlas API, "Quantified data by structures" (StructureUnionize); Fulcher BD, Fornito A (2016)
    PNAS 113:1435 (whole-brain mouse gene x region expression from these records).
    """
    if max_workers < 1:
        raise ParameterError(f"max_workers must be >= 1, got {max_workers}")
    if plane is not None and plane not in ("coronal", "sagittal"):
        raise ParameterError(f"plane must be 'coronal', 'sagittal' or None, not {plane!r}")
    table = _experiments(genes, experiments, plane, base_url, page)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else data_home() / "mouse_ish" / "structure_unionizes"
    ids = [int(i) for i in table["id"]]

    def answer(sds: int) -> Path:
        cached = cache / f"{sds}.json"
        if base_url is None:
            if not cached.is_file():
                raise MissingFileError(f"no saved answer {cached} for SectionDataSet {sds}, and base_url=None (offline)")
            return cached
        return rma.download_structure_unionizes(sds, cache, base_url=base_url, page=page, max_attempts=max_attempts,
                                                backoff=backoff)

    paths: dict[int, Path] = {}
    failed: dict[int, BaseException] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {sds: pool.submit(answer, sds) for sds in ids}
        for sds, future in futures.items():
            try:
                paths[sds] = future.result()
            except (DownloadError, NotFoundError, MissingFileError) as exc:
                failed[sds] = exc
    if failed:
        offline = [s for s, e in failed.items() if isinstance(e, OfflineError)]
        first = next(iter(failed.values()))
        message = (f"{len(failed)} of {len(ids)} experiments have no records ({sorted(failed)[:10]}): {first}; "
                   f"the {len(paths)} others are cached in {cache} and the next call fetches only the rest")
        absent = all(isinstance(e, (NotFoundError, MissingFileError)) for e in failed.values())
        if absent and paths:
            warnings.warn(message, UserWarning, stacklevel=2)
        elif absent:
            raise type(first)(f"none of the {len(ids)} experiments has records: {first}") from first
        elif len(offline) == len(failed) and not paths:
            raise OfflineError(message) from first
        else:
            raise DownloadError(message) from first
    ontology = load_ontology()
    parts = [read_structure_unionizes(paths[s], ontology=ontology) for s in ids if s in paths]
    records = pd.concat(parts, ignore_index=True) if parts else _tidy([], "no experiment", ontology)
    info = table.set_index("id")
    for column in ("gene_acronym", "plane_of_section"):
        from_table = info[column].reindex(records["section_data_set_id"]).to_numpy()
        records[column] = np.where(pd.notna(from_table), from_table, records[column].to_numpy())
    records["entrez_id"] = pd.to_numeric(info["entrez_id"].reindex(records["section_data_set_id"]), errors="coerce").astype("Int64").to_numpy()
    if structures is not None:
        wanted = [ontology.id_of(s) for s in structures]
        without = [s for s, w in zip(structures, wanted) if w not in set(records["structure_id"])]
        if without:
            warnings.warn(f"structures {without[:10]} have no record in these experiments (no sampled pixels); they get no rows",
                          UserWarning, stacklevel=2)
        records = records[records["structure_id"].isin(wanted)]
        order = {w: k for k, w in enumerate(wanted)}
        records = records.assign(_order=records["structure_id"].map(order))
        records = records.sort_values(["gene_acronym", "section_data_set_id", "_order"], kind="stable").drop(columns="_order")
    else:
        records = records.sort_values(["gene_acronym", "section_data_set_id", "graph_order"], kind="stable", na_position="last")
    return records[STRUCTURE_UNIONIZE_COLUMNS + ["entrez_id"]].reset_index(drop=True)


# -- Allen's records beside the toolkit's grid means ------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class UnionizeComparison:
    """Allen's StructureUnionize records beside the toolkit's grid means (:func:`compare_unionizes`).

    Attributes
    ----------
    records : pandas.DataFrame
        The records with ``grid_mean`` (the subtree mean of the experiment's 200 um energy grid, as
        :func:`~hmba_toolkit.mouse.unionize` computes it) and ``grid_n_valid`` (voxels with data it pools).
    summary : pandas.DataFrame
        One row per experiment: ``section_data_set_id, gene_acronym, n_structures``, ``pearson_r`` and
        ``spearman_r`` of ``expression_energy`` against ``grid_mean``, ``median_ratio`` (expression_energy /
        grid_mean), ``most_different`` (the structure whose ratio is farthest from 1) and
        ``most_different_ratio``, and ``max_abs_difference_voxel_mean`` (``abs(voxel_energy_mean - grid_mean)``, the
        same quantity computed by Allen and by the toolkit).
    """

    records: pd.DataFrame
    summary: pd.DataFrame

    def __repr__(self) -> str:
        return f"UnionizeComparison({len(self.summary)} experiments, {len(self.records)} records)"


def compare_unionizes(records: pd.DataFrame, grids, *, min_valid: int = 1, chunk_size: int = 256) -> UnionizeComparison:
    """Set Allen's StructureUnionize records beside the subtree means of the same experiments' grids.

    Allen's ``expression_energy`` is computed at full section resolution and weights every sampled pixel
    equally; the grid mean (:func:`~hmba_toolkit.mouse.unionize`) weights every 200 um voxel with data equally.
    They agree closely where a structure's voxels are evenly sampled and differ in small structures, at
    section edges and where sampling is patchy. ``voxel_energy_mean`` is Allen's grid-level mean and should
    match ``grid_mean`` up to the grid's float32 rounding.

    Parameters
    ----------
    records
        A table from :func:`structure_unionizes` or :func:`read_structure_unionizes`.
    grids
        The experiments' energy grids: a :class:`~hmba_toolkit.mouse.GridStore` holding them, or
        ``{section_data_set_id: grid}``.
    min_valid
        Structures whose subtree has fewer voxels with data get NaN ``grid_mean``.
    chunk_size
        Grids summarised per sparse product.

    Returns
    -------
    UnionizeComparison
        ``records`` (with ``grid_mean``, ``grid_n_valid``) and a per-experiment ``summary``.

    Examples
    --------
    >>> from hmba_toolkit.datasets import fetch_demo_mouse_ish
    >>> from hmba_toolkit.io import read_gene_ish_grid
    >>> root = fetch_demo_mouse_ish()
    >>> records = read_structure_unionizes(root / "structure_unionizes" / "71717084.xml")
    >>> result = compare_unionizes(records, {71717084: read_gene_ish_grid(root, "Pdyn")})
    >>> row = result.summary.iloc[0]
    >>> bool(row["pearson_r"] > 0.99), bool(row["max_abs_difference_voxel_mean"] < 1e-3)
    (True, True)

    References
    ----------
    Allen Mouse Brain Atlas technical white paper "Informatics data processing" (expression energy at full
    resolution, 200 um grids); Allen API documentation, "Quantified data by structures".
    """
    from .store import GridStore

    if not isinstance(records, pd.DataFrame):
        raise ParameterTypeError(f"records must be a DataFrame from structure_unionizes, not {type(records).__name__}")
    missing = [c for c in ("section_data_set_id", "structure_id", "expression_energy", "voxel_energy_mean") if c not in records.columns]
    if missing:
        raise DataFormatError(f"records lack column(s) {missing}: pass the table of structure_unionizes or read_structure_unionizes")
    ids = sorted(int(i) for i in records["section_data_set_id"].unique())
    if isinstance(grids, GridStore):
        stored = set(int(i) for i in grids.experiments["id"])
        absent = [i for i in ids if i not in stored]
        get = grids.grid
    elif isinstance(grids, Mapping):
        absent = [i for i in ids if i not in grids]
        get = grids.__getitem__
    else:
        raise ParameterTypeError(f"grids must be a GridStore or a {{section_data_set_id: grid}} mapping, not {type(grids).__name__}")
    if absent:
        raise NotFoundError(f"no grid for SectionDataSet(s) {absent[:10]} of the records ({len(absent)} of {len(ids)})")
    ontology = load_ontology()
    means, counts = [], []
    for start in range(0, len(ids), chunk_size):
        part = {str(i): get(i) for i in ids[start:start + chunk_size]}
        means.append(unionize_genes(part, ontology=ontology, min_valid=min_valid))
        counts.append(unionize_genes(part, ontology=ontology, value="n_valid"))
    acronym_to_id = {a: ontology.id_of(a) for a in means[0].index}
    long = pd.concat(means, axis=1).rename(index=acronym_to_id).stack().rename("grid_mean")
    n_valid = pd.concat(counts, axis=1).rename(index=acronym_to_id).stack().rename("grid_n_valid")
    key = pd.MultiIndex.from_arrays([records["structure_id"].to_numpy(), records["section_data_set_id"].astype(str).to_numpy()])
    out = records.copy()
    out["grid_mean"] = long.reindex(key).to_numpy()
    out["grid_n_valid"] = n_valid.reindex(key).fillna(0).astype(np.int64).to_numpy()
    rows = []
    for sds, part in out.groupby("section_data_set_id", sort=True):
        both = part.dropna(subset=["expression_energy", "grid_mean"])
        enough = len(both) >= 3 and both["grid_mean"].std() > 0 and both["expression_energy"].std() > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = (both["expression_energy"] / both["grid_mean"]).replace([np.inf, -np.inf], np.nan)
            departure = np.abs(np.log(ratio.where(ratio > 0)))
        worst = departure.idxmax() if departure.notna().any() else None
        rows.append({
            "section_data_set_id": int(sds),
            "gene_acronym": part["gene_acronym"].iloc[0] if "gene_acronym" in part else None,
            "n_structures": len(both),
            "pearson_r": float(np.corrcoef(both["expression_energy"], both["grid_mean"])[0, 1]) if enough else np.nan,
            "spearman_r": float(both["expression_energy"].rank().corr(both["grid_mean"].rank())) if enough else np.nan,
            "median_ratio": float(ratio.median()) if ratio.notna().any() else np.nan,
            "most_different": both.at[worst, "acronym"] if worst is not None else None,
            "most_different_ratio": float(ratio[worst]) if worst is not None else np.nan,
            "max_abs_difference_voxel_mean": float((both["voxel_energy_mean"] - both["grid_mean"]).abs().max()) if len(both) else np.nan,
        })
    summary = pd.DataFrame(rows)
    if (summary["n_structures"] < 3).any():
        few = summary.loc[summary["n_structures"] < 3, "section_data_set_id"].tolist()
        warnings.warn(f"experiments {few[:10]} share fewer than 3 structures with data between records and grids: "
                      "their correlations are NaN", UserWarning, stacklevel=2)
    return UnionizeComparison(records=out, summary=summary)
