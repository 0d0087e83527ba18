"""The plots draw what the tables say."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hmba_toolkit import pl  # noqa: E402
from hmba_toolkit.errors import HmbaToolkitError  # noqa: E402


@pytest.fixture
def de():
    rng = np.random.default_rng(0)
    n = 200
    lfc = rng.normal(0, 1, n)
    p = np.clip(np.exp(-np.abs(lfc) * 4), 1e-30, 1)
    return pd.DataFrame({"gene": [f"G{i}" for i in range(n)], "group": "A", "reference": "B", "log2_fold_change": lfc,
                         "statistic": lfc * 3, "pvalue": p, "padj": np.minimum(p * 5, 1), "mean_in": rng.random(n),
                         "mean_out": rng.random(n), "frac_in": rng.random(n), "frac_out": rng.random(n)})


def test_volcano_counts_and_labels(de):
    ax = pl.volcano(de, label_top=5)
    sig = (de["padj"] < 0.05) & (de["log2_fold_change"].abs() >= 1)
    up = int((sig & (de["log2_fold_change"] > 0)).sum())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"up ({up})" in labels and f"down ({int(sig.sum()) - up})" in labels
    assert len(ax.texts) == min(5, int(sig.sum()))
    plt.close("all")
    with pytest.raises(HmbaToolkitError, match="several groups"):
        pl.volcano(pd.concat([de, de.assign(group="C")]))


def test_dotplots_and_curve(de):
    ax = pl.de_dotplot(pd.concat([de, de.assign(group="C")]), ["G1", "G2", "G3"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["G1", "G2", "G3"]
    assert len(ax.collections[0].get_offsets()) == 6
    ranking = de.set_index("gene")["statistic"]
    ax = pl.enrichment_curve(ranking, ["G1", "G5", "G9"])
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(0, abs=1e-9)  # the running sum ends at zero
    res = pd.DataFrame({"term": list("abc"), "n_genes": [5, 6, 7], "n_overlap": [5, 6, 7], "statistic": [2.0, -1.5, 1.0],
                        "effect": [0.5, -0.4, 0.3], "pvalue": [0.001, 0.01, 0.2], "padj": [0.003, 0.015, 0.2], "genes": ""})
    ax = pl.enrichment_dotplot(res, top=2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    plt.close("all")


def test_ish_slices_draw_the_grid_at_the_structure_centroid():
    from hmba_toolkit import mouse

    ann = mouse.load_annotation()
    grid = np.where(ann > 0, (ann % 7).astype(float), np.nan)
    axes = pl.ish_slices(grid, at="CP", title="test")
    assert len(axes) == 3 and axes[0].title.get_text().startswith("coronal")
    # the coronal panel shows grid[x] where x is CP's centroid plane
    x = int(np.round(np.argwhere(ann == mouse.load_ontology().id_of("CP"))[:, 0].mean()))
    shown = axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown.filled(-1), np.where(np.isnan(grid[x]), -1, grid[x]))
    assert axes[0].images[1].get_array().count() > 50  # outline pixels drawn
    pl.ish_slices(grid, at=(10, 10, 10))
    with pytest.raises(HmbaToolkitError, match="shape"):
        pl.ish_slices(grid[:5])
    plt.close("all")


def test_structure_heatmap_orders_by_ontology_and_scales():
    table = pd.DataFrame({"Pdyn": [1.0, 5.0, 2.0], "Nrp1": [3.0, 3.0, 6.0]}, index=pd.Index(["CB", "CP", "MOp"], name="acronym"))
    ax = pl.structure_heatmap(table)
    data = ax.images[0].get_array()
    # ontology order: MOp (isocortex) before CP (striatum) before CB (cerebellum)
    expect = table.loc[["MOp", "CP", "CB"]]
    np.testing.assert_allclose(data, ((expect - expect.mean()) / expect.std(ddof=0)).to_numpy())
    raw = pl.structure_heatmap(table, scale=None).images[0].get_array()
    np.testing.assert_allclose(raw, expect.to_numpy())
    with pytest.raises(HmbaToolkitError, match="not structures"):
        pl.structure_heatmap(table.rename(index={"CB": "XYZ"}))
    plt.close("all")
