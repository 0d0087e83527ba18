"""hmba_toolkit.mouse: unionize on the real Allen grids, the grid store, the API client and bulk download."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from _http import AllenApiServer

from hmba_toolkit import mouse
from hmba_toolkit.datasets import fetch_demo_mouse_ish
from hmba_toolkit.errors import DataFormatError, DownloadError, HmbaToolkitError, OfflineError
from hmba_toolkit.io import read_ish_grid, rma

NRP1, PDYN = 74272479, 71717084


@pytest.fixture(scope="module")
def real(fixtures_dir):
    d = fixtures_dir / "mouse_ish"
    return {
        "dir": d,
        "Nrp1": read_ish_grid(d / "Nrp1_P56_coronal_74272479_200um" / "energy.mhd"),
        "Pdyn": read_ish_grid(d / "Pdyn_P56_coronal_71717084_200um" / "energy.mhd"),
        "table": pd.read_csv(d / "allen_structure_tree.csv"),
    }


def _real_zip(folder) -> bytes:
    """The three files of a real grid download, zipped unchanged (as the API serves them)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("data_set.xml", "energy.mhd", "energy.raw"):
            zf.writestr(name, (folder / name).read_bytes())
    return buf.getvalue()


def test_shipped_reference_is_the_real_fixture(real):
    ann = read_ish_grid(real["dir"] / "P56_Mouse_gridAnnotation" / "gridAnnotation.mhd")
    np.testing.assert_array_equal(mouse.load_annotation(), ann)
    tree = mouse.load_ontology()
    assert len(tree) == len(real["table"]) - 1  # the "void" row is dropped
    assert tree.get("CP")["name"] == "Caudoputamen"
    a = mouse.load_annotation()
    a[0, 0, 0] = 7  # a copy: the cached grid is untouched
    assert mouse.load_annotation()[0, 0, 0] == 0


@pytest.mark.parametrize("acronym", ["root", "STR", "CP", "ACB", "Isocortex", "HPF", "CB", "MOp5"])
def test_unionize_matches_a_hand_computation_on_real_grids(real, acronym):
    # by hand, independently: the subtree from structure_id_path strings, then nanmean
    table = real["table"]
    sid = int(table.loc[table["acronym"] == acronym, "id"].iloc[0])
    subtree = table.loc[table["structure_id_path"].fillna("").str.contains(f"/{sid}/"), "id"].astype(int).to_numpy()
    ann = mouse.load_annotation()
    inside = np.isin(ann, subtree)
    for gene in ("Nrp1", "Pdyn"):
        vals = real[gene][inside].astype(np.float64)
        got = mouse.unionize(real[gene]).set_index("acronym").loc[acronym]
        assert got["n_voxels"] == int(inside.sum())
        assert got["n_valid"] == int((~np.isnan(vals)).sum())
        assert got["mean"] == pytest.approx(float(np.nanmean(vals)), rel=1e-9)


def test_unionize_biology_hemispheres_and_ordering(real):
    u = mouse.unionize(real["Pdyn"]).set_index("acronym")
    assert u.loc["CP", "mean"] > 2 * u.loc["Isocortex", "mean"]  # Pdyn is a striatal marker
    assert (np.diff(u["graph_order"].to_numpy()) > 0).all() and u.index[0] == "root"
    assert (u["n_voxels"] > 0).all() and len(u) == 843
    left = mouse.unionize(real["Nrp1"], hemisphere="left").set_index("acronym")
    right = mouse.unionize(real["Nrp1"], hemisphere="right").set_index("acronym")
    both = mouse.unionize(real["Nrp1"]).set_index("acronym")
    common = left.index.intersection(right.index)
    assert (left.loc[common, "n_voxels"] + right.loc[common, "n_voxels"] == both.loc[common, "n_voxels"]).all()
    s = ["CP", "Isocortex", "CB"]
    pooled = (left.loc[s, "mean"] * left.loc[s, "n_valid"] + right.loc[s, "mean"] * right.loc[s, "n_valid"]) / both.loc[s, "n_valid"]
    np.testing.assert_allclose(pooled, both.loc[s, "mean"], rtol=1e-9)
    # the real coronal Pdyn grid is close to symmetric where it is high; the split is at z = 29
    lr = {h: mouse.unionize(real["Pdyn"], hemisphere=h, structures=["CP"]).iloc[0] for h in ("left", "right")}
    assert lr["left"]["mean"] == pytest.approx(lr["right"]["mean"], rel=0.1)
    assert abs(int(lr["left"]["n_voxels"]) - int(lr["right"]["n_voxels"])) < 10


def test_unionize_genes_equals_one_at_a_time(real):
    grids = {"Nrp1": real["Nrp1"], "Pdyn": real["Pdyn"]}
    for chunk in (1, 2):
        wide = mouse.unionize_genes(grids, chunk_size=chunk)
        n = mouse.unionize_genes(grids, chunk_size=chunk, value="n_valid")
        for gene, grid in grids.items():
            one = mouse.unionize(grid).set_index("acronym")
            np.testing.assert_allclose(wide[gene].to_numpy(), one["mean"].to_numpy(), rtol=1e-6, equal_nan=True)
            np.testing.assert_array_equal(n[gene].to_numpy(), one["n_valid"].to_numpy())
    few = mouse.unionize_genes(grids, structures=["CP", "Isocortex"])
    assert list(few.index) == ["CP", "Isocortex"] and few.loc["CP", "Pdyn"] > few.loc["Isocortex", "Pdyn"]
    strict = mouse.unionize_genes(grids, min_valid=10)
    counts = mouse.unionize_genes(grids, value="n_valid")
    with pytest.warns(FutureWarning, match="n_valid"):
        old_means, old_counts = mouse.unionize_genes(grids, return_counts=True)
    pd.testing.assert_frame_equal(old_counts, counts)
    assert np.isnan(strict.to_numpy()[counts.to_numpy() < 10]).all()
    assert not np.isnan(strict.to_numpy()[counts.to_numpy() >= 10]).any()


def test_unionize_errors_name_the_problem(real):
    with pytest.raises(DataFormatError, match="shape"):
        mouse.unionize(real["Nrp1"][:10])
    with pytest.raises(DataFormatError, match=r"\(10, 41, 58\)"):
        mouse.unionize_genes({"x": real["Nrp1"][:10]})
    with pytest.raises(HmbaToolkitError, match="hemisphere"):
        mouse.unionize(real["Nrp1"], hemisphere="middle")
    with pytest.raises(KeyError, match="NOPE"):
        mouse.unionize(real["Nrp1"], structures=["NOPE"])
    ann = mouse.load_annotation()
    ann[30, 20, 20] = 123456789
    with pytest.raises(DataFormatError, match="123456789"):
        mouse.unionize(real["Nrp1"], ann)
    with pytest.raises(HmbaToolkitError, match="min_valid"):
        mouse.unionize_genes({"x": real["Nrp1"]}, min_valid=0)


def test_relabel_major_divisions():
    div = mouse.relabel()
    tree = mouse.load_ontology()
    ann = mouse.load_annotation()
    assert set(np.unique(div)) - {0} <= {tree.id_of(s) for s in mouse.MAJOR_DIVISIONS}
    assert (div[ann == tree.id_of("CP")] == tree.id_of("STR")).all()
    nested = mouse.relabel(structures=["STR", "CP"])  # the deeper structure wins
    assert (nested[ann == tree.id_of("CP")] == tree.id_of("CP")).all()
    assert (nested[ann == tree.id_of("ACB")] == tree.id_of("STR")).all()


# -- the store -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_sds():
    root = fetch_demo_mouse_ish()
    return root, pd.read_csv(root / "section_data_sets.csv")


def test_pack_grids_round_trip_and_lazy_open(tmp_path, demo_sds):
    root, sds = demo_sds
    part = sds.head(12)
    store = mouse.pack_grids(root / "grids", tmp_path / "demo.store", part)
    assert isinstance(store.matrix, np.memmap) and store.matrix.dtype == np.float32
    assert store.matrix.shape == (12, 62529) and (store.experiments["status"] == "ok").all()
    for row in part.itertuples():
        grid = read_ish_grid(root / "grids" / f"{row.id}.zip")
        brain = mouse.load_annotation() > 0
        np.testing.assert_array_equal(store.grid(int(row.id))[brain], grid[brain])
        assert np.isnan(store.grid(row.gene_acronym)[~brain]).all()
    assert store.row_of(f"{part.gene_acronym.iat[3]}_{part.id.iat[3]}") == 3
    reopened = mouse.GridStore.open(tmp_path / "demo.store")
    assert "12 experiments" in repr(reopened) and reopened.labels == store.labels
    # summaries from the store equal those from the grids in memory, in any chunking
    grids = {f"{r.gene_acronym}_{r.id}": read_ish_grid(root / "grids" / f"{r.id}.zip") for r in part.itertuples()}
    pd.testing.assert_frame_equal(mouse.unionize_genes(reopened, chunk_size=5), mouse.unionize_genes(grids), check_names=False)
    # packing again into the same path is a cache hit; another list there is refused
    assert mouse.pack_grids(root / "grids", tmp_path / "demo.store", part).matrix.shape == (12, 62529)
    with pytest.raises(HmbaToolkitError, match="other experiments"):
        mouse.pack_grids(root / "grids", tmp_path / "demo.store", sds.head(3))
    with pytest.raises(DataFormatError, match="no zip for experiments"):
        mouse.pack_grids(root / "grids", tmp_path / "x.store", [1, 2])
    with pytest.raises(DataFormatError, match="not a grid store"):
        mouse.GridStore.open(tmp_path)
    with pytest.raises(KeyError, match="Nope"):
        store.row_of("Nope")


# -- the API client and bulk download against a loopback server ------------------------------------

def _record(sds: int, gene: str, entrez: int, plane: str = "coronal", failed: bool = False) -> dict:
    return {"id": sds, "failed": failed, "plane_of_section_id": 1 if plane == "coronal" else 2, "reference_space_id": 9,
            "section_thickness": 25.0, "genes": [{"acronym": gene, "entrez_id": entrez, "name": gene.lower()}],
            "plane_of_section": {"id": 1 if plane == "coronal" else 2, "name": plane}}


@pytest.fixture
def api(real, demo_sds):
    root, sds = demo_sds
    zips = {NRP1: _real_zip(real["dir"] / "Nrp1_P56_coronal_74272479_200um"),
            PDYN: _real_zip(real["dir"] / "Pdyn_P56_coronal_71717084_200um")}
    extra = sds[~sds["id"].isin([NRP1, PDYN])].head(6)
    for r in extra.itertuples():
        zips[int(r.id)] = (root / "grids" / f"{r.id}.zip").read_bytes()
    records = [_record(NRP1, "Nrp1", 18186), _record(PDYN, "Pdyn", 18610)]
    records += [_record(int(r.id), r.gene_acronym, int(r.entrez_id)) for r in extra.itertuples()]
    records += [_record(999001, "Gone", 1, failed=True), _record(999002, "Sag", 2, plane="sagittal"),
                _record(999003, "NoGrid", 3)]
    with AllenApiServer(records, zips, delay=0.02) as server:
        yield server


def test_list_section_data_sets_pages_filters_and_tidies(api):
    table = rma.list_section_data_sets(plane="coronal", base_url=api.url, page=3)
    assert list(table.columns) == rma.SECTION_DATA_SET_COLUMNS
    assert len(table) == 9 and 999001 not in set(table["id"]) and 999002 not in set(table["id"])
    assert (np.diff(table["id"]) > 0).all() and table["entrez_id"].dtype == "Int64"
    assert len(api.queries) == 4  # 10 coronal records (one failed), 3 per page
    one = rma.list_section_data_sets("Pdyn", base_url=api.url)
    assert one.to_dict("records") == [{"id": PDYN, "gene_acronym": "Pdyn", "plane_of_section": "coronal", "entrez_id": 18610}]
    both = rma.list_section_data_sets(plane=None, base_url=api.url)
    assert set(both["plane_of_section"]) == {"coronal", "sagittal"}


def test_download_grid_verifies_and_caches(api, real, tmp_path):
    api.corrupt_once.add(PDYN)
    with pytest.raises(DownloadError, match="CRC|complete zip"):
        rma.download_grid(PDYN, tmp_path, base_url=api.url, backoff=0)
    assert not (tmp_path / f"{PDYN}.zip").exists() and not list(tmp_path.glob(".*download"))
    path = rma.download_grid(PDYN, tmp_path, base_url=api.url, backoff=0)
    np.testing.assert_array_equal(read_ish_grid(path), real["Pdyn"])
    n = len(api.grid_requests)
    assert rma.download_grid(PDYN, tmp_path, base_url=api.url) == path and len(api.grid_requests) == n
    folder = rma.download_grid(PDYN, tmp_path, base_url=api.url, unpack=True)  # MetaImage files for other tools
    assert len(api.grid_requests) == n and (folder / "data_set.xml").is_file()
    np.testing.assert_array_equal(read_ish_grid(folder / "energy.mhd"), real["Pdyn"])
    with pytest.raises(DownloadError) as info:
        rma.download_grid(999003, tmp_path, base_url=api.url, backoff=0)
    assert info.value.status == 404


def test_bulk_download_survives_faults_and_matches_local_packing(api, real, tmp_path):
    table = rma.list_section_data_sets(base_url=api.url)
    api.statuses[NRP1] = [503, 429]  # throttled twice, then served
    api.cut_after[PDYN] = 50_000  # connection dropped mid-file once: resumed with Range
    other = int(table.loc[~table["id"].isin([NRP1, PDYN, 999003]), "id"].iat[0])
    api.corrupt_once.add(other)  # arrives corrupt once: downloaded again
    store = mouse.download_grids(table, tmp_path / "all.store", base_url=api.url, max_workers=3, backoff=0.01, progress=False)
    status = store.experiments.set_index("id")["status"]
    assert status[999003] == "missing" and (status.drop(999003) == "ok").all()
    assert np.isnan(store.matrix[store.row_of(999003)]).all()
    brain = mouse.load_annotation() > 0
    np.testing.assert_array_equal(store.grid("Nrp1")[brain], real["Nrp1"][brain])
    np.testing.assert_array_equal(store.grid(PDYN)[brain], real["Pdyn"][brain])
    assert 2 <= api.max_active <= 3
    assert not (tmp_path / "all.store.partial").exists() and not (tmp_path / "all.store" / "zips").exists()
    ranges = api.grid_requests.count(PDYN)
    assert ranges == 2 and api.grid_requests.count(NRP1) == 3 and api.grid_requests.count(other) == 2


def test_bulk_download_resumes_after_a_failure_without_refetching(api, tmp_path):
    table = rma.list_section_data_sets(base_url=api.url)
    stubborn = int(table["id"].iat[5])
    api.statuses[stubborn] = [500] * 50
    target = tmp_path / "resume.store"
    with pytest.raises(DownloadError, match=r"1 of 9 experiments.*resumes"):
        mouse.download_grids(table, target, base_url=api.url, max_workers=2, max_attempts=2, backoff=0, progress=False)
    assert not target.exists() and (tmp_path / "resume.store.partial" / "journal.txt").is_file()
    with pytest.raises(DataFormatError, match="unfinished build"):
        mouse.GridStore.open(target)
    with pytest.raises(HmbaToolkitError, match="unfinished build of other experiments"):
        mouse.download_grids(table.head(4), target, base_url=api.url, progress=False)
    first = list(api.grid_requests)
    api.statuses[stubborn] = []
    store = mouse.download_grids(table, target, base_url=api.url, max_workers=2, backoff=0, progress=False)
    again = api.grid_requests[len(first):]
    assert again == [stubborn]  # only the experiment that had failed was fetched again
    assert (store.experiments["status"] != "ok").sum() == 1  # the 404 one, "missing"
    assert not (tmp_path / "resume.store.partial").exists()


def test_bulk_download_offline_stops_early_and_keeps_nothing_final(tmp_path):
    ids = list(range(1, 41))
    with pytest.raises(OfflineError, match="unreachable"):
        mouse.download_grids(ids, tmp_path / "off.store", base_url="http://127.0.0.1:9/", max_workers=2,
                             max_attempts=1, backoff=0, progress=False)
    assert not (tmp_path / "off.store").exists()


def test_human_orthologs_follow_the_allen_homolog_ids(fixtures_dir):
    abi = pd.read_csv(fixtures_dir / "mouse_ish" / "ABI_genes.csv.gz", dtype=str).dropna(subset=["homologous_human_ID"])
    abi["mouse"] = abi["acronym"].str.rstrip("*")
    pairs = {(m, int(h)) for m, v in zip(abi["mouse"], abi["homologous_human_ID"]) for h in v.split("|")}
    table = mouse.human_orthologs(one_to_one=False)
    assert {(m, int(h)) for m, h in zip(table["mouse_symbol"], table["human_entrez_id"])} == pairs
    strict = mouse.human_orthologs()
    assert not strict["mouse_symbol"].duplicated().any() and not strict["human_entrez_id"].duplicated().any()
    named = strict.dropna(subset=["human_symbol"])
    assert (named["human_symbol"] != named["mouse_symbol"].str.upper()).mean() > 0.05  # symbols' case is not enough
    got = mouse.human_orthologs(["Drd2", "NoSuchGene", "Ppp1r1b"])
    assert got["mouse_symbol"].tolist() == ["Drd2", "Ppp1r1b"] and got["human_symbol"].tolist() == ["DRD2", "PPP1R1B"]
    with pytest.raises(HmbaToolkitError, match="list of symbols"):
        mouse.human_orthologs("Drd2")


def test_to_human_relabels_rankings_and_tables():
    ranking = pd.Series({"Pdyn": 4.0, "Zfp161": 1.0, "Foxp1": 3.0, "Drd2": 2.0})
    human = mouse.to_human(ranking)
    assert human.to_dict() == {"PDYN": 4.0, "ZBTB14": 1.0, "DRD2": 2.0} and human.attrs["dropped"] == 1
    table = pd.DataFrame([[1.0, 2.0, 3.0]], index=["CP"], columns=["Penk", "Foxp1", "Tac1"])
    assert list(mouse.to_human(table).columns) == ["PENK", "TAC1"]
    assert list(mouse.to_human(table.T, axis="index").index) == ["PENK", "TAC1"]
    with pytest.raises(HmbaToolkitError, match="axis"):
        mouse.to_human(ranking, axis="columns")
