#!/usr/bin/env bash
# Nsight Compute (full set) of the 3rd launch of one GEMM shape: bash scripts/profile.sh M N K [bench flags]
# Full report text under $OUT/ncu-M-N-K.txt; a summary of the key lines on stdout.
export PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
log="$OUT/ncu-$1-$2-$3.txt"
$NCU --clock-control none --kernel-name regex:fp8_gemm --launch-skip 2 --launch-count 1 --set full \
  python3 bench/profile_one.py "$@" > "$log" 2>&1
grep -E "Duration|SM Frequency|Throughput|Tensor|gmma|Pipe|L2 Hit|Bank|Stall|stall|Issue Slot|Eligible|Active Warps|Registers|Shared Memory Configuration|Warning|WRN" "$log" | grep -v "^==PROF==" | head -80
