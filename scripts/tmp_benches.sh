export PYTHONPATH=. PYTHONUNBUFFERED=1 FP8GEMM_CORE_CACHE_DIR=$PWD/jitcache
touch /tmp/marker
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
timeout 240 python3 bench/bench_gemm.py --reps 15 --clock cupti > $OUT/bench_gemm.log 2>&1; tail -24 $OUT/bench_gemm.log | cut -c1-118
timeout 300 python3 bench/bench_grouped.py --clock cupti > $OUT/bench_grouped.log 2>&1; tail -18 $OUT/bench_grouped.log | cut -c1-118
find bench/results -newer /tmp/marker -name "*.json" -exec cp {} $OUT/ \;
