"""FP8 quantization bench: our casts against device-to-device copy bandwidth, and quantize + GEMM.

    PYTHONPATH=. python bench/bench_quant.py [--reps N]

GB/s = (bytes read + bytes written) / kernel time (CUDA events, L2 flushed before each call,
median of --reps), next to the device-to-device copy bandwidth of the same input measured in
the same run (targets: per-token >= 80% of it, per-block >= 70%). Then quantize + GEMM at
M=4096, N=7168, K=7168 (weights quantized once, outside the timing): our per-token cast + our
GEMM against a torch implementation of the same cast + cuBLAS blockwise (when torch is
importable). Writes bench/results/quant-*.json and prints the table last.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import Timer  # noqa: E402

import fp8gemm_core as fg  # noqa: E402
from fp8gemm_core import driver  # noqa: E402
from fp8gemm_core.arrays import DeviceArray  # noqa: E402

SHAPES = [(4096, 7168), (16384, 7168)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    if not driver.is_available():
        print("bench_quant: no CUDA GPU here; nothing to measure.")
        return
    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    stream = torch.cuda.current_stream().cuda_stream if has_torch else 0
    timer = Timer(stream)
    dev = driver.get_device(0)
    rng = np.random.default_rng(3)
    bf16 = ml_dtypes.bfloat16
    rows = []
    for m, k in SHAPES:
        x = DeviceArray.from_numpy(rng.standard_normal((m, k), dtype=np.float32).astype(bf16), 0, stream)
        copy = DeviceArray.empty((m, k), bf16, 0, stream)
        kg = -(-k // 128)
        ms_copy = timer.median_ms(lambda: driver.memcpy_dtod(copy.ptr, x.ptr, x.nbytes, stream), args.reps)
        ms_tok = timer.median_ms(lambda: fg.per_token_cast_to_fp8(x, stream=stream), args.reps)
        ms_blk = timer.median_ms(lambda: fg.per_block_cast_to_fp8(x, stream=stream), args.reps)
        moved_tok = m * k * 2 + m * k + m * kg * 4
        moved_blk = m * k * 2 + m * k + (-(-m // 128)) * kg * 4
        row = dict(m=m, k=k, copy_gbps=2 * x.nbytes / ms_copy / 1e6, token_gbps=moved_tok / ms_tok / 1e6,
                   block_gbps=moved_blk / ms_blk / 1e6, token_ms=ms_tok, block_ms=ms_blk)
        rows.append(row)
        print(json.dumps(row), flush=True)

    e2e = quantize_and_gemm(timer, rng, stream, args.reps, torch if has_torch else None)
    print(json.dumps(e2e), flush=True)

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = dict(device=dev.name, date=stamp, torch=has_torch, casts=rows, quantize_gemm=e2e)
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    for folder in filter(None, (os.path.join(os.path.dirname(__file__), "results"), os.environ.get("OUT"))):
        with open(os.path.join(folder, f"quant-{stamp}.json"), "w") as f:
            json.dump(result, f, indent=1)

    print(f"\nFP8 casts of bf16 on {dev.name}, {stamp}, median of {args.reps}, L2 flushed (GB/s read + written)")
    print(f"{'M':>6} {'K':>5} | {'copy':>6} | {'token':>6} {'%copy':>6} | {'block':>6} {'%copy':>6}")
    for r in rows:
        print(f"{r['m']:>6} {r['k']:>5} | {r['copy_gbps']:6.0f} | {r['token_gbps']:6.0f} "
              f"{100 * r['token_gbps'] / r['copy_gbps']:5.0f}% | {r['block_gbps']:6.0f} "
              f"{100 * r['block_gbps'] / r['copy_gbps']:5.0f}%")
    print(f"quantize + GEMM 4096x7168x7168: ours {e2e['ours_ms'] * 1e3:.0f} us "
          f"(cast {e2e['ours_cast_ms'] * 1e3:.0f} + GEMM {e2e['ours_gemm_ms'] * 1e3:.0f})"
          + (f"; torch cast + cuBLAS blockwise {e2e['torch_ms'] * 1e3:.0f} us" if "torch_ms" in e2e else
             f"; no cuBLAS comparison ({e2e.get('torch_error', 'torch not importable')})"))


def quantize_and_gemm(timer, rng, stream, reps, torch) -> dict:
    m, n, k = 4096, 7168, 7168
    bf16 = ml_dtypes.bfloat16
    x = DeviceArray.from_numpy(rng.standard_normal((m, k), dtype=np.float32).astype(bf16), 0, stream)
    w = DeviceArray.from_numpy((rng.standard_normal((n, k), dtype=np.float32) * 0.02).astype(bf16), 0, stream)
    wq = fg.per_block_cast_to_fp8(w, stream=stream)  # weights: once, not timed
    out = DeviceArray.empty((m, n), bf16, 0, stream)

    def ours():
        fg.fp8_gemm_nt(fg.per_token_cast_to_fp8(x, stream=stream), wq, out, stream=stream)

    res = dict(m=m, n=n, k=k, ours_ms=timer.median_ms(ours, reps),
               ours_cast_ms=timer.median_ms(lambda: fg.per_token_cast_to_fp8(x, stream=stream), reps))
    xq = fg.per_token_cast_to_fp8(x, stream=stream)
    res["ours_gemm_ms"] = timer.median_ms(lambda: fg.fp8_gemm_nt(xq, wq, out, stream=stream), reps)
    if torch is not None:
        tx = torch.utils.dlpack.from_dlpack(x)
        tw8 = torch.utils.dlpack.from_dlpack(wq[0])
        tsfw = torch.utils.dlpack.from_dlpack(wq[1])

        def torch_cast(t):
            # The same recipe in plain torch: amax per 1x128, floor 1e-4, scale = amax / 448.
            g = t.view(t.shape[0], -1, 128).float()
            sf = g.abs().amax(dim=2).clamp(min=1e-4) / 448.0
            q = (g / sf.unsqueeze(2)).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).view(t.shape)
            return q, sf

        def reference_path():
            q, sf = torch_cast(tx)
            torch._scaled_mm(q, tw8.t(), scale_a=sf.t().contiguous().t(), scale_b=tsfw.t(),
                             out_dtype=torch.bfloat16)

        try:
            res["torch_ms"] = timer.median_ms(reference_path, reps)
        except Exception as e:  # recorded, so the rest of the run is kept
            res["torch_error"] = f"{type(e).__name__}: {str(e)[:80]}"
    return res


if __name__ == "__main__":
    main()
