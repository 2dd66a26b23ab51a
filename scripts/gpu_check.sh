#!/usr/bin/env bash
# One device run: GPU tests, then benches; logs under $OUT, short tables last.
# Usage on the device machine: bash scripts/gpu_check.sh [pytest-args...]
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import cuda.bindings, torch; print('cuda-bindings', cuda.bindings.__version__, 'torch', torch.__version__)"
python3 -m pytest -q -x -p no:cacheprovider "${@:-tests}" 2>&1 | tee "$OUT/pytest.log" | tail -40
