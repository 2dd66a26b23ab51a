#!/usr/bin/env bash
# Nsight Compute summary of the 3rd launch of one GEMM shape: bash scripts/profile.sh M N K
export PYTHONPATH=.
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
$NCU --clock-control none --kernel-name regex:fp8_gemm --launch-skip 2 --launch-count 1 \
  --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section Occupancy --section LaunchStats \
  python3 bench/profile_one.py "$@" 2>&1 | grep -v "^==PROF==" | grep -E "^\s+[A-Z].*[0-9]|^  [A-Za-z]" | head -90
