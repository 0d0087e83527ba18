"""Gene-set enrichment: ORA and preranked GSEA with add-one p-values, gene-category enrichment of brain maps
with spatial (ensemble) nulls, gene-set libraries, per-sample scores."""

from .enrichment import ENRICHMENT_COLUMNS, enrichment_score, ora, prerank
from .maps import MapCorrelations, MatchedSets, coexpression_matched_sets, gene_map_correlations, map_enrichment, map_enrichment_error_rates
from .genesets import go_biological_process, hmba_marker_sets, read_gmt, write_gmt
from .scores import sample_scores

__all__ = ["ENRICHMENT_COLUMNS", "MapCorrelations", "MatchedSets", "map_enrichment_error_rates", "coexpression_matched_sets", "enrichment_score", "gene_map_correlations", "go_biological_process", "map_enrichment", "hmba_marker_sets", "ora", "prerank", "read_gmt", "sample_scores", "write_gmt"]
