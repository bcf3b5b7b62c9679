#!/usr/bin/env bash
# Set up lsc with its test dependencies, then run the whole test suite; arguments go to pytest
# (`-m "not slow"`: the fast lane, without the end-to-end and shipped-weights tests).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False MPLBACKEND=Agg
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
