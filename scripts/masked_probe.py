"""Masked grouped GEMM probe: kernel time against K and against config / kernel variants.

    PYTHONPATH=. python scripts/masked_probe.py [--reps 15] [--ks 1024,2048,4096,7168]
        [--shapes "G,m,N;..."] [--variants ship,regstore,...] [--rounds 2]

For each (G, m, N) and K: the masked GEMM (all groups full) timed with CUPTI, L2 flushed. A
straight-line fit of time against K per variant splits it into a fixed cost (launch, pipeline
fill, last epilogue) and a per-K-block rate. Variants change the chosen config
(dataclasses.replace on the heuristics' pick) or add NVRTC options (-D experiments).
--timeline: one more call per shape with -DFP8GEMM_EXPERIMENT_TIMELINE (each CTA writes the
globaltimer at points of its walk into the unused C argument) and per-CTA phase times.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from timing import DATA_KINDS, Timer, fp8_activations, fp8_weights  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import gemm, grouped, heuristics  # noqa: E402
from fp8gemm_core.arrays import DeviceArray  # noqa: E402

_choose = grouped.choose_grouped_config
_reuse = gemm.uses_ffma_reuse_chain


def _variant(name: str):
    """(config edit, NVRTC options) of a variant name."""
    if name == "ship":
        return (lambda c: c), ""
    if name == "regstore":  # no staged output: register stores, every stage for the pipeline
        return (lambda c: dataclasses.replace(c, staged_out_bytes=0, out_in_ring=False,
                                              stages=heuristics.stages_for(c.block_m, c.block_n, 0))), ""
    if name == "noring":  # the output staged in a buffer of its own (as before session 11)
        return (lambda c: dataclasses.replace(c, out_in_ring=False, stages=heuristics.stages_for(
            c.block_m, c.block_n, c.staged_out_bytes))), ""
    if name.startswith("tile"):  # tile128x128o1 / tile128x256 ...
        spec = name[4:]
        ov = spec.endswith("o1")
        bm, bn = (int(v) for v in spec.removesuffix("o1").split("x"))
        return (lambda c: dataclasses.replace(
            c, block_m=bm, block_n=bn, overlap=ov, staged_out_bytes=heuristics.out_staging(bm, bn, 2), out_in_ring=False,
            stages=heuristics.stages_for(bm, bn, heuristics.out_staging(bm, bn, 2)))), ""
    if name.startswith("gn"):
        g = int(name[2:])
        return (lambda c: dataclasses.replace(c, group_n=g)), ""
    if name == "reuse":  # the ffma-reuse-chain SASS pass on every configuration
        return (lambda c: c), "", True
    if name.startswith("D"):  # D<MACRO>[+<MACRO>...]: compile with -D<MACRO> ...
        return (lambda c: c), " ".join("-D" + d for d in name[1:].split("+"))
    raise SystemExit(f"unknown variant {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--ks", default="1024,2048,4096,7168")
    ap.add_argument("--shapes", default="2,512,4096;1,1024,4096")
    ap.add_argument("--variants", default="ship,regstore")
    ap.add_argument("--data", choices=DATA_KINDS, default="randn",
                    help="operands: normal data cast by our quantizers (the benches' default), or random "
                         "E4M3 bit patterns")
    ap.add_argument("--timeline", default=None, const="", nargs="?",
                    help="also per-CTA marks; optional extra macros, e.g. FOO+BAR")
    ap.add_argument("--warm-code", action="store_true",
                    help="with --timeline: also marks with the kernel's code put back in L2 after the flush")
    args = ap.parse_args()
    import torch
    stream = torch.cuda.current_stream().cuda_stream
    timer = Timer(stream, clock="cupti")
    rng = np.random.default_rng(3)
    ks = [int(k) for k in args.ks.split(",")]
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    variants = args.variants.split(",")
    data = {}
    for G, m, N in shapes:
        for K in ks:
            A, SA, sbuf = fp8_activations(rng, (G, m, K), stream, args.data)
            B, SB = fp8_weights(rng, (G, N, K), stream, args.data)
            counts = DeviceArray.from_numpy(np.full(G, m, np.int32), 0, stream)
            out = DeviceArray.empty((G, m, N), ml_dtypes.bfloat16, 0, stream)
            data[G, m, N, K] = (A, SA, B, SB, counts, out, sbuf)
    times = {}  # (variant, shape, K) -> [us per round]
    for rnd in range(args.rounds):
        for v in variants:
            edit, opts, *reuse = _variant(v)
            gemm.uses_ffma_reuse_chain = (lambda *a: True) if reuse else _reuse
            os.environ["FP8GEMM_CORE_NVRTC_OPTIONS"] = opts
            grouped.choose_grouped_config = lambda *a, **kw: edit(_choose(*a, **kw))
            grouped._plans.clear()
            for (G, m, N, K), (A, SA, B, SB, counts, out, _) in data.items():
                ms = timer.median_ms(lambda: fg.m_grouped_fp8_gemm_nt_masked((A, SA), (B, SB), out, counts, m,
                                                                             stream=stream), args.reps)
                times.setdefault((v, (G, m, N), K), []).append(ms * 1e3)
                if rnd == 0 and K == ks[-1]:
                    plan = next(p for key, p in grouped._plans.items() if key[:4] == (m, G, N, K))
                    print(f"{v}: {G}x{m}x{N}x{K} {plan.config}", flush=True)
    print(f"\nMasked probe, CUPTI us (rounds: {args.rounds}), TFLOPS at the largest K, fit t = t0 + K * slope")
    for G, m, N in shapes:
        print(f"\n{G} x {m} x {N}: " + " ".join(f"K={k:>6}" for k in ks) + "  |  TFLOPS   t0(us)  us/Kblk")
        for v in variants:
            ts = [min(times[v, (G, m, N), k]) for k in ks]
            slope, t0 = np.polyfit(np.array(ks) / 128, ts, 1) if len(ks) > 1 else (float("nan"),) * 2
            tflops = 2 * G * m * N * ks[-1] / ts[-1] / 1e6
            rounds = "/".join(f"{t:.1f}" for t in times[v, (G, m, N), ks[-1]])
            print(f"  {v:>16}: " + " ".join(f"{t:8.2f}" for t in ts)
                  + f"  | {tflops:6.0f} {t0:7.2f} {slope:8.3f}   (last K rounds {rounds})")
    if args.timeline is not None:
        for extra in [""] + [m for m in args.timeline.split(",") if m]:
            timeline(data, stream, extra)
        if args.warm_code:
            timeline(data, stream, "", warm_code=True)


MARKS = ["start", "tile known", "first MMA done", "last K block done", "stored", "last load issued",
         "barriers ready", "walker built", "first scales issued", "first stage landed", "first loads issued"]


def timeline(data, stream, extra: str = "", warm_code: bool = False) -> None:
    """Per-CTA globaltimer marks (see the kernel's FP8GEMM_MARK) of one call per shape;
    ``extra``: more macros (FOO+BAR); ``warm_code``: after the L2 flush, a call with every
    group empty first (it runs the prologue only), so that its code is in L2 again."""
    from cuda.bindings import driver as cu

    from fp8gemm_core import driver
    flush = Timer(stream)._flush
    os.environ["FP8GEMM_CORE_NVRTC_OPTIONS"] = " ".join(
        "-D" + d for d in ["FP8GEMM_EXPERIMENT_TIMELINE"] + [e for e in extra.split("+") if e])
    grouped.choose_grouped_config = _choose
    grouped._plans.clear()
    launch = driver.launch_fast
    buf = DeviceArray.empty((1024 * 16,), np.uint64, 0, stream)

    def hooked(handle, grid, threads, smem, s, p):
        p.set(grouped._P["c"], buf.ptr)
        return launch(handle, grid, threads, smem, s, p)

    driver.launch_fast = hooked
    try:
        for (G, m, N, K), (A, SA, B, SB, counts, out, _) in data.items():
            no_rows = DeviceArray.from_numpy(np.zeros(G, np.int32), 0, stream)
            for _ in range(3):  # warm, then the last call's marks (after an L2 flush)
                driver.call(cu.cuMemsetD32Async, buf.ptr, 0, buf.size * 2, stream)
                flush(0)
                if warm_code:  # the same kernel with no tiles: its prologue's code back in L2
                    fg.m_grouped_fp8_gemm_nt_masked((A, SA), (B, SB), out, no_rows, m,
                                                    stream=stream)
                fg.m_grouped_fp8_gemm_nt_masked((A, SA), (B, SB), out, counts, m, stream=stream)
            driver.stream_synchronize(stream)
            t = buf.to_numpy(stream).reshape(1024, 16).astype(np.int64)
            t = t[(t[:, 1] > 0) & (t[:, 4] > 0)]  # CTAs that had a tile
            t0 = t[:, 0].min()
            rel = np.where(t > 0, t - t0, -1) / 1e3  # us from the first CTA's start (-0.001: no mark)
            print(f"\ntimeline {extra or 'as shipped'}{' (code warmed)' if warm_code else ''} {G}x{m}x{N}x{K}: {len(t)} CTAs, us from the first start (min / median / max)")
            for slot in (0, 6, 7, 1, 10, 8, 9, 2, 5, 3, 4):
                col = rel[:, slot]
                print(f"  {MARKS[slot]:>18}: {col.min():7.2f} {np.median(col):7.2f} {col.max():7.2f}")
    finally:
        driver.launch_fast = launch
        grouped._plans.clear()


if __name__ == "__main__":
    main()
