"""Host-side costs of the library: cold NVRTC compile, disk-cache load, and one cached launch.

    PYTHONPATH=. python bench/bench_launch.py [--calls 10000]

The launch cost is the host time of one fp8_gemm_nt call whose kernel, plan and
tensor maps are cached (median over --calls), with torch and with CuPy inputs
when those are importable. Prints a table last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import random_fp8_bytes  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import driver, gemm, jit  # noqa: E402

M, N, K = 64, 256, 256  # tiny kernel: its GPU time stays below the host time we measure


def launch_cost_us(call, calls: int) -> float:
    times = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
        if i % 32 == 31:
            # Drain the queue (not timed): a full launch queue would make the host wait
            # for the GPU and time the kernel instead of the host path.
            driver.stream_synchronize(0)
    driver.stream_synchronize(0)
    return statistics.median(times) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10000)
    args = ap.parse_args()
    if not driver.is_available():
        print("bench_launch: no CUDA GPU here; nothing to measure.")
        return
    dev = driver.get_device(0)
    results = []
    # Like a framework user, keep GPU 0's context current (torch/cupy do this already).
    dev.activate().__enter__()

    # Cold compile and disk load of one real GEMM kernel, in a fresh cache directory.
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FP8GEMM_CORE_CACHE_DIR"] = cache
        source, name, prelude = gemm.default_kernel_spec(4096, 7168, 16384, 132)
        jit.clear_memory_cache()
        t0 = time.perf_counter()
        jit.get_kernel(source, name, prelude=prelude, device=dev)
        results.append((f"cold NVRTC compile + load of {name} (ms)", (time.perf_counter() - t0) * 1e3))
        # A fresh process, as a new job starting would: read the cubin from disk and load it.
        probe = (
            "import time, sys\n"
            "from fp8gemm_core import driver, jit, gemm\n"
            "dev = driver.get_device(0)\n"
            "src, name, pre = gemm.default_kernel_spec(4096, 7168, 16384, 132)\n"
            "t0 = time.perf_counter()\n"
            "k = jit.get_kernel(src, name, prelude=pre, device=dev)\n"
            "print(k.compiled.origin, (time.perf_counter() - t0) * 1e3)\n")
        res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env=dict(os.environ), check=True)
        origin, ms = res.stdout.split()
        results.append((f"disk-cache load in a new process, origin={origin} (ms)", float(ms)))
        del os.environ["FP8GEMM_CORE_CACHE_DIR"]

    rng = np.random.default_rng()
    a8, b8 = random_fp8_bytes(rng, (M, K)), random_fp8_bytes(rng, (N, K))
    sfa = np.full((M, K // 128), 1 / 448, np.float32)
    sfb = np.full((N // 128, K // 128), 1 / 448, np.float32)

    da = [fg.DeviceArray.from_numpy(x, 0, 0) for x in (a8, sfa, b8, sfb)]
    out = fg.DeviceArray.empty((M, N), np.dtype("float32"), 0, 0)
    call = lambda: fg.fp8_gemm_nt((da[0], da[1]), (da[2], da[3]), out)  # noqa: E731
    call()
    results.append(("cached launch, DeviceArray inputs (us)", launch_cost_us(call, args.calls)))

    try:
        import torch
        t = [torch.from_numpy(x).cuda() for x in (a8, sfa, b8, sfb)]
        t[0], t[2] = t[0].view(torch.float8_e4m3fn), t[2].view(torch.float8_e4m3fn)
        tout = torch.empty((M, N), dtype=torch.bfloat16, device="cuda")
        call = lambda: fg.fp8_gemm_nt((t[0], t[1]), (t[2], t[3]), tout)  # noqa: E731
        call()
        torch.cuda.synchronize()
        results.append(("cached launch, torch inputs (us)", launch_cost_us(call, args.calls)))
    except ImportError:
        results.append(("cached launch, torch inputs (us)", float("nan")))
    try:
        import cupy
        c = [cupy.asarray(x) for x in (a8, sfa, b8, sfb)]
        cout = cupy.empty((M, N), dtype=cupy.float32)
        call = lambda: fg.fp8_gemm_nt((c[0], c[1]), (c[2], c[3]), cout)  # noqa: E731
        call()
        results.append(("cached launch, cupy inputs (us)", launch_cost_us(call, args.calls)))
    except ImportError:
        results.append(("cached launch, cupy inputs (us)", float("nan")))

    # Where the time of one launch goes.
    from cuda.bindings import driver as cu
    from fp8gemm_core import arrays
    parts = [("  part: cuCtxGetCurrent (us)", lambda: cu.cuCtxGetCurrent()),
             ("  part: as_array(DeviceArray) (us)", lambda: arrays.as_array(da[0], "x", stream=0))]
    call_state = next(iter(gemm._calls.values()))
    parts.append(("  part: launch_fast alone (us)", lambda: driver.launch_fast(
        call_state.kernel, call_state.grid, call_state.threads, call_state.smem, 0,
        call_state.params)))
    try:
        parts.append(("  part: as_array(torch tensor) (us)", lambda: arrays.as_array(t[1], "x", stream=0)))
    except NameError:
        pass
    try:
        parts.append(("  part: as_array(cupy array) (us)", lambda: arrays.as_array(c[1], "x", stream=0)))
    except NameError:
        pass
    # Calibration: the same launch path for a trivial kernel (the driver's own floor).
    trivial = jit.get_kernel("selftest.cu", "add_one", device=dev)
    tparams = driver.KernelParams(("u64", "i32"))
    tparams.set(0, da[1].ptr)
    tparams.set(1, 1)
    parts.append(("  part: launch_fast of a trivial kernel (us)", lambda: driver.launch_fast(
        int(trivial.handle), 1, 32, 0, 0, tparams)))
    for label, fn in parts:
        results.append((label, launch_cost_us(fn, 2000)))

    print(f"\nHost costs on {dev.name}, {time.strftime('%Y-%m-%d')}, {args.calls} calls for launches")
    for label, v in results:
        print(f"  {label:<62} {v:10.2f}")


if __name__ == "__main__":
    main()
