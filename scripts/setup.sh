#!/usr/bin/env bash
# Set up lsc in ./.venv from scratch (idempotent). `--test` adds what the test suite needs
# (hf, phy, parquet and ray extras, pytest) and WordNet for NLTK.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a loose requirement pulls a CUDA build of several GB on CPU machines. The
# package itself only asks for torch>=2.4 (a GPU machine keeps its CUDA torch); the constraints file holds
# the CPU pin through every later install here.
CONSTRAINTS=scripts/constraints-cpu.txt
.venv/bin/python -m pip install -q -c "$CONSTRAINTS" torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install -q -c "$CONSTRAINTS" -e ".[test]"
  bash scripts/install_wordnet.sh || echo "warning: WordNet not installed; lsc falls back to its built-in synonym table" >&2
else
  .venv/bin/python -m pip install -q -c "$CONSTRAINTS" -e .
fi
