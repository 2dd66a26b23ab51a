"""Dense small-M probe: one CTA per SM against two (a grid of 2 x SMs with fewer stages).

    PYTHONPATH=. python scripts/occupancy_probe.py [--shapes "M,N,K;..."]
        [--variants ship,64x64c2s6g264,64x128c1s7g119k7,...] [--rounds 2] [--reps 15]

A variant is ``<BM>x<BN>c<cluster>s<stages>g<grid>[o1][k<split-K>]`` (or ``ship``): the config the heuristics
would pick is replaced by it (the grid may exceed the SM count: two CTAs share an SM where
registers and shared memory allow). CUPTI kernel times, L2 flushed; each variant's output
is compared with the shipped config's (same K-block order: expected bit-identical).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from timing import Timer, fp8_activations, fp8_weights  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import driver, gemm, heuristics  # noqa: E402
from fp8gemm_core.arrays import DeviceArray  # noqa: E402

_choose = gemm.choose_gemm_config


def _edit(name: str):
    if name == "ship":
        return lambda c: c
    m = re.fullmatch(r"(\d+)x(\d+)c(\d)s(\d+)g(\d+)(o1)?(?:k(\d))?", name)
    if not m:
        raise SystemExit(f"variant {name!r}: expected ship or <BM>x<BN>c<C>s<S>g<G>[o1][k<split-K>]")
    bm, bn, cm, st, grid = (int(v) for v in m.groups()[:5])
    split = int(m.group(7) or 1)
    return lambda c: dataclasses.replace(
        c, block_m=bm, block_n=bn, cluster_m=cm, stages=st, num_sms=grid, overlap=bool(m.group(6)),
        out_in_ring=False, resident_a=0, split_k=split,
        staged_out_bytes=0 if split > 1 else heuristics.out_staging(bm, bn, c.staged_out_bytes))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="128,7168,16384;64,7168,16384")
    ap.add_argument("--variants", default="ship")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    import torch
    stream = torch.cuda.current_stream().cuda_stream
    timer = Timer(stream, clock="cupti")
    rng = np.random.default_rng(5)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    variants = args.variants.split(",")
    data = {}
    for M, N, K in shapes:
        A, SA, _ = fp8_activations(rng, (M, K), stream)
        B, SB = fp8_weights(rng, (N, K), stream)
        data[M, N, K] = (A, SA, B, SB, DeviceArray.empty((M, N), ml_dtypes.bfloat16, 0, stream))
    times, diffs = {}, {}
    for rnd in range(args.rounds):
        for v in variants:
            edit = _edit(v)
            gemm.choose_gemm_config = lambda *a, **kw: edit(_choose(*a, **kw))
            gemm._plans.clear()
            gemm._calls.clear()
            for (M, N, K), (A, SA, B, SB, out) in data.items():
                call = lambda: fg.fp8_gemm_nt((A, SA), (B, SB), out, stream=stream)  # noqa: E731
                times.setdefault((v, (M, N, K)), []).append(timer.median_ms(call, args.reps) * 1e3)
                if rnd == 0:
                    call()
                    res = out.to_numpy(stream).astype(np.float32)
                    if v == variants[0]:
                        diffs[M, N, K, "ref"] = res
                    ref = diffs[M, N, K, "ref"]
                    diffs[v, (M, N, K)] = float(np.abs(res - ref).max() / max(float(np.abs(ref).max()), 1e-30))
                    plan = next(p for key, p in gemm._plans.items() if key[:3] == (M, N, K))
                    c = plan.config
                    print(f"{v}: {M}x{N}x{K} {c.block_m}x{c.block_n} c{c.cluster_m} s{c.stages} "
                          f"grid {c.num_sms} o{int(c.overlap)} split {c.split_k} smem {c.smem_bytes} regs {plan.kernel.compiled.registers}",
                          flush=True)
    gemm.choose_gemm_config = _choose
    print(f"\nOccupancy probe on {driver.get_device(0).name}, CUPTI us (min of {args.rounds} rounds), TFLOPS, "
          f"max |diff| to {variants[0]} / its max |value|")
    for M, N, K in shapes:
        for v in variants:
            t = min(times[v, (M, N, K)])
            print(f"  {M:>5}x{N:>5}x{K:>5} {v:>18}: {t:8.2f} us {2 * M * N * K / t / 1e6:6.0f} "
                  f"({'/'.join(f'{x:.1f}' for x in times[v, (M, N, K)])}) diff {diffs[v, (M, N, K)]:.3g}")


if __name__ == "__main__":
    main()
