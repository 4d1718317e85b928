"""Writers for other toolkits' formats, each behind the Sink seam (store/sink.py): Kaldi ark/scp
(`kaldi`), fairseq's HuBERT k-means feature layout (`fairseq`), Parquet (`parquet`). `convert` feeds
them from a finished HDF5 output; an engine could feed them directly, as it feeds the HDF5 writer.

Their third-party libraries (kaldiio, pyarrow) are the `interop` extra, imported when a writer is made.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import W2VEmbedError

FORMATS = ("kaldi", "fairseq", "parquet")


def optional(module: str, extra: str = "interop") -> ModuleType:
    """Import an optional dependency, or say in one line which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise W2VEmbedError(f"{module} is missing: needs the '{extra}' extra: pip install 'w2v-embed[{extra}]'") from None
