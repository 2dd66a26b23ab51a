#!/usr/bin/env bash
# Kernel timing experiments (not correctness!): mainloop without MMA / without promotion.
export PYTHONPATH=.
S="4096,7168,16384;8192,8192,8192"
for opt in "" "-DFP8GEMM_EXPERIMENT_SKIP_MMA" "-DFP8GEMM_EXPERIMENT_SKIP_PROMOTE" "-DFP8GEMM_EXPERIMENT_SKIP_MMA -DFP8GEMM_EXPERIMENT_SKIP_PROMOTE"; do
  echo "== options: ${opt:-none}"
  FP8GEMM_CORE_NVRTC_OPTIONS="$opt" timeout 120 python3 bench/bench_gemm.py --reps 10 --shapes "$S" 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|"
done
