"""AHBA donor folders, BrainSpan and the Allen RMA query builder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hmba_toolkit.datasets import fetch_demo_ahba, fetch_demo_brainspan
from hmba_toolkit.errors import DataFormatError
from hmba_toolkit.io import age_in_years, read_ahba_donor, read_brainspan, rma


def test_ahba_demo_donors_read_with_real_headers():
    root = fetch_demo_ahba()
    folders = sorted(p.name for p in root.iterdir())
    assert folders == [f"normalized_microarray_donor{u}" for u in ("10021", "12876", "14380", "15496", "15697", "9861")]
    header = (root / "normalized_microarray_donor9861" / "SampleAnnot.csv").read_text().splitlines()[0]
    assert header == "structure_id,slab_num,well_id,slab_type,structure_acronym,structure_name,polygon_id,mri_voxel_x,mri_voxel_y,mri_voxel_z,mni_x,mni_y,mni_z"
    d = read_ahba_donor(root / "normalized_microarray_donor9861")
    assert d.microarray.shape == d.pacall.shape == (len(d.probes), len(d.annotation))
    assert d.annotation.index[0] == 1 and d.probes["entrez_id"].dtype == "Int64"
    assert set(np.unique(d.pacall.to_numpy())) <= {0, 1}
    # left-only donors have no right-hemisphere samples
    left = read_ahba_donor(root / "normalized_microarray_donor12876")
    assert (left.annotation["mni_x"] < 3).all()
    # planted: PENK higher in striatal samples than elsewhere (mean over its probes)
    penk = d.microarray.loc[d.probes.index[d.probes["gene_symbol"] == "PENK"]].mean()
    stri = d.annotation["structure_name"].str.match(r"^(caudate|putamen|accumbensarea)")
    assert stri.sum() >= 5 and penk[stri.to_numpy()].mean() > penk[~stri.to_numpy()].mean() + 1
    assert d.ontology.get(int(d.annotation["structure_id"].iloc[0]))["acronym"] == d.annotation["structure_acronym"].iloc[0]


def test_ahba_reader_names_bad_files(tmp_path):
    src = fetch_demo_ahba() / "normalized_microarray_donor9861"
    bad = tmp_path / "normalized_microarray_donor9861"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    lines = (bad / "MicroarrayExpression.csv").read_text().splitlines()
    (bad / "MicroarrayExpression.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataFormatError, match="MicroarrayExpression.csv.*shape"):
        read_ahba_donor(bad)
    pd.read_csv(src / "Probes.csv").drop(columns="gene_symbol").to_csv(bad / "Probes.csv", index=False)
    with pytest.raises(DataFormatError, match="Probes.csv.*gene_symbol"):
        read_ahba_donor(bad)


def test_brainspan_reader_and_planted_trajectories():
    bs = read_brainspan(fetch_demo_brainspan())
    assert bs.n_obs > 50 and bs.n_vars == 300
    assert list(bs.obs.columns[:8]) == ["column_num", "donor_id", "donor_name", "age", "gender", "structure_id", "structure_acronym", "structure_name"]
    prenatal = bs.obs["age_years"] < 0
    mbp = bs[:, "MBP"].X.ravel()
    dcx = bs[:, "DCX"].X.ravel()
    assert mbp[~prenatal].mean() > 2 * mbp[prenatal].mean()
    assert dcx[prenatal].mean() > 2 * dcx[~prenatal].mean()
    assert age_in_years("40 pcw") == 0 and age_in_years("6 mos") == 0.5
    with pytest.raises(DataFormatError, match="age"):
        age_in_years("teen")


def test_rma_urls_and_paged_query(bucket, tmp_path, monkeypatch):
    url = rma.section_data_sets_query("Pdyn")
    assert "genes[acronym$eq'Pdyn']" in url and "plane_of_section[name$eq'coronal']" in url
    assert rma.grid_download_url(71717084) == "https://api.brain-map.org/grid_data/download/71717084?include=energy"
    with pytest.raises(Exception, match="volumes"):
        rma.grid_download_url(1, volumes=("bogus",))
    # a two-page answer served locally
    pages = [{"success": True, "total_rows": 3, "msg": [{"id": 1}, {"id": 2}]}, {"success": True, "total_rows": 3, "msg": [{"id": 3}]}]
    calls = []

    def fake_fetch(u, **kw):
        calls.append(u)
        return json.dumps(pages[len(calls) - 1]).encode()

    monkeypatch.setattr(rma, "fetch_bytes", fake_fetch)
    got = rma.query_section_data_sets("Pdyn", page=2, base_url=bucket.url)
    assert [r["id"] for r in got] == [1, 2, 3] and "start_row$eq2" in calls[1]
