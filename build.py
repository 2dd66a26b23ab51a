"""Ahead-of-time compile of FP8 GEMM kernels into the JIT disk cache.

    python build.py --shapes "4096,7168,16384;128,2112,7168" [--num-sms 132]
    python build.py --all          # every configuration the heuristics can choose
    python build.py --all --jobs 8 # the same, eight compiles at a time

Needs NVRTC only (no GPU): warm the cache on a build machine, then copy the cache
directory (see fp8gemm_core.jit.cache_dir(); keys depend on content only) to the
machines that run the model. Prints each kernel's registers and spills.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from fp8gemm_core import driver, gemm, heuristics, jit, quant
from fp8gemm_core.heuristics import effective_num_sms


def _num_sms(arg: int | None) -> int:
    if arg:
        return arg
    try:
        return effective_num_sms(driver.get_device(0).num_sms)
    except Exception:
        return 132  # H100 SXM / H200


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="", help="M,N,K triples separated by ';'")
    ap.add_argument("--all", action="store_true", help="every kernel configuration")
    ap.add_argument("--num-sms", type=int, default=None, help="SM count to plan for (default: GPU 0's, else 132)")
    ap.add_argument("--out-dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--jobs", type=int, default=1, help="compiles at a time (processes)")
    args = ap.parse_args(argv)

    specs = []
    if args.all:
        specs = (gemm.gemm_kernel_configs() + quant.quant_kernel_configs()
                 + [("group_rows.cu", "group_rows_from_indices", ""),
                    ("scales_layout.cu", "scales_to_m_major", "")])  # the helpers launched beside them
    for triple in filter(None, args.shapes.split(";")):
        m, n, k = (int(v) for v in triple.split(","))
        for profile in heuristics.PROFILES:  # the cache may serve either kind of GPU
            specs.append(gemm.default_kernel_spec(m, n, k, _num_sms(args.num_sms), args.out_dtype == "fp32",
                                                  profile))
    if not specs:
        ap.error("nothing to build: give --shapes or --all")

    print(f"cache: {jit.cache_dir()}")
    t0 = time.perf_counter()
    unique = list(dict.fromkeys(specs))
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            compiled = pool.imap(_compile, unique)
            bad = _report(compiled)
    else:
        bad = _report(map(_compile, unique))
    print(f"{len(unique)} kernels in {time.perf_counter() - t0:.1f}s, {bad} with spills")
    return 1 if bad else 0


def _compile(spec: tuple[str, str, str]) -> jit.CompiledKernel:
    source, name, prelude = spec
    # FP8GEMM_CORE_NVRTC_OPTIONS (kernel experiments) is part of the key, as at run time.
    return jit.compile_kernel(source, name, prelude=prelude, options=gemm._extra_nvrtc_options())


def _report(compiled) -> int:
    bad = 0
    for ck in compiled:
        name = ck.name_expr
        spill = ck.spill_stores or ck.spill_loads or ck.stack_frame
        bad += bool(spill)
        print(f"  {name:<40} {ck.origin:<8} regs {ck.registers:3d}  spills {ck.spill_stores}/{ck.spill_loads}"
              f"  stack {ck.stack_frame}  {ck.compile_seconds:5.2f}s{'  <-- SPILLS' if spill else ''}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
