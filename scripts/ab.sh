#!/usr/bin/env bash
# A/B in one process lifetime each, alternating: bash scripts/ab.sh "<nvrtc options for B>" "M,N,K;..."
export PYTHONPATH=.
for round in 1 2; do
  for opt in "" "$1"; do
    echo "== round $round options: ${opt:-none}"
    FP8GEMM_CORE_NVRTC_OPTIONS="$opt" timeout 150 python3 bench/bench_gemm.py --reps 15 --shapes "$2" 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-60,88-
  done
done
