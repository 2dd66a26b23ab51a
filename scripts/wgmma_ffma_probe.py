"""Do FFMAs on some warps slow the wgmma of others? (scripts/wgmma_ffma_probe.cu)

    PYTHONPATH=. python scripts/wgmma_ffma_probe.py [--iters 4000] [--reps 3]

The GEMM kernel's promotion costs ~1.1 tensor-pipe cycles per FFMA (perf log, session 11), as
if the FFMAs of one consumer warpgroup did not overlap the wgmma of the others. This probe runs
the consumer step without loads on every SM: m64n128k32 x 4 per round on 1-3 warpgroups, with
0-64 promotion FFMAs per thread, and with warpgroups that only run FFMAs beside them. It
prints cycles per round (the tensor pipe alone needs 256 per warpgroup-round at 4096 FP8
MAC/clk/SM) and the SM clock the run held. Compiling needs NVRTC only (--compile-only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fp8gemm_core import codegen, driver, jit  # noqa: E402
from fp8gemm_core.arrays import DeviceArray  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# (MMA warpgroups, FFMA-only warpgroups, promotion FFMAs per thread and round, ping-pong)
VARIANTS = [(1, 0, 0, 0), (1, 0, 64, 0), (2, 0, 0, 0), (2, 0, 64, 0), (2, 0, 0, 1), (2, 0, 64, 1),
            (3, 0, 0, 0), (3, 0, 32, 0), (3, 0, 64, 0), (3, 0, 64, 1),
            (1, 1, 0, 0), (1, 2, 0, 0), (2, 1, 0, 0), (2, 1, 64, 0)]


def compile_all():
    kdir = tempfile.mkdtemp(prefix="wgmma_ffma_probe_")
    shutil.copy(os.path.join(jit.KERNEL_DIR, "ptx.cuh"), kdir)
    shutil.copy(os.path.join(HERE, "wgmma_ffma_probe.cu"), kdir)
    out = {}
    for v in VARIANTS:
        name = f"wgmma_ffma_probe<{v[0]}, {v[1]}, {v[2]}, {v[3]}>"
        k = jit.compile_kernel("wgmma_ffma_probe.cu", name, prelude=codegen.wgmma_fp8_source(128),
                               kernel_dir=kdir)
        print(f"{name:36s} regs {k.registers:3d} spills {k.spill_stores}/{k.spill_loads}", flush=True)
        out[v] = k
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compile-only", action="store_true")
    args = ap.parse_args()
    compiled = compile_all()
    if args.compile_only or not driver.is_available():
        return
    dev = driver.get_device(0)
    sms = dev.num_sms
    out = DeviceArray.empty((sms * 4 * 3,), np.uint64, 0, 0)
    sink = DeviceArray.empty((512,), np.float32, 0, 0)
    smem = 24576 + 1024
    print(f"\n{dev.name}, {sms} SMs, {args.iters} rounds per warpgroup, best of {args.reps}")
    print(f"{'MMA wg':>6} {'FFMA wg':>7} {'promote':>7} {'turns':>5} | {'cyc/round':>9} {'tensor %':>8} {'GHz':>5} "
          f"| FFMA-only warpgroups: thread FFMA per cycle per SM (peak 128)")
    for v, ck in compiled.items():
        mma, ffma, promote, pingpong = v
        k = jit.load_kernel(ck, dev, smem)
        p = driver.KernelParams(("i32", "u64", "u64"))
        for i, val in enumerate((args.iters, out.ptr, sink.ptr)):
            p.set(i, val)
        best = None
        for _ in range(args.reps):
            with dev.activate():
                driver.launch(k.handle, sms, (mma + ffma) * 128, smem, 0, p)
                driver.stream_synchronize(0)
            r = out.to_numpy(0).reshape(sms, 4, 3).astype(np.float64)
            cyc = np.median(r[:, :mma, 0]) / args.iters
            ghz = np.median(r[:, :mma, 0] / r[:, :mma, 1])
            ffma_rate = (np.median(r[:, mma:mma + ffma, 2] * 64 * 128 / r[:, mma:mma + ffma, 0]) * ffma
                         if ffma else 0.0)
            if best is None or cyc < best[0]:
                best = (cyc, ghz, ffma_rate)
        cyc, ghz, ffma_rate = best
        tensor = 256 * mma / cyc * 100
        extra = f"{ffma_rate:6.1f}" if ffma else ""
        print(f"{mma:6d} {ffma:7d} {promote:7d} {'yes' if pingpong else '':>5} | {cyc:9.1f} {tensor:7.1f}% {ghz:5.2f} | {extra}", flush=True)


if __name__ == "__main__":
    main()
