#!/usr/bin/env bash
# The test command: the package's tests, the live `ci` profiles, the llama.cpp server tests and the
# book build (-W -n --keep-going, as a test in tests/test_book.py). Slow tests: add --runslow.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
