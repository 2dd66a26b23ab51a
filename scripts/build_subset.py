"""Compile the GEMM kernels a bench subset needs into the JIT disk cache (for A/B runs on the
device: a pruned cache per tree stays far below the 64 MiB a device call can carry).

    cd <tree> && FP8GEMM_CORE_CACHE_DIR=/path/cache python /path/scripts/build_subset.py \\
        "M,N,K;..." ["G,m,N,K;..."]

Dense shapes as `bench_gemm.py` runs them (bf16 out, staged); grouped ones as `bench_grouped.py`
(G groups of about m rows). Uses the fp8gemm_core of the current directory, and the extra
NVRTC options of FP8GEMM_CORE_NVRTC_OPTIONS, like a launch would.
"""
import os
import sys

sys.path.insert(0, os.getcwd())
from fp8gemm_core import gemm, heuristics, jit  # noqa: E402


def main() -> None:
    dense = [tuple(int(v) for v in s.split(",")) for s in sys.argv[1].split(";") if s]
    grouped = [tuple(int(v) for v in s.split(",")) for s in sys.argv[2].split(";") if s] if len(sys.argv) > 2 else []
    specs = [gemm.default_kernel_spec(m, n, k, 132, profile=profile)
             for m, n, k in dense for profile in heuristics.PROFILES]
    for g, m, n, k in grouped:
        for profile in heuristics.PROFILES:  # what either kind of GPU would run
            cfg = heuristics.choose_grouped_config(m, g, n, k, 132, 2, profile=profile)
            specs.append(gemm._kernel_spec(cfg, False, 0, grouped=True))
    for source, name, prelude in dict.fromkeys(specs):
        k = jit.compile_kernel(source, name, prelude=prelude, options=gemm._extra_nvrtc_options())
        print(f"{name:50s} regs {k.registers:3d} spills {k.spill_stores}/{k.spill_loads} ({k.origin})", flush=True)


if __name__ == "__main__":
    main()
