"""Nothing lost: inputs are not modified in place, existing outputs are not replaced without overwrite=True."""

from __future__ import annotations

import copy

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hmba_toolkit import coexpression, de, gsea, mouse, normalize, nulls, stream
from hmba_toolkit.errors import OutputExistsError
from hmba_toolkit.io import read_ish_grid, write_ish_grid


def _adata(seed=0):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(rng.poisson(1.5, (60, 12)).astype(np.float32))
    obs = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 20), "donor_label": np.tile([f"d{i}" for i in range(4)], 15)},
                       index=[f"c{i}" for i in range(60)])
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(12)]))


def _same(a: ad.AnnData, b: ad.AnnData) -> bool:
    return (a.X != b.X).nnz == 0 and a.obs.equals(b.obs) and a.var.equals(b.var) and list(a.layers) == list(b.layers)


@pytest.mark.parametrize("call", [
    lambda a: de.wilcoxon(a, "g"),
    lambda a: stream.aggregate(a, ["g", "donor_label"]),
    lambda a: normalize.log2_cpm(a),
    lambda a: normalize.qc_metrics(a),
], ids=["wilcoxon", "aggregate", "log2_cpm", "qc_metrics"])
def test_anndata_inputs_are_not_modified(call):
    a = _adata()
    before = a.copy()
    call(a)
    assert _same(a, before)


def test_array_and_table_inputs_are_not_modified(cache):
    rng = np.random.default_rng(1)
    x, coords = rng.random(40), rng.random((40, 3))
    x0, c0 = x.copy(), coords.copy()
    for fn in (nulls.variogram, nulls.spatial_lag, nulls.moran):
        fn(x, coords, n_permutations=4, seed=0)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(coords, c0)
    ranking = pd.Series(rng.standard_normal(30), index=[f"G{i}" for i in range(30)])
    r0 = ranking.copy()
    gsea.prerank(ranking, {"S": [f"G{i}" for i in range(10)]}, n_permutations=20, min_size=5)
    pd.testing.assert_series_equal(ranking, r0)
    expr = pd.DataFrame(rng.random((6, 20)))
    e0 = expr.copy()
    coexpression.cge(expr)
    pd.testing.assert_frame_equal(expr, e0)
    ann = mouse.load_annotation()
    g = np.where(ann > 0, 1.0, np.nan).astype(np.float32)
    g0 = g.copy()
    mouse.unionize(g, structures=["CP"])
    np.testing.assert_array_equal(g, g0)
    cells = cache.cell_table("HMBA-10xMultiome-BG-Aligned")
    cells0 = copy.deepcopy(cells)
    stream.aggregate(cache.get_file_path("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw"), ["Class"],
                     obs=cells, progress=False)
    pd.testing.assert_frame_equal(cells, cells0)


def test_existing_outputs_are_not_replaced_without_overwrite(tmp_path):
    grid = np.zeros((3, 2, 2), dtype=np.float32)
    for name in ("g.mhd", "g.zip"):
        write_ish_grid(tmp_path / name, grid)
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        with pytest.raises(OutputExistsError, match="overwrite=True"):
            write_ish_grid(tmp_path / name, grid + 1)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
        write_ish_grid(tmp_path / name, grid + 1, overwrite=True)
        np.testing.assert_array_equal(read_ish_grid(tmp_path / name), grid + 1)
    gsea.write_gmt({"S": ["A", "B"]}, tmp_path / "s.gmt")
    with pytest.raises(OutputExistsError, match="s.gmt exists"):
        gsea.write_gmt({"T": ["C"]}, tmp_path / "s.gmt")
    assert gsea.read_gmt(tmp_path / "s.gmt") == {"S": ["A", "B"]}
    with pytest.raises(FileExistsError):  # also a built-in FileExistsError
        gsea.write_gmt({"T": ["C"]}, tmp_path / "s.gmt")
