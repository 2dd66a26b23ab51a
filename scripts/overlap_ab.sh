#!/usr/bin/env bash
# A/B of promotion/MMA overlap on the big shapes, one process per variant, two rounds.
export PYTHONPATH=.
S="4096,7168,16384;8192,8192,8192;4096,4096,7168;4096,32768,512;4096,24576,1536"
for round in 1 2; do
  for v in "" "--block-n 128 --overlap 0" "--block-n 128 --overlap 1" "--block-n 144 --overlap 1"; do
    echo "== round $round: ${v:-default}"
    timeout 150 python3 bench/bench_gemm.py --reps 10 --shapes "$S" $v 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | cut -c1-48,100-
  done
done
