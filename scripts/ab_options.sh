#!/usr/bin/env bash
# Kernel variants by NVRTC options, alternating in two rounds:
#   bash scripts/ab_options.sh "M,N,K;..." "" "-DFOO" "-DBAR -DBAZ" ...   ("" = the kernel as shipped)
shapes=$1; shift
for round in 1 2; do
  for opt in "$@"; do
    echo "== round $round options: ${opt:-none}"
    env -u OUT FP8GEMM_CORE_NVRTC_OPTIONS="$opt" PYTHONPATH=. timeout 150 python3 bench/bench_gemm.py --reps 15 \
      --shapes "$shapes" 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-60,88-
  done
done
