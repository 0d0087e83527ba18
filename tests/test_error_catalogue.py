"""The error catalogue: bad inputs a user can meet, each with its hmba_toolkit exception and message.

Every case asserts the exact exception class (all derive from HmbaToolkitError, most also from the
matching built-in) and that the message names the file, column or parameter at fault.
"""

from __future__ import annotations

import shutil
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hmba_toolkit import (ahba, autocorrelation, coexpression, cross_species, de, get, gsea, mapping, mouse, normalize, nulls,
                          patchseq, pl, spatial, stream, variograms, weights)
from hmba_toolkit.errors import (DataFormatError, DownloadError, HmbaToolkitError, ManifestError, MissingFileError, NotFoundError,
                                 ParameterError, ParameterTypeError)
from hmba_toolkit.io import (AbcCache, age_in_years, download_file, fetch_bytes, read_ahba_donor, read_brainspan,
                             read_gene_ish_grids, read_genes, read_h5ad_subset, read_ish_grid, read_ontology, write_ish_grid)
from hmba_toolkit.io.manifest import safe_relative_path
from hmba_toolkit.datasets import fetch_demo_ahba, fetch_demo_brainspan
from hmba_toolkit.mouse import GridStore

ALIGNED = ("HMBA-10xMultiome-BG-Aligned", "HMBA-10xMultiome-BG-Aligned/raw")


@pytest.fixture(scope="module")
def files(cache, fixtures_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    h5ad = cache.get_file_path(*ALIGNED)
    raw = h5ad.read_bytes()
    (d / "truncated.h5ad").write_bytes(raw[: len(raw) // 3])
    (d / "garbage.h5ad").write_bytes(b"\x00not hdf5\x00" * 100)
    small = ad.AnnData(sp.random(20, 5, density=0.5, format="csr", dtype=np.float32, random_state=0),
                       obs=pd.DataFrame(index=[f"c{i}" for i in range(20)]),
                       var=pd.DataFrame({"gene_symbol": ["A", "B", "B", "D", "E"]}, index=[f"g{i}" for i in range(5)]))
    small.write_h5ad(d / "dupsym.h5ad")
    ad.AnnData(sp.csr_matrix(small.X.T), obs=small.var, var=small.obs).write_h5ad(d / "transposed.h5ad")  # genes x cells, CSR
    small.T.write_h5ad(d / "csc.h5ad")  # anndata writes the transpose as CSC
    ad.AnnData(np.ones((4, 3), dtype=np.float32)).write_h5ad(d / "dense.h5ad")
    ish = fixtures_dir / "mouse_ish" / "Nrp1_P56_coronal_74272479_200um"
    shutil.copy(ish / "energy.raw", d / "energy.raw")
    (d / "short.raw").write_bytes((ish / "energy.raw").read_bytes()[:-8])
    (d / "short.mhd").write_text((ish / "energy.mhd").read_text().replace("energy.raw", "short.raw"))
    (d / "type.mhd").write_text((ish / "energy.mhd").read_text().replace("MET_FLOAT", "MET_COMPLEX"))
    (d / "nodata.mhd").write_text((ish / "energy.mhd").read_text().replace("energy.raw", "absent.raw"))
    (d / "dims.mhd").write_text((ish / "energy.mhd").read_text().replace("DimSize = 67 41 58", "DimSize = 67 41"))
    with zipfile.ZipFile(d / "energy_only.zip", "w") as zf:
        zf.write(ish / "energy.mhd", "energy.mhd")
        zf.write(ish / "energy.raw", "energy.raw")
    (d / "bad.gmt").write_text("SET_A\tdesc\tG1\tG2\nONLY_A_NAME\n")
    donor = d / "normalized_microarray_donor9861"
    shutil.copytree(fetch_demo_ahba() / "normalized_microarray_donor9861", donor)
    (donor / "PACall.csv").unlink()
    donor2 = d / "normalized_microarray_donor10021"
    shutil.copytree(fetch_demo_ahba() / "normalized_microarray_donor10021", donor2)
    annot = pd.read_csv(donor2 / "SampleAnnot.csv").drop(columns=["mni_x"])
    annot.to_csv(donor2 / "SampleAnnot.csv", index=False)
    bs = d / "brainspan"
    shutil.copytree(fetch_demo_brainspan(), bs)
    rows = (bs / "rows_metadata.csv").read_text().splitlines()
    (bs / "rows_metadata.csv").write_text("\n".join(rows[:-1]) + "\n")  # one gene fewer than the matrix
    return {"dir": d, "h5ad": h5ad, "ish": ish}


def _pbmc_like(n=60, genes=8, donors=1, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(rng.poisson(2, (n, genes)).astype(np.float32))
    obs = pd.DataFrame({"cell_type": np.repeat(["a", "b"], n // 2), "donor_label": [f"d{i % donors}" for i in range(n)]},
                       index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(genes)]))


def _cases(files):
    d, h5ad = files["dir"], files["h5ad"]
    coords = np.random.default_rng(0).random((30, 3))
    x = np.random.default_rng(1).random(30)
    grid = read_ish_grid(files["ish"] / "energy.mhd")
    return [
        # -- h5ad matrices -------------------------------------------------------------------------
        ("truncated h5ad", lambda: read_h5ad_subset(d / "truncated.h5ad"), DataFormatError, r"truncated\.h5ad.*not a readable HDF5"),
        ("garbage h5ad", lambda: read_h5ad_subset(d / "garbage.h5ad"), DataFormatError, r"garbage\.h5ad.*not a readable HDF5"),
        ("missing h5ad", lambda: read_h5ad_subset(d / "absent.h5ad"), FileNotFoundError, r"absent\.h5ad.*does not exist"),
        ("truncated h5ad, streamed", lambda: stream.aggregate(d / "truncated.h5ad", ["g"], obs=pd.DataFrame({"g": []}), progress=False),
         DataFormatError, r"truncated\.h5ad.*not a readable HDF5"),
        ("dense X", lambda: read_h5ad_subset(d / "dense.h5ad"), DataFormatError, r"dense\.h5ad.*X is stored as 'array'"),
        ("genes x cells", lambda: read_h5ad_subset(d / "transposed.h5ad", genes=["g3"]), DataFormatError, r"transposed\.h5ad.*genes x cells"),
        ("gene-major matrix", lambda: read_h5ad_subset(d / "csc.h5ad"), DataFormatError, r"csc\.h5ad.*'csc_matrix' \(gene-major.*transpose"),
        ("unknown gene, close match", lambda: read_h5ad_subset(h5ad, genes=["DRD7"], gene_column="gene_symbol"),
         DataFormatError, r"genes not found in var column 'gene_symbol': \['DRD7'\].*did you mean.*DRD"),
        ("duplicated gene symbol", lambda: read_h5ad_subset(d / "dupsym.h5ad", genes=["B"], gene_column="gene_symbol"),
         DataFormatError, r"dupsym\.h5ad.*\['B'\] match several rows"),
        ("genes as one string", lambda: read_h5ad_subset(h5ad, genes="DRD1", gene_column="gene_symbol"), DataFormatError, r"list of names"),
        ("unknown var column", lambda: read_h5ad_subset(h5ad, genes=["DRD1"], gene_column="symbol"), DataFormatError, r"var has no column 'symbol'"),
        ("cells not in the file", lambda: read_h5ad_subset(h5ad, cells=["nope-1", "nope-2"]), DataFormatError, r"2 requested cells are not in the file"),
        ("bad missing_cells", lambda: read_h5ad_subset(h5ad, cells=["x"], missing_cells="ignore"), DataFormatError, r"missing_cells must be"),
        ("gene index required but absent", lambda: read_genes(d / "dupsym.h5ad", ["A"], gene_column="gene_symbol", index=True, progress=False),
         DataFormatError, r"no gene index; build it with"),
        ("stream: unknown grouping column", lambda: stream.aggregate(h5ad, ["Group"], obs=pd.DataFrame({"g": []}), progress=False),
         HmbaToolkitError, r"obs has no column\(s\) \['Group'\]"),
        ("stream: bad normalization", lambda: stream.aggregate(h5ad, ["g"], obs=pd.DataFrame({"g": []}), normalization="tpm"),
         HmbaToolkitError, r"normalization must be one of"),
        # -- the release and downloads ---------------------------------------------------------------
        ("manifest path leaving the cache", lambda: safe_relative_path("../../etc/passwd"), ManifestError, r"\.\./\.\./etc/passwd"),
        ("absolute manifest path", lambda: safe_relative_path("/etc/passwd"), ManifestError, r"/etc/passwd"),
        ("unknown release directory", lambda: AbcCache.from_demo().list_metadata_files("HMBA-Nope"), ManifestError, r"HMBA-Nope"),
        ("bad normalization", lambda: AbcCache.from_demo().read_expression("HMBA-10xMultiome-BG-Aligned", normalization="cpm"),
         HmbaToolkitError, r"normalization must be 'log2' or 'raw'"),
        ("ftp source", lambda: download_file("ftp://example.org/a.csv", d / "a.csv", progress=False), DownloadError, r"only https"),
        # -- mouse ISH grids ---------------------------------------------------------------------------
        ("raw shorter than DimSize", lambda: read_ish_grid(d / "short.mhd"), DataFormatError, r"short\.mhd.*637296 bytes.*needs 637304"),
        ("unknown ElementType", lambda: read_ish_grid(d / "type.mhd"), DataFormatError, r"type\.mhd.*unsupported ElementType 'MET_COMPLEX'"),
        ("ElementDataFile missing", lambda: read_ish_grid(d / "nodata.mhd"), DataFormatError, r"nodata\.mhd.*absent\.raw does not exist"),
        ("DimSize vs NDims", lambda: read_ish_grid(d / "dims.mhd"), DataFormatError, r"dims\.mhd.*NDims=3"),
        ("zip without the volume", lambda: read_ish_grid(d / "energy_only.zip", volume="density"), DataFormatError, r"no density\.mhd inside"),
        ("grid of the wrong shape", lambda: mouse.unionize(grid[:, :, :50]), DataFormatError, r"grid has shape \(67, 41, 50\)"),
        ("unknown hemisphere", lambda: mouse.unionize(grid, hemisphere="middle"), HmbaToolkitError, r"hemisphere must be one of"),
        ("unknown structure", lambda: mouse.unionize(grid, structures=["CPX"]), NotFoundError, r"no structure 'CPX'"),
        ("not a grid store", lambda: GridStore.open(d), DataFormatError, r"not a grid store"),
        ("StructureUnionize answer that is a GMT file", lambda: mouse.read_structure_unionizes(_write(d / "answer.json", "SET\tdesc\tA\n")),
         DataFormatError, r"answer\.json: not valid JSON"),
        ("StructureUnionize answer of another model", lambda: mouse.read_structure_unionizes('{"success": true, "msg": [{"id": 1, "acronym": "Pdyn"}]}'),
         DataFormatError, r"neither 'structure_id' and 'section_data_set_id' nor 'structure_unionizes'"),
        ("unionize records: unknown plane", lambda: mouse.structure_unionizes(["Pdyn"], plane="axial"), HmbaToolkitError, r"plane must be"),
        ("unionize comparison of a list", lambda: mouse.compare_unionizes([1, 2], {}), TypeError, r"records must be a DataFrame"),
        ("grid volumes as one string", lambda: read_gene_ish_grids(d, "Pdyn", volumes="density"), TypeError, r"not the string 'density'"),
        ("several volumes into one .mhd", lambda: write_ish_grid(d / "two.mhd", {"energy": grid, "density": grid}), HmbaToolkitError,
         r"two\.mhd: several volumes need a \.zip"),
        ("fetch with no attempt", lambda: fetch_bytes("https://api.brain-map.org/", max_attempts=0), HmbaToolkitError, r"max_attempts must be >= 1"),
        ("ranking as a list", lambda: gsea.prerank([1.0, 2.0], {"S": ["A"]}), TypeError, r"ranking must be a pandas Series"),
        ("ORA query as one string", lambda: gsea.ora("DRD1", {"S": ["DRD1", "TAC1"]}, ["DRD1", "TAC1", "GFAP"], min_size=1),
         TypeError, r"genes must be a list of gene names, not the string 'DRD1'"),
        ("missing GMT file", lambda: gsea.read_gmt(d / "absent.gmt"), FileNotFoundError, r"absent\.gmt does not exist"),
        ("missing ontology file", lambda: read_ontology(d / "absent_tree.csv"), FileNotFoundError, r"absent_tree\.csv does not exist"),
        ("Moran's I of a map with NaN", lambda: autocorrelation.morans_i(np.where(np.arange(30) == 2, np.nan, x),
                                                                         weights.knn_weights(coords, k=3)),
         HmbaToolkitError, r"NaN or infinite values in 1 column"),
        ("spatial-lag nulls without locations", lambda: nulls.spatial_lag(x, n_permutations=3), HmbaToolkitError,
         r"the locations are needed: pass coords"),
        ("unionize no grid", lambda: mouse.unionize_genes({}), HmbaToolkitError, r"grids is empty"),
        ("StructureUnionize records of no gene", lambda: mouse.structure_unionizes([], experiments=[1], base_url=None),
         HmbaToolkitError, r"genes is empty"),
        ("unknown directory, close name", lambda: AbcCache.from_demo().cell_table("HMBA-10xMultiome-BG-Aligne"), ManifestError,
         r"did you mean \['HMBA-10xMultiome-BG-Aligned'"),
        ("unknown per-species matrix", lambda: AbcCache.from_demo().read_expression("HMBA-10xMultiome-BG", matrix="Human"),
         HmbaToolkitError, r"matrix 'Human' is not in HMBA-10xMultiome-BG; choose from \['HMBA-10xMultiome-BG-Human'"),
        ("cell-table columns as one string", lambda: AbcCache.from_demo().read_expression("HMBA-10xMultiome-BG-Aligned",
                                                                                            genes=["DRD1"], obs="Group"),
         TypeError, r"not one string; use \['Group'\]"),
        ("Wilcoxon unknown reference", lambda: de.wilcoxon(_pbmc_like(), "cell_type", reference="zzz"), HmbaToolkitError,
         r"reference 'zzz' is not a value of obs\['cell_type'\]"),
        ("one-vs-rest with a single group", lambda: de.wilcoxon(_pbmc_like().__getitem__(slice(0, 30)), "cell_type"),
         HmbaToolkitError, r"one-vs-rest needs at least two groups; obs\['cell_type'\] holds only \['a'\]"),
        ("profiles without shared genes", lambda: cross_species.profile_correlation(pd.DataFrame({"A": [1.0, 2.0]}),
                                                                                    pd.DataFrame({"B": [1.0, 2.0]})),
         HmbaToolkitError, r"share 0 gene column"),
        ("grid zip that is not a zip", lambda: read_ish_grid(_write(d / "grid.zip", "<html>Service Unavailable</html>")),
         DataFormatError, r"grid\.zip: not a complete zip"),
        ("identifiers where symbols are expected", lambda: read_h5ad_subset(h5ad, genes=[_first_identifier(h5ad)], gene_column="gene_symbol"),
         DataFormatError, r"are gene identifiers \(the var index\): pass gene_column=None"),
        ("symbols where identifiers are expected", lambda: read_h5ad_subset(h5ad, genes=["DRD1"], gene_column=None),
         DataFormatError, r"\['DRD1'\] are gene symbols: pass gene_column='gene_symbol'"),
        ("AHBA pipeline given a folder", lambda: ahba.process(str(d)), TypeError, r"process takes the donors, not a folder"),
        ("manifest size that is not a number", lambda: _manifest_with_size("big").entries(), ManifestError,
         r"size 'big' is not a number of bytes"),
        ("Moran spectral nulls of a map with NaN", lambda: nulls.moran(np.where(np.arange(30) == 1, np.nan, x), coords, n_permutations=3),
         HmbaToolkitError, r"x has 1 NaN or infinite values"),
        ("variogram of a constant map", lambda: variograms.smoothed_variogram(np.ones(30), coords), HmbaToolkitError,
         r"x is constant in 1 column"),
        ("distance band without neighbours", lambda: weights.distance_band_weights(coords, 1e-9), HmbaToolkitError,
         r"threshold 1e-09 leaves every location without a neighbour"),
        ("top pairs n = 0", lambda: coexpression.top_pairs(pd.DataFrame(np.eye(3)), n=0), HmbaToolkitError, r"n must be >= 1"),
        ("QC metrics of an array", lambda: normalize.qc_metrics(np.ones((3, 3))), TypeError, r"qc_metrics takes an AnnData"),
        ("per-sample scores of an AnnData", lambda: gsea.sample_scores(_pbmc_like(), {"S": ["G1", "G2"]}), TypeError,
         r"expression must be a samples x genes DataFrame"),
        ("missing region polygons", lambda: spatial.read_region_polygons(d / "absent.geojson"), FileNotFoundError,
         r"absent\.geojson does not exist"),
        ("gene query of no gene", lambda: read_genes(h5ad, [], progress=False), HmbaToolkitError, r"genes is empty"),
        ("gene query naming a gene twice", lambda: read_genes(h5ad, ["DRD1", "DRD1"], gene_column="gene_symbol", progress=False),
         HmbaToolkitError, r"genes names \['DRD1'\] more than once"),
        ("BrainSpan file instead of its folder", lambda: read_brainspan(d / "brainspan" / "rows_metadata.csv"), DataFormatError,
         r"rows_metadata\.csv is a file: pass the BrainSpan folder"),
        ("pseudobulk of log-normalised data", lambda: de.pseudobulk(_labelled(_pbmc_like(donors=3), "log2"), "cell_type"),
         HmbaToolkitError, r"pseudobulk needs raw counts, but uns\['normalization'\] is 'log2'"),
        ("ontology without parents", lambda: read_ontology(_write(d / "onto.csv", "id,acronym,name\n1,A,a\n")), DataFormatError,
         r"onto\.csv.*lacks columns \['parent_structure_id'\]"),
        # -- AHBA and BrainSpan ------------------------------------------------------------------------
        ("AHBA donor without PACall", lambda: read_ahba_donor(d / "normalized_microarray_donor9861"), DataFormatError, r"PACall\.csv: missing"),
        ("AHBA SampleAnnot column", lambda: read_ahba_donor(d / "normalized_microarray_donor10021"), DataFormatError,
         r"SampleAnnot\.csv: missing columns \['mni_x'\]"),
        ("BrainSpan shapes disagree", lambda: read_brainspan(d / "brainspan"), DataFormatError, r"expression_matrix\.csv: shape"),
        ("BrainSpan age", lambda: age_in_years("teenage"), DataFormatError, r"unrecognised BrainSpan age 'teenage'"),
        # -- gene sets ------------------------------------------------------------------------------------
        ("malformed GMT", lambda: gsea.read_gmt(d / "bad.gmt"), DataFormatError, r"bad\.gmt.*line 2"),
        ("gene sets with no overlap", lambda: gsea.ora(["G1"], {"S": ["X1", "X2", "X3"]}, ["G1", "G2"], min_size=1), HmbaToolkitError,
         r"no gene set has"),
        ("duplicated genes in a ranking", lambda: gsea.prerank(pd.Series([1.0, 2.0], index=["A", "A"]), {"S": ["A"]}, min_size=1),
         HmbaToolkitError, r"duplicated gene names"),
        # -- differential expression ---------------------------------------------------------------------
        ("pseudobulk with one donor", lambda: de.pseudobulk(_pbmc_like(donors=1), "cell_type", min_cells=1, min_total_count=0),
         HmbaToolkitError, r"replicate"),
        ("wilcoxon: unknown group", lambda: de.wilcoxon(_pbmc_like(), "cell_type", groups=["zzz"]), HmbaToolkitError, r"zzz"),
        ("wilcoxon: unknown obs column", lambda: de.wilcoxon(_pbmc_like(), "Class"), HmbaToolkitError, r"Class"),
        ("aggregate: unknown column", lambda: stream.aggregate(_pbmc_like(), ["Group"]), HmbaToolkitError, r"obs has no column\(s\) \['Group'\]"),
        ("finer than Group across species", lambda: de.wilcoxon(_species_cells(), "Cluster"), HmbaToolkitError, r"finer than the Group level"),
        ("NaN counts", lambda: normalize.log2_cpm(_with_nan()), HmbaToolkitError, r"NaN|finite"),
        # -- spatial statistics and nulls --------------------------------------------------------------------
        ("NaN coordinates", lambda: nulls.variogram(x, np.where(np.arange(90).reshape(30, 3) == 4, np.nan, coords), n_permutations=5),
         HmbaToolkitError, r"coords.*(NaN|finite)"),
        ("NaN in the map", lambda: nulls.spatial_lag(np.where(np.arange(30) == 3, np.nan, x), coords, n_permutations=5), HmbaToolkitError, r"NaN|finite"),
        ("too few points", lambda: nulls.variogram(x[:3], coords[:3], n_permutations=5), HmbaToolkitError, r"at least"),
        ("map and coords disagree", lambda: nulls.moran(x[:20], coords, n_permutations=5), HmbaToolkitError, r"20.*30|30.*20"),
        ("n_permutations = 0 surrogates", lambda: nulls.naive(x, n_permutations=0), HmbaToolkitError, r"\bn_permutations\b"),
        ("k too large for kNN weights", lambda: weights.knn_weights(coords, k=30), HmbaToolkitError, r"\bk\b"),
        ("CGE of too few regions", lambda: coexpression.cge(pd.DataFrame(np.ones((2, 5)))), HmbaToolkitError, r"at least 3 complete regions"),
        ("cross-species: bad method", lambda: cross_species.profile_correlation(pd.DataFrame([[1.0]]), pd.DataFrame([[1.0]]), method="tau"),
         HmbaToolkitError, r"method must be"),
        # -- cell-type mapping -------------------------------------------------------------------------
        ("mapping: missing stats file", lambda: mapping.read_stats(d / "absent.h5"), MissingFileError,
         r"absent\.h5: no such precomputed stats file"),
        ("mapping: stats file that is not HDF5", lambda: mapping.read_stats(d / "garbage.h5ad"), DataFormatError,
         r"garbage\.h5ad: cannot be read as HDF5"),
        ("mapping: an h5ad given as stats", lambda: mapping.read_stats(h5ad), DataFormatError, r"not a precomputed_stats file"),
        ("mapping: markers file that is not JSON", lambda: mapping.read_query_markers(_write(d / "m.json", "{oops")),
         DataFormatError, r"m\.json: not a JSON marker lookup"),
        ("mapping: marker JSON without a root", lambda: mapping.read_query_markers(_write(d / "m2.json", '{"A/a": []}')),
         DataFormatError, r"m2\.json: .*'None' \(root\) entry"),
        ("mapping: stats file given as reference markers", lambda: mapping.read_reference_markers(d / "absent.h5"),
         MissingFileError, r"absent\.h5: no such reference markers file"),
        ("mapping: stats of the wrong type", lambda: mapping.map_cells(_pbmc_like(), {"sum": 1}, {"None": []}),
         ParameterTypeError, r"stats must be a ReferenceStats"),
        ("mapping: markers of the wrong type", lambda: mapping.map_cells(_pbmc_like(), _small_stats(), ["G1"]),
         ParameterTypeError, r"markers must be a marker lookup"),
        ("mapping: bootstrap_factor 0", lambda: mapping.map_cells(_pbmc_like(), _small_stats(), {"None": ["G1"]},
                                                                   bootstrap_factor=0), ParameterError, r"bootstrap_factor must lie in \(0, 1\]"),
        ("mapping: no iteration", lambda: mapping.map_cells(_pbmc_like(), _small_stats(), {"None": ["G1"]},
                                                             bootstrap_iteration=0), ParameterError, r"bootstrap_iteration must be a positive integer"),
        ("mapping: drop the leaf level", lambda: mapping.map_cells(_pbmc_like(), _small_stats(), {"None": ["G1"]},
                                                                    drop_level="cell_type"), ParameterError, r"drop_level='cell_type' is the leaf level"),
        ("mapping: unknown gene column", lambda: mapping.map_cells(_pbmc_like(), _small_stats(), {"None": ["G1"]},
                                                                    query_gene_id_col="ensembl"), ParameterError, r"query_gene_id_col='ensembl' is not a var column"),
        ("mapping: missing query file", lambda: mapping.map_cells(d / "absent.h5ad", _small_stats(), {"None": ["G1"]}),
         MissingFileError, r"absent\.h5ad: no such query h5ad"),
        ("mapping: hierarchy as a plain string", lambda: mapping.precompute_stats(_pbmc_like(), "cell_type"), ParameterError,
         r"hierarchy must list the level columns.*not the string 'cell_type'"),
        ("mapping: a file without its cell table", lambda: mapping.precompute_stats(h5ad, ["Group"]), ParameterError,
         r"needs the cell table with the taxonomy levels as obs="),
        ("mapping: counts declared log2CPM", lambda: mapping.precompute_stats(_scaled(_pbmc_like(), 100), ["donor_label", "cell_type"],
                                                                             normalization="log2CPM"),
         ParameterError, r"normalization='log2CPM' but values reach .* look like counts"),
        ("mapping: negative expression", lambda: mapping.precompute_stats(_scaled(_pbmc_like(), -1), ["donor_label", "cell_type"]),
         DataFormatError, r"negative values"),
        ("mapping: one leaf only", lambda: mapping.reference_markers(mapping.precompute_stats(_pbmc_like()[:30].copy(),
                                                                                           ["donor_label", "cell_type"])),
         ParameterError, r"at least two leaf clusters"),
        ("mapping: a leaf of one cell", lambda: mapping.reference_markers(mapping.precompute_stats(_pbmc_like()[29:].copy(),
                                                                                                ["donor_label", "cell_type"])),
         ParameterError, r"leaf cluster\(s\) \['a'\] have fewer than 2 cells"),
        ("mapping: no utility", lambda: mapping.query_markers(mapping.reference_markers(_small_stats()), _small_stats().tree,
                                                               n_per_utility=0), ParameterError, r"n_per_utility must be >= 1"),
        ("mapping: panel without reference genes", lambda: mapping.query_markers(mapping.reference_markers(_small_stats()),
                                                                                  _small_stats().tree, genes=["XYZ"]),
         ParameterError, r"none of the 1 genes given is a reference gene"),
        # -- more parameters, each named ---------------------------------------------------------------
        ("moran surrogates: no permutation", lambda: nulls.moran(x, coords, n_permutations=0), ParameterError,
         r"n_permutations must be a positive number of surrogate maps, got 0"),
        ("correlate: surrogates of another shape", lambda: nulls.correlate(x, x[:5], np.zeros((3, 30))), ParameterError,
         r"nulls must be \(n, 30\) and y must have 30 values"),
        ("gene_correlation: unknown method", lambda: coexpression.gene_correlation(_pbmc_like(), method="kendallx"),
         ParameterError, r"method='kendallx' is not 'pearson' or 'spearman'"),
        ("ora: no set of a testable size", lambda: gsea.ora(["G1"], {}, background=["G1", "G2"]), ParameterError,
         r"no gene set has between 5 and 500 genes in the measured background"),
        ("pseudobulk: unknown replicate column", lambda: de.pseudobulk(_pbmc_like(donors=2), "cell_type", replicate="donorX"),
         ParameterError, r"pseudobulk: obs has no column 'donorX'"),
        ("aggregate: empty blocks", lambda: stream.aggregate(_pbmc_like(), "cell_type", chunk_nnz=0), ParameterError,
         r"chunk_nnz must be >= 1, got 0"),
        ("Patch-seq features that are not columns", lambda: patchseq.features_by_group(pd.DataFrame({"Group": ["a"]}), ["nope"]),
         NotFoundError, r"features \['nope'\] are not columns of cells"),
        ("region assignment without coordinates", lambda: spatial.assign_cells_by_plane(pd.DataFrame(), {}), DataFormatError,
         r"cells has no column\(s\) \['slab_plane_label', 'x_slab_mm', 'y_slab_mm'\]; pass plane_column=, x=, y="),
        ("log2_cpm of a file name", lambda: normalize.log2_cpm("x.h5ad"), ParameterTypeError,
         r"log2_cpm takes an AnnData .* not str; read the file first"),
        ("wilcoxon: tie_correct as text", lambda: de.wilcoxon(_pbmc_like(), "cell_type", tie_correct="yes"), ParameterTypeError,
         r"tie_correct must be True or False, not 'yes'"),
        ("wilcoxon: no gene per block", lambda: de.wilcoxon(_pbmc_like(), "cell_type", gene_block=0), ParameterError,
         r"gene_block must be a positive number of genes read at once, got 0"),
        ("obs_df: unknown gene", lambda: get.obs_df(_pbmc_like(), ["NOPE"]), NotFoundError, r"gene 'NOPE' is not in var_names"),
        # -- arguments of the spatial statistics, each named (shared checks: hmba_toolkit._checks) -----------
        ("coordinates as text", lambda: weights.knn_weights([["a", "b"], ["c", "d"]], k=1), ParameterTypeError,
         r"coords must hold numbers"),
        ("kNN with a fractional k", lambda: weights.knn_weights(coords, k=2.5), ParameterTypeError, r"k must be a whole number, not 2\.5"),
        ("row-standardising a non-square matrix", lambda: weights.row_standardize(np.ones((3, 2))), ParameterError,
         r"W must be a square locations x locations matrix, got shape \(3, 2\)"),
        ("Moran's I with negative permutations", lambda: autocorrelation.morans_i(x, weights.knn_weights(coords, k=3), n_permutations=-1),
         ParameterError, r"n_permutations must be >= 0 \(0 skips the permutation test\), got -1"),
        ("Geary's C of text", lambda: autocorrelation.gearys_c("abc", weights.knn_weights(coords, k=3)), ParameterTypeError,
         r"X must hold numbers"),
        ("permutation nulls of a 3-D array", lambda: nulls.naive(np.ones((3, 3, 3)), n_permutations=3), ParameterError,
         r"x must be one map \(a 1-D array of N values\), got shape \(3, 3, 3\)"),
        ("a seed that is text", lambda: nulls.naive(x, n_permutations=3, seed="a"), ParameterTypeError,
         r"seed must be a non-negative integer \(or None\), not 'a'"),
        ("spatial-lag rho outside (-1, 1)", lambda: nulls.spatial_lag(x, coords, n_permutations=3, rho=2.0), ParameterError,
         r"rho must lie in \(-1, 1\).*got 2\.0"),
        ("no random field", lambda: nulls.random_fields(coords, 0), ParameterError, r"n_fields must be >= 1, got 0"),
        ("variogram fit of NaN surrogates", lambda: variograms.variogram_fit(x, np.full((3, 30), np.nan), coords), ParameterError,
         r"surrogates has 3 of 3 maps with NaN or infinite values"),
        ("fit summary of a list", lambda: variograms.summarize_fits(["a"]), ParameterTypeError,
         r"fits must be a \{null name: variogram_fit table\} mapping, not list"),
        ("Moran eigenvectors of duplicated locations", lambda: nulls.moran_eigenvectors(np.zeros((5, 2))), ParameterError,
         r"coords has 5 locations that share their coordinates with another \(duplicated locations"),
        # -- co-expression and cross-species ------------------------------------------------------------
        ("gene correlation of one gene string", lambda: coexpression.gene_correlation(_pbmc_like(), "G1"), ParameterTypeError,
         r"genes must be a list of names, not one string; use \['G1'\]"),
        ("top pairs of an array", lambda: coexpression.top_pairs(np.eye(3)), ParameterTypeError,
         r"corr must be a genes x genes DataFrame \(gene_correlation\), not ndarray"),
        ("CGE with a region twice", lambda: coexpression.cge(pd.DataFrame(np.random.default_rng(2).random((4, 5)), index=list("ABCA"))),
         ParameterError, r"expression has duplicated regions \['A'\]"),
        ("variable genes n = 0", lambda: cross_species.variable_genes({"Human": pd.DataFrame(np.eye(3))}, n=0), ParameterError,
         r"n must be >= 1 \(how many genes to return\), got 0"),
        ("variable genes of no species", lambda: cross_species.variable_genes({}), ParameterError,
         r"profiles must be a non-empty \{species: Groups x genes\} mapping"),
        ("Group matching with NaN correlations", lambda: cross_species.match_groups(pd.DataFrame(np.full((3, 3), np.nan), index=list("ABC"),
                                                                                            columns=list("ABC"))),
         ParameterError, r"correlation has NaN for Groups \['A', 'B', 'C'\]"),
        ("marker ranks of absent Groups", lambda: cross_species.marker_ranks({"Human": pd.DataFrame({"DRD1": [1.0]}, index=["X"])},
                                                                              {"Z": ["DRD1"]}),
         ParameterError, r"no marker of markers' Groups \['Z'\] is in the profiles; their Groups: \['X'\]"),
        ("profile correlation of arrays", lambda: cross_species.profile_correlation(np.eye(3), np.eye(3)), ParameterTypeError,
         r"reference must be a Groups x genes DataFrame \(group_profiles\), not ndarray"),
        ("profile correlation with NaN", lambda: cross_species.profile_correlation(
            pd.DataFrame([[1.0, np.nan, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]], index=["A", "B"]), pd.DataFrame(np.eye(2, 4), index=["A", "B"])),
         ParameterError, r"reference profiles have NaN or infinite values in Groups \['A'\]"),
        ("profile correlation, genes as one string", lambda: cross_species.profile_correlation(pd.DataFrame([[1.0]]), pd.DataFrame([[1.0]]),
                                                                                               genes="DRD1"),
         ParameterTypeError, r"genes must be a list of gene names, not one string; use \['DRD1'\]"),
        # -- gene sets -------------------------------------------------------------------------------------
        ("map enrichment of one set name", lambda: gsea.map_enrichment(pd.DataFrame(np.eye(4)), pd.Series(np.arange(4.0)), "SET",
                                                                        null="random_genes"),
         ParameterTypeError, r"gene_sets must be a \{set name: \[genes\]\} mapping .* not str; use \{'SET': \[genes\]\}"),
        ("a set whose genes are one string", lambda: gsea.ora(["DRD1"], {"S": "DRD1"}, ["DRD1", "TAC1"], min_size=1), ParameterTypeError,
         r"gene_sets\['S'\] must be a list of genes, not the string 'DRD1'"),
        ("random-gene null with no draw", lambda: gsea.map_enrichment(pd.DataFrame(np.eye(4)), pd.Series(np.arange(4.0)), {"S": [0, 1]},
                                                                       null="random_genes", n_permutations=0),
         ParameterError, r"n_permutations must be a positive number of random gene sets, got 0"),
        ("empty GMT file", lambda: gsea.read_gmt(_write(d / "empty.gmt", "")), DataFormatError, r"empty\.gmt: holds no gene set"),
        ("GMT that is not text", lambda: gsea.read_gmt(_write_bytes(d / "sets.gmt.gz", b"\x89PNG\r\n")), DataFormatError,
         r"sets\.gmt\.gz: not a GMT text file"),
        ("writing a list as GMT", lambda: gsea.write_gmt(["DRD1"], d / "out.gmt"), ParameterTypeError,
         r"sets must be a \{set name: \[genes\]\} mapping"),
        ("prerank without permutations", lambda: gsea.prerank(pd.Series([1.0, 2.0], index=["A", "B"]), {"S": ["A"]}, n_permutations=0),
         ParameterError, r"n_permutations must be >= 1 \(permutations of the genes for the p-values\), got 0"),
        ("prerank weight as text", lambda: gsea.prerank(pd.Series([1.0, 2.0], index=["A", "B"]), {"S": ["A"]}, weight="classic"),
         ParameterError, r"weight must be a finite exponent >= 0"),
        ("per-sample scores with no thread", lambda: gsea.sample_scores(pd.DataFrame(np.eye(3)), {"S": [0, 1]}, threads=0),
         ParameterError, r"threads must be >= 1, got 0"),
        ("per-sample scores of genes as rows", lambda: gsea.sample_scores(pd.DataFrame(np.eye(6), index=[f"G{i}" for i in range(6)]),
                                                                          {"S": [f"G{i}" for i in range(6)]}),
         ParameterError, r"no gene set has between 5 and 500 genes among the 6 genes \(columns\) of expression"),
        # -- differential expression and normalisation -------------------------------------------------------
        ("Wilcoxon with an unknown layer", lambda: de.wilcoxon(_pbmc_like(), "cell_type", layer="scaled"), ParameterError,
         r"layer 'scaled' is not in adata.layers; layers: \[\]"),
        ("Wilcoxon groupby as a list", lambda: de.wilcoxon(_pbmc_like(), ["cell_type"]), ParameterTypeError,
         r"groupby must be one obs column name, not \['cell_type'\]"),
        ("Wilcoxon log base 0", lambda: de.wilcoxon(_pbmc_like(), "cell_type", log_base=0), ParameterError, r"log_base must be > 1"),
        ("Wilcoxon of NaN expression", lambda: de.wilcoxon(_with_nan(), "cell_type"), DataFormatError,
         r"the expression holds 1 NaN or infinite values in 1 gene\(s\)"),
        ("pseudobulk with negative min_cells", lambda: de.pseudobulk(_pbmc_like(donors=3), "cell_type", min_cells=-1), ParameterError,
         r"min_cells must be >= 0 \(cells a pseudobulk sample needs\), got -1"),
        ("pseudobulk groupby as a list", lambda: de.pseudobulk(_pbmc_like(donors=3), ["cell_type"]), ParameterTypeError,
         r"pseudobulk: groupby must be one obs column name"),
        ("log2 CPT of no cell", lambda: normalize.log2_cpt(ad.AnnData(np.zeros((0, 3), dtype=np.float32))), ParameterError,
         r"log2_cpt: the AnnData is empty \(0 cells x 3 genes\)"),
        ("QC with a numeric blank prefix", lambda: normalize.qc_metrics(_pbmc_like(), blank_prefix=3), ParameterTypeError,
         r"blank_prefix must be a string"),
        ("aggregate with a list as obs", lambda: stream.aggregate(_pbmc_like(), ["cell_type"], obs=[1, 2]), ParameterTypeError,
         r"aggregate: obs must be a cell table \(DataFrame indexed by cell label\), not list"),
        ("aggregate with text chunk size", lambda: stream.aggregate(_pbmc_like(), ["cell_type"], chunk_nnz="1M"), ParameterTypeError,
         r"chunk_nnz must be a whole number, not '1M'"),
        ("Patch-seq test with a text seed", lambda: patchseq.compare_groups(pd.DataFrame({"Group": list("ab") * 5, "donor_label": "d",
                                                                                            "f": np.arange(10.0)}), ["f"], seed="x"),
         ParameterTypeError, r"seed must be a non-negative integer"),
        # -- mouse atlas, AHBA, mapping evaluation, plots -------------------------------------------------------
        ("unionize grids as a list", lambda: mouse.unionize_genes([grid]), ParameterTypeError,
         r"grids must be a \{label: grid\} mapping or a GridStore, not list"),
        ("unionize with a list as ontology", lambda: mouse.unionize(grid, ontology=["CP"]), ParameterTypeError,
         r"ontology must be a StructureTree"),
        ("ontology file that is an image", lambda: read_ontology(_write_bytes(d / "tree.csv", b"\x89PNG\r\n\x1a\n\x00")), DataFormatError,
         r"tree\.csv: not an ontology table"),
        ("AHBA regions without MNI columns", lambda: ahba.assign_regions(pd.DataFrame({"mni_x": [0.0]}), ahba.desikan_killiany()),
         DataFormatError, r"annot lacks columns \['mni_y', 'mni_z', 'hemisphere', 'structure'\]"),
        ("AHBA probe filter of no donor", lambda: ahba.filter_probes({}, pd.DataFrame()), ParameterError, r"donors is empty"),
        ("AHBA labels of other donors", lambda: ahba.aggregate_regions({"9861": pd.DataFrame({"G": [1.0]})}, {"10021": pd.Series([1])}),
         ParameterError, r"labels has no region labels for donors \['9861'\]; it has \['10021'\]"),
        ("AHBA atlas that does not exist", lambda: ahba.read_atlas(d / "atlas.nii.gz", d / "atlas.csv"), MissingFileError,
         r"atlas\.nii\.gz does not exist"),
        ("mapping agreement with columns as text", lambda: mapping.agreement(_mapped(), pd.DataFrame(), "Group"), ParameterTypeError,
         r"columns must map mapped levels to reference columns"),
        ("volcano of a table without DE columns", lambda: pl.volcano(pd.DataFrame({"a": [1]})), ParameterError,
         r"de lacks columns \['group', 'reference', 'gene', 'log2_fold_change', 'pvalue', 'padj'\]"),
        ("p-value formatted from text", lambda: pl.format_pvalue("0.05"), ParameterTypeError, r"p must be a number, not '0\.05'"),
        ("p-value columns that are absent", lambda: pl.format_pvalues(pd.DataFrame({"p": [0.1]}), columns=["q"]), ParameterError,
         r"columns \['q'\] are not in the table"),
        ("group correlation plot of an array", lambda: pl.group_correlation(np.eye(3)), ParameterTypeError,
         r"correlation must be a Groups x Groups DataFrame"),
        ("embedding of an AnnData", lambda: pl.embedding(_pbmc_like(), "cell_type"), ParameterTypeError,
         r"cells must be a DataFrame with columns 'x', 'y' and 'cell_type', not AnnData"),
        ("heat map of an empty table", lambda: pl.structure_heatmap(pd.DataFrame()), ParameterError,
         r"table must be a non-empty structures x genes DataFrame"),
        # -- neighbourhoods of cell types --------------------------------------------------------------------
        ("neighbourhoods of a section smaller than k", lambda: spatial.neighborhood_enrichment(
            pd.DataFrame({"x": np.arange(10.0), "y": 0.0, "t": "a", "s": ["big"] * 7 + ["small"] * 3}), "t", section_key="s"),
         ParameterError, r"section 'small' has 3 cells, too few for n_neighbors=6"),
        ("neighbourhoods with duplicated coordinates", lambda: spatial.neighborhood_enrichment(
            pd.DataFrame({"x": [0.0] * 2 + list(range(10)), "y": 0.0, "t": "a"}), "t"),
         ParameterError, r"cells has 3 locations that share their coordinates with another \(duplicated locations"),
        ("neighbourhoods without the coordinate column", lambda: spatial.neighborhood_enrichment(
            pd.DataFrame({"x_slab_mm": [0.0], "y": [0.0], "t": ["a"]}), "t"),
         ParameterError, r"cells has no column 'x' \(x=\)"),
        ("a graph that does not match the cells", lambda: spatial.neighborhood_enrichment(
            pd.DataFrame({"x": np.arange(10.0), "y": 0.0, "t": "a"}), "t", graph=sp.eye(4)),
         ParameterError, r"graph is 4 x 4, cells has 10 rows"),
        # -- one geometry: where the values are -------------------------------------------------------------
        ("locations with NaN", lambda: spatial.Geometry(pd.DataFrame({"x": [0.0, np.nan, 2.0], "y": 0.0}, index=list("abc"))),
         ParameterError, r"coords has 1 locations with NaN or infinite values \(e\.g\. \['b'\]\)"),
        ("duplicated location labels", lambda: spatial.Geometry(np.arange(6.0).reshape(3, 2), labels=["a", "b", "a"]),
         ParameterError, r"the location labels are duplicated, e\.g\. \['a'\]"),
        ("an asymmetric distance matrix", lambda: spatial.Geometry(distances=np.triu(np.ones((3, 3)), 1)), ParameterError,
         r"distances is not symmetric"),
        ("a map on regions the geometry lacks", lambda: nulls.naive(pd.Series([1.0, 2.0], index=["a", "z"]),
                                                                    spatial.Geometry(np.eye(3), labels=list("abc"))),
         ParameterError, r"coords has no row for 1 locations of x, e\.g\. \['z'\]"),
        ("surrogates on other regions", lambda: nulls.variogram_fit(
            pd.Series(np.arange(12.0), index=list("abcdefghijkl")), pd.DataFrame(np.ones((2, 11)), columns=list("abcdefghijk")),
            spatial.Geometry(np.random.default_rng(0).random((12, 2)), labels=list("abcdefghijkl"))),
         ParameterError, r"surrogates has no column for 1 locations of coords, e\.g\. \['l'\]"),
        ("a section with fewer locations than neighbours", lambda: weights.knn_weights(
            spatial.Geometry(np.random.default_rng(0).random((12, 2)), sections=["a"] * 9 + ["b"] * 3), 4),
         ParameterError, r"k=4 neighbours needs more locations: a section of coords has 3"),
        ("a Geometry and distances both", lambda: nulls.spatial_lag(np.ones(3), spatial.Geometry(np.eye(3)), distances=np.ones((3, 3))),
         ParameterError, r"coords is a Geometry: leave distances out"),
    ]


def _first_identifier(h5ad):
    from hmba_toolkit.io import read_h5ad_var

    return str(read_h5ad_var(h5ad).index[0])


def _small_stats():
    return mapping.precompute_stats(_pbmc_like(), ["donor_label", "cell_type"])


def _scaled(adata, factor):
    adata.X = adata.X * factor
    return adata


def _manifest_with_size(size):
    from hmba_toolkit.io.manifest import Manifest

    files = {"csv": {"version": "1", "relative_path": "metadata/D/1/a.csv", "url": "", "size": size, "file_hash": "0" * 32}}
    return Manifest({"version": "1", "directory_listing": {"D": {}}, "file_listing": {"D": {"metadata": {"a": {"files": files}}}}},
                    name="m.json")


def _labelled(adata, normalization):
    adata.uns["normalization"] = normalization
    return adata


def _write(path, text):
    path.write_text(text)
    return path


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


def _mapped():
    cells = _pbmc_like()
    X = cells.X.toarray()
    X[:30, 0] += 20  # type a expresses G0, type b G1: markers exist
    X[30:, 1] += 20
    cells.X = sp.csr_matrix(X)
    stats = mapping.precompute_stats(cells, ["donor_label", "cell_type"])
    return mapping.map_cells(cells, stats, mapping.query_markers(mapping.reference_markers(stats), stats.tree),
                             bootstrap_iteration=1, bootstrap_factor=1.0)


def _species_cells():
    a = _pbmc_like(n=40)
    a.obs["Cluster"] = np.repeat(["k1", "k2"], 20)
    a.obs["species_genus"] = np.tile(["Human", "Macaque"], 20)
    return a


def _with_nan():
    a = _pbmc_like()
    X = a.X.toarray()
    X[0, 0] = np.nan
    a.X = sp.csr_matrix(X)
    return a


def test_the_catalogue_is_large(files):
    assert len(_cases(files)) >= 190


@pytest.mark.parametrize("k", range(190))
def test_bad_input(files, k):
    cases = _cases(files)
    if k >= len(cases):
        pytest.fail(f"catalogue has {len(cases)} cases; lower the parametrize range")
    name, call, exc, pattern = cases[k]
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert isinstance(info.value, HmbaToolkitError), f"{name}: {type(info.value).__name__} is not an HmbaToolkitError"


def test_suspicious_inputs_get_a_warning_that_names_them():
    import warnings as _warnings

    counts = _pbmc_like(donors=3)
    counts.X = sp.csr_matrix(counts.X.toarray() + 0.5)  # not counts
    with pytest.warns(UserWarning, match="pseudobulk needs raw counts; X holds non-integer values"):
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", RuntimeWarning)
            de.pseudobulk(counts, "cell_type", min_cells=1, min_total_count=0)
    with pytest.warns(UserWarning, match=r"to_human: none of the 2 labels"):
        assert mouse.to_human(pd.Series([1.0, 2.0], index=["NotAGene", "AlsoNot"])).empty
