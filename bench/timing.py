"""Kernel timing for the benches: CUDA events around each call, L2 flushed before it.

Framework-free (driver API through fp8gemm_core.driver), so the same clock times
our kernels and, where torch is importable, cuBLAS on the same stream.
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
    def __init__(self, stream: int = 0, device: int = 0):
        self.stream = stream
        self.dev = driver.get_device(device)
        with self.dev.activate():
            self.flush_buf = DeviceArray.empty((FLUSH_BYTES // 4,), np.uint32, device=device,
                                               stream=stream)

    def _flush(self, i: int) -> None:
        driver.call(cu.cuMemsetD32Async, self.flush_buf.ptr, i, FLUSH_BYTES // 4, self.stream)

    def median_ms(self, fn: Callable[[], object], reps: int = 20, warmup: int = 3,
                  flush: bool = True) -> float:
        """Median kernel time of ``fn`` in milliseconds (L2 flushed before each call)."""
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


def random_fp8_bytes(rng: np.random.Generator, shape) -> np.ndarray:
    """Random E4M3 bit patterns without NaN (0x7F/0xFF) or zeros: realistic operands for timing."""
    x = rng.integers(1, 0x7F, size=shape, dtype=np.uint8)
    sign = rng.integers(0, 2, size=shape, dtype=np.uint8) << 7
    return x | sign

