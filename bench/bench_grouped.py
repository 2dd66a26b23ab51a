"""Grouped (MoE) FP8 GEMM bench: contiguous and masked layouts on the BRIEF's shapes.

    PYTHONPATH=. python bench/bench_grouped.py [--reps N]

Contiguous (G groups of about `rows` rows each, N, K), each with group sizes equal and varying
+-30% (spread evenly over 0.7-1.3x the mean in a fixed shuffled order, multiples of 16 rows:
padding every group to the largest then computes 1.3x the useful rows), measured in the same
run against:
  - our dense kernel on the same total rows (the grouped kernel should be within 5% of it),
  - a loop of per-expert cuBLAS blockwise calls (torch._scaled_mm, when torch is importable),
  - padding every expert to the largest and running one batched GEMM (our masked kernel
    with every group full): TFLOPS count useful work only; "(pad)" is the rows it computes per
    useful row, the most that grouped can gain over it at equal efficiency.
  The grouped, dense and padded calls run in --rounds alternating rounds (median per call), so
  their ratios compare calls under the same clocks and temperature.
Masked (G groups x rows, N, K): masked_m = rows for every group. Operands (--data): normal data
cast by the library's quantizers (default; DeepGEMM's test data), or random E4M3 bit patterns;
scales M-major everywhere (as fp8gemm_core's quantizer writes them and DeepGEMM requires).
Kernel time from CUDA events (median of --reps) or CUPTI (--clock cupti: mean), L2 flushed
before each call. Writes bench/results/grouped-*.json and prints the table last.
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
from fp8gemm_core import driver  # noqa: E402
from fp8gemm_core.arrays import DeviceArray, StridedView  # noqa: E402

# (groups, rows per group, N, K) and DeepGEMM's H200 TFLOPS from BRIEF section 4.
CONTIGUOUS = [((4, 8192, 4096, 7168), 1452), ((4, 8192, 7168, 2048), 1363),
              ((8, 4096, 4096, 7168), 1410), ((8, 4096, 7168, 2048), 1359)]
MASKED = [((1, 1024, 4096, 7168), 1199), ((1, 1024, 7168, 2048), 926), ((2, 512, 4096, 7168), 1248),
          ((2, 512, 7168, 2048), 889), ((4, 256, 4096, 7168), 1055), ((4, 256, 7168, 2048), 840)]


def group_sizes(groups: int, mean: int, spread: float) -> np.ndarray:
    """Sizes spread evenly over [1 - spread, 1 + spread] x mean (multiples of 16 rows: cuBLAS
    blockwise rejects some others), in a fixed shuffled order."""
    f = np.linspace(1 - spread, 1 + spread, groups) if groups > 1 else np.ones(1)
    return np.random.default_rng(11).permutation(np.round(f * mean / 16).astype(np.int64) * 16)


def tile_fits_shape(G: int, m: int, N: int, K: int, num_sms: int) -> bool:
    """Whether the heuristics (as --tile restricts them) find a tile for this shape."""
    from fp8gemm_core import heuristics
    try:
        heuristics.choose_grouped_config(m, G, N, K, num_sms)
        return True
    except ValueError:
        return False


def activations(rng, shape, stream, args):
    """(a_fp8, sfa, keep): sfa M-major (as our quantizer writes it and DeepGEMM requires), or
    row-major with --row-major-scales (A/B experiments)."""
    a8, sfa, base = fp8_activations(rng, shape, stream, args.data)
    if args.row_major_scales:
        sfa = row_major_sfa(base, stream)
    return a8, sfa, base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3,
                    help="contiguous rows: alternating rounds of (grouped, dense, padded), median")
    ap.add_argument("--clock", choices=("events", "cupti"), default="events",
                    help="events around each call, or CUPTI kernel durations (needs torch)")
    ap.add_argument("--only", choices=("contiguous", "masked"), default=None,
                    help="run one layout's shapes only")
    ap.add_argument("--data", choices=DATA_KINDS, default="randn",
                    help="operands: normal data cast by our quantizers, or random E4M3 bit patterns")
    ap.add_argument("--row-major-scales", action="store_true",
                    help="A/B experiment: sfa row-major instead of M-major")
    ap.add_argument("--tile", type=str, default="",
                    help="A/B experiment: force BLOCK_MxBLOCK_N for every shape (e.g. 256x128)")
    ap.add_argument("--no-grouped-pairs", action="store_true",
                    help="A/B experiment: no CTA pairs in grouped GEMMs (heuristics.GROUPED_PAIR_SPEED)")
    args = ap.parse_args()
    if args.no_grouped_pairs:
        from fp8gemm_core import heuristics
        heuristics.GROUPED_PAIR_SPEED = {p: {} for p in heuristics.PROFILES}
    if args.tile:
        from fp8gemm_core import heuristics
        bm, bn = (int(v) for v in args.tile.lower().split("x"))
        heuristics.candidate_block_ms = lambda m: [bm]
        heuristics.candidate_block_ns = lambda: [bn]
        heuristics.LARGE_TILE_SPEED = {(bm, bn): 1.0}
    if not driver.is_available():
        print("bench_grouped: no CUDA GPU here; nothing to measure.")
        return
    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    stream = torch.cuda.current_stream().cuda_stream if has_torch else 0
    if args.clock == "cupti" and not has_torch:
        sys.exit("bench_grouped: --clock cupti reads CUPTI through torch.profiler; torch is not importable")
    if args.data == "randn" and not has_torch:
        print("bench_grouped: torch is not importable; random E4M3 bit patterns instead of normal data")
        args.data = "bytes"
    timer = Timer(stream, clock=args.clock)
    dev = driver.get_device(0)
    rng = np.random.default_rng(7)
    bf16 = ml_dtypes.bfloat16
    rows_out = []

    for (G, mean, N, K), dg in (CONTIGUOUS if args.only != "masked" else []):
        if args.tile and not tile_fits_shape(G, mean, N, K, dev.num_sms):
            print(f"bench_grouped: --tile {args.tile} does not fit {G} x {mean} x {N} x {K}; skipped")
            continue
        kg = math.ceil(K / 128)
        B, SB = fp8_weights(rng, (G, N, K), stream, args.data)
        for spread in (0.0, 0.3):
            # Sizes in multiples of 16 rows (cuBLAS blockwise rejects some others).
            sizes = group_sizes(G, mean, spread)
            M = int(sizes.sum())
            flops = 2.0 * M * N * K
            A, SA, _keep = activations(rng, (M, K), stream, args)
            ends = DeviceArray.from_numpy(np.cumsum(sizes).astype(np.int32), 0, stream)
            out = DeviceArray.empty((M, N), bf16, 0, stream)
            row = dict(kind="contiguous", groups=G, rows=mean, spread=spread, n=N, k=K, total_m=M,
                       deepgemm_h200=dg)
            # Our dense kernel on the same total rows (B of group 0): the reference point.
            B0 = StridedView(B, (N, K), (K, 1))
            SB0 = StridedView(SB, (math.ceil(N / 128), kg), (kg, 1))
            # Padded: every expert padded to the largest, one batched (masked, all full) GEMM.
            max_m = int(sizes.max())
            Ap, SAp, _keep_p = activations(rng, (G, max_m, K), stream, args)
            full = DeviceArray.from_numpy(np.full(G, max_m, np.int32), 0, stream)
            outp = DeviceArray.empty((G, max_m, N), bf16, 0, stream)
            # The three in alternating rounds: their ratios are what this row reports.
            ms = timer.interleaved_ms({
                "ours": lambda: fg.m_grouped_fp8_gemm_nt_contiguous((A, SA), (B, SB), out, offsets=ends,
                                                                    stream=stream),
                "dense": lambda: fg.fp8_gemm_nt((A, SA), (B0, SB0), out, stream=stream),
                "padded": lambda: fg.m_grouped_fp8_gemm_nt_masked((Ap, SAp), (B, SB), outp, full, max_m,
                                                                  stream=stream),
            }, args.reps, args.rounds)
            for name, t in ms.items():
                row[f"{name}_tflops"] = flops / t / 1e9
            # Rows the padded GEMM computes per useful row: its speedup ceiling at equal efficiency.
            row["padded_work"] = G * max_m / M
            if has_torch:
                try:
                    row["cublas_loop_tflops"] = flops / cublas_loop_ms(torch, timer, A, B, SB, sizes, K, N,
                                                                       args.reps) / 1e9
                except Exception as e:  # a cuBLAS rejection must not lose the rest of the run
                    row["cublas_loop_error"] = f"{type(e).__name__}: {str(e)[:80]}"
            rows_out.append(row)
            print(json.dumps(row), flush=True)

    for (G, m, N, K), dg in (MASKED if args.only != "contiguous" else []):
        if args.tile and not tile_fits_shape(G, m, N, K, dev.num_sms):
            print(f"bench_grouped: --tile {args.tile} does not fit {G} x {m} x {N} x {K}; skipped")
            continue
        A, SA, _keep = activations(rng, (G, m, K), stream, args)
        B, SB = fp8_weights(rng, (G, N, K), stream, args.data)
        counts = DeviceArray.from_numpy(np.full(G, m, np.int32), 0, stream)
        out = DeviceArray.empty((G, m, N), bf16, 0, stream)
        ms = timer.median_ms(lambda: fg.m_grouped_fp8_gemm_nt_masked(
            (A, SA), (B, SB), out, counts, m, stream=stream), args.reps)
        row = dict(kind="masked", groups=G, rows=m, n=N, k=K, total_m=G * m, deepgemm_h200=dg,
                   ours_tflops=2.0 * G * m * N * K / ms / 1e9)
        rows_out.append(row)
        print(json.dumps(row), flush=True)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    result = dict(device=dev.name, sms=dev.num_sms, date=stamp, torch=has_torch, clock=args.clock,
                  data=args.data, rows=rows_out)
    for folder in filter(None, (os.path.join(os.path.dirname(__file__), "results"), os.environ.get("OUT"))):
        with open(os.path.join(folder, f"grouped-{stamp}.json"), "w") as f:
            json.dump(result, f, indent=1)

    print(f"\nGrouped FP8 GEMM on {dev.name} ({dev.num_sms} SMs), {stamp}, {args.reps} calls, "
          f"L2 flushed, clock: {args.clock}, data: {args.data}, TFLOPS of useful work")
    print(f"{'layout':>10} {'G':>3} {'rows':>5} {'+-':>4} {'N':>5} {'K':>5} | {'ours':>5} {'dense':>5} "
          f"{'padded':>6} {'cuBLAS':>6} | {'/dense':>6} {'/padded':>7} {'(pad)':>5} {'/cuBLAS':>7} {'DG(H200)':>8}")
    for r in rows_out:
        o = r["ours_tflops"]
        d, p, c = r.get("dense_tflops"), r.get("padded_tflops"), r.get("cublas_loop_tflops")
        f = lambda v: f"{v:6.0f}" if v else "     -"  # noqa: E731
        q = lambda v: f"{o / v:7.2f}" if v else "      -"  # noqa: E731
        print(f"{r['kind']:>10} {r['groups']:>3} {r['rows']:>5} {r.get('spread', 0):>4.1f} {r['n']:>5} "
              f"{r['k']:>5} | {o:5.0f} {f(d)[1:]} {f(p)} {f(c)} | {q(d)[1:]} {q(p)} "
              f"{r.get('padded_work', 0) or float('nan'):5.2f} {q(c)} "
              f"{r['deepgemm_h200']:8.0f}")


def cublas_loop_ms(torch, timer, A, B, SB, sizes, K, N, reps) -> float:
    """A loop of per-expert cuBLAS blockwise calls over the same rows."""
    tA = torch.utils.dlpack.from_dlpack(A).view(torch.float8_e4m3fn)
    tB = torch.utils.dlpack.from_dlpack(B).view(torch.float8_e4m3fn)
    tSB = torch.utils.dlpack.from_dlpack(SB)
    kg = math.ceil(K / 128)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    parts = []
    for g, (s, m) in enumerate(zip(starts, sizes)):
        sfa_t = torch.rand((kg, int(m)), device="cuda", dtype=torch.float32) / 448 + 1e-3
        parts.append((tA[s:s + m], tB[g], sfa_t, tSB[g].contiguous()))

    def run():
        for a, b, sfa_t, sfb in parts:
            torch._scaled_mm(a, b.t(), scale_a=sfa_t.t(), scale_b=sfb.t(), out_dtype=torch.bfloat16)

    return timer.median_ms(run, reps)


if __name__ == "__main__":
    main()
