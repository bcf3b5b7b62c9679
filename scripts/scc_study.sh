#!/usr/bin/env bash
# The SCC x word-correction study of issue 6 on the world: four runs of configs/examples/snr_sweep.yaml
# (two at a time, one torch thread each), then one comparison table and figure. Resumable: run it again.
# Usage: bash scripts/scc_study.sh [OUT_DIR] [extra --set overrides...]
set -euo pipefail
out="${1:-runs/scc_study}"
shift || true
lsc="${LSC:-.venv/bin/lsc}"
scheme="${SCHEME:-heads}"  # the scheme of configs/examples/snr_sweep.yaml
mkdir -p "$out"
run() {  # name scc correction
  OMP_NUM_THREADS=1 "$lsc" run configs/examples/snr_sweep.yaml --out "$out/$1" --no-progress \
    --set backend_options.threads=1 --set "channel.scc.enabled=$2" --set "channel.word_correction=$3" "${@:4}" \
    > "$out/$1.log" 2>&1
}
pair() {  # two variants side by side; fail if either fails (its log says why)
  run "$1" "$2" "$3" "${@:7}" & local a=$!
  run "$4" "$5" "$6" "${@:7}" & local b=$!
  wait "$a"; wait "$b"
}
pair plain false false scc true false "$@"
pair correction false true scc_correction true true "$@"
"$lsc" compare "$out/plain" "$out/scc" "$out/correction" "$out/scc_correction" --scheme "$scheme" \
  --label "$scheme" --label "$scheme + SCC" --label "$scheme + correction" --label "$scheme + SCC + correction" \
  --plot "$out/scc_vs_snr.png" | tee "$out/comparison.md"
