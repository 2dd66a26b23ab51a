"""Compile the GEMM kernels `bench/bench_grouped.py` launches into the JIT disk cache, for A/B
runs on the device (run in each tree with the same FP8GEMM_CORE_CACHE_DIR, and the variant's
FP8GEMM_CORE_NVRTC_OPTIONS, like a launch would):

    cd <tree> && FP8GEMM_CORE_CACHE_DIR=/path/cache python /path/scripts/build_bench_grouped.py
"""
import os
import sys

sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
from bench_grouped import CONTIGUOUS, MASKED, group_sizes  # noqa: E402
from fp8gemm_core import gemm, heuristics, jit  # noqa: E402

SMS, STAGED = 132, 2  # bf16 output, 16-byte aligned rows


def main() -> None:
    specs = []
    for profile in heuristics.PROFILES:  # what either kind of GPU would run
        def grouped(m, G, N, K, uneven):
            cfg = heuristics.choose_grouped_config(m, G, N, K, SMS, STAGED, uneven, profile)
            specs.append(gemm._kernel_spec(cfg, False, 0, grouped=True))
        for (G, mean, N, K), _ in CONTIGUOUS:
            for spread in (0.0, 0.3):
                sizes = group_sizes(G, mean, spread)
                M = int(sizes.sum())
                grouped(-(-M // G), G, N, K, True)
                grouped(int(sizes.max()), G, N, K, False)  # padded
                specs.append(gemm.default_kernel_spec(M, N, K, SMS, profile=profile))
        for (G, m, N, K), _ in MASKED:
            grouped(m, G, N, K, False)
    for source, name, prelude in dict.fromkeys(specs):
        k = jit.compile_kernel(source, name, prelude=prelude, options=gemm._extra_nvrtc_options())
        print(f"{name:50s} regs {k.registers:3d} spills {k.spill_stores}/{k.spill_loads} ({k.origin})", flush=True)


if __name__ == "__main__":
    main()
