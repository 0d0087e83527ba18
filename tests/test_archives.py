"""Fetching the AHBA donors and BrainSpan from a loopback server: verified, resumable, atomic."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
from _http import BucketServer

from hmba_toolkit.datasets import fetch_demo_ahba, fetch_demo_brainspan
from hmba_toolkit.errors import DataFormatError, DownloadError, HmbaToolkitError, IntegrityError
from hmba_toolkit.io import AHBA_DONORS, developmental_period, fetch_ahba, fetch_brainspan, read_ahba_donor, read_brainspan

WKF = "api/v2/well_known_file_download"


def _zip_folder(folder, dest, prefix=""):
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, prefix + p.name)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("allen_site")
    (root / WKF).mkdir(parents=True)
    ahba = fetch_demo_ahba()
    for row in AHBA_DONORS.itertuples():
        _zip_folder(ahba / f"normalized_microarray_donor{row.uid}", root / WKF / str(row.microarray_file_id))
    _zip_folder(fetch_demo_brainspan(), root / WKF / "267666525", prefix="genes_matrix_csv/")
    return root


def test_fetch_two_donors_reads_like_the_originals(site, tmp_path):
    with BucketServer(site) as server:
        folders = fetch_ahba(tmp_path, donors=[9861, "H0351.1009"], base_url=server.url, progress=False, backoff=0)
        assert sorted(folders) == [9861, 12876]
        assert folders[9861] == tmp_path / "microarray" / "normalized_microarray_donor9861"
        got = read_ahba_donor(folders[9861])
        ref = read_ahba_donor(fetch_demo_ahba() / "normalized_microarray_donor9861")
        pd.testing.assert_frame_equal(got.microarray, ref.microarray)
        pd.testing.assert_frame_equal(got.annotation, ref.annotation)
        assert not list((tmp_path / "microarray").glob("*.zip"))  # zips removed once unpacked
        n = len(server.requests)
        fetch_ahba(tmp_path, donors=[9861, 12876], base_url=server.url, progress=False)
        assert len(server.requests) == n  # cached: no request
    with pytest.raises(HmbaToolkitError, match="not an AHBA donor"):
        fetch_ahba(tmp_path, donors=[1234])


def test_fetch_resumes_and_refuses_corrupt_zips(site, tmp_path):
    fid = str(AHBA_DONORS.set_index("uid").loc[10021, "microarray_file_id"])
    with BucketServer(site) as server:
        server.cut_after[f"{WKF}/{fid}"] = 100_000
        folder = fetch_ahba(tmp_path, donors=10021, base_url=server.url, progress=False, backoff=0)[10021]
        ranges = [r for p, r in server.requests if p.endswith(fid)]
        # the second request resumed from the bytes kept (whole 64 KiB blocks), not from zero
        assert ranges[0] is None and ranges[1] is not None and int(ranges[1].split("=")[1].rstrip("-")) >= 65536
        assert read_ahba_donor(folder).n_samples > 0
        server.corrupt.add(f"{WKF}/{fid}")
        with pytest.raises(IntegrityError, match="complete zip|CRC"):
            fetch_ahba(tmp_path / "b", donors=10021, base_url=server.url, progress=False, backoff=0)
        assert not (tmp_path / "b" / "microarray" / "normalized_microarray_donor10021").exists()
        left = [p.name for p in (tmp_path / "b" / "microarray").iterdir() if not p.name.endswith(".lock")]
        assert left == []  # nothing kept under a final name (only the empty lock files)


def test_fetch_rejects_a_zip_without_the_required_files(site, tmp_path):
    root = tmp_path / "site"
    (root / WKF).mkdir(parents=True)
    with zipfile.ZipFile(root / WKF / "267666525", "w") as zf:
        zf.writestr("Readme.txt", "nothing here")
    with BucketServer(root) as server, pytest.raises(DataFormatError, match="expression_matrix.csv"):
        fetch_brainspan(tmp_path / "d", base_url=server.url, progress=False, backoff=0)
    assert not (tmp_path / "d" / "brainspan" / "genes_matrix_csv").exists()


def test_fetch_brainspan_and_developmental_periods(site, tmp_path):
    with BucketServer(site) as server:
        folder = fetch_brainspan(tmp_path, base_url=server.url, progress=False)
    bs = read_brainspan(folder)
    ref = read_brainspan(fetch_demo_brainspan())
    np.testing.assert_array_equal(bs.X, ref.X)
    # periods from Kang et al. 2011 Table 1, boundaries included on the right side
    cases = {"4 pcw": 1, "7 pcw": 1, "8 pcw": 2, "12 pcw": 3, "13 pcw": 4, "21 pcw": 6, "24 pcw": 7, "37 pcw": 7,
             "0 mos": 8, "5 mos": 8, "6 mos": 9, "1 yrs": 10, "6 yrs": 11, "12 yrs": 12, "20 yrs": 13, "59 yrs": 14, "60 yrs": 15}
    assert {a: developmental_period(a) for a in cases} == cases
    with pytest.raises(DataFormatError, match="before period 1"):
        developmental_period("3 pcw")
    assert list(bs.obs["stage"].cat.categories) == ["prenatal", "infancy", "childhood", "adolescence", "adulthood"]
    assert (bs.obs.loc[bs.obs["age"].str.endswith("pcw"), "stage"] == "prenatal").all()


def test_fetch_offline_names_the_problem(tmp_path):
    with pytest.raises(DownloadError, match="unreachable"):
        fetch_brainspan(tmp_path, base_url="http://127.0.0.1:9/", progress=False, max_attempts=1)
