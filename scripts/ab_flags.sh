#!/usr/bin/env bash
# Variants by bench_gemm.py flags (heuristics experiments), alternating in two rounds:
#   bash scripts/ab_flags.sh "M,N,K;..." "" "--block-n 128" "--overlap 1" ...   ("" = as shipped)
shapes=$1; shift
for round in 1 2; do
  for flags in "$@"; do
    echo "== round $round flags: ${flags:-none}"
    env -u OUT PYTHONPATH=. timeout 150 python3 bench/bench_gemm.py --reps 15 --shapes "$shapes" $flags 2>&1 \
      | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-60,88-
  done
done
