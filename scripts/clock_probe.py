"""SM clock and power while one GEMM runs back to back: ours vs cuBLAS blockwise (torch).

    PYTHONPATH=. python scripts/clock_probe.py 4096 4096 7168 [seconds]

Samples nvidia-smi every 100 ms during each run and prints the median SM clock and
power beside the achieved TFLOPS: at the power limit, a lower clock at the same power
means more energy per FLOP.
"""
import math
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import torch

import fp8gemm_core as fg
from fp8gemm_core.arrays import DeviceArray, transposed

sys.path.insert(0, "bench")
from timing import random_fp8_bytes  # noqa: E402


def sample(stop, out):
    while not stop.is_set():
        r = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True).stdout.split(",")
        out.append((float(r[0]), float(r[1])))
        time.sleep(0.1)


def run(label, fn, flops, seconds):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    stop, samples = threading.Event(), []
    th = threading.Thread(target=sample, args=(stop, samples))
    t0 = time.perf_counter()
    n = 0
    th.start()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            fn()
        n += 20
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    steady = samples[len(samples) // 4:]  # past the ramp
    clk = statistics.median(s[0] for s in steady)
    pw = statistics.median(s[1] for s in steady)
    print(f"{label:>16}: {flops * n / dt / 1e12:7.0f} TFLOPS  SM clock {clk:5.0f} MHz  power {pw:5.0f} W  "
          f"TFLOP per kJ {flops * n / dt / 1e12 / pw * 1e3:6.0f}", flush=True)


def main():
    m, n, k = (int(v) for v in sys.argv[1:4])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    rng = np.random.default_rng(0)
    kb = math.ceil(k / 128)
    A = DeviceArray.from_numpy(random_fp8_bytes(rng, (m, k)), 0, 0)
    B = DeviceArray.from_numpy(random_fp8_bytes(rng, (n, k)), 0, 0)
    SAt = DeviceArray.from_numpy(rng.uniform(0.5, 2, (kb, m)).astype(np.float32) / 448, 0, 0)
    SB = DeviceArray.from_numpy(rng.uniform(0.5, 2, (math.ceil(n / 128), kb)).astype(np.float32) / 448, 0, 0)
    out = torch.empty((m, n), dtype=torch.bfloat16, device="cuda")
    flops = 2.0 * m * n * k
    s = torch.cuda.current_stream().cuda_stream
    run("ours", lambda: fg.fp8_gemm_nt((A, transposed(SAt)), (B, SB), out, stream=s), flops, seconds)
    tA = torch.utils.dlpack.from_dlpack(A).view(torch.float8_e4m3fn)
    tB = torch.utils.dlpack.from_dlpack(B).view(torch.float8_e4m3fn)
    tSAt, tSB = torch.utils.dlpack.from_dlpack(SAt), torch.utils.dlpack.from_dlpack(SB)
    run("cuBLAS blockwise", lambda: torch._scaled_mm(tA, tB.t(), scale_a=tSAt.t(), scale_b=tSB.t(),
                                                     out_dtype=torch.bfloat16), flops, seconds)
    one = torch.ones((), dtype=torch.float32, device="cuda")
    run("cuBLAS tensor", lambda: torch._scaled_mm(tA, tB.t(), scale_a=one, scale_b=one,
                                                  out_dtype=torch.bfloat16), flops, seconds)


if __name__ == "__main__":
    main()
