#!/usr/bin/env bash
# One device call: GPU tests, an A/B of the previous tree (ab_prev/) against this one, the full bench.
# Usage (device machine): bash scripts/device_run.sh "<A/B shapes>" [pytest targets]
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
if [ -n "${2:-}" ]; then
  timeout 300 python3 -m pytest -q -x -p no:cacheprovider $2 2>&1 | tee "$OUT/pytest.log" | tail -5
fi
if [ -n "${1:-}" ] && [ -d ab_prev ]; then
  bash scripts/ab_versions.sh ab_prev . "$1" 2>&1 | tee "$OUT/ab.log"
fi
timeout 240 python3 bench/bench_gemm.py --reps 15 2>&1 | tee "$OUT/bench.log" | tail -24
cp bench/results/*.json "$OUT/" 2>/dev/null
