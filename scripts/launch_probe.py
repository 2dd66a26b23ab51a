"""Where the host time of one launch goes: the driver's cuLaunchKernel under variations.

    PYTHONPATH=. python scripts/launch_probe.py

Each row is the median host time of one call (queue drained every 32 calls, untimed):
a ctypes call that does nothing on the GPU (the ctypes floor), the trivial kernel
launched as a CUkernel (what the library does) and as the CUfunction it resolves to,
on the legacy default stream, a created non-blocking stream and the per-thread
default stream, a GEMM kernel the same ways, and torch's own launch of a tiny op.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))

import numpy as np  # noqa: E402
from cuda.bindings import driver as cu  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import driver, gemm, jit  # noqa: E402


def median_us(fn, calls=4000, drain=None):
    times = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
        if i % 32 == 31 and drain:
            drain()
    if drain:
        drain()
    return statistics.median(times) / 1e3


def main() -> None:
    dev = driver.get_device(0)
    dev.activate().__enter__()
    lib = ctypes.CDLL("libcuda.so.1")
    launch = lib.cuLaunchKernel
    u32 = ctypes.c_uint
    launch.argtypes = [ctypes.c_void_p, u32, u32, u32, u32, u32, u32, u32, ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.c_void_p]
    launch.restype = ctypes.c_int
    get_current = lib.cuCtxGetCurrent
    get_current.argtypes = [ctypes.c_void_p]
    cur = ctypes.c_void_p()
    sync = lambda: driver.call(cu.cuCtxSynchronize)  # noqa: E731

    blocking = int(driver.call(cu.cuStreamCreate, 0))
    nonblocking = int(driver.call(cu.cuStreamCreate, 1))
    streams = {"legacy 0": 0, "created, blocking": blocking, "created, non-blocking": nonblocking,
               "per-thread (2)": 2}

    rows = [("ctypes cuCtxGetCurrent (the ctypes floor)", median_us(lambda: get_current(ctypes.byref(cur))))]
    buf = fg.DeviceArray.empty((32,), np.dtype(np.float32), 0, 0)
    trivial = jit.get_kernel("selftest.cu", "add_one", device=dev)
    tparams = driver.KernelParams(("u64", "i32"))
    tparams.set(0, buf.ptr)
    tparams.set(1, 1)
    kern = int(trivial.handle)
    func = int(driver.call(cu.cuKernelGetFunction, trivial.handle))
    for sname, s in streams.items():
        for hname, h in (("CUkernel", kern), ("CUfunction", func)):
            rows.append((f"trivial, {hname}, stream {sname}", median_us(
                lambda: launch(h, 1, 1, 1, 32, 1, 1, 0, s, tparams.address, None), drain=sync)))

    # A cached GEMM call of a tiny shape, then its kernel alone both ways.
    import ml_dtypes
    rng = np.random.default_rng(0)
    M, N, K = 64, 256, 256
    fp8 = lambda shape: rng.integers(0, 0x70, shape, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)  # noqa: E731
    a = (fg.DeviceArray.from_numpy(fp8((M, K)), 0, 0), fg.DeviceArray.from_numpy(np.ones((M, 2), np.float32), 0, 0))
    b = (fg.DeviceArray.from_numpy(fp8((N, K)), 0, 0), fg.DeviceArray.from_numpy(np.ones((2, 2), np.float32), 0, 0))
    out = fg.DeviceArray.empty((M, N), np.dtype(np.float32), 0, 0)
    call = lambda: fg.fp8_gemm_nt(a, b, out)  # noqa: E731
    call()
    rows.append(("fp8_gemm_nt, cached, DeviceArray, stream 0", median_us(call, drain=sync)))
    for sname in ("created, non-blocking", "per-thread (2)"):
        s = streams[sname]
        rows.append((f"fp8_gemm_nt, cached, DeviceArray, stream {sname}",
                     median_us(lambda: fg.fp8_gemm_nt(a, b, out, stream=s), drain=sync)))
    st = next(iter(gemm._calls.values()))
    gfunc = int(driver.call(cu.cuKernelGetFunction, cu.CUkernel(st.kernel)))
    for hname, h in (("CUkernel", st.kernel), ("CUfunction", gfunc)):
        for sname in ("legacy 0", "created, non-blocking"):
            s = streams[sname]
            rows.append((f"GEMM kernel alone, {hname}, stream {sname}", median_us(
                lambda: launch(h, st.grid, 1, 1, st.threads, 1, 1, st.smem, s, st.params.address, None),
                drain=sync)))
    try:
        import torch
        x = torch.zeros(1, device="cuda")
        rows.append(("torch: x.add_(1) on a 1-element tensor", median_us(lambda: x.add_(1),
                                                                    drain=torch.cuda.synchronize)))
        t = [torch.from_dlpack(d) for d in (a[0].view(np.dtype(np.uint8)), a[1], b[0].view(np.dtype(np.uint8)), b[1])]
        t[0], t[2] = t[0].view(torch.float8_e4m3fn), t[2].view(torch.float8_e4m3fn)
        tout = torch.empty((M, N), dtype=torch.float32, device="cuda")
        tcall = lambda: fg.fp8_gemm_nt((t[0], t[1]), (t[2], t[3]), tout)  # noqa: E731
        tcall()
        rows.append(("fp8_gemm_nt, cached, torch inputs", median_us(tcall, drain=sync)))
    except ImportError:
        pass
    print(f"\nlaunch_probe on {dev.name}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for label, v in rows:
        print(f"  {label:<58} {v:7.2f} us")


if __name__ == "__main__":
    main()
