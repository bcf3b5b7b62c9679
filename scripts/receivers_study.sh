#!/usr/bin/env bash
# The scheme x receiver study of issue 13 on the world: configs/examples/receivers.yaml once per receiver
# (one after another, one torch thread: the wall times stay comparable), then one scheme x receiver table
# and figure. Resumable: run it again.
# Usage: bash scripts/receivers_study.sh [OUT_DIR] [extra --set overrides...]
# RECEIVERS="flow flow_fast" limits the receivers.
set -euo pipefail
out="${1:-runs/receivers}"
shift || true
lsc="${LSC:-.venv/bin/lsc}"
receivers="${RECEIVERS:-flow flow_fast vqvae_ar}"
mkdir -p "$out"
runs=()
for r in $receivers; do
  OMP_NUM_THREADS=1 "$lsc" run configs/examples/receivers.yaml --out "$out/$r" --no-progress \
    --set "backend_options.receiver=$r" "$@" > "$out/$r.log" 2>&1 || { echo "receiver $r failed: see $out/$r.log" >&2; exit 1; }
  runs+=("$out/$r")
done
"$lsc" compare "${runs[@]}" --scheme lowest_lpips --scheme learned --scheme heads --scheme nouns --scheme random \
  --plot "$out/schemes_by_receiver.png" | tee "$out/comparison.md"
