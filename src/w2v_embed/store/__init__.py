"""The output file (format "w2v-embed/2"), as a package of its parts:

- `layout`: what a run records (RunInfo), the HDF5 layout, opening and creating files safely;
- `writer`: FeatureWriter, results into OUT.h5 crash-safely and resumably (segments, then one merge);
- `lock`: one writer per output;
- `merge`: streaming merges of segments, and of shard outputs (`w2v-embed merge`);
- `reader`: load() and read_summary(), what downstream code calls.
"""

from .layout import FORMAT, RunInfo
from .merge import MergeSummary, merge
from .reader import Output, load, open, read_summary
from .writer import FeatureWriter

__all__ = ["FORMAT", "FeatureWriter", "MergeSummary", "Output", "RunInfo", "load", "merge", "open", "read_summary"]
