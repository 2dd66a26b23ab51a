#!/usr/bin/env bash
# Kernel variants by NVRTC options, alternating in two rounds:
#   bash scripts/ab_options.sh "M,N,K;..." "" "-DFOO" "-DBAR -DBAZ" ...   ("" = the kernel as shipped)
# AB_GROUPED=1 also runs the grouped bench (one round of its contiguous calls) per variant.
shapes=$1; shift
for round in 1 2; do
  for opt in "$@"; do
    echo "== round $round options: ${opt:-none}"
    env -u OUT FP8GEMM_CORE_NVRTC_OPTIONS="$opt" PYTHONPATH=. timeout 150 python3 bench/bench_gemm.py --reps 15 \
      --clock cupti --shapes "$shapes" 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-60,88-
    if [[ -n $AB_GROUPED ]]; then
      env -u OUT FP8GEMM_CORE_NVRTC_OPTIONS="$opt" PYTHONPATH=. timeout 200 python3 bench/bench_grouped.py \
        --clock cupti --rounds 1 2>&1 | grep -E "^ *(contiguous|masked) " | cut -c1-75
    fi
  done
done
