#!/usr/bin/env bash
# Nsight Compute with per-SASS-instruction stall samples for one GEMM shape and kernel variant:
#   bash scripts/ncu_source.sh TAG M N K ["nvrtc options"]
# Writes $OUT/ncu-TAG.txt (details page) and $OUT/src-TAG.csv (source page, SASS), prints a summary.
export PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
tag=$1; shift 1
opts=${4:-}
rep=/tmp/rep-$tag
FP8GEMM_CORE_NVRTC_OPTIONS="$opts" $NCU --clock-control none --kernel-name regex:fp8_gemm --launch-skip 2 \
  --launch-count 1 --set full --import-source no -f -o "$rep" python3 bench/profile_one.py "$1" "$2" "$3" \
  > "$OUT/ncu-run-$tag.log" 2>&1
$NCU -i "$rep.ncu-rep" --page details > "$OUT/ncu-$tag.txt" 2>&1
$NCU -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUT/src-$tag.csv" 2>&1
echo "== $tag ($opts): $(wc -l < "$OUT/src-$tag.csv") source lines"
grep -E "^ +(Duration|SM Frequency|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Issue Slots Busy|Issued Ipc Active|No Eligible|Warp Cycles Per Issued)" \
  "$OUT/ncu-$tag.txt" | head -12
grep -iE "tensor|gmma" "$OUT/ncu-$tag.txt" | head -6
