"""Allen Brain Atlas API (RMA) query builder for mouse ISH experiments and grid downloads.

Query grammar from the Allen API documentation ("RMA" model/criteria/include/options);
grid download endpoint ``/grid_data/download/<SectionDataSet id>?include=energy``.

Reference: Allen Brain Atlas API documentation, help.brain-map.org/display/api.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from ..errors import DownloadError, HmbaToolkitError
from .download import fetch_bytes

__all__ = ["API_URL", "section_data_sets_query", "grid_download_url", "structure_graph_query", "query_section_data_sets"]

API_URL = "http://api.brain-map.org/"
_PLANES = ("coronal", "sagittal")
_VOLUMES = ("energy", "density", "intensity")
_SAFE = ":,[]$='"


def section_data_sets_query(gene: str | None = None, plane: str | None = "coronal", *, product: str = "Mouse",
                            start_row: int = 0, num_rows: int = 2000, base_url: str = API_URL) -> str:
    """URL listing ISH SectionDataSets (not failed) of a gene, with their genes included.

    Examples
    --------
    >>> section_data_sets_query("Pdyn")[:60]
    'http://api.brain-map.org/api/v2/data/query.json?criteria=mod'
    """
    if plane is not None and plane not in _PLANES:
        raise HmbaToolkitError(f"plane must be one of {_PLANES} or None, not {plane!r}")
    crit = f"model::SectionDataSet,rma::criteria,[failed$eq'false'],products[abbreviation$eq'{product}']"
    if plane:
        crit += f",plane_of_section[name$eq'{plane}']"
    if gene:
        crit += f",genes[acronym$eq'{gene}']"
    crit += f",rma::include,genes,plane_of_section,rma::options[start_row$eq{start_row}][num_rows$eq{num_rows}][order$eq'id']"
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={quote(crit, safe=_SAFE)}"


def grid_download_url(section_data_set_id: int, volumes=("energy",), base_url: str = API_URL) -> str:
    """URL of the zipped 200 um grid(s) of one SectionDataSet (``energy``, ``density``, ``intensity``)."""
    bad = [v for v in volumes if v not in _VOLUMES]
    if bad:
        raise HmbaToolkitError(f"volumes must be among {_VOLUMES}, got {bad}")
    return f"{base_url.rstrip('/')}/grid_data/download/{int(section_data_set_id)}?include={','.join(volumes)}"


def structure_graph_query(graph_id: int = 1, base_url: str = API_URL) -> str:
    """URL of the flat structure table of an ontology graph (1 = adult mouse)."""
    crit = f"model::Structure,rma::criteria,[graph_id$eq{int(graph_id)}],rma::options[num_rows$eq'all'][order$eq'graph_order']"
    return f"{base_url.rstrip('/')}/api/v2/data/query.json?criteria={quote(crit, safe=_SAFE)}"


def query_section_data_sets(gene: str, plane: str | None = "coronal", *, base_url: str = API_URL, page: int = 2000) -> list[dict]:
    """Run :func:`section_data_sets_query` (all pages) and return the SectionDataSet records."""
    out: list[dict] = []
    start = 0
    while True:
        doc = json.loads(fetch_bytes(section_data_sets_query(gene, plane, start_row=start, num_rows=page, base_url=base_url)))
        if not doc.get("success", False):
            raise DownloadError(f"Allen API query for {gene!r} failed: {doc.get('msg')}")
        out.extend(doc["msg"])
        start += page
        if start >= int(doc.get("total_rows", 0)):
            return out
