"""Where a dense call's time goes: per-CTA globaltimer marks against the CUPTI duration.

    PYTHONPATH=. python scripts/dense_timeline.py [--shapes "M,N,K;..."] [--reps 10]

For each shape: the shipped kernel's CUPTI time (L2 flushed), then one call of the same
configuration built with -DFP8GEMM_EXPERIMENT_TIMELINE (each CTA writes the globaltimer at
points of its walk into the unused C argument; see the kernel's FP8GEMM_MARK), after an L2
flush, and the marks' min / median / max over CTAs in us from the first CTA's start.
"""

from __future__ import annotations

import argparse
import os
import sys

import ml_dtypes
import numpy as np
from cuda.bindings import driver as cu

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from timing import Timer, fp8_activations, fp8_weights  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import driver, gemm  # noqa: E402
from fp8gemm_core.arrays import DeviceArray  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from occupancy_probe import _choose, _edit  # noqa: E402

MARKS = {0: "start", 6: "barriers ready", 7: "walker built", 1: "tile known", 10: "first loads issued",
         8: "first scales issued", 9: "first stage landed", 2: "first MMA done", 5: "last load issued",
         11: "split-K: loop done", 12: "split-K: partial out", 13: "split-K: all partials",
         14: "split-K: share stored", 3: "last K block done", 4: "stored"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="64,7168,2048;128,7168,2048;64,2112,7168;128,24576,1536")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--variant", default="ship", help="a config as scripts/occupancy_probe.py names them")
    args = ap.parse_args()
    import torch
    stream = torch.cuda.current_stream().cuda_stream
    timer = Timer(stream, clock="cupti")
    rng = np.random.default_rng(5)
    buf = DeviceArray.empty((1024 * 16,), np.uint64, 0, stream)
    launch = driver.launch_fast
    edit = _edit(args.variant)
    gemm.choose_gemm_config = lambda *a, **kw: edit(_choose(*a, **kw))
    for shape in args.shapes.split(";"):
        m, n, k = (int(v) for v in shape.split(","))
        A, SA, _ = fp8_activations(rng, (m, k), stream)
        B, SB = fp8_weights(rng, (n, k), stream)
        out = DeviceArray.empty((m, n), ml_dtypes.bfloat16, 0, stream)
        call = lambda: fg.fp8_gemm_nt((A, SA), (B, SB), out, stream=stream)  # noqa: E731
        os.environ["FP8GEMM_CORE_NVRTC_OPTIONS"] = ""
        gemm._plans.clear()
        gemm._calls.clear()
        us = timer.median_ms(call, args.reps) * 1e3
        cfg = next(p.config for key, p in gemm._plans.items() if key[:3] == (m, n, k))
        os.environ["FP8GEMM_CORE_NVRTC_OPTIONS"] = "-DFP8GEMM_EXPERIMENT_TIMELINE"
        gemm._plans.clear()
        gemm._calls.clear()

        def hooked(handle, grid, threads, smem, s, p):
            p.set(gemm._P["c"], buf.ptr)
            return launch(handle, grid, threads, smem, s, p)

        driver.launch_fast = hooked
        try:
            for _ in range(3):  # warm, then the last call's marks (after an L2 flush)
                driver.stream_synchronize(stream)
                driver.call(cu.cuMemsetD32Async, buf.ptr, 0, buf.size * 2, stream)
                timer._flush(0)
                call()
            driver.stream_synchronize(stream)
        finally:
            driver.launch_fast = launch
        t = buf.to_numpy(stream).reshape(1024, 16).astype(np.int64)[:cfg.num_sms]
        t0 = t[:, 0].min()
        print(f"\n{m}x{n}x{k}: CUPTI {us:.2f} us, config {cfg.block_m}x{cfg.block_n} s{cfg.stages} "
              f"c{cfg.cluster_m} o{int(cfg.overlap)} staged{cfg.staged_out_bytes} grid {cfg.num_sms}; "
              f"marks in us from the first CTA's start (min / median / max over CTAs)")
        for slot, name in MARKS.items():
            col = t[:, slot]
            col = col[col >= t0]  # marks this kernel writes (stale or absent ones dropped)
            if len(col):
                rel = (col - t0) / 1e3
                print(f"  {name:>20}: {rel.min():7.2f} {np.median(rel):7.2f} {rel.max():7.2f}  ({len(col)} CTAs)")


if __name__ == "__main__":
    main()
