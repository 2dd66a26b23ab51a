"""Kernel timing for the benches, L2 flushed before each call.

Two clocks, both timing our kernels and cuBLAS alike:
  events  CUDA events around each call (framework-free); includes the GPU-side gap
          between the event and the kernel, about a microsecond, which matters only for
          the smallest shapes.
  cupti   the kernels' own durations from CUPTI (through torch.profiler, the CUPTI binding
          the bench machines have): the clock DeepGEMM's and most published figures use.
"""

from __future__ import annotations

import statistics
from typing import Callable

from cuda.bindings import driver as cu

from fp8gemm_core import driver
from fp8gemm_core.arrays import DeviceArray
import numpy as np

FLUSH_BYTES = 256 << 20
GATE_FLUSHES = 40  # ~3 ms of memsets queued ahead of the timed calls


class Timer:
    def __init__(self, stream: int = 0, device: int = 0, clock: str = "events"):
        if clock not in ("events", "cupti"):
            raise ValueError(f"clock: expected 'events' or 'cupti', got {clock!r}")
        self.stream = stream
        self.clock = clock
        self.dev = driver.get_device(device)
        with self.dev.activate():
            self.flush_buf = DeviceArray.empty((FLUSH_BYTES // 4,), np.uint32, device=device,
                                               stream=stream)

    def _flush(self, i: int) -> None:
        driver.call(cu.cuMemsetD32Async, self.flush_buf.ptr, i, FLUSH_BYTES // 4, self.stream)

    def median_ms(self, fn: Callable[[], object], reps: int = 20, warmup: int = 3,
                  flush: bool = True) -> float:
        """Kernel time of ``fn`` in milliseconds (L2 flushed before each call): the median
        over ``reps`` calls with events; with CUPTI the mean (the sum of every kernel the
        calls ran, memsets excluded, over ``reps``)."""
        if self.clock == "cupti":
            return self._cupti_ms(fn, reps, warmup, flush)
        with self.dev.activate():
            for _ in range(warmup):
                fn()
            events = [(driver.call(cu.cuEventCreate, 0), driver.call(cu.cuEventCreate, 0))
                      for _ in range(reps)]
            # Give the GPU a few ms of queued work first, so the host stays ahead of it
            # and no event pair times the host's own call overhead (allocations included).
            for i in range(GATE_FLUSHES):
                self._flush(i)
            for i, (start, end) in enumerate(events):
                if flush:
                    self._flush(i)
                driver.call(cu.cuEventRecord, start, self.stream)
                fn()
                driver.call(cu.cuEventRecord, end, self.stream)
            driver.stream_synchronize(self.stream)
            times = [driver.call(cu.cuEventElapsedTime, s, e) for s, e in events]
            for s, e in events:
                driver.call(cu.cuEventDestroy, s)
                driver.call(cu.cuEventDestroy, e)
        return statistics.median(times)

    def interleaved_ms(self, fns: dict[str, Callable[[], object]], reps: int = 20,
                       rounds: int = 3) -> dict[str, float]:
        """``median_ms`` of each function, measured in ``rounds`` alternating rounds (the
        median over them): for ratios between calls, which then see the same drift of the
        card's clocks and temperature instead of each its own stretch of the run."""
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                times[name].append(self.median_ms(fn, reps))
        return {name: statistics.median(t) for name, t in times.items()}

    def _cupti_ms(self, fn: Callable[[], object], reps: int, warmup: int, flush: bool) -> float:
        import torch
        from torch.profiler import ProfilerActivity, profile
        with self.dev.activate():
            for _ in range(warmup):
                fn()
            driver.stream_synchronize(self.stream)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for i in range(GATE_FLUSHES):
                    self._flush(i)
                for i in range(reps):
                    if flush:
                        self._flush(i)
                    fn()
                driver.stream_synchronize(self.stream)
        total_us, kernels = 0.0, 0
        for ev in prof.key_averages():
            if ev.device_type != torch.autograd.DeviceType.CUDA or "memset" in ev.key.lower():
                continue
            total_us += getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0.0)
            kernels += ev.count
        if kernels < reps:
            raise RuntimeError(f"CUPTI saw {kernels} kernels for {reps} calls")
        return total_us / reps / 1e3


def random_fp8_bytes(rng: np.random.Generator, shape) -> np.ndarray:
    """Random E4M3 bit patterns without NaN (0x7F/0xFF) or zeros: realistic operands for timing."""
    x = rng.integers(1, 0x7F, size=shape, dtype=np.uint8)
    sign = rng.integers(0, 2, size=shape, dtype=np.uint8) << 7
    return x | sign



# ------------------------------------------------------------------ operands
# "randn" (default): normal data cast by the library's quantizers, 1x128 per-token scales for
# activations and 128x128 block scales for weights: what real layers and DeepGEMM's own test
# (whose figures BRIEF quotes) feed the kernels. "bytes": uniformly random E4M3 bit patterns
# with random scales (the benches' data before session 11), which keep the tensor cores ~3%
# busier per FLOP (docs/perf-log.md, session 11). Both are the same for every contender.
DATA_KINDS = ("randn", "bytes")


def _random_scales(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape).astype(np.float32) / 448


def fp8_activations(rng: np.random.Generator, shape, stream: int, data: str = "randn"):
    """A ``[..., M, K]`` E4M3 operand and its 1x128 scales: ``(a_fp8, sfa_view, sfa_base)``, sfa
    M-major (``sfa_view`` [..., M, K/128] over ``sfa_base`` [..., K/128, M], the layout the
    kernels read fastest)."""
    from fp8gemm_core.arrays import StridedView
    *lead, m, k = shape
    kg = -(-k // 128)
    if data == "randn":
        import fp8gemm_core as fg
        import torch
        x = torch.randn(tuple(shape), device="cuda", dtype=torch.bfloat16)
        a8, sfa = fg.per_token_cast_to_fp8(x, stream=stream)
        return a8, sfa, sfa.base
    base = DeviceArray.from_numpy(_random_scales(rng, (*lead, kg, m)), 0, stream)
    strides = ((kg * m,) if lead else ()) + (1, m)
    return (DeviceArray.from_numpy(random_fp8_bytes(rng, tuple(shape)), 0, stream),
            StridedView(base, (*lead, m, kg), strides), base)


def fp8_weights(rng: np.random.Generator, shape, stream: int, data: str = "randn"):
    """A ``[..., N, K]`` E4M3 operand and its row-major 128x128 block scales ``[..., N/128, K/128]``."""
    *lead, n, k = shape
    if data == "randn":
        import fp8gemm_core as fg
        import torch
        w = torch.randn(tuple(shape), device="cuda", dtype=torch.bfloat16)
        return fg.per_block_cast_to_fp8(w, stream=stream)
    return (DeviceArray.from_numpy(random_fp8_bytes(rng, tuple(shape)), 0, stream),
            DeviceArray.from_numpy(_random_scales(rng, (*lead, -(-n // 128), -(-k // 128))), 0, stream))


def row_major_sfa(sfa_base: DeviceArray, stream: int) -> DeviceArray:
    """The row-major ``[..., M, K/128]`` copy of M-major scales (their ``[..., K/128, M]`` base),
    through the host (A/B experiments only)."""
    return DeviceArray.from_numpy(np.swapaxes(sfa_base.to_numpy(stream), -1, -2), 0, stream)
