"""The spatial (MERSCOPE / Xenium) directories of the demo release: sections that look like tissue.

Each species gets the five slab planes that Allen's HMBA spatial notebook draws (labels used literally there, e.g.
``H22.30.001.CX.19.Plane.07``), one section per plane. A section is a coronal hemisphere: a wavy tissue outline; the
caudate and putamen (striatum, ``STR``) split by the internal capsule (white matter: oligodendrocytes, sparse); the
external and internal pallidum (``GPe``, ``GPi``) medial to the putamen, ``GPi`` only in caudal planes; the ventral
pallidum (``VeP``) below; cortex-like grey matter around them ("Basal ganglia and adjacent"). Cell density differs
by region (dense striatum, sparse white matter); striosome patches in the striatum hold striosome MSNs; a
dorsolateral-high gradient gene runs across the striatum; neurons of the grey matter around it belong to types outside
the basal-ganglia taxonomy ("Adjacent": cortical, claustral, thalamic). Counts carry what imaging adds: each gene's
probe efficiency, and a share of a touching neighbour's transcripts (segmentation spillover).

Cell types are mapped, as the release's are: ``mmc_results`` and ``cell_to_cluster_membership`` are this toolkit's
mapping of the counts (``_abc_mapmycells.spatial_mmc_results``), errors included; the planted cluster of every cell is
in the ground truth (``spatial/<species>_cells.csv``, ``planted_cluster``). Cells mapped Adjacent are encoded as the
release encodes them: a ``cell_to_cluster_membership`` row whose cluster is not in the taxonomy, or no row at all.

Tables per directory: ``cell_metadata``, ``specimen_metadata``, ``slab_plane_coordinates``,
``cell_anatomical_annotations``, ``cell_to_cluster_membership``, ``cell_supplemental_metadata``, ``mmc_results``,
``visualization``, ``donor``, ``gene``, ``value_sets`` and ``views/example_gene_expression``; the raw and log2 h5ad;
one geojson of region polygons per slab plane. ``mmc_results`` follows the Patch-seq ``mmc_results`` schema (five
columns per level; Adjacent cells are ``Adjacent`` at every level); the columns of ``visualization`` are not
documented by Allen and are a guess (``x``, ``y``: the section drawn in slab millimetres).
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..io.h5ad import read_h5ad_var
from ._abc_mapmycells import spatial_mmc_results
from ._demo_common import DONOR_COLUMNS, counts, data_table, on_genes, uuid4, write_csv, write_h5ad, write_view

# Directory, feature matrix label, donor, gene table, metadata/expression/image versions
SPATIAL = {
    "Human": ("HMBA-MERSCOPE-H22.30.001-BG", "MERSCOPE-H22.30.001-BG", "H22.30.001", "gene_HMBA-MERSCOPE-H22.30.001-BG.tsv"),
    "Macaque": ("HMBA-MERSCOPE-QM23.50.001-BG", "MERSCOPE-QM23.50.001-BG", "QM23.50.001", "gene_HMBA-MERSCOPE-QM23.50.001-BG.tsv"),
    "Marmoset": ("HMBA-Xenium-CJ23.56.004-BG", "Xenium-CJ23.56.004-BG", "CJ23.56.004", "gene_HMBA-Xenium-CJ23.56.004-BG.tsv"),
}
# The slab planes of Allen's notebook (slab number, plane number), one section each
PLANES = {
    "Human": [(16, 7), (17, 7), (19, 7), (20, 3), (20, 5)],
    "Macaque": [(42, 3), (43, 7), (44, 5), (45, 5), (46, 5)],
    "Marmoset": [(42, 5), (42, 13), (43, 5), (43, 15), (44, 3)],
}
SCALE = {"Human": 1.0, "Macaque": 0.6, "Marmoset": 0.35}  # brain size relative to human (slab mm)
CELLS_PER_SECTION = 800
# Imaging is not sequencing: each gene's probes detect its transcripts with their own efficiency (log-normal spread),
# and segmentation gives each cell a share of a touching neighbour's transcripts (Beta-distributed share).
PROBE_EFFICIENCY_SD = 0.5
SPILLOVER_BETA = (1.5, 12.0)
ADJACENT_REFERENCE_CELLS = 6  # reference cells per Adjacent cluster for the mapping's Adjacent branch (not released)
BARCODE0 = {"Human": 1324989690, "Macaque": 1291813781, "Marmoset": 1382042951}
SPATIAL_DONORS = pd.DataFrame(
    [
        ("H22.30.001", "NCBITaxon:9606", "Homo sapiens", "Human", "Male", "42 yrs", 42.0, "years", "DO-SPHU2230"),
        ("QM23.50.001", "NCBITaxon:9544", "Macaca mulatta", "Macaque", "Male", "6 yrs", 6.0, "years", "DO-SPMQ2350"),
        ("CJ23.56.004", "NCBITaxon:9483", "Callithrix jacchus", "Marmoset", "Female", "5.4 yrs", 5.391780822, "years", "DO-SPCJ2356"),
    ],
    columns=DONOR_COLUMNS,
)
PARCELLATION = [
    ("Basal ganglia and adjacent", "Basal ganglia and adjacent", 1, "basal_ganglia_and_adjacent", None, "#BEBEBE"),
    ("STR", "striatum", 2, "DHBA:10333", "Basal ganglia and adjacent", "#cd86cc"),
    ("GP", "globus pallidus", 3, "DHBA:10342", "Basal ganglia and adjacent", "#7AE361"),
    ("GPe", "external segment of globus pallidus", 4, "DHBA:10343", "Basal ganglia and adjacent", "#53DB33"),
    ("GPi", "internal segment of globus pallidus", 5, "DHBA:10344", "Basal ganglia and adjacent", "#A7DB33"),
    ("VeP", "ventral pallidus", 6, "DHBA:10345", "Basal ganglia and adjacent", "#9b19f5"),
    ("STH", "subthalamic nucleus", 7, "DHBA:10466", "Basal ganglia and adjacent", "#907991"),
    ("SN", "substantia nigra", 8, "DHBA:12251", "Basal ganglia and adjacent", "#89522A"),
]
# Region shapes in human slab millimetres: (centre x, centre y, radius x, radius y); the striatum is caudate + putamen
TISSUE = (26.0, 33.0, 21.0, 27.0)
CAUDATE = (15.0, 22.0, 6.0, 9.5)
PUTAMEN = (25.0, 34.0, 7.0, 11.0)
CAPSULE = (20.5, 29.0, 3.5, 17.0)  # internal capsule between caudate and putamen (white matter)
GPE = (33.5, 37.0, 3.2, 6.5)
GPI = (30.0, 43.0, 2.2, 3.4)
VEP = (21.0, 49.0, 6.0, 2.4)
DENSITY = {"STR": 1.0, "GPe": 0.5, "GPi": 0.45, "VeP": 0.65, "Basal ganglia and adjacent": 0.7, "white matter": 0.3}
GRADIENT_GENE = "CNR1"


def _in_ellipse(x, y, shape, s, angle: float = 0.0) -> np.ndarray:
    cx, cy, rx, ry = (v * s for v in shape)
    dx, dy = x - cx, y - cy
    c, si = np.cos(angle), np.sin(angle)
    u, v = c * dx + si * dy, -si * dx + c * dy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _in_tissue(x, y, s, phase: float) -> np.ndarray:
    """Inside the wavy outline of a coronal hemisphere section."""
    cx, cy, rx, ry = (v * s for v in TISSUE)
    theta = np.arctan2((y - cy) / ry, (x - cx) / rx)
    wobble = 1.0 + 0.06 * np.sin(5 * theta + phase) + 0.03 * np.sin(11 * theta + 2 * phase)
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= wobble**2


def _polygon(shape, s, n: int = 48, angle: float = 0.0) -> list[list[float]]:
    cx, cy, rx, ry = (v * s for v in shape)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    u, v = rx * np.cos(t), ry * np.sin(t)
    c, si = np.cos(angle), np.sin(angle)
    pts = [[round(float(cx + c * a - si * b), 4), round(float(cy + si * a + c * b), 4)] for a, b in zip(u, v)]
    return pts + [pts[0]]


def _section_geometry(rng, s: float, plane_index: int) -> dict:
    """Region shapes of one section: shifted a little from plane to plane; GPi only in the caudal planes."""
    shift = rng.normal(0, 0.6 * s, size=2)
    moved = lambda shape: (shape[0] + shift[0] / s, shape[1] + shift[1] / s, shape[2], shape[3])  # noqa: E731
    geo = {"caudate": moved(CAUDATE), "putamen": moved(PUTAMEN), "capsule": moved(CAPSULE), "GPe": moved(GPE),
           "VeP": moved(VEP), "GPi": moved(GPI) if plane_index >= 2 else None, "phase": float(rng.uniform(0, 2 * np.pi)),
           "tilt": float(rng.normal(0, 0.08))}
    # striosome patches: small discs inside caudate and putamen
    patches = []
    for name, k in (("caudate", 2), ("putamen", 3)):
        cx, cy, rx, ry = (v * s for v in geo[name])
        for a, b in rng.uniform(-0.55, 0.55, size=(k, 2)):
            patches.append((cx + rx * a, cy + ry * b, float(rng.uniform(0.9, 1.5)) * s))
    geo["patches"] = patches
    return geo


def _regions(x, y, s, geo) -> tuple[np.ndarray, np.ndarray]:
    """Parcellation term symbol of each point, and whether it lies in white matter."""
    region = np.full(x.size, "Basal ganglia and adjacent", dtype=object)
    striatum = _in_ellipse(x, y, geo["caudate"], s, geo["tilt"]) | _in_ellipse(x, y, geo["putamen"], s, geo["tilt"])
    capsule = _in_ellipse(x, y, geo["capsule"], s, 0.35 + geo["tilt"])
    region[striatum] = "STR"
    region[_in_ellipse(x, y, geo["VeP"], s)] = "VeP"
    region[_in_ellipse(x, y, geo["GPe"], s, 0.2)] = "GPe"
    if geo["GPi"] is not None:
        region[_in_ellipse(x, y, geo["GPi"], s, 0.2)] = "GPi"
    white = capsule & (region == "Basal ganglia and adjacent")  # the capsule between and around the nuclei
    return region, white


def _place_cells(rng, n: int, s: float, geo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rejection-sample ``n`` cell positions with region-dependent density inside the tissue."""
    cx, cy, rx, ry = (v * s for v in TISSUE)
    xs, ys = [], []
    total = 0
    while total < n:
        x = rng.uniform(cx - 1.1 * rx, cx + 1.1 * rx, 4 * n)
        y = rng.uniform(cy - 1.1 * ry, cy + 1.1 * ry, 4 * n)
        keep = _in_tissue(x, y, s, geo["phase"])
        x, y = x[keep], y[keep]
        region, white = _regions(x, y, s, geo)
        dens = np.array([DENSITY["white matter"] if w else DENSITY[r] for r, w in zip(region, white)])
        keep = rng.random(x.size) < dens
        xs.append(x[keep])
        ys.append(y[keep])
        total += int(keep.sum())
    x, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    region, white = _regions(x, y, s, geo)
    in_patch = np.zeros(n, bool)
    for px, py, pr in geo["patches"]:
        in_patch |= (x - px) ** 2 + (y - py) ** 2 <= pr**2
    return x, y, region, white, in_patch & (region == "STR")


def _pools(clusters: pd.DataFrame) -> dict[str, pd.DataFrame]:
    g = clusters["Group"]
    return {
        "msn": clusters[g.str.match(r"^STRd (D1|D2) ")],
        "str_interneuron": clusters[g.str.match(r"^(STR FS|STR TAC3|STR SST|STR LYPD6|STR Cholinergic|STRd Cholinergic|LAMP5|VIP)")],
        "GPe": clusters[g.str.startswith(("GPe",))],
        "GPi": clusters[g.str.startswith(("GPi",))],
        "VeP": clusters[g.str.startswith(("STRv", "STR-BF", "GPin-BF", "OT "))],
        "oligo": clusters[clusters["Subclass"].isin(["Oligodendrocyte"])],
        "opc": clusters[clusters["Subclass"].isin(["OPC", "COP"])],
        "astro": clusters[clusters["Subclass"] == "Astrocyte"],
        "micro": clusters[clusters["Subclass"].isin(["Microglia", "Macrophage"])],
        "vascular": clusters[clusters["Class"] == "Vascular"],
    }


GLIA_MIX = {"oligo": 0.5, "astro": 0.25, "opc": 0.1, "micro": 0.1, "vascular": 0.05}
WHITE_MIX = {"oligo": 0.85, "astro": 0.07, "opc": 0.04, "micro": 0.04}


def _draw_type(rng, region: str, white: bool, in_patch: bool, pools) -> tuple[str, pd.Series | None]:
    """(pool name, cluster row) of one cell; ``None`` row for an Adjacent (non basal-ganglia) neuron."""
    u = rng.random()
    if white:
        mix = WHITE_MIX
    elif region == "STR":
        if u < 0.62:
            pool = pools["msn"]
            strio = pool["Group"].str.contains("Striosome").to_numpy()
            w = np.where(strio, 8.0 if in_patch else 0.04, 0.15 if in_patch else 8.0)
            return "msn", pool.iloc[rng.choice(len(pool), p=w / w.sum())]
        if u < 0.70:
            pool = pools["str_interneuron"]
            return "str_interneuron", pool.iloc[rng.integers(len(pool))]
        mix = GLIA_MIX
    elif region in ("GPe", "GPi", "VeP"):
        if u < (0.3 if region != "VeP" else 0.4):
            pool = pools[region]
            return region, pool.iloc[rng.integers(len(pool))]
        mix = GLIA_MIX
    else:  # grey matter around the basal ganglia
        if u < 0.5:
            return "adjacent", None
        mix = GLIA_MIX
    names = list(mix)
    name = names[rng.choice(len(names), p=np.array([mix[k] for k in names]))]
    pool = pools[name]
    return name, pool.iloc[rng.integers(len(pool))]


def _section_label(species: str, slab_label: str, plane: int, block: int) -> str:
    if species == "Marmoset":  # slab.set.section, e.g. CJ23.56.004.CX.42.01.06
        return f"{slab_label}.01.{plane:02d}"
    return f"{slab_label}.{block:02d}.{plane:02d}.02"


def make_spatial(root: Path, rng, model, clusters: pd.DataFrame, species: str, truth_dir: Path, versions: dict,
                 raw_10x: Path, cells_10x: pd.DataFrame) -> None:
    """Write one species' spatial directory (metadata, expression matrices, image volumes) and its ground truth.

    The cells' ``mmc_results`` and ``cell_to_cluster_membership`` are this toolkit's mapping of the section's counts
    onto the demo's 10X cells (``raw_10x``, ``cells_10x``) and an Adjacent branch, as the release maps its cells."""
    directory, label, donor, gene_file = SPATIAL[species]
    genes = data_table(gene_file)
    mdir = root / "metadata" / directory / versions["metadata"]
    s = SCALE[species]
    all_clusters = clusters
    clusters = clusters[clusters["Cluster"].str.startswith(species + "-")]
    pools = _pools(clusters)
    adjacent_ids = _adjacent_clusters(clusters, species, model.adjacent_types)
    panel = [g for g in genes["gene_symbol"].fillna("") if g in model.index]
    gcols = np.array([model.index[g] for g in panel])
    is_blank = genes["gene_identifier"].str.startswith("Blank").to_numpy()
    gene_pos = np.flatnonzero(genes["gene_symbol"].fillna("").isin(panel).to_numpy())
    sym_order = genes["gene_symbol"].fillna("").to_numpy()[gene_pos]
    panel_cols = [panel.index(g) for g in sym_order]
    efficiency = rng.normal(0, PROBE_EFFICIENCY_SD, len(gcols))  # log detection efficiency of each gene's probes
    patches_out, cells_out, counts_out, specimen, features = [], [], [], [], {}
    for si, (slab_no, plane) in enumerate(PLANES[species]):
        slab_label = f"{donor}.CX.{slab_no}"
        plane_label = f"{slab_label}.Plane.{plane:02d}"
        geo = _section_geometry(rng, s, si)
        patches_out += [{"slab_plane_label": plane_label, "x_slab_mm": round(px, 4), "y_slab_mm": round(py, 4),
                         "radius_mm": round(pr, 4)} for px, py, pr in geo["patches"]]
        features[plane_label] = _feature_collection(geo, s)
        block = 1 + si % 3
        section = _section_label(species, slab_label, plane, block)
        barcode = BARCODE0[species] + 1000 * si
        specimen.append(_specimen_row(section, barcode, slab_label, slab_no, plane, plane_label, donor, si, block, species))
        n = CELLS_PER_SECTION
        x, y, region, white, in_patch = _place_cells(rng, n, s, geo)
        alias, clabel, logits = [], [], np.empty((n, len(gcols)))
        for i in range(n):
            kind, row = _draw_type(rng, region[i], bool(white[i]), bool(in_patch[i]), pools)
            if row is None:  # a neuron of a cluster outside the basal-ganglia taxonomy
                adj = adjacent_ids.iloc[rng.integers(len(adjacent_ids))]
                alias.append(adj["cluster_alias"])
                clabel.append(adj["cluster_label"])
                logits[i] = (model.base + model.adjacent_effect(adj["type"]) + model.species_effect[species])[gcols]
                continue
            alias.append(row["Cluster"])
            clabel.append(row["Cluster_label"])
            logits[i] = (model.base + model.lineage_effect(row.to_dict()) + model.species_effect[species])[gcols]
        # dorsolateral-high gradient of the gradient gene across the striatum
        cx, cy, rx, ry = (v * s for v in PUTAMEN)
        grad = np.clip(((x - cx) / rx - (y - cy) / ry) / 3 + 0.5, 0, 1) * (region == "STR")
        if GRADIENT_GENE in panel:
            logits[:, panel.index(GRADIENT_GENE)] += 2.5 * grad
        logits = _spill_over(rng, logits + efficiency, x, y)
        qc = rng.random(n) > 0.05
        lib = np.where(qc, rng.lognormal(np.log(220 * (1 + s) / 2), 0.4, n), rng.integers(1, 8, n))
        c = counts(rng, logits, lib, normalize=True)
        full = np.zeros((n, len(genes)), dtype=np.int32)
        full[:, gene_pos] = c[:, panel_cols]
        if is_blank.any():
            full[:, is_blank] = rng.poisson(0.02, size=(n, int(is_blank.sum())))
        counts_out.append(full)
        ids = [f"abmkfncc-{k + 1}" if species == "Marmoset" else str(k + 1) for k in range(n)]
        cells_out.append(pd.DataFrame({
            "cell_label": [f"{barcode}_{i}-20250227" for i in ids],
            "brain_section_label": section, "brain_section_barcode": str(barcode),
            "segmentation_job_id": "xenium_cell_segmentation_kit_v1" if species == "Marmoset" else "sis_cellpose_v1",
            "x_experiment": np.round(1000 * (x - x.min()) + 500, 4), "y_experiment": np.round(1000 * (y - y.min()) + 500, 4),
            "qc_pass": qc, "dataset_label": directory, "feature_matrix_label": label,
            "abc_sample_id": [uuid4(rng) if q else None for q in qc],
            "slab_plane_label": plane_label, "x_slab_mm": np.round(x, 6), "y_slab_mm": np.round(y, 6),
            "region": region, "white_matter": white, "in_patch": in_patch, "gradient": np.round(grad, 6),
            "cluster_alias": alias, "cluster_label": clabel,
        }))
    cells = pd.concat(cells_out, ignore_index=True)
    matrix = sp.csr_matrix(np.vstack(counts_out))
    query = ad.AnnData(matrix, obs=pd.DataFrame(index=pd.Index(cells["cell_label"], name="cell_label")),
                       var=genes.set_index("gene_identifier"))
    reference = _adjacent_reference(rng, model, adjacent_ids, species, read_h5ad_var(raw_10x))
    mmc = spatial_mmc_results(query, raw_10x, cells_10x, all_clusters, cells.set_index("cell_label")["cluster_alias"],
                              reference, adjacent_ids, species)
    _write_tables(root, rng, cells, mmc, matrix, genes, is_blank, specimen, features, clusters, species, directory,
                  label, mdir, versions)
    tdir = truth_dir / "spatial"
    write_csv(pd.DataFrame(patches_out).assign(species=species), tdir / f"{species.lower()}_striosome_patches.csv")
    write_csv(cells[["cell_label", "region", "white_matter", "in_patch", "gradient", "cluster_alias"]]
              .rename(columns={"cluster_alias": "planted_cluster"}), tdir / f"{species.lower()}_cells.csv")


def _spill_over(rng, logits: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log levels after each cell takes a share (:data:`SPILLOVER_BETA`) of its nearest neighbour's transcripts."""
    _, nearest = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    share = rng.beta(*SPILLOVER_BETA, size=len(x))[:, None]
    level = np.exp(logits)
    return np.log((1 - share) * level + share * level[nearest[:, 1]])


def _adjacent_reference(rng, model, adjacent_ids: pd.DataFrame, species: str, var: pd.DataFrame) -> ad.AnnData:
    """Single-nucleus counts of the Adjacent types (10X-like depth) on the 10X genes: the mapping's Adjacent branch."""
    rows = adjacent_ids.loc[adjacent_ids.index.repeat(ADJACENT_REFERENCE_CELLS)].reset_index(drop=True)
    logits = np.stack([model.base + model.adjacent_effect(kind) + model.species_effect[species]
                       for kind in rows["type"]])
    raw = counts(rng, logits, rng.lognormal(np.log(22000), 0.4, len(rows)))
    obs = pd.DataFrame({"type": rows["type"].to_numpy()}, index=[f"adjacent-{species}-{i}" for i in range(len(rows))])
    return ad.AnnData(on_genes(raw, model.genes, var["gene_symbol"]), obs=obs, var=var)


def _adjacent_clusters(clusters: pd.DataFrame, species: str, kinds: list[str]) -> pd.DataFrame:
    """Aliases and labels of clusters outside the released taxonomy (numbers the taxonomy does not use), each of one
    Adjacent type (``type``: ``kinds`` in turn)."""
    used = set(clusters["Cluster"].str.split("-").str[1].astype(int))
    free = [k for k in range(1, 2000) if k not in used][:24]
    offset = {"Human": 1500, "Macaque": 1600, "Marmoset": 1700}[species]
    return pd.DataFrame({"cluster_alias": [f"{species}-{k}" for k in free],
                         "cluster_label": [f"CS20250428_CLUST_{offset + i:04d}" for i in range(len(free))],
                         "type": [kinds[i % len(kinds)] for i in range(len(free))]})


def _feature_collection(geo, s) -> dict:
    shapes = [("STR", geo["caudate"], geo["tilt"]), ("STR", geo["putamen"], geo["tilt"]), ("GPe", geo["GPe"], 0.2),
              ("VeP", geo["VeP"], 0.0)]
    if geo["GPi"] is not None:
        shapes.append(("GPi", geo["GPi"], 0.2))
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": name},
         "geometry": {"type": "Polygon", "coordinates": [_polygon(shape, s, angle=angle)]}}
        for name, shape, angle in shapes]}


def _write_tables(root, rng, cells, mmc, matrix, genes, is_blank, specimen, features, clusters, species, directory,
                  label, mdir, versions) -> None:
    meta_cols = ["cell_label", "brain_section_label", "brain_section_barcode", "segmentation_job_id", "x_experiment",
                 "y_experiment", "qc_pass", "dataset_label", "feature_matrix_label", "abc_sample_id"]
    write_csv(cells[meta_cols], mdir / "cell_metadata.csv")
    write_csv(pd.DataFrame(specimen), mdir / "specimen_metadata.csv")
    coords = cells[["cell_label", "slab_plane_label", "x_slab_mm", "y_slab_mm"]]
    if species == "Marmoset":
        coords = cells[["cell_label", "brain_section_label"]].assign(
            x_rotated_um=np.round(cells["x_experiment"] * 0.98, 6), y_rotated_um=np.round(-cells["y_experiment"], 6)
        ).join(coords.drop(columns="cell_label"))
    write_csv(coords, mdir / "slab_plane_coordinates.csv")
    anat = pd.DataFrame({"cell_label": cells["cell_label"], "Basal ganglia and adjacent": True})
    for reg in ("STR", "GP", "GPe", "GPi", "VeP", "SN", "STH"):
        anat[reg] = cells["region"].isin(["GPe", "GPi"]) if reg == "GP" else cells["region"] == reg
    anat["parcellation_term_symbol"] = cells["region"]
    write_csv(anat, mdir / "cell_anatomical_annotations.csv")
    # the mapped clusters; cells mapped Adjacent: a row with a cluster outside the taxonomy, or (a third of them) none
    adjacent = ~mmc["cluster_alias"].isin(clusters["Cluster"]).to_numpy()
    no_row = adjacent & (rng.random(len(cells)) < 1 / 3)
    membership = mmc.loc[~no_row, ["cell_label", "cluster_alias", "Cluster_label"]]
    write_csv(membership.rename(columns={"Cluster_label": "cluster_label"}), mdir / "cell_to_cluster_membership.csv")
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    supp = pd.DataFrame({"cell_label": cells["cell_label"], "total_counts": totals,
                         "total_counts_genes": np.asarray(matrix[:, ~is_blank].sum(axis=1)).ravel()})
    if species != "Marmoset":
        supp["total_counts_Blank"] = totals - supp["total_counts_genes"]
        supp["pct_counts_Blank"] = np.round(100 * supp["total_counts_Blank"] / np.maximum(totals, 1), 6)
        supp["n_genes_by_counts"] = np.diff(matrix.indptr)
        supp["qc_pass_and_singlet"] = cells["qc_pass"]
    else:
        supp["cell_area"] = np.round(rng.lognormal(np.log(60), 0.3, len(cells)), 4)
        supp["nucleus_area"] = np.round(supp["cell_area"] * rng.uniform(0.3, 0.5, len(cells)), 4)
        supp["segmentation_method"] = "boundary_stain"
    supp["qc_pass"] = cells["qc_pass"]
    write_csv(supp, mdir / "cell_supplemental_metadata.csv")
    write_csv(mmc, mdir / "mmc_results.csv")
    write_csv(cells[["cell_label", "x_slab_mm", "y_slab_mm"]].rename(columns={"x_slab_mm": "x", "y_slab_mm": "y"}),
              mdir / "visualization.csv")
    write_csv(SPATIAL_DONORS[SPATIAL_DONORS["species_genus"] == species], mdir / "donor.csv")
    write_csv(genes, mdir / "gene.csv")
    vs = pd.DataFrame([(lab, "path", "parcellation_term_symbol", desc, o, ext, par, col) for lab, desc, o, ext, par, col in PARCELLATION],
                      columns=["label", "table", "field", "description", "order", "external_identifier", "parent_label", "color_hex_triplet"])
    write_csv(vs, mdir / "value_sets.csv")
    var = genes.set_index("gene_identifier")
    obs = cells[["brain_section_label"]].set_index(cells["cell_label"])
    edir = root / "expression_matrices" / directory / versions["expression_matrices"]
    write_h5ad(edir / label, matrix, obs, var, 1000.0)
    # the marmoset view holds raw counts, the others log2(CPT+1) values (as in the release)
    write_view(matrix, var, cells["cell_label"], mdir / "views" / "example_gene_expression.csv",
               ["AQP4", "DRD1", "DRD2", "SLC17A6"], 1000.0, raw=species == "Marmoset")
    idir = root / "image_volumes" / directory / versions["image_volumes"]
    idir.mkdir(parents=True, exist_ok=True)
    for plane_label, fc in features.items():
        (idir / f"{plane_label}.geojson").write_text(json.dumps(fc), encoding="utf-8")


def _specimen_row(section, barcode, slab_label, slab_no, plane, plane_label, donor, si, block, species):
    return {
        "brain_section_label": section, "brain_section_barcode": str(barcode), "brain_section_thickness": 10,
        "brain_section_plane_of_section": "coronal (rostral to caudal)" if species == "Marmoset" else "coronal (caudal to rostral)",
        "brain_section_ordinal": 140 + 10 * si, "brain_section_depth": 1400 + 100 * si,
        "section_set_label": section.rsplit(".", 1)[0], "section_set_ordinal": plane,
        "section_set_base_ordinal": 138 + 10 * si,
        # marmoset blocks are whole slabs (block label = slab label, as in the release); others are numbered in a slab
        "brain_block_label": slab_label if species == "Marmoset" else f"{slab_label}.{block:02d}",
        "brain_block_number": slab_no if species == "Marmoset" else block,
        "brain_slab_label": slab_label, "brain_slab_ordinal": slab_no,
        "brain_slab_thickness": 5.0 if species == "Marmoset" else 4.0, "hemisphere": "right",
        "brain_division_label": f"{donor}.CX", "brain_division_ordinal": 1, "donor_label": donor,
        "slab_plane_ordinal": plane, "slab_plane_label": plane_label, "slab_plane_order": 10000 + slab_no * 100 + plane,
    }
