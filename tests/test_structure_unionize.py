"""Allen StructureUnionize records: reading saved answers, bulk fetching from a loopback API, consistency with the grids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _http import AllenApiServer

from hmba_toolkit import mouse
from hmba_toolkit.datasets import fetch_demo_mouse_ish
from hmba_toolkit.errors import DataFormatError, DownloadError, MissingFileError, NotFoundError, OfflineError, ParameterError
from hmba_toolkit.io import fetch_bytes, read_gene_ish_grid, read_gene_ish_grids, rma

PDYN = 71717084


@pytest.fixture(scope="module")
def demo():
    root = fetch_demo_mouse_ish()
    sds = pd.read_csv(root / "section_data_sets.csv")
    saved = sorted(int(p.stem) for p in (root / "structure_unionizes").glob("*.json"))
    return root, sds, saved


def _records(root, sds_id: int) -> list[dict]:
    return json.loads((root / "structure_unionizes" / f"{sds_id}.json").read_text())["msg"]


def test_xml_and_json_answers_give_the_same_table(demo):
    root, sds, saved = demo
    from_json = mouse.read_structure_unionizes(root / "structure_unionizes" / f"{PDYN}.json")
    from_xml = mouse.read_structure_unionizes(root / "structure_unionizes" / f"{PDYN}.xml")
    assert list(from_xml.columns) == mouse.STRUCTURE_UNIONIZE_COLUMNS
    assert from_xml["gene_acronym"].unique().tolist() == ["Pdyn"] and from_json["gene_acronym"].isna().all()
    pd.testing.assert_frame_equal(from_json.drop(columns=["gene_acronym", "plane_of_section"]),
                                  from_xml.drop(columns=["gene_acronym", "plane_of_section"]))
    # bytes, text and a path are the same answer; so is the JSON of the nested SectionDataSet shape
    text = (root / "structure_unionizes" / f"{PDYN}.xml").read_text()
    pd.testing.assert_frame_equal(mouse.read_structure_unionizes(text.encode()), from_xml)
    nested = {"success": True, "msg": [{"id": PDYN, "plane_of_section_id": 1, "genes": [{"acronym": "Pdyn"}],
                                        "structure_unionizes": _records(root, PDYN)}]}
    pd.testing.assert_frame_equal(mouse.read_structure_unionizes(json.dumps(nested)), from_xml)
    flat_with_sds = [{**r, "section_data_set": {"id": PDYN, "plane_of_section_id": 1, "genes": [{"acronym": "Pdyn"}]}}
                     for r in _records(root, PDYN)]  # model::StructureUnionize with include=section_data_set(genes)
    pd.testing.assert_frame_equal(mouse.read_structure_unionizes(json.dumps({"success": True, "msg": flat_with_sds})), from_xml)
    # the demo answers carry exactly the fields of Allen's StructureUnionize model, each with its structure
    assert {frozenset(r) for r in _records(root, PDYN)} == {frozenset(rma.STRUCTURE_UNIONIZE_FIELDS) | {"structure"}}
    # the table is keyed by the shipped ontology and sorted in its order
    tree = mouse.load_ontology().table
    assert (from_xml["acronym"].to_numpy() == tree.loc[from_xml["structure_id"], "acronym"].to_numpy()).all()
    assert (np.diff(from_xml["graph_order"].to_numpy()) > 0).all()
    assert (from_xml["hemisphere"] == "both").all()


def test_records_follow_allens_definitions_and_the_grids(demo):
    root, sds, saved = demo
    table = mouse.read_structure_unionizes(root / "structure_unionizes" / f"{PDYN}.xml")
    t = table
    np.testing.assert_allclose(t["expression_density"], t["sum_expressing_pixels"] / t["sum_pixels"], rtol=1e-5)
    np.testing.assert_allclose(t["expression_energy"], t["sum_expressing_pixel_intensity"] / t["sum_pixels"], rtol=1e-5, atol=1e-6)
    expressing = t["sum_expressing_pixels"] > 0
    np.testing.assert_allclose((t["expression_density"] * t["expression_intensity"])[expressing],
                               t["expression_energy"][expressing], rtol=1e-4, atol=1e-6)
    assert (t["sum_pixel_intensity"] >= t["sum_expressing_pixel_intensity"]).all()
    # voxel_energy_mean is the grid mean over each subtree: what mouse.unionize computes
    grid = read_gene_ish_grid(root, "Pdyn")
    ours = mouse.unionize(grid).set_index("structure_id").loc[t["structure_id"]]
    np.testing.assert_allclose(t["voxel_energy_mean"], ours["mean"], rtol=1e-5, atol=1e-6)
    # Allen's pixel-weighted energy tracks the unweighted grid mean closely but is not the same number
    r = np.corrcoef(t["expression_energy"], ours["mean"])[0, 1]
    assert r > 0.99 and not np.allclose(t["expression_energy"], ours["mean"], rtol=1e-3)
    # density grids summarised by structure follow expression_density
    grids = read_gene_ish_grids(root, "Pdyn")
    by_volume = mouse.unionize_genes(grids, structures=t["structure_id"].tolist())
    assert list(by_volume.columns) == ["energy", "density", "intensity"]
    assert np.corrcoef(by_volume["density"], t["expression_density"])[0, 1] > 0.99
    np.testing.assert_allclose(by_volume["energy"].to_numpy(), t["voxel_energy_mean"], rtol=1e-5, atol=1e-6)
    striatum = t.set_index("acronym")
    assert striatum.at["CP", "expression_density"] > 3 * striatum.at["CB", "expression_density"]


@pytest.fixture
def api(demo):
    root, sds, saved = demo
    records = [{"id": int(r.id), "failed": False, "plane_of_section_id": 1, "plane_of_section": {"id": 1, "name": "coronal"},
                "genes": [{"acronym": r.gene_acronym, "entrez_id": int(r.entrez_id)}]} for r in sds.itertuples()]
    unionizes = {s: _records(root, s) for s in saved}
    with AllenApiServer(records, {}, unionizes=unionizes) as server:
        yield server


def test_bulk_fetch_pages_survives_throttling_and_cuts_and_matches_saved_answers(api, demo, tmp_path):
    root, sds, saved = demo
    genes = ["Pdyn", "Penk", "Drd2"]
    ids = sds.loc[sds["gene_acronym"].isin(genes), "id"].tolist()
    api.unionize_statuses[ids[0]] = [429, 503]  # throttled twice
    api.unionize_cut[ids[1]] = 3000  # a page cut mid-answer once
    fetched = mouse.structure_unionizes(genes, cache_dir=tmp_path, base_url=api.url, page=150, backoff=0.01, max_workers=2)
    offline = mouse.structure_unionizes(genes, experiments=root / "section_data_sets.csv",
                                        cache_dir=root / "structure_unionizes", base_url=None)
    pd.testing.assert_frame_equal(fetched, offline)
    assert fetched["gene_acronym"].unique().tolist() == sorted(genes)
    assert fetched.groupby("section_data_set_id").size().min() > 500  # several pages per experiment
    pages = {s: sum(1 for q, _ in api.unionize_requests if q == s) for s in ids}
    n_rows = {s: len(_records(root, s)) for s in ids}
    assert pages[ids[2]] == -(-n_rows[ids[2]] // 150)
    assert pages[ids[0]] == -(-n_rows[ids[0]] // 150) + 2 and pages[ids[1]] == -(-n_rows[ids[1]] // 150) + 1
    before = len(api.unionize_requests)
    again = mouse.structure_unionizes(genes, cache_dir=tmp_path, base_url=api.url)
    pd.testing.assert_frame_equal(again, fetched)
    assert len(api.unionize_requests) == before  # served from the cache
    assert not list(tmp_path.glob(".*part*"))


def test_bulk_fetch_resumes_and_never_keeps_a_half_answer(api, demo, tmp_path):
    root, sds, saved = demo
    genes = ["Pdyn", "Penk", "Tac1"]
    ids = sds.loc[sds["gene_acronym"].isin(genes), "id"].sort_values().tolist()
    api.unionize_statuses[ids[1]] = [500] * 40
    with pytest.raises(DownloadError, match=rf"1 of 3 experiments.*{ids[1]}.*next call"):
        mouse.structure_unionizes(genes, cache_dir=tmp_path, base_url=api.url, page=400, max_attempts=2, backoff=0)
    assert sorted(int(p.stem) for p in tmp_path.glob("*.json")) == [ids[0], ids[2]]
    api.unionize_statuses[ids[1]] = []
    start = len(api.unionize_requests)
    table = mouse.structure_unionizes(genes, cache_dir=tmp_path, base_url=api.url, page=400, backoff=0)
    assert {s for s, _ in api.unionize_requests[start:]} == {ids[1]}
    assert table["section_data_set_id"].nunique() == 3
    # a truncated cache file is not trusted: it is fetched again
    cached = tmp_path / f"{ids[0]}.json"
    cached.write_bytes(cached.read_bytes()[:-500])
    start = len(api.unionize_requests)
    pd.testing.assert_frame_equal(mouse.structure_unionizes(genes, cache_dir=tmp_path, base_url=api.url, page=400), table)
    assert {s for s, _ in api.unionize_requests[start:]} == {ids[0]}


def test_bad_input_gets_named_errors(api, demo, tmp_path):
    root, sds, saved = demo
    with pytest.raises(NotFoundError, match="no StructureUnionize record for SectionDataSet 123"):
        rma.download_structure_unionizes(123, tmp_path, base_url=api.url)
    assert not (tmp_path / "123.json").exists()
    with pytest.raises(NotFoundError, match=r"'pdyn': did you mean \['Pdyn'\]"):
        mouse.structure_unionizes(["pdyn"], cache_dir=tmp_path, base_url=api.url)
    with pytest.warns(UserWarning, match="Nope"):
        part = mouse.structure_unionizes(["Pdyn", "Nope"], cache_dir=tmp_path, base_url=api.url)
    assert part["gene_acronym"].unique().tolist() == ["Pdyn"]
    with pytest.raises(ParameterError, match="experiments is required"):
        mouse.structure_unionizes(["Pdyn"], base_url=None)
    with pytest.raises(MissingFileError, match="no saved answer"):
        mouse.structure_unionizes(["Pdyn"], experiments=root / "section_data_sets.csv", cache_dir=tmp_path / "empty", base_url=None)
    # files that are not StructureUnionize answers
    grid_listing = json.dumps({"success": True, "total_rows": 1, "msg": [{"id": 1, "failed": False}]})
    cases = {
        "section_data_sets.csv": (root / "section_data_sets.csv").read_text(),
        "error.json": json.dumps({"success": False, "msg": "Data Access error in query"}),
        "listing.json": grid_listing,
        "page.html": "<html><body>Service Unavailable</body></html>",
        "cut.json": (root / "structure_unionizes" / f"{PDYN}.json").read_text()[:5000],
        "cut.xml": (root / "structure_unionizes" / f"{PDYN}.xml").read_text()[:5000],
        "empty.json": "",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(DataFormatError, match=name.replace(".", r"\.")):
            mouse.read_structure_unionizes(path)
    with pytest.raises(MissingFileError, match="a folder"):
        mouse.read_structure_unionizes(root / "structure_unionizes")
    # a single page of a paged answer is read, with a warning that it is partial
    page = {"success": True, "start_row": 0, "num_rows": 2, "total_rows": 900, "msg": _records(root, PDYN)[:2]}
    with pytest.warns(UserWarning, match="2 of the 900 records"):
        assert len(mouse.read_structure_unionizes(json.dumps(page))) == 2


def test_fetch_bytes_retries_cuts_and_throttling_and_says_offline_only_without_an_answer(api, demo, tmp_path):
    root, sds, saved = demo
    url = rma.structure_unionizes_query(PDYN, num_rows=5, base_url=api.url)
    api.unionize_cut[PDYN] = 200
    api.unionize_statuses[PDYN] = [503]
    doc = json.loads(fetch_bytes(url, backoff=0))
    assert doc["num_rows"] == 5 and [s for s, _ in api.unionize_requests].count(PDYN) == 3
    api.unionize_statuses[PDYN] = [503] * 10
    with pytest.raises(DownloadError, match="after 2 attempts although the server answered"):
        fetch_bytes(url, max_attempts=2, backoff=0)
    with pytest.raises(OfflineError, match="Are you offline"):
        fetch_bytes("http://127.0.0.1:9/x", max_attempts=2, backoff=0)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_bytes(api.url + "nothing", backoff=0)
