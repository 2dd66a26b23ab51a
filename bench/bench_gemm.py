"""Dense FP8 GEMM bench: our kernel vs cuBLAS (torch._scaled_mm) on the BRIEF's 20 shapes.

    PYTHONPATH=. python bench/bench_gemm.py [--quick] [--reps N]

Kernel time with L2 flushed before every call: CUDA events, median of --reps, or with
--clock cupti the kernels' own durations (CUPTI via torch.profiler), mean of --reps.
cuBLAS blockwise (1x128 / 128x128 scales, same recipe as ours) and per-tensor FP8
run in the same process when torch is importable, on the same operands (--data: normal data
cast by our quantizers, the default and DeepGEMM's test data, or random E4M3 bit patterns).
Writes bench/results/gemm-*.json and prints the table last.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import DATA_KINDS, Timer, fp8_activations, fp8_weights, row_major_sfa  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import driver, gemm  # noqa: E402
from fp8gemm_core.arrays import DeviceArray  # noqa: E402

SHAPES = [(m, n, k) for m in (64, 128, 4096) for n, k in
          [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]]
SHAPES += [(4096, 4096, 4096), (8192, 8192, 8192)]
# DeepGEMM on an H200, from BRIEF section 4 (TFLOPS), for orientation only.
DEEPGEMM_H200 = dict(zip(SHAPES, [193, 299, 236, 376, 280, 236, 356, 563, 410, 688, 546, 408,
                                  1330, 1351, 1087, 1498, 1325, 1183, 1399, 1478]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="only a few shapes")
    ap.add_argument("--shapes", type=str, default="", help="M,N,K;M,N,K;...")
    ap.add_argument("--clock", choices=("events", "cupti"), default="events",
                    help="events around each call, or CUPTI kernel durations (needs torch)")
    ap.add_argument("--no-cluster", action="store_true",
                    help="A/B experiment: force cluster_m = 1 (no TMA multicast)")
    ap.add_argument("--block-m", type=int, default=0, help="A/B experiment: force BLOCK_M (64/128/192)")
    ap.add_argument("--block-n", type=int, default=0, help="A/B experiment: force BLOCK_N")
    ap.add_argument("--overlap", type=int, default=None, help="A/B experiment: force overlap 0/1")
    ap.add_argument("--group-n", type=int, default=0,
                    help="A/B experiment: N-blocks per rasterization band (heuristics.GROUP_N)")
    ap.add_argument("--tile", type=str, default="",
                    help="A/B experiment: force BLOCK_MxBLOCK_N for every shape, large ones included (e.g. 192x128)")
    ap.add_argument("--data", choices=DATA_KINDS, default="randn",
                    help="operands: normal data cast by our quantizers, or random E4M3 bit patterns")
    ap.add_argument("--row-major-scales", action="store_true",
                    help="sfa as a quantizer writes it ([M, K/128] row-major) instead of M-major")
    ap.add_argument("--no-tma-store", action="store_true",
                    help="A/B experiment: epilogue stores from registers (no output staging in smem)")
    ap.add_argument("--num-sms", type=int, default=0, help="A/B experiment: fg.set_num_sms(N)")
    args = ap.parse_args()
    from fp8gemm_core import heuristics
    if args.num_sms:
        fg.set_num_sms(args.num_sms)
    if args.no_tma_store:
        gemm._staged_out_bytes = lambda ldd, itemsize, aligned=True: 0
    if args.no_cluster:
        heuristics._cluster_m = lambda m_blocks, num_sms: 1
    if args.block_m:  # A/B experiments: force one tile height
        heuristics.candidate_block_ms = lambda m: [args.block_m]
    if args.block_n:  # A/B experiments: force one tile width
        heuristics.candidate_block_ns = lambda: [args.block_n]
    if args.group_n:
        heuristics.GROUP_N = args.group_n
    if args.tile:
        bm, bn = (int(v) for v in args.tile.lower().split("x"))
        heuristics.candidate_block_ms = lambda m: [bm]
        heuristics.candidate_block_ns = lambda: [bn]
        heuristics.LARGE_TILE_SPEED = {(bm, bn): 1.0}
    if args.overlap is not None:
        heuristics.uses_overlap = lambda block_m, block_n: bool(args.overlap)
    if not driver.is_available():
        print("bench_gemm: no CUDA GPU here; nothing to measure.")
        return
    shapes = SHAPES
    if args.quick:
        shapes = [(128, 7168, 16384), (4096, 7168, 16384), (8192, 8192, 8192)]
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]

    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    stream = torch.cuda.current_stream().cuda_stream if has_torch else 0
    if args.clock == "cupti" and not has_torch:
        sys.exit("bench_gemm: --clock cupti reads CUPTI through torch.profiler; torch is not importable")
    if args.data == "randn" and not has_torch:
        print("bench_gemm: torch is not importable; random E4M3 bit patterns instead of normal data")
        args.data = "bytes"
    timer = Timer(stream, clock=args.clock)
    dev = driver.get_device(0)
    rng = np.random.default_rng()
    rows = []
    for m, n, k in shapes:
        # M-major sfa (the kernel's preferred layout): a [K/128, M] buffer (SAt), viewed transposed.
        A, SA, SAt = fp8_activations(rng, (m, k), stream, args.data)
        B, SB = fp8_weights(rng, (n, k), stream, args.data)
        out = DeviceArray.empty((m, n), ml_dtypes.bfloat16, 0, stream)
        if args.row_major_scales:
            SA = row_major_sfa(SAt, stream)
        ms = timer.median_ms(lambda: fg.fp8_gemm_nt((A, SA), (B, SB), out, stream=stream), args.reps)
        flops = 2.0 * m * n * k
        cfg = next(p.config for key, p in gemm._plans.items() if key[:3] == (m, n, k))
        row = dict(m=m, n=n, k=k, config=f"{cfg.block_m}x{cfg.block_n}x{cfg.stages}s c{cfg.cluster_m} "
                   f"o{int(cfg.overlap)} "
                   f"g{cfg.num_sms}" + (f" k{cfg.split_k}" if cfg.split_k > 1 else ""), ours_ms=ms, ours_tflops=flops / ms / 1e9,
                   ours_gbps=(m * k + n * k + 2 * m * n) / ms / 1e6)
        if has_torch:
            tA = torch.utils.dlpack.from_dlpack(A).view(torch.float8_e4m3fn)
            tB = torch.utils.dlpack.from_dlpack(B).view(torch.float8_e4m3fn)
            tSAt = torch.utils.dlpack.from_dlpack(SAt)
            tSB = torch.utils.dlpack.from_dlpack(SB)
            one = torch.ones((), dtype=torch.float32, device="cuda")
            try:
                ref = torch._scaled_mm(tA, tB.t(), scale_a=tSAt.t(), scale_b=tSB.t(),
                                       out_dtype=torch.bfloat16)
                ms_b = timer.median_ms(lambda: torch._scaled_mm(
                    tA, tB.t(), scale_a=tSAt.t(), scale_b=tSB.t(), out_dtype=torch.bfloat16), args.reps)
                row["cublas_block_tflops"] = flops / ms_b / 1e9
                ours = torch.utils.dlpack.from_dlpack(out).float()
                row["rel_err_vs_cublas"] = float((ours - ref.float()).norm() / ref.float().norm())
            except Exception as e:  # cuBLAS blockwise may reject a shape (e.g. M not multiple of 4)
                row["cublas_block_error"] = f"{type(e).__name__}: {str(e)[:80]}"
            try:
                ms_t = timer.median_ms(lambda: torch._scaled_mm(
                    tA, tB.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16), args.reps)
                row["cublas_tensor_tflops"] = flops / ms_t / 1e9
            except Exception as e:
                row["cublas_tensor_error"] = f"{type(e).__name__}: {str(e)[:80]}"
        rows.append(row)
        print(json.dumps(row), flush=True)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", f"gemm-{stamp}.json")
    with open(path, "w") as f:
        json.dump(dict(device=dev.name, sms=dev.num_sms, date=stamp, torch=has_torch, clock=args.clock,
                       data=args.data, rows=rows), f,
                  indent=1)
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, f"gemm-{stamp}.json"), "w") as f:
            json.dump(dict(device=dev.name, date=stamp, clock=args.clock, data=args.data, rows=rows), f, indent=1)

    print(f"\nFP8 GEMM on {dev.name} ({dev.num_sms} SMs), {stamp}, {args.reps} calls, L2 flushed, "
          f"clock: {args.clock}, data: {args.data}")
    print(f"{'M':>5} {'N':>6} {'K':>6} | {'ours':>6} {'cuBLASb':>7} {'cuBLASt':>7} | {'x blk':>5} "
          f"{'x tns':>5} | {'GB/s':>5} {'DG(H200)':>8} {'err':>7}  config")
    ratios_b = []
    for r in rows:
        cb, ct = r.get("cublas_block_tflops"), r.get("cublas_tensor_tflops")
        if cb:
            ratios_b.append(r["ours_tflops"] / cb)
        fmt = lambda v: f"{v:7.0f}" if v else "      -"  # noqa: E731
        print(f"{r['m']:>5} {r['n']:>6} {r['k']:>6} | {r['ours_tflops']:6.0f} {fmt(cb)} {fmt(ct)} | "
              f"{(r['ours_tflops'] / cb) if cb else 0:5.2f} {(r['ours_tflops'] / ct) if ct else 0:5.2f} | "
              f"{r['ours_gbps']:5.0f} {DEEPGEMM_H200.get((r['m'], r['n'], r['k']), 0):8.0f} "
              f"{r.get('rel_err_vs_cublas', float('nan')):7.1e}  {r['config']}")
    if ratios_b:
        gm = math.exp(sum(math.log(x) for x in ratios_b) / len(ratios_b))
        print(f"geomean ours / cuBLAS blockwise over {len(ratios_b)} shapes: {gm:.3f}")


if __name__ == "__main__":
    main()
