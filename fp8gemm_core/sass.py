"""Post-compile passes over a cubin's SASS: rewrite scheduling control bits only.

A kernel's prelude (the generated code in front of its source) asks for a pass with a
line ``// fp8gemm_core sass pass: <name>``; ``jit`` applies it after NVRTC (and keys the
cache on it). Set ``FP8GEMM_CORE_SASS_PASSES=0`` to compile without passes (A/B).

``ffma-reuse-chain`` (for the GEMM's promotion, ``acc += part * scale``): ptxas emits
the FFMAs of a same-scale run in pairs, and only the first of a pair caches the scale
operand (reuse flag) and keeps the warp; the second reads all three sources from the
register file, a bank conflict when the scale is not cached. The pass marks every FFMA
followed by another plain FFMA reading the same scale register as reuse-and-keep, so the
scale stays in the operand cache through the run. The effect depends on the schedule
ptxas made of each configuration (H100, docs/perf-log.md, session 5): +4.3% at 8192^3
(dense 128x192, CTA pairs), but -14% for the grouped 128x192 kernel; so
``heuristics.uses_ffma_reuse_chain`` asks for it only where it was measured to win. The
opposite (DeepGEMM's "yield after every FFMA") lost 3-5% everywhere.

Encoding facts used (sm_90, checked against nvdisasm on our kernels): an instruction is
16 bytes, little-endian low and high words; opcode in bits 0-11 of the low word (FFMA with
four registers 0x223, BRA 0x947, BSSY 0x945), guard predicate in bits 12-15 (7: always),
Rd/Ra/Rb in bits 16-23/24-31/32-39; the high word holds the yield-keep bit (45) and the
reuse flags (58-61, b at 59). The reuse cache carries a value only into the next
instruction, so the pass never marks an FFMA whose successor is a branch target (BRA:
4 * (sext(lo >> 34) * 256 + (lo >> 16 & 0xff)) bytes after the next instruction; BSSY:
sext(lo >> 32) bytes) or one that overwrites its own scale register.
"""

from __future__ import annotations

import struct
from typing import Callable

__all__ = ["PASSES", "VERSION", "ffma_reuse_chain", "loads_between_wgmma"]

VERSION = 1  # bump when a pass's output changes: it is part of the JIT cache key

FFMA, BRA, BSSY = 0x223, 0x947, 0x945
QGMMA, WARPGROUP_SYNC, LDS, FMUL = 0x9F3, 0x9C5, 0x984, 0x220  # WARPGROUP_SYNC: ARRIVE and DEPBAR
KEEP_WARP = 1 << 45
REUSE_B = 1 << 59


def _text_sections(cubin: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of every ``.text.*`` section of an ELF64 cubin."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2:
        raise ValueError("cubin: expected an ELF64 image")
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
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _branch_targets(lo: list[int]) -> set[int]:
    targets = set()
    for i, word in enumerate(lo):
        op = word & 0xFFF
        if op == BRA:
            targets.add(i + 1 + (_signed(word, 64) >> 34) * 64 + ((word >> 16) & 0xFF) // 4)
        elif op == BSSY:
            targets.add(i + 1 + _signed(word >> 32, 32) // 16)
    return targets


def ffma_reuse_chain(cubin: bytes) -> tuple[bytes, int]:
    """The cubin with same-scale FFMA runs chained through the reuse cache (see the module
    docstring), and the number of instructions changed."""
    buf = bytearray(cubin)
    changed = 0
    for offset, size in _text_sections(cubin):
        n = size // 16
        lo = [struct.unpack_from("<Q", buf, offset + 16 * i)[0] for i in range(n)]
        targets = _branch_targets(lo)

        def plain_ffma(i: int) -> bool:
            return (lo[i] & 0xFFF) == FFMA and (lo[i] >> 12) & 0xF == 7

        for i in range(n - 1):
            if not (plain_ffma(i) and plain_ffma(i + 1)) or i + 1 in targets:
                continue
            rd, rb = (lo[i] >> 16) & 0xFF, (lo[i] >> 32) & 0xFF
            hi_at = offset + 16 * i + 8
            hi, = struct.unpack_from("<Q", buf, hi_at)
            if (lo[i + 1] >> 32) & 0xFF == rb and rd != rb and not hi & REUSE_B:
                struct.pack_into("<Q", buf, hi_at, hi | KEEP_WARP | REUSE_B)
                changed += 1
    return bytes(buf), changed


def loads_between_wgmma(cubin: bytes) -> int:
    """How many shared-memory loads (LDS) and register FMULs sit between two wgmma (QGMMA) of
    one batch (no warpgroup arrive / wait or branch between them). The GEMM reads its scales
    with such loads; ptxas moved them into the batch, where the FMUL waiting for them held
    back the last wgmma (-12% at 2048x7168x7168, docs/perf-log.md session 9)."""
    count = 0
    for offset, size in _text_sections(cubin):
        pending = 0  # LDS / FMUL seen since the last QGMMA of the current batch
        in_batch = False
        for i in range(size // 16):
            op = struct.unpack_from("<Q", cubin, offset + 16 * i)[0] & 0xFFF
            if op == QGMMA:
                count += pending if in_batch else 0
                in_batch, pending = True, 0
            elif op in (WARPGROUP_SYNC, BRA, BSSY):
                in_batch, pending = False, 0
            elif op in (LDS, FMUL) and in_batch:
                pending += 1
    return count


PASSES: dict[str, Callable[[bytes], tuple[bytes, int]]] = {"ffma-reuse-chain": ffma_reuse_chain}
