#!/usr/bin/env bash
# The GPU checks in one run (≤ ~8 minutes on an H100), for a session that is lent a CUDA machine:
#   bash ../shared/tools/gpu-carry.sh          # here: onnxruntime-gpu + audio wheels as .gpu/a, .gpu/b
#   device run, carry [".gpu/a"], command: true
#   device run, carry [".gpu/b"], command: source .gpu/b/install.sh && bash scripts/gpu_check.sh
# It runs the CUDA tests (CUDA vs CPU parity, float16), then scripts/bench.py on CUDA for base and
# large (PyTorch eager on CUDA vs ONNX Runtime's CUDA provider, model-only and extract on a generated
# corpus), and writes everything to $OUT (or ./gpu-out). Exporting needs transformers, safetensors and
# onnx, which the lent machine's image lacks: carry their wheels too (pip download them here), or the
# script stops at that check with one line.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import transformers, safetensors, onnx" 2>/dev/null \
    || { echo "needs transformers, safetensors and onnx for export: carry their wheels" | tee "$OUT/missing.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" | tee -a "$OUT/gpu.txt"
timeout 180 "$PY" -m pytest -q tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/test_gpu.txt"
timeout 300 "$PY" scripts/bench.py --device cuda --sizes base large --files 100 --repeats 5 --workdir "$OUT/bench" \
    2>&1 | tail -30 | tee "$OUT/bench.txt"
