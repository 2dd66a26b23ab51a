"""sass: the post-compile pass changes only FFMA control bits; jit applies what a source asks for."""

from __future__ import annotations

import struct

import pytest

from fp8gemm_core import gemm, jit, sass


MARKER = "// fp8gemm_core sass pass: ffma-reuse-chain"


def _compile(monkeypatch, passes_on: bool):
    monkeypatch.setenv("FP8GEMM_CORE_SASS_PASSES", "1" if passes_on else "0")
    jit.clear_memory_cache()
    # A configuration whose prelude asks for the pass (128x192 with CTA pairs).
    source, name, prelude = next(spec for spec in gemm.gemm_kernel_configs() if MARKER in spec[2])
    try:
        return jit.compile_kernel(source, name, prelude=prelude)
    finally:
        jit.clear_memory_cache()


def test_reuse_chain_changes_only_ffma_control_bits(monkeypatch):
    cubin = _compile(monkeypatch, False).cubin
    patched, changed = sass.ffma_reuse_chain(cubin)
    assert changed > 0 and len(patched) == len(cubin)
    differing = 0
    for offset, size in sass._text_sections(cubin):
        for at in range(offset, offset + size, 16):
            lo, hi = struct.unpack_from("<QQ", cubin, at)
            new_lo, new_hi = struct.unpack_from("<QQ", patched, at)
            if (lo, hi) != (new_lo, new_hi):
                differing += 1
                assert lo == new_lo and lo & 0xFFF == sass.FFMA
                assert (hi ^ new_hi) & ~(sass.KEEP_WARP | sass.REUSE_B) == 0
    assert differing == changed
    assert sass.ffma_reuse_chain(patched) == (patched, 0), "the pass is idempotent"


def test_jit_applies_the_pass_the_prelude_asks_for(monkeypatch):
    plain = _compile(monkeypatch, False)
    passed = _compile(monkeypatch, True)
    assert passed.key != plain.key
    # Same code as the pass applied by hand (NVRTC names each program uniquely, so only
    # the code sections are comparable byte for byte).
    expected = sass.ffma_reuse_chain(plain.cubin)[0]

    def code(cubin):
        return [cubin[o:o + n] for o, n in sass._text_sections(cubin)]
    assert code(passed.cubin) == code(expected)
    assert "sass pass ffma-reuse-chain:" in passed.log or passed.origin == "disk"
    assert (passed.registers, passed.spill_stores) == (plain.registers, plain.spill_stores)


def test_only_the_measured_winner_asks_for_the_pass():
    asking = [name for _, name, prelude in gemm.gemm_kernel_configs() if MARKER in prelude]
    assert asking and all(n.startswith("fp8_gemm_nt<128, 192, ") for n in asking)
    assert all(n.split(", ")[3] == "2" and n.split(", ")[8] == "0" for n in asking)  # dense CTA pairs only


def test_unknown_pass_is_an_error():
    with pytest.raises(jit.JitError, match="unknown sass pass 'fast'"):
        jit.compile_kernel("selftest.cu", "add_one", prelude="// fp8gemm_core sass pass: fast\n")


def test_rejects_what_is_not_a_cubin():
    with pytest.raises(ValueError, match="cubin: expected an ELF64 image"):
        sass.ffma_reuse_chain(b"not an elf file")


def test_loads_between_wgmma_finds_a_load_moved_into_a_batch():
    source, name, prelude = next(spec for spec in gemm.gemm_kernel_configs()
                                 if spec[1] == "fp8_gemm_nt<128, 128, 5, 1, 0, 0, 0, 1, 0, 0, 1>")
    cubin = jit.compile_kernel(source, name, prelude=prelude).cubin
    assert sass.loads_between_wgmma(cubin) == 0
    offset, size = max(sass._text_sections(cubin), key=lambda section: section[1])
    ops = [struct.unpack_from("<Q", cubin, offset + 16 * i)[0] & 0xFFF for i in range(size // 16)]
    wgmma = [i for i, op in enumerate(ops) if op == sass.QGMMA]
    # Two wgmma of one batch, and the first load after them.
    first = next(a for a, b in zip(wgmma, wgmma[1:]) if b - a < 8 and sass.WARPGROUP_SYNC not in ops[a:b])
    load = first + ops[first:].index(sass.LDS)
    # Move that load to just after the batch's first wgmma (the schedule ptxas used to make).
    at, src = offset + 16 * (first + 1), offset + 16 * load
    moved = cubin[:at] + cubin[src:src + 16] + cubin[at:src] + cubin[src + 16:]
    assert len(moved) == len(cubin)
    assert sass.loads_between_wgmma(moved) >= 1
