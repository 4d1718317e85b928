#!/usr/bin/env bash
# Set up, export flax-community/wav2vec2-german (or, offline, a tiny random-weight stand-in),
# and extract features from a small example corpus into example/feats.h5.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
REPO=flax-community/wav2vec2-german
MODEL=models/wav2vec2-german.onnx
LAYERS=6,last
if [ ! -f "$MODEL" ]; then
  if timeout 60 python -c "import sys, huggingface_hub as h; h.model_info(sys.argv[1], timeout=15)" "$REPO" >/dev/null 2>&1; then
    w2v-embed export "$REPO" -o "$MODEL"
  else
    echo "The model hub cannot be reached: running the same pipeline on a TINY RANDOM-WEIGHT checkpoint instead."
    echo "*** PLUMBING ONLY: these features are meaningless. Re-run with hub access for $REPO. ***"
    MODEL=models/tiny-random.onnx
    LAYERS=all
    python scripts/make_tiny_checkpoint.py models/tiny-random-checkpoint >/dev/null
    w2v-embed export models/tiny-random-checkpoint -o "$MODEL" --overwrite
  fi
fi
rm -rf example && python scripts/make_example_audio.py example/corpus >/dev/null
w2v-embed extract example/corpus -o example/feats.h5 -m "$MODEL" --layers "$LAYERS" --pool mean || [ $? -eq 1 ]
w2v-embed info example/feats.h5
python - <<'PY'
import w2v_embed
paths, X = w2v_embed.load("example/feats.h5")
print(f"loaded {X.shape} features for {len(paths)} files, e.g. {paths[0]}")
PY
