"""Shared GPU gate for tests: ``@requires_gpu`` skips, with the reason shown, where no
sm_90 GPU is usable (CPU-only CI), and runs the test on an H100/H200."""

from __future__ import annotations

import pytest

from fp8gemm_core import driver


def _gpu_reason() -> str | None:
    try:
        if driver.device_count() == 0:
            return "no CUDA GPU available"
        dev = driver.get_device(0)
    except Exception as e:  # no driver at all on CPU machines
        return f"no CUDA GPU available ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    if not dev.is_hopper():
        return f"needs an sm_90 GPU (H100/H200), device 0 is {dev.name}"
    return None


GPU_SKIP_REASON = _gpu_reason()
requires_gpu = pytest.mark.skipif(GPU_SKIP_REASON is not None, reason=GPU_SKIP_REASON or "")


def gpu_count() -> int:
    return 0 if GPU_SKIP_REASON else driver.device_count()
