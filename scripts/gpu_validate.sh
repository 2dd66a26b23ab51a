#!/usr/bin/env bash
# GPU checks and benches in one device call, each step time-limited so a hang costs minutes,
# not the whole call. Logs under $OUT/<step>.log, a short tail of each on stdout.
#   bash scripts/gpu_validate.sh tests       # every GPU test (~5 min on a cold cache)
#   bash scripts/gpu_validate.sh benches     # dense, grouped and quantization benches (~5 min)
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"

step() {  # step <name> <seconds> <command...>
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc=$? in $((SECONDS - t0)) s"
  tail -n "${TAIL:-6}" "$OUT/$name.log"
}

for what in "$@"; do
  case $what in
    tests)
      # Every test file with GPU tests; not test_shipped_kernels.py (a CPU test that compiles
      # every configuration: minutes of NVRTC on a cold cache, no GPU needed).
      step test_gemm 240 python3 -m pytest -q --maxfail=3 -p no:cacheprovider tests/test_gemm.py
      step test_grouped 150 python3 -m pytest -q --maxfail=3 -p no:cacheprovider tests/test_grouped.py
      step test_quant 150 python3 -m pytest -q --maxfail=3 -p no:cacheprovider -s tests/test_quant.py
      step test_other 150 python3 -m pytest -q --maxfail=3 -p no:cacheprovider tests/test_arrays.py \
        tests/test_jit.py tests/test_tma.py ;;
    benches)
      TAIL=24 step bench_gemm 200 python3 bench/bench_gemm.py --reps 15
      TAIL=14 step bench_grouped 150 python3 bench/bench_grouped.py
      TAIL=6 step bench_quant 90 python3 bench/bench_quant.py ;;
    *) echo "unknown step group: $what (tests, benches)"; exit 2 ;;
  esac
done
