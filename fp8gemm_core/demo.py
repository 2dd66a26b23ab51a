"""The main job in one command: quantize, multiply, check, time.

    python -m fp8gemm_core.demo [--m 4096 --n 7168 --k 7168]

On an sm_90 GPU: quantizes random activations (1x128 scales) and weights (128x128
scales) with the numpy reference, runs ``fp8_gemm_nt`` on the GPU, checks it
against the reference on the same quantized inputs, reports the FP8 recipe's error
against a float64 matmul of the unquantized inputs, and times the kernel. Without
a GPU it says so and runs the numpy reference path alone on a smaller problem.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import driver, reference
from .arrays import DeviceArray
from .gemm import fp8_gemm_nt


def _rel(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=None)
    ap.add_argument("--n", type=int, default=7168)
    ap.add_argument("--k", type=int, default=7168)
    args = ap.parse_args(argv)

    gpu_problem = None
    try:
        dev = driver.get_device(0)
        dev.require_hopper()
    except Exception as e:
        gpu_problem = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    m = args.m or (4096 if gpu_problem is None else 256)
    n, k = args.n, args.k
    if gpu_problem is not None:
        print(f"No usable Hopper GPU here ({gpu_problem}).")
        print(f"Running the numpy reference path only, on M={m}, N={n}, K={k}.\n")

    rng = np.random.default_rng()
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = (rng.standard_normal((n, k), dtype=np.float32) / np.float32(np.sqrt(k))).astype(np.float32)
    t0 = time.perf_counter()
    a8, sfa = reference.per_token_cast_to_fp8(a)
    b8, sfb = reference.per_block_cast_to_fp8(b)
    print(f"quantized A [{m}, {k}] per 1x128 and B [{n}, {k}] per 128x128 to E4M3 "
          f"(numpy, {time.perf_counter() - t0:.2f}s)")

    rows = np.arange(min(m, 256))  # reference on a slice of rows keeps the CPU part short
    t0 = time.perf_counter()
    want = reference.fp8_gemm_nt(a8[rows], sfa[rows], b8, sfb)
    exact = a[rows].astype(np.float64) @ b.astype(np.float64).T
    print(f"numpy reference D = A @ B^T on {len(rows)} rows: {time.perf_counter() - t0:.2f}s; "
          f"FP8 recipe error vs float64 matmul of the unquantized inputs: {_rel(want, exact):.2e}")
    if gpu_problem is not None:
        print("\nDone (reference path only). On an H100/H200 this command also runs and times the kernel.")
        return

    A, SA = DeviceArray.from_numpy(a8, 0, 0), DeviceArray.from_numpy(sfa, 0, 0)
    B, SB = DeviceArray.from_numpy(b8, 0, 0), DeviceArray.from_numpy(sfb, 0, 0)
    t0 = time.perf_counter()
    out = fp8_gemm_nt((A, SA), (B, SB))
    got = out.to_numpy()
    print(f"GPU fp8_gemm_nt on {dev.name}: first call {time.perf_counter() - t0:.2f}s "
          "(includes NVRTC compile or cache load)")
    err = _rel(got[rows].astype(np.float32), want.astype(np.float32))
    print(f"GPU vs numpy reference (same quantized inputs), {len(rows)} rows: relative error {err:.2e} "
          f"-> {'OK' if err < 2e-3 else 'MISMATCH'}")

    from cuda.bindings import driver as cu
    with dev.activate():
        start, end = driver.call(cu.cuEventCreate, 0), driver.call(cu.cuEventCreate, 0)
        reps = 20
        driver.call(cu.cuEventRecord, start, 0)
        for _ in range(reps):
            fp8_gemm_nt((A, SA), (B, SB), out)
        driver.call(cu.cuEventRecord, end, 0)
        driver.stream_synchronize(0)
        ms = driver.call(cu.cuEventElapsedTime, start, end) / reps
    print(f"kernel time {ms * 1e3:.1f} us/call (back-to-back, warm L2): "
          f"{2 * m * n * k / ms / 1e9:.0f} TFLOPS")
    if err >= 2e-3:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
