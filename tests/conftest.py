# Shared test setup.
#
# GPU tests: mark them `@pytest.mark.gpu` (or decorate with `requires_gpu` from
# tests/gpu_support.py: the same gate). Where no sm_90 (H100/H200) GPU is usable,
# e.g. on CPU-only CI, they are skipped with the reason
# "no CUDA GPU (sm_90) available: ...", shown by `pytest -ra`.
from __future__ import annotations

import pytest

from gpu_support import GPU_SKIP_REASON


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs an sm_90 GPU; skipped, with the reason, where none is usable")


def pytest_collection_modifyitems(config, items):
    if GPU_SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=f"no CUDA GPU (sm_90) available: {GPU_SKIP_REASON}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    # The GEMM tests record each relative error against the reference; show the spread.
    import sys
    mod = sys.modules.get("test_gemm")
    errors = getattr(mod, "ERRORS", None)
    if errors:
        e = sorted(errors)
        terminalreporter.write_line(
            f"fp8_gemm_nt relative error vs numpy reference over {len(e)} checks: "
            f"median {e[len(e) // 2]:.2e}, max {e[-1]:.2e}")
