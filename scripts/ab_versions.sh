#!/usr/bin/env bash
# A/B of two source trees in one run, alternating: bash scripts/ab_versions.sh <tree A> <tree B> "M,N,K;..."
# (e.g. A = a `git archive` of the previous commit in ab_prev/, B = .)
for round in 1 2; do
  for tree in "$1" "$2"; do
    echo "== round $round tree: $tree"
    (cd "$tree" && env -u OUT PYTHONPATH=. timeout ${AB_TIMEOUT:-200} python3 bench/bench_gemm.py --reps 15 --clock cupti --shapes "$3" 2>&1 \
       | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-60,88-)
  done
done
