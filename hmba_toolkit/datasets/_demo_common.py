"""Helpers shared by the demo release generators: shipped tables, counts, writers in Allen's formats."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._log2cpm import log2_per_total
from ..normalize import log2_normalize

LEVELS = ("Neighborhood", "Class", "Subclass", "Group", "Cluster")
#: columns of the release's donor tables
DONOR_COLUMNS = ["donor_label", "donor_species", "species_scientific_name", "species_genus", "donor_sex", "donor_age",
                 "donor_age_value", "donor_age_unit", "donor_nhash_id"]


def data_table(name: str) -> pd.DataFrame:
    with resources.files("hmba_toolkit.datasets").joinpath("data", name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False, na_values=[""])


def counts(rng, logits: np.ndarray, libsize: np.ndarray, dispersion: float = 0.3, normalize: bool = False) -> np.ndarray:
    """Negative-binomial counts with mean ``libsize * exp(logits) / 1e4`` (levels in CP10k).

    ``normalize=True`` rescales each row's levels to sum to 1e4 first (targeted panels, where the panel's genes are
    all that is counted).
    """
    level = np.exp(logits)
    if normalize:
        level *= 1e4 / level.sum(axis=1, keepdims=True)
    mu = level * (libsize[:, None] / 1e4)
    lam = rng.gamma(shape=1.0 / dispersion, scale=mu * dispersion)
    out = rng.poisson(lam)
    empty = out.sum(axis=1) == 0
    out[empty, np.argmax(logits[empty], axis=1)] = 1
    return out.astype(np.int32)


def on_genes(counts_: np.ndarray, model_genes: list[str], symbols: pd.Series) -> sp.csr_matrix:
    """Counts of the model's genes placed on a gene table's columns (by symbol; other columns are zero)."""
    position = {g: i for i, g in enumerate(model_genes)}
    cols = np.array([position.get(g, -1) for g in symbols.fillna("")])
    dense = np.zeros((counts_.shape[0], len(cols)), dtype=np.int32)
    present = cols >= 0
    dense[:, present] = counts_[:, cols[present]]
    out = sp.csr_matrix(dense)
    out.sort_indices()
    return out


def write_h5ad(path: Path, counts: sp.csr_matrix, obs: pd.DataFrame, var: pd.DataFrame, scale: float,
               kinds: tuple[str, ...] = ("raw", "log2")) -> None:
    """Write the raw and/or log2 files of one matrix (Allen writer: CSR, gzip level 4)."""
    obs = obs.copy()
    obs.index.name = "cell_label"
    var = var.copy()
    var.index.name = "gene_identifier"
    raw = ad.AnnData(X=counts.astype(np.int32), obs=obs, var=var)
    log2 = ad.AnnData(X=log2_normalize(counts, scale), obs=obs, var=var)
    path.parent.mkdir(parents=True, exist_ok=True)
    for adata, kind in ((raw, "raw"), (log2, "log2")):
        if kind not in kinds:
            continue
        adata.uns["normalization"] = kind
        adata.write_h5ad(path.with_name(f"{path.name}-{kind}.h5ad"), compression="gzip", compression_opts=4)


def uuid4(rng) -> str:
    h = "".join(f"{x:02x}" for x in rng.integers(0, 256, 16))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def write_csv(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=index, lineterminator="\n")


def write_view(mat: sp.csr_matrix, var: pd.DataFrame, labels, path: Path, symbols, scale: float, raw: bool = False) -> None:
    """``views/example_gene_expression.csv``: log2-normalised values (or ``raw`` counts) of a few genes (index ``cell_label``)."""
    syms = var["gene_symbol"].to_numpy()
    present = [s for s in symbols if (syms == s).any()]
    cols = [int(np.flatnonzero(syms == s)[0]) for s in present]
    totals = np.maximum(np.asarray(mat.sum(axis=1)).ravel(), 1)
    vals = mat[:, cols].toarray() if raw else log2_per_total(mat[:, cols].toarray(), totals[:, None], scale)
    df = pd.DataFrame(vals if raw else np.round(vals, 6), columns=present, index=pd.Index(labels, name="cell_label"))
    write_csv(df, path, index=True)
