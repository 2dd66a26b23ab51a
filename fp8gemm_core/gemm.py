"""Dense FP8 GEMM, NT layout: ``D = (C +) A @ B^T`` with 1x128 / 128x128 scales.

Launcher of ``cuda/fp8_gemm.cu``. The first call with a new signature (shapes,
strides, dtypes, device, alignment) validates it, picks a tile configuration
(``heuristics``), compiles or loads the kernel (``jit``) and fills the kernel
parameters; a later call with the same signature only writes its pointers (and
new tensor maps when A or B moved) before the launch.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from . import arrays, driver, heuristics, jit, tma
from .codegen import wgmma_fp8_source
from .heuristics import (BLOCK_K, LARGE_TILE_SPEED, GemmConfig, candidate_block_ns, choose_gemm_config,
                         copies_scales_m_major, effective_num_sms, gpu_profile, stages_for, uses_ffma_reuse_chain,
                         uses_overlap)

__all__ = ["fp8_gemm_nt", "gemm_kernel_configs", "default_kernel_spec"]

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
FP8 = np.dtype(ml_dtypes.float8_e4m3fn)

_C_MODES = {None: 0, F32: 1, BF16: 2}
# Kernel parameters, in order (see cuda/fp8_gemm.cu).
_PARAMS = ("tmap_a", "tmap_b", "tmap_d", "sfa", "sfa_stride_m", "sfa_stride_k", "sfb", "sfb_stride_n",
           "sfb_stride_k", "d", "ldd", "c", "ldc", "M", "N", "K", "group_n",
           "group_starts", "group_ends", "group_counts", "group_stride", "num_groups", "sfa_stride_g",
           "sfb_stride_g")
_PARAM_KINDS = ("tmap", "tmap", "tmap", "u64", "i64", "i64", "u64", "i64", "i64", "u64", "i64", "u64",
                "i64", "i32", "i32", "i32", "i32", "u64", "u64", "u64", "i32", "i32", "i64", "i64")
_P = {name: i for i, name in enumerate(_PARAMS)}
_D_ROWS = 64    # rows of one TMA store box: one consumer warpgroup's share of the tile
_D_SLAB = 32    # bytes of one TMA store box's rows (32-byte swizzle)


@dataclass
class _Plan:
    """A problem shape's tile configuration and its loaded kernel."""

    config: GemmConfig
    kernel: Any


_plans: dict[tuple, _Plan] = {}


def _kernel_spec(cfg: GemmConfig, out_fp32: bool, c_mode: int, grouped: bool = False) -> tuple[str, str, str]:
    name = (f"fp8_gemm_nt<{cfg.block_m}, {cfg.block_n}, {cfg.stages}, {cfg.cluster_m}, "
            f"{int(cfg.overlap)}, {int(out_fp32)}, {c_mode}, {_tma_store_mode(cfg)}, {int(grouped)}, "
            f"{cfg.resident_a}, {cfg.split_k}>")
    prelude = wgmma_fp8_source(heuristics.wgmma_n(cfg.block_n))
    if uses_ffma_reuse_chain(cfg.block_m, cfg.block_n, cfg.cluster_m, grouped):
        prelude += "\n// fp8gemm_core sass pass: ffma-reuse-chain\n"
    return "fp8_gemm.cu", name, prelude


def _tma_store_mode(cfg: GemmConfig) -> int:
    # The kernel's kTmaStore: 0 register stores, 1 staged in a buffer of its own, 2 over the ring.
    return 0 if not cfg.staged_out_bytes else 2 if cfg.out_in_ring else 1


def _staged_out_bytes(ldd: int, itemsize: int, aligned: bool = True) -> int:
    # The TMA-store epilogue needs 16-byte aligned output rows; otherwise stores go from registers.
    return itemsize if aligned and (ldd * itemsize) % 16 == 0 else 0


def default_kernel_spec(m: int, n: int, k: int, num_sms: int, out_fp32: bool = False,
                        profile: str = "h200") -> tuple[str, str, str]:
    """The kernel a call with a library-allocated output would use on a GPU of kind ``profile``
    (``heuristics.gpu_profile``; for AOT builds and benchmarks)."""
    cfg = choose_gemm_config(m, n, k, num_sms, _staged_out_bytes(n, 4 if out_fp32 else 2), profile=profile)
    return _kernel_spec(cfg, out_fp32, 0)


def gemm_kernel_configs() -> list[tuple[str, str, str]]:
    """Every (source, name_expr, prelude) the heuristics can choose, dense and grouped
    (grouped: no C, CTA pairs on the tiles GROUPED_PAIR_SPEED names): for AOT builds and spill checks."""
    specs = []
    tiles = [(bm, bn) for bm in (64, 128) for bn in candidate_block_ns()]
    tiles += [t for t in LARGE_TILE_SPEED if t not in tiles]  # the 192-row ones
    for bm, bn in tiles:
        for out_fp32 in (False, True):
            for tma_store in (False, True):
                staged = heuristics.out_staging(bm, bn, (4 if out_fp32 else 2) if tma_store else 0)
                for cluster_m in (1, 2):
                    dense = heuristics.tile_fits(bm, bn, cluster_m)
                    # Grouped: CTA pairs only on the tiles some GPU kind pairs (GROUPED_PAIR_SPEED).
                    grouped = heuristics.tile_fits(bm, bn, cluster_m, grouped=True) and (
                        cluster_m == 1 or any((bm, bn) in t for t in heuristics.GROUPED_PAIR_SPEED.values()))
                    # (Overlap is used only up to two waves of tiles: both loops are shipped.)
                    for overlap in dict.fromkeys((uses_overlap(bm, bn), False)) if dense or grouped else ():
                        cfg = GemmConfig(bm, bn, stages_for(bm, bn, staged), 1, 2, cluster_m,
                                         overlap=overlap, staged_out_bytes=staged)
                        for c_mode in (0, 1, 2) if dense else ():
                            specs.append(_kernel_spec(cfg, out_fp32, c_mode))
                        # Resident A (heuristics.with_resident_a): large dense pairs, bf16 staged.
                        if dense and cluster_m == 2 and staged == 2 and not overlap and (bm, bn) in LARGE_TILE_SPEED:
                            for k_blocks in range(1, heuristics.RESIDENT_A_MAX_K_BLOCKS + 1):
                                resident = heuristics.with_resident_a(cfg, k_blocks, 1)
                                for c_mode in (0, 1, 2) if resident is not None else ():
                                    specs.append(_kernel_spec(resident, out_fp32, c_mode))
                        if grouped:
                            specs.append(_kernel_spec(cfg, out_fp32, 0, grouped=True))
                            ring = heuristics.output_in_ring(cfg, (4 if out_fp32 else 2) if tma_store else 0)
                            if ring is not None:
                                specs.append(_kernel_spec(ring, out_fp32, 0, grouped=True))
    # Split-K over CTA pairs (heuristics.with_split_k): 64- and 128-row tiles up to SPLIT_K_MAX_BLOCK_N wide.
    for bm, bn in tiles:
        if bm <= 128 and bn <= heuristics.SPLIT_K_MAX_BLOCK_N:
            cfg = GemmConfig(bm, bn, stages_for(bm, bn, 4), 1, 2, overlap=uses_overlap(bm, bn), split_k=2)
            for out_fp32 in (False, True):
                for c_mode in (0, 1, 2):
                    specs.append(_kernel_spec(cfg, out_fp32, c_mode))
    return list(dict.fromkeys(specs))  # (out_staging can make two entries one)


def _dtype_name(dt: Any) -> np.dtype:
    if isinstance(dt, str):
        table = {"bf16": BF16, "bfloat16": BF16, "fp32": F32, "float32": F32}
        if dt not in table:
            raise ValueError(f"out_dtype: expected 'bf16' or 'fp32', got {dt!r}")
        return table[dt]
    try:
        d = np.dtype(dt)
    except TypeError:
        d = None
    if d not in (BF16, F32):
        raise ValueError(f"out_dtype: expected bfloat16 or float32, got {dt!r}")
    return d


def _pair(x: Any, name: str) -> tuple[Any, Any]:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError(f"{name}: expected a pair (fp8 data, fp32 scales), got {type(x).__name__}")
    return x[0], x[1]


def fp8_gemm_nt(a: tuple[Any, Any], b: tuple[Any, Any], out: Any = None, *, c: Any = None,
                out_dtype: Any = None, stream: Any = None) -> Any:
    """FP8 GEMM ``out = (c +) A @ B^T`` with DeepSeek-style fine-grained scaling.

    Args:
        a: ``(a_fp8, sfa)``: ``a_fp8`` [M, K] E4M3 (float8_e4m3fn, or a uint8 view of
            it), row-major with 16-byte aligned rows; ``sfa`` [M, ceil(K/128)] float32,
            one scale per row per 128-wide K group, any strides. Fastest: M-major
            (column-major, strides (1, ld) with ld a multiple of 4, as
            ``per_token_cast_to_fp8`` writes it): a large tile then copies its scales
            of one K block in one bulk transfer instead of one 32-byte L2 sector per
            row (row-major sfa measured 11-13% slower on large shapes). Other layouts,
            e.g. the row-major one most quantizers write, work too; from M = 1000 on
            large tiles the call first makes an M-major copy (a few microseconds).
        b: ``(b_fp8, sfb)``: ``b_fp8`` [N, K] E4M3, K contiguous; ``sfb``
            [ceil(N/128), ceil(K/128)] float32, one scale per 128x128 block, any strides.
        out: optional [M, N] output (``out_dtype``), row-major; allocated when None.
        c: optional [M, N] float32 or bfloat16 added to the product (may be ``out``).
        out_dtype: ``"bf16"`` or ``"fp32"`` (or the numpy/ml_dtypes dtype); default: bf16,
            or ``out``'s dtype when ``out`` is given.
        stream: stream to launch on (int handle, torch/cupy stream, or None for the
            legacy default stream).
    Returns:
        ``out``: the given array, or a new ``DeviceArray`` (numpy in, numpy out).

    Requirements of this kernel: N even, K a multiple of 16 (TMA row alignment),
    all arrays on the same sm_90 GPU. Any M >= 0 and any K/N tail are handled.
    """
    s = stream if type(stream) is int else driver.stream_handle(stream)
    a8, sfa = _pair(a, "a")
    b8, sfb = _pair(b, "b")
    read = arrays.call_reader(s)
    A, SA = read(a8, "a[0]", True), read(sfa, "a[1]")
    B, SB = read(b8, "b[0]", True), read(sfb, "b[1]")
    C = None if c is None else read(c, "c")
    O = None if out is None else read(out, "out")

    # Everything validation and planning depend on, except the data pointers: a call
    # that matches an earlier one skips straight to the launch.
    sig = (A.shape, A.strides, A.dtype, A.device, SA.shape, SA.strides, SA.dtype, SA.device,
           B.shape, B.strides, B.dtype, B.device, SB.shape, SB.strides, SB.dtype, SB.device,
           None if C is None else (C.shape, C.strides, C.dtype, C.device, C.ptr & 7),
           None if O is None else (O.shape, O.strides, O.dtype, O.device, O.ptr & 15),
           (A.ptr | B.ptr) & 15, out_dtype, heuristics._num_sms_override)
    call = _calls.get(sig)
    if call is None:
        named = (("a[0]", A), ("a[1]", SA), ("b[0]", B), ("b[1]", SB), ("c", C), ("out", O))
        call = _prepare_call(named, out_dtype)
        if call is None:  # host (numpy) arrays: staged through the device
            return _on_host_arrays(named, (a8, sfa, b8, sfb, c, out), out_dtype, s)
        if len(_calls) >= _MAX_CALLS:  # e.g. a decode loop over many M: start over
            _calls.clear()
        _calls[sig] = call
    if O is None:
        out = arrays.DeviceArray.empty(call.out_shape, call.out_dtype, call.device.ordinal, s)
        o_ptr = out.ptr
    else:
        o_ptr = O.ptr
    if call.plan is None:  # an empty output: nothing to compute
        return out

    p = call.params
    with _launch_lock, call.device.activate():  # (encoding a tensor map needs the context)
        scratch = None
        if call.sfa_ld:  # row-major sfa on a large tile: read an M-major copy instead
            scratch = _m_major_scales(SA, call.sfa_ld, call.device, s)
        p.set(_P["sfa"], SA.ptr if scratch is None else scratch.ptr)
        p.set(_P["sfb"], SB.ptr)
        p.set(_P["d"], o_ptr)
        if C is not None:
            p.set(_P["c"], C.ptr)
        if A.ptr != call.a_ptr:
            p.set(_P["tmap_a"], tma.make_tensor_map(A.ptr, FP8, A.shape, A.strides, call.box_a,
                                                    tma.SWIZZLE_128B, name="a[0]"))
            call.a_ptr = A.ptr
        if B.ptr != call.b_ptr:
            p.set(_P["tmap_b"], tma.make_tensor_map(B.ptr, FP8, B.shape, B.strides, call.box_b,
                                                    tma.SWIZZLE_128B, name="b[0]"))
            call.b_ptr = B.ptr
        if call.box_d and o_ptr != call.d_ptr:
            p.set(_P["tmap_d"], tma.make_tensor_map(o_ptr, call.out_dtype, call.out_shape,
                                                    (call.ldd, 1), call.box_d, tma.SWIZZLE_32B,
                                                    name="out"))
            call.d_ptr = o_ptr
        driver.launch_fast(call.kernel, call.grid, call.threads, call.smem, s, p)
    del scratch  # freed in stream order, after the GEMM
    return out


@dataclass
class _Call:
    """A validated call signature: its plan, kernel parameters and launch configuration."""

    device: driver.Device
    out_shape: tuple[int, int]
    out_dtype: np.dtype
    plan: _Plan | None = None
    params: driver.KernelParams | None = None
    kernel: int = 0  # the CUkernel handle as an int, for driver.launch_fast
    grid: int = 0
    threads: int = 0
    smem: int = 0
    box_a: tuple[int, int] = (0, 0)
    box_b: tuple[int, int] = (0, 0)
    box_d: tuple[int, int] | None = None  # None: the epilogue stores from registers, no tensor map
    ldd: int = 0
    sfa_ld: int = 0  # > 0: sfa is copied M-major (column stride sfa_ld) before each launch
    a_ptr: int = -1
    b_ptr: int = -1
    d_ptr: int = -1


_calls: dict[tuple, _Call] = {}
_MAX_CALLS = 4096
# A signature's parameter block is shared: writing it and launching from it must not
# interleave between threads (the driver copies the parameters at launch).
_launch_lock = threading.Lock()


def _prepare_call(named, out_dtype) -> _Call | None:
    """Validate a new call signature and build its launch state (None for host arrays)."""
    (_, A), (_, SA), (_, B), (_, SB), (_, C), (_, O) = named
    odt = BF16 if out_dtype is None else _dtype_name(out_dtype)
    if O is not None:
        if O.dtype not in (BF16, F32):
            raise TypeError(f"out: expected bfloat16 or float32, got {O.dtype}")
        if out_dtype is not None and odt != O.dtype:
            raise ValueError(f"out_dtype: {out_dtype!r} disagrees with out's dtype {O.dtype}")
        odt = O.dtype
    M, N, K = _check_shapes(A, SA, B, SB, C, O)
    if any(x is not None and x.device is None for _, x in named):
        return None
    device = driver.get_device(arrays.check_same_device(*named))
    device.require_hopper()
    for name, X in (("out", O), ("c", C)):
        if X is not None:
            _check_output(X, name)
    call = _Call(device, (M, N), odt)
    if M == 0 or N == 0:
        return call
    call.ldd = N if O is None else O.strides[0]  # out is allocated C-contiguous when not given
    staged = _staged_out_bytes(call.ldd, odt.itemsize, O is None or O.ptr % 16 == 0)
    key = (M, N, K, odt == F32, _C_MODES[None if C is None else C.dtype], staged, device.ordinal,
           effective_num_sms(device.num_sms))
    plan = _plans.get(key) or _make_plan(key, device)
    cfg = plan.config
    staged = cfg.staged_out_bytes  # (0 where the tile leaves no room to stage the output)
    call.plan = plan
    call.params = p = driver.KernelParams(_PARAM_KINDS)
    if copies_scales_m_major(SA.strides, M, cfg):
        call.sfa_ld = -(-M // 4) * 4  # 16-byte aligned columns, as the bulk copy needs
    p.set(_P["sfa_stride_m"], 1 if call.sfa_ld else SA.strides[0])
    p.set(_P["sfa_stride_k"], call.sfa_ld or SA.strides[1])
    p.set(_P["sfb_stride_n"], SB.strides[0])
    p.set(_P["sfb_stride_k"], SB.strides[1])
    p.set(_P["ldd"], call.ldd)
    if C is not None:
        p.set(_P["ldc"], C.strides[0])
    p.set(_P["M"], M)
    p.set(_P["N"], N)
    p.set(_P["K"], K)
    p.set(_P["group_n"], cfg.group_n)
    call.box_a = (cfg.block_m, BLOCK_K)
    call.box_b = (cfg.block_n // cfg.cluster_m, BLOCK_K)
    if staged:
        call.box_d = (_D_ROWS, _D_SLAB // odt.itemsize)
    else:
        p.set(_P["tmap_d"], driver.unused_tensor_map())
    call.kernel = int(plan.kernel.handle)
    call.grid, call.threads, call.smem = cfg.num_sms, cfg.threads, cfg.smem_bytes
    return call


def _m_major_scales(SA, ld: int, device: driver.Device, stream: int) -> arrays.DeviceArray:
    """An M-major copy of sfa [M, kg] (or [G, M, kg]): a [kg, ld] (or [G, kg, ld]) buffer,
    freed in stream order once dropped."""
    G, M, kg = SA.shape if SA.ndim == 3 else (1,) + SA.shape
    stride_g = SA.strides[0] if SA.ndim == 3 else 0
    copy = arrays.DeviceArray.empty((G, kg, ld), F32, device.ordinal, stream)
    kernel = jit.get_kernel("scales_layout.cu", "scales_to_m_major", device=device)
    p = driver.KernelParams(("u64", "i64", "i64", "i64", "i32", "i32", "u64", "i32", "i64"))
    for i, v in enumerate((SA.ptr, stride_g, SA.strides[-2], SA.strides[-1], M, kg, copy.ptr, ld,
                           kg * ld)):
        p.set(i, v)
    driver.launch_fast(int(kernel.handle), G * -(-M // 32) * -(-kg // 32), 256, 0, stream, p)
    return copy


def _make_plan(key: tuple, device: driver.Device) -> _Plan:
    M, N, K, out_fp32, c_mode, staged, _, num_sms = key
    cfg = choose_gemm_config(M, N, K, num_sms, staged, profile=gpu_profile(device.memory_bytes))
    source, name, prelude = _kernel_spec(cfg, out_fp32, c_mode)
    kernel = jit.get_kernel(source, name, prelude=prelude, options=_extra_nvrtc_options(),
                            device=device, max_dynamic_smem=cfg.smem_bytes)
    cluster = cfg.cluster_m * cfg.split_k
    if cluster > 1:
        with device.activate():
            resident = driver.max_active_clusters(kernel.handle, cfg.threads, cfg.smem_bytes, cluster)
        cfg = dataclasses.replace(cfg, num_sms=min(cfg.num_sms, resident * cluster))
    plan = _Plan(cfg, kernel)
    _plans[key] = plan
    return plan


def _extra_nvrtc_options() -> tuple[str, ...]:
    # For kernel experiments (e.g. -DFP8GEMM_EXPERIMENT_SKIP_MMA); part of the cache key.
    return tuple(os.environ.get("FP8GEMM_CORE_NVRTC_OPTIONS", "").split())


def _check_shapes(A, SA, B, SB, C, O) -> tuple[int, int, int]:
    if A.ndim != 2:
        raise ValueError(f"a[0]: expected a 2-D [M, K] array, got shape {A.shape}")
    if B.ndim != 2:
        raise ValueError(f"b[0]: expected a 2-D [N, K] array, got shape {B.shape}")
    M, K = A.shape
    N, KB = B.shape
    if KB != K:
        raise ValueError(f"b[0]: expected K = {K} columns to match a[0] {A.shape}, got shape {B.shape}")
    kg, ng = -(-K // 128), -(-N // 128)
    arrays.check_shape(SA, "a[1]", (M, kg))
    arrays.check_shape(SB, "b[1]", (ng, kg))
    arrays.check_dtype(SA, "a[1]", F32)
    arrays.check_dtype(SB, "b[1]", F32)
    if C is not None:
        arrays.check_shape(C, "c", (M, N))
        if C.dtype not in (F32, BF16):
            raise TypeError(f"c: expected float32 or bfloat16, got {C.dtype}")
    if O is not None:
        arrays.check_shape(O, "out", (M, N))
    if N % 2:
        raise ValueError(f"b[0]: this kernel needs N even, got N = {N}")
    if K % 16:
        raise ValueError(f"a[0]: this kernel needs K a multiple of 16 (TMA row alignment), got K = {K}")
    if M and K:
        arrays.check_tma_compatible(A, "a[0]")
        arrays.check_tma_compatible(B, "b[0]")
    return M, N, K


def _check_output(X, name: str) -> None:
    # Two adjacent columns go out in one 4- or 8-byte store.
    if X.shape[0] and X.shape[1] and (X.strides[1] != 1 or X.strides[0] % 2 or X.ptr % (2 * X.itemsize)):
        raise ValueError(f"{name}: expected row-major rows (last stride 1, even row stride, "
                         f"{2 * X.itemsize}-byte aligned), got strides {X.strides} at 0x{X.ptr:x}")


def _on_host_arrays(named, originals, out_dtype: Any, stream: int) -> np.ndarray:
    """numpy in, numpy out: stage every argument on GPU 0, run, copy the result back."""
    host = [name for name, x in named if x is not None and x.device is None]
    if len(host) != sum(x is not None for _, x in named):
        raise ValueError(f"{', '.join(host)}: host (numpy) arrays cannot be mixed with device arrays")
    staged = [None if x is None else arrays.DeviceArray.from_numpy(np.asarray(x), device=0,
                                                                    stream=stream)
              for x in originals]
    a8, sfa, b8, sfb, c, out = staged
    result = fp8_gemm_nt((a8, sfa), (b8, sfb), out, c=c, out_dtype=out_dtype, stream=stream)
    host_out = result.to_numpy(stream=stream)
    if originals[5] is not None:
        np.copyto(originals[5], host_out)
        return originals[5]
    return host_out
