"""bench/sass_patch.py (an experiment tool): it changes only FFMA control bits (CPU only)."""

from __future__ import annotations

import os
import struct
import sys

import pytest

from fp8gemm_core import gemm, jit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import sass_patch  # noqa: E402


@pytest.mark.parametrize("mode", ["chain", "yield"])
def test_only_ffma_control_bits_change(mode):
    source, name, prelude = gemm.default_kernel_spec(8192, 8192, 8192, 132)
    cubin = jit.compile_kernel(source, name, prelude=prelude).cubin
    patched, changed = sass_patch.patch_ffma(cubin, mode)
    assert changed > 0 and len(patched) == len(cubin)
    differing = 0
    for offset, size in sass_patch._text_sections(cubin):
        for at in range(offset, offset + size, 16):
            lo, hi = struct.unpack_from("<QQ", cubin, at)
            new_lo, new_hi = struct.unpack_from("<QQ", patched, at)
            if (lo, hi) != (new_lo, new_hi):
                differing += 1
                assert lo == new_lo and lo & 0xFFF == sass_patch.FFMA
                assert (hi ^ new_hi) & ~(sass_patch.KEEP_WARP | sass_patch.REUSE_B) == 0
    assert differing == changed


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode: expected 'chain' or 'yield', got 'fast'"):
        sass_patch.patch_ffma(b"", "fast")
