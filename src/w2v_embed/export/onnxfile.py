"""Writing an exported model: one NAME.onnx, or NAME.onnx + NAME.onnx.data past protobuf's 2 GB.

XLS-R 1B/2B and MMS-1B do not fit in one protobuf message, so their tensors go to one external data
file. A pair must never be half-installed or mismatched: it is written in a work folder beside the
target and moved into place at the end, and the data file ends with a random tag that the model's
metadata names (ONNX Runtime reads tensors by offset, so trailing bytes are harmless). `runtime`
checks the tag when it loads a model, so a truncated data file, or the data of another export
beside this .onnx, is one clear error instead of wrong features or a crash.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..runtime import ModelInfo
from .checkpoint import require_export_extra

# Above this many bytes of weights, tensors go to NAME.onnx.data (protobuf refuses messages over 2 GiB).
EXTERNAL_DATA_BYTES = 1_800_000_000
TAG_BYTES = 16


def data_path(model: Path) -> Path:
    return model.with_name(model.name + ".data")


def initializer_bytes(proto: Any) -> int:
    """Bytes of the graph's weights, from their shapes (external entries need not state a length)."""
    import numpy as np
    from onnx import helper

    return sum(
        int(np.prod(t.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        for t in proto.graph.initializer
    )


def finalize(produced: Path, model: Path, info: ModelInfo, threshold: int = EXTERNAL_DATA_BYTES) -> ModelInfo:
    """Read what torch or the quantizer wrote at `produced` (in any layout) and write it as `model`
    (+ `model`.data when its weights exceed `threshold` bytes) with `info` as metadata; returns the
    info that was written (it names the data file and its tag)."""
    onnx = require_export_extra("onnx")
    from onnx import external_data_helper

    proto = onnx.load(str(produced), load_external_data=False)
    data = data_path(model)
    if initializer_bytes(proto) > threshold:
        tag = secrets.token_hex(TAG_BYTES)
        _write_external(proto, produced.parent, data, tag)
        info = replace(info, external_data=data.name, external_data_tag=tag)
    else:
        external_data_helper.load_external_data_for_model(proto, str(produced.parent))
        info = replace(info, external_data="", external_data_tag="")
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "w2v-embed"
    proto.producer_version = __version__
    onnx.save_model(proto, str(model))
    return info


def _write_external(proto: Any, base: Path, data: Path, tag: str) -> None:
    """Move every sizeable tensor into one data file, one tensor in memory at a time (a 2B model's
    weights are 8.6 GB: holding them all again beside the reference model would not fit)."""
    from onnx import TensorProto, external_data_helper

    with open(data, "wb") as out:
        for tensor in proto.graph.initializer:
            if external_data_helper.uses_external_data(tensor):
                where = {e.key: e.value for e in tensor.external_data}
                with open(base / where["location"], "rb") as src:
                    src.seek(int(where.get("offset", 0)))
                    blob = src.read(int(where["length"])) if "length" in where else src.read()
            elif len(tensor.raw_data) >= 1024:
                blob = tensor.raw_data
            else:
                continue  # small or typed tensors stay inline
            offset = out.tell()
            out.write(blob)
            del tensor.external_data[:]
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(len(blob)))):
                tensor.external_data.add(key=key, value=value)
        out.write(tag.encode())


def install(model: Path, target: Path) -> None:
    """Move a finished model (and its data file) over `target`, data first: a kill in between leaves an
    .onnx whose tag does not match, which loading reports, never a silently mixed pair."""
    source_data, target_data = data_path(model), data_path(target)
    external = source_data.exists()
    if external:
        os.replace(source_data, target_data)
    os.replace(model, target)
    if not external:
        target_data.unlink(missing_ok=True)  # an older export's data, now stale


def model_bytes(model: Path) -> int:
    data = data_path(model)
    return model.stat().st_size + (data.stat().st_size if data.exists() else 0)
