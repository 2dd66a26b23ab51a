#!/usr/bin/env bash
# The SASS pass on and off (FP8GEMM_CORE_SASS_PASSES), alternating in two rounds, same machine:
#   bash scripts/ab_sass.sh "M,N,K;..." ["<more bench_gemm flags>"]
shapes=$1; flags=${2:-}
for round in 1 2; do
  for passes in 0 1; do
    echo "== round $round sass passes: $passes ${flags}"
    env -u OUT FP8GEMM_CORE_SASS_PASSES=$passes PYTHONPATH=. timeout 200 python3 bench/bench_gemm.py --reps 12 \
      --shapes "$shapes" $flags 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-60,88-
  done
done
