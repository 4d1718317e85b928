"""Discrete speech units: codebooks (fit with k-means, or fairseq/textlesslib/faiss files) and the stage
that turns one layer's frames into units (`extract --units`), with their writers and `load_units`;
`probe` answers "which layer?" with a cross-validated linear probe per layer.

numpy is all that own KM files and .npy centroids need; faiss, scikit-learn and matplotlib (the 'units'
extra) are imported only by what uses them.
"""

from .codebook import Centroids, Codebook, KMInfo, load_codebook, save_km
from .sinks import load_units
from .stage import Units, prepare, run_lengths

__all__ = ["Centroids", "Codebook", "KMInfo", "Units", "load_codebook", "load_units", "prepare", "run_lengths", "save_km"]
