"""The output file (format "w2v-embed/2"), as a package of its parts:

- `runinfo`: what a run records (RunInfo) and which datasets hold its rows (features or units);
- `layout`: the HDF5 layout, opening and checking outputs;
- `files`: files that are whole or absent (parts folders, fsync, renames, HDF5 write errors);
- `writer`: FeatureWriter, results into OUT.h5 crash-safely and resumably (segments, then one merge),
  with `stream` for frame-level files written chunk by chunk;
- `lock`: one writer per output;
- `merge`: streaming merges of segments into one output; `join`: of shard outputs (`w2v-embed merge`);
- `reader`: load(), open() and read_summary(), what downstream code calls;
- `jsonl`: the writer interface over a text stream (`-o -`);
- `sink`: the interface every writer implements, and rows in input order.
"""

from .join import MergeSummary, merge
from .layout import FORMAT, RunInfo
from .reader import Output, load, open, read_summary
from .writer import FeatureWriter

__all__ = ["FORMAT", "FeatureWriter", "MergeSummary", "Output", "RunInfo", "load", "merge", "open", "read_summary"]
