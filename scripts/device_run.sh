#!/usr/bin/env bash
# One device call: GPU tests of the dense GEMM, an A/B of a kernel switch, the full bench.
# Usage (device machine): bash scripts/device_run.sh "<nvrtc options of variant B>" "<A/B shapes>" [pytest targets]
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -n "${3:-}" ]; then
  timeout 300 python3 -m pytest -q -x -p no:cacheprovider $3 2>&1 | tee "$OUT/pytest.log" | tail -5
fi
if [ -n "${2:-}" ]; then
  bash scripts/ab.sh "$1" "$2" 2>&1 | tee "$OUT/ab.log"
fi
timeout 240 python3 bench/bench_gemm.py --reps 15 2>&1 | tee "$OUT/bench.log" | tail -24
