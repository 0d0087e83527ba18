"""Out-of-core kernels for the multi-GB Allen h5ad matrices.

- :func:`describe`: size, layout and compression of a file, from its headers.
- :func:`aggregate`: per-group sums, sums of squares and expressing cells (pseudobulk counts,
  means, variances, fractions) in one streaming pass, memory bounded by ``chunk_nnz``; on a Dask
  cluster with ``client=``.
- :func:`build_gene_index` / :func:`read_genes`: a one-time gene-major copy, after which a few
  genes across all cells take milliseconds instead of a full inflate of the file.
"""

from ..io._csr_blocks import describe
from ..io.gene_index import GeneIndex, build_gene_index, default_index_path, has_gene_index, read_genes
from ._aggregate import NORMALIZATIONS, aggregate

__all__ = ["NORMALIZATIONS", "GeneIndex", "aggregate", "describe", "build_gene_index", "default_index_path", "has_gene_index", "read_genes"]
