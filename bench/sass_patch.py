"""Experiment (benchmarks only, never the library): rewrite control bits of FFMAs in a cubin.

Why: ncu shows each promotion FFMA taking ~2.5 issue cycles while wgmma run (docs/perf-log.md,
session 4). ptxas emits the promotion as pairs: the first FFMA of a pair keeps the warp
(control bit 45 set) and marks its scale operand for the reuse cache (bit 59), the second lets
the scheduler switch warps and reads every operand from the register file. With two register
banks and three source operands, that second read has a bank conflict whenever the scale is
not cached. Two ways to test what limits:

* ``chain``: also keep the warp and cache the scale on the second FFMA of a run with the same
  scale register (fewer bank conflicts, fewer chances for the other warps to issue);
* ``yield``: the opposite, as DeepGEMM's SASS pass does: drop the reuse mark and let the
  scheduler switch after every FFMA (more chances to issue wgmma, more conflicts).

Encoding facts used (sm_90, checked against nvdisasm on our kernels): an instruction is 16
bytes, little-endian low and high words; opcode in bits 0-11 of the low word (FFMA with four
registers 0x223, BRA 0x947, BSSY 0x945), guard predicate in bits 12-15 (7: always), Rd/Ra/Rb
in bits 16-23/24-31/32-39; the high word holds the yield-keep bit (45) and the reuse marks
(58-61, b at 59). Branch targets (BRA: 4 * (sext(lo >> 34) * 256 + (lo >> 16 & 0xff)) bytes
after the next instruction; BSSY: sext(lo >> 32) bytes) are never the second of a chained pair.
"""

from __future__ import annotations

import dataclasses
import struct

FFMA, BRA, BSSY = 0x223, 0x947, 0x945
KEEP_WARP = 1 << 45
REUSE_B = 1 << 59


def _text_sections(cubin: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of every ``.text.*`` section of an ELF64 cubin."""
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", cubin, shoff + i * shentsize)
        return name, offset, size

    _, str_off, _ = header(shstrndx)
    out = []
    for i in range(shnum):
        name, offset, size = header(i)
        end = cubin.index(b"\0", str_off + name)
        if cubin[str_off + name:end].startswith(b".text."):
            out.append((offset, size))
    return out


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def patch_ffma(cubin: bytes, mode: str) -> tuple[bytes, int]:
    """The cubin with the FFMA control bits rewritten by ``mode`` ('chain' or 'yield'), and
    how many instructions changed."""
    if mode not in ("chain", "yield"):
        raise ValueError(f"mode: expected 'chain' or 'yield', got {mode!r}")
    buf = bytearray(cubin)
    changed = 0
    for offset, size in _text_sections(cubin):
        n = size // 16
        lo = [struct.unpack_from("<Q", buf, offset + 16 * i)[0] for i in range(n)]
        hi = [struct.unpack_from("<Q", buf, offset + 16 * i + 8)[0] for i in range(n)]
        targets = set()
        for i in range(n):
            op = lo[i] & 0xFFF
            if op == BRA:
                targets.add(i + 1 + (_signed(lo[i], 64) >> 34) * 64 + ((lo[i] >> 16) & 0xFF) // 4)
            elif op == BSSY:
                targets.add(i + 1 + _signed(lo[i] >> 32, 32) // 16)

        def plain_ffma(i: int) -> bool:
            return (lo[i] & 0xFFF) == FFMA and (lo[i] >> 12) & 0xF == 7

        for i in range(n):
            if not plain_ffma(i):
                continue
            rd, rb = (lo[i] >> 16) & 0xFF, (lo[i] >> 32) & 0xFF
            if mode == "chain":
                if (i + 1 < n and plain_ffma(i + 1) and (lo[i + 1] >> 32) & 0xFF == rb and rd != rb
                        and i + 1 not in targets and not hi[i] & REUSE_B):
                    hi[i] |= KEEP_WARP | REUSE_B
                    changed += 1
            elif hi[i] & REUSE_B:
                hi[i] &= ~(KEEP_WARP | REUSE_B)
                changed += 1
        for i in range(n):
            struct.pack_into("<Q", buf, offset + 16 * i + 8, hi[i])
    return bytes(buf), changed


def install(mode: str) -> None:
    """Patch every GEMM kernel this process compiles (bench_gemm.py --sass MODE)."""
    from fp8gemm_core import jit

    compile_kernel = jit.compile_kernel

    def patched(source, name_expr, **kw):
        ck = compile_kernel(source, name_expr, **kw)
        if source != "fp8_gemm.cu":
            return ck
        cubin, changed = patch_ffma(ck.cubin, mode)
        print(f"sass_patch {mode}: {changed} FFMAs changed in {name_expr}")
        return dataclasses.replace(ck, cubin=cubin)

    jit.compile_kernel = patched
