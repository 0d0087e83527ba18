"""Gene-set libraries: GMT files, the shipped GO biological-process library, HMBA marker sets.

References
----------
Subramanian A et al. (2005) PNAS 102:15545 (GMT format). The Gene Ontology Consortium (2021)
Nucleic Acids Res 49:D325 (GO, CC BY 4.0; the 2021 Enrichr build shipped with gseapy's tests).
Johansen N et al. (2025) bioRxiv (HMBA-BG consensus taxonomy, curated markers).
"""

from __future__ import annotations

import gzip
import io
import os
from importlib import resources
from pathlib import Path

import pandas as pd

from .._files import atomic_path
from ..errors import DataFormatError, MissingFileError, OutputExistsError, ParameterError, ParameterTypeError

__all__ = ["read_gmt", "write_gmt", "go_biological_process", "hmba_marker_sets"]


def check_gene_sets(gene_sets, name: str = "gene_sets") -> dict[str, list[str]]:
    """``{set name: [genes]}`` from any mapping of names to gene lists; anything else is refused by name.

    A single set name (a string) or a set whose genes are one string (``{"S": "DRD1"}``) is an error, not a set
    of letters.
    """
    from collections.abc import Mapping

    if not isinstance(gene_sets, Mapping):
        hint = f"; use {{{gene_sets!r}: [genes]}}" if isinstance(gene_sets, str) else ""
        raise ParameterTypeError(f"{name} must be a {{set name: [genes]}} mapping (read_gmt, hmba_marker_sets), "
                                 f"not {type(gene_sets).__name__}{hint}")
    out = {}
    for key, genes in gene_sets.items():
        if isinstance(genes, str):
            raise ParameterTypeError(f"{name}[{key!r}] must be a list of genes, not the string {genes!r}; use [{genes!r}]")
        out[str(key)] = [str(g) for g in genes]
    return out


def _parse_gmt(text: str, source: str) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise DataFormatError(f"{source}: line {n} has {len(fields)} tab-separated fields; GMT needs name, description, genes")
        name = fields[0].strip()
        if name in sets:
            raise DataFormatError(f"{source}: line {n} repeats the set name {name!r}")
        genes = [g.strip().split(",")[0] for g in fields[2:] if g.strip()]
        sets[name] = list(dict.fromkeys(genes))
    return sets


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a GMT gene-set file (plain or ``.gz``): ``{set name: [genes]}``.

    Each line is ``name<TAB>description<TAB>gene<TAB>gene...``; Enrichr-style weights
    (``GENE,1.0``) are dropped; duplicate genes within a set are removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "sets.gmt"  # e.g. MSigDB's h.all.v2024.1.Hs.symbols.gmt
    >>> write_gmt({"MSN": ["DRD1", "PPP1R1B"]}, path)
    >>> read_gmt(path)
    {'MSN': ['DRD1', 'PPP1R1B']}
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist (a .gmt or .gmt.gz gene-set file)")
    raw = path.read_bytes()
    try:
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: not a GMT text file ({type(exc).__name__}: {exc})") from None
    sets = _parse_gmt(text, str(path))
    if not sets:
        raise DataFormatError(f"{path}: holds no gene set (an empty GMT file)")
    return sets


def write_gmt(sets: dict[str, list[str]], path: str | os.PathLike, description: str = "hmba_toolkit", *,
              overwrite: bool = False) -> None:
    """Write ``{name: genes}`` as GMT (atomically: the file appears complete or not at all).

    Names, genes and the description may not contain tabs or line breaks (they would split fields).
    An existing file is replaced only with ``overwrite=True``.
    """
    sets = check_gene_sets(sets, "sets")
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it")
    lines = []
    for name, genes in sets.items():
        for field in (name, description, *genes):
            if not str(field).strip() or any(ch in str(field) for ch in "\t\r\n"):
                raise DataFormatError(f"write_gmt: set {name!r} has an empty field or one with a tab or line break: {field!r}")
        lines.append("\t".join([name, description, *genes]) + "\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")


def go_biological_process() -> dict[str, list[str]]:
    """The GO biological-process library (Enrichr 2021 build, 6,036 sets, human symbols), shipped."""
    src = resources.files("hmba_toolkit.datasets").joinpath("data", "GO_Biological_Process_2021.gmt.gz")
    with gzip.open(src.open("rb")) as fh:
        return _parse_gmt(io.TextIOWrapper(fh, encoding="utf-8").read(), "GO_Biological_Process_2021.gmt.gz")


def hmba_marker_sets(level: str = "Group") -> dict[str, list[str]]:
    """Cell-type marker sets from the curated CCN20250428 Group markers.

    ``level="Group"``: each Group's curated markers; a coarser level (``Subclass``, ``Class``,
    ``Neighborhood``) pools the markers of its Groups. Sets are small (1-10 genes): pass
    ``min_size=1`` to the enrichment functions.
    """
    levels = ("Neighborhood", "Class", "Subclass", "Group")
    if level not in levels:
        raise ParameterError(f"level={level!r} is not one of {levels}")
    data = resources.files("hmba_toolkit.datasets").joinpath("data")
    with data.joinpath("group_markers_CAS_CCN20250428.tsv").open("r", encoding="utf-8") as fh:
        markers = pd.read_csv(fh, sep="\t", dtype=str).fillna("")
    with data.joinpath("taxonomy_CCN20250428_v20250630_Group.tsv").open("r", encoding="utf-8") as fh:
        tax = pd.read_csv(fh, sep="\t", dtype=str)
    m = markers.merge(tax[list(levels)], on="Group", how="left")
    sets: dict[str, list[str]] = {}
    for name, rows in m.groupby(level, sort=True):
        genes = [g for ev in rows["marker_gene_evidence"] for g in ev.split("|") if g]
        if genes:
            sets[name] = sorted(set(genes))
    return sets
