#!/usr/bin/env bash
# Create .venv with the CPU torch wheel first (any other pin downloads a multi-GB CUDA build),
# then the project with its export and test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[export,test,ray,interop,units,openvino]'
# hear-validator (HEAR 2021's checker, run by the tests) without its tensorflow: the tests stub it
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'hearvalidator==2021.0.2'
# ffmpeg decodes m4a/aac/webm (libsndfile cannot); optional, installed when we may.
if ! command -v ffmpeg >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
    || echo "note: could not install ffmpeg; m4a tests will be skipped" >&2
fi
