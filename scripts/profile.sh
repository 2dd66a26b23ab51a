#!/usr/bin/env bash
# Nsight Compute summary of the 3rd launch of one GEMM shape: bash scripts/profile.sh M N K [bench flags]
export PYTHONPATH=.
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
$NCU --clock-control none --kernel-name regex:fp8_gemm --launch-skip 2 --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats \
  --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,lts__t_bytes.sum.per_second \
  python3 bench/profile_one.py "$@" 2>&1 | grep -v "^==PROF==" | grep -E "Duration|Tensor|Throughput|stalled|gmma|lts__|Error|error" | grep -v " 0$\| 0\.0[0-9]$" | head -60
