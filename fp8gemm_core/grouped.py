"""M-grouped FP8 GEMMs for Mixture-of-Experts: contiguous (prefill) and masked (decode).

The same kernel as the dense GEMM (``cuda/fp8_gemm.cu`` with ``kGrouped = 1``): each
group is tiled like a small dense problem over its own rows, and the persistent CTAs
walk the tiles of all groups in order, reading the group sizes on the device. No host
synchronization anywhere, so the masked form can be captured in a CUDA graph and
replayed while ``masked_m`` changes.

Layouts (DeepGEMM's names and meanings), G groups sharing N and K:

- contiguous: A ``[sum M_g, K]``, B ``[G, N, K]``, out ``[sum M_g, N]``; each row's group
  given per row (``m_indices``, -1 for a padding row) or per group (``offsets``:
  cumulative row ends, the form of ``torch._grouped_mm`` and most MoE routers).
- masked: A ``[G, max_m, K]``, out ``[G, max_m, N]``; only the first ``masked_m[g]``
  rows of group g are computed.

Rows outside every group are not computed and their output rows are left untouched
(zeros when the library allocates ``out``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import arrays, driver, jit, tma
from .gemm import (BF16, F32, FP8, _D_ROWS, _D_SLAB, _P, _PARAM_KINDS, _check_output, _dtype_name,
                   _extra_nvrtc_options, _kernel_spec, _m_major_scales, _pair, _staged_out_bytes)
from .heuristics import (BLOCK_K, GemmConfig, choose_grouped_config, copies_scales_m_major, effective_num_sms,
                         gpu_profile)

__all__ = ["m_grouped_fp8_gemm_nt_contiguous", "m_grouped_fp8_gemm_nt_masked",
           "get_m_alignment_for_contiguous_layout"]

I32 = np.dtype(np.int32)
M_ALIGNMENT = 128  # DeepGEMM's value, which users already pad to


def get_m_alignment_for_contiguous_layout() -> int:
    """Row alignment to pad each group of the contiguous layout to (DeepGEMM's helper).

    Not required for correctness here: any group sizes work (tiles start at each group's
    first row and never span two groups). With groups padded to it, each 64-row part of
    a tile lies wholly inside or outside its group, so every output row goes out with
    TMA stores.
    """
    return M_ALIGNMENT


@dataclass(frozen=True)
class _Plan:
    config: GemmConfig
    kernel: Any


_plans: dict[tuple, _Plan] = {}


def m_grouped_fp8_gemm_nt_contiguous(a: tuple[Any, Any], b: tuple[Any, Any], out: Any = None,
                                     m_indices: Any = None, *, offsets: Any = None,
                                     out_dtype: Any = None, stream: Any = None) -> Any:
    """Grouped ``out[rows of g] = A[rows of g] @ B[g]^T`` over row-concatenated groups.

    Args:
        a: ``(a_fp8, sfa)``: ``a_fp8`` [M, K] E4M3 (rows of all groups, row-major, 16-byte
            aligned rows); ``sfa`` [M, ceil(K/128)] float32, any strides (M-major preferred).
        b: ``(b_fp8, sfb)``: ``b_fp8`` [G, N, K] E4M3, K contiguous, groups evenly spaced;
            ``sfb`` [G, ceil(N/128), ceil(K/128)] float32, any strides.
        out: optional [M, N] bfloat16 or float32, row-major; allocated (zeroed) when None.
        m_indices: [M] int32 on the device, each row's group in [0, G) or -1 for a padding
            row; each group's rows one contiguous run. Malformed values make the launch
            fail (the CUDA context is lost): validate on the host if unsure.
        offsets: instead of ``m_indices``: [G] int32 cumulative row ends, group g owning
            rows [offsets[g-1], offsets[g]) (offsets[-1] taken as 0); non-decreasing and
            at most M (values outside are clamped).
        out_dtype: ``"bf16"`` or ``"fp32"``; default: bf16, or ``out``'s dtype.
        stream: stream to launch on (int handle, torch/cupy stream, or None).
    Returns:
        ``out`` (or the allocated ``DeviceArray``). Rows in no group are not written.

    Any group sizes work (empty groups too); groups padded to
    ``get_m_alignment_for_contiguous_layout()`` rows run fastest.
    """
    if (m_indices is None) == (offsets is None):
        raise ValueError("m_indices, offsets: expected exactly one of them, got "
                         f"{'both' if m_indices is not None else 'neither'}")
    s = driver.stream_handle(stream)
    A, SA, B, SB, O, read = _read_operands(a, b, out, s)
    group_arg = ("m_indices", m_indices) if m_indices is not None else ("offsets", offsets)
    IDX = read(group_arg[1], group_arg[0])

    if A.ndim != 2:
        raise ValueError(f"a[0]: expected a 2-D [M, K] array, got shape {A.shape}")
    M, K = A.shape
    G, N = _check_b(B, SB, K)
    if A.size:
        arrays.check_tma_compatible(A, "a[0]")
    arrays.check_shape(SA, "a[1]", (M, -(-K // 128)))
    arrays.check_dtype(SA, "a[1]", F32)
    _check_int_vector(IDX, group_arg[0], M if m_indices is not None else G)
    odt = _out_dtype(O, out_dtype)
    if O is not None:
        arrays.check_shape(O, "out", (M, N))
    device = _device_of((("a[0]", A), ("a[1]", SA), ("b[0]", B), ("b[1]", SB), ("out", O),
                         group_arg[:1] + (IDX,)))
    if O is None:
        out = _zeroed_output((M, N), odt, device.ordinal, s)
        O = arrays.as_array(out, "out", stream=-1)
    _check_output(O, "out")
    if M == 0 or N == 0 or G == 0:
        return out

    with device.activate():
        scratch = None
        if m_indices is not None:
            scratch = _group_rows_from_indices(IDX, G, device, s)
            starts, ends = scratch.ptr, scratch.ptr + 4 * G
        else:
            starts, ends = 0, IDX.ptr
        _launch(device, s, A, SA, (SA.strides[0], SA.strides[1], 0), B, SB, O, odt,
                rows=M, m_hint=-(-M // G), groups=(starts, ends, 0, 0, G), uneven_groups=True)
    del scratch  # freed in stream order, after the GEMM
    return out


def m_grouped_fp8_gemm_nt_masked(a: tuple[Any, Any], b: tuple[Any, Any], out: Any,
                                 masked_m: Any, expected_m: int, *, out_dtype: Any = None,
                                 stream: Any = None) -> Any:
    """Grouped ``out[g, :masked_m[g]] = A[g, :masked_m[g]] @ B[g]^T``; CUDA-graph safe.

    Args:
        a: ``(a_fp8, sfa)``: ``a_fp8`` [G, max_m, K] E4M3 (row-major rows, groups evenly
            spaced: stride[0] == max_m * stride[1]); ``sfa`` [G, max_m, ceil(K/128)]
            float32, any strides (M-major per group preferred).
        b: ``(b_fp8, sfb)``: ``b_fp8`` [G, N, K] E4M3; ``sfb`` [G, ceil(N/128), ceil(K/128)].
        out: [G, max_m, N] bfloat16 or float32, row-major, groups evenly spaced; None
            allocates it (zeroed).
        masked_m: [G] int32 on the device: rows computed per group (clamped to [0, max_m]).
            Read by the kernel, never by the host: it may change between graph replays.
        expected_m: the typical masked_m, a hint for the tile shape.
        out_dtype, stream: as for ``m_grouped_fp8_gemm_nt_contiguous``.
    Returns:
        ``out``; rows at and past masked_m[g] are not written.
    """
    if not isinstance(expected_m, (int, np.integer)) or isinstance(expected_m, bool) or expected_m < 1:
        raise ValueError(f"expected_m: expected a positive int, got {expected_m!r}")
    s = driver.stream_handle(stream)
    A, SA, B, SB, O, read = _read_operands(a, b, out, s)
    MM = read(masked_m, "masked_m")

    if A.ndim != 3:
        raise ValueError(f"a[0]: expected a 3-D [G, max_m, K] array, got shape {A.shape}")
    G, max_m, K = A.shape
    GB, N = _check_b(B, SB, K)
    if GB != G:
        raise ValueError(f"b[0]: expected {G} groups to match a[0] {A.shape}, got shape {B.shape}")
    arrays.check_shape(SA, "a[1]", (G, max_m, -(-K // 128)))
    arrays.check_dtype(SA, "a[1]", F32)
    _check_int_vector(MM, "masked_m", G)
    _check_evenly_spaced(A, "a[0]")
    if A.size:
        arrays.check_tma_compatible(A, "a[0]")
    odt = _out_dtype(O, out_dtype)
    if O is not None:
        arrays.check_shape(O, "out", (G, max_m, N))
        _check_evenly_spaced(O, "out")
    device = _device_of((("a[0]", A), ("a[1]", SA), ("b[0]", B), ("b[1]", SB), ("out", O),
                         ("masked_m", MM)))
    if O is None:
        out = _zeroed_output((G, max_m, N), odt, device.ordinal, s)
        O = arrays.as_array(out, "out", stream=-1)
    if G == 0 or max_m == 0 or N == 0:
        return out
    A2 = A.replace(shape=(G * max_m, K), strides=(A.strides[1], A.strides[2]))
    O2 = O.replace(shape=(G * max_m, N), strides=(O.strides[1], O.strides[2]))
    _check_output(O2, "out")
    with device.activate():
        _launch(device, s, A2, SA, (SA.strides[1], SA.strides[2], SA.strides[0]), B, SB, O2, odt,
                rows=G * max_m, m_hint=min(int(expected_m), max_m),
                groups=(0, 0, MM.ptr, max_m, G), uneven_groups=False)
    return out


# ---------------------------------------------------------------- shared by both layouts


def _read_operands(a, b, out, s):
    a8, sfa = _pair(a, "a")
    b8, sfb = _pair(b, "b")
    read = arrays.call_reader(s)
    return (read(a8, "a[0]", True), read(sfa, "a[1]"), read(b8, "b[0]", True), read(sfb, "b[1]"),
            None if out is None else read(out, "out"), read)


def _check_b(B, SB, K: int) -> tuple[int, int]:
    """B [G, N, K] and sfb [G, ceil(N/128), ceil(K/128)]; returns (G, N)."""
    if B.ndim != 3:
        raise ValueError(f"b[0]: expected a 3-D [G, N, K] array, got shape {B.shape}")
    G, N, KB = B.shape
    if KB != K:
        raise ValueError(f"b[0]: expected K = {K} columns to match a[0], got shape {B.shape}")
    arrays.check_shape(SB, "b[1]", (G, -(-N // 128), -(-K // 128)))
    arrays.check_dtype(SB, "b[1]", F32)
    if N % 2:
        raise ValueError(f"b[0]: this kernel needs N even, got N = {N}")
    if K % 16:
        raise ValueError(f"a[0]: this kernel needs K a multiple of 16 (TMA row alignment), got K = {K}")
    _check_evenly_spaced(B, "b[0]")
    if B.size:
        arrays.check_tma_compatible(B, "b[0]")
    return G, N


def _check_evenly_spaced(X, name: str) -> None:
    # The kernel sees [G, R, C] as a 2-D [G * R, C] array (one TMA descriptor for all groups).
    G, R, _ = X.shape
    if G > 1 and R > 0 and X.strides[0] != R * X.strides[1]:
        raise ValueError(f"{name}: expected groups evenly spaced (stride[0] == shape[1] * stride[1] "
                         f"= {R * X.strides[1]}), got strides {X.strides}")


def _check_int_vector(X, name: str, length: int) -> None:
    arrays.check_shape(X, name, (length,))
    arrays.check_dtype(X, name, I32)
    if length > 1 and X.strides[0] != 1:
        raise ValueError(f"{name}: expected a contiguous vector, got stride {X.strides[0]}")


def _out_dtype(O, out_dtype) -> np.dtype:
    odt = BF16 if out_dtype is None else _dtype_name(out_dtype)
    if O is not None:
        if O.dtype not in (BF16, F32):
            raise TypeError(f"out: expected bfloat16 or float32, got {O.dtype}")
        if out_dtype is not None and odt != O.dtype:
            raise ValueError(f"out_dtype: {out_dtype!r} disagrees with out's dtype {O.dtype}")
        odt = O.dtype
    return odt


def _device_of(named) -> driver.Device:
    host = [name for name, x in named if x is not None and x.device is None]
    if host:
        raise TypeError(f"{', '.join(host)}: the grouped GEMMs take device arrays only (got host "
                        "memory); fp8gemm_core.reference has the numpy version")
    device = driver.get_device(arrays.check_same_device(*named))
    device.require_hopper()
    return device


def _zeroed_output(shape, dtype, ordinal: int, stream: int) -> arrays.DeviceArray:
    out = arrays.DeviceArray.empty(shape, dtype, ordinal, stream)
    if out.nbytes:
        with driver.get_device(ordinal).activate():
            driver.memset_d32(out.ptr, 0, out.nbytes // 4, stream)  # N even: whole words
    return out


def _group_rows_from_indices(IDX, num_groups: int, device: driver.Device, stream: int):
    """starts[G] and ends[G] (one [2, G] int32 buffer, + a run counter) from m_indices."""
    rows = IDX.shape[0]
    scratch = arrays.DeviceArray.empty((3, num_groups), I32, device.ordinal, stream)
    driver.memset_d32(scratch.ptr, 0, 3 * num_groups, stream)
    kernel = jit.get_kernel("group_rows.cu", "group_rows_from_indices", device=device)
    p = driver.KernelParams(("u64", "i32", "i32", "u64", "u64", "u64"))
    for i, v in enumerate((IDX.ptr, rows, num_groups, scratch.ptr, scratch.ptr + 4 * num_groups,
                           scratch.ptr + 8 * num_groups)):
        p.set(i, v)
    grid = max(1, min(-(-rows // 256), 4 * device.num_sms))
    driver.launch_fast(int(kernel.handle), grid, 256, 0, stream, p)
    return scratch


def _launch(device, stream, A, SA, sfa_strides, B, SB, O, odt, *, rows: int, m_hint: int,
            groups, uneven_groups: bool) -> None:
    """Plan (cached per shape) and launch the grouped kernel. ``A`` and ``O`` are the 2-D
    [rows, K] / [rows, N] views; ``sfa_strides`` = (per row, per K block, per group);
    ``m_hint``: the typical rows of one group; ``uneven_groups``: their sizes vary around it
    (contiguous layout)."""
    G, N, K = B.shape
    staged = _staged_out_bytes(O.strides[0], odt.itemsize, O.ptr % 16 == 0)
    num_sms = effective_num_sms(device.num_sms)
    key = (m_hint, G, N, K, odt == F32, staged, device.ordinal, num_sms, uneven_groups)
    plan = _plans.get(key)
    if plan is None:
        cfg = choose_grouped_config(m_hint, G, N, K, num_sms, staged, uneven_groups,
                                    gpu_profile(device.memory_bytes))
        source, name, prelude = _kernel_spec(cfg, odt == F32, 0, grouped=True)
        kernel = jit.get_kernel(source, name, prelude=prelude, options=_extra_nvrtc_options(),
                                device=device, max_dynamic_smem=cfg.smem_bytes)
        # The grid is every SM (the tile count is only known on the device), in whole CTA
        # pairs that can be resident at once.
        grid = num_sms // cfg.cluster_m * cfg.cluster_m
        if cfg.cluster_m > 1:
            with device.activate():
                resident = driver.max_active_clusters(kernel.handle, cfg.threads, cfg.smem_bytes, cfg.cluster_m)
            grid = min(grid, resident * cfg.cluster_m)
        cfg = dataclasses.replace(cfg, num_sms=grid)
        plan = _plans[key] = _Plan(cfg, kernel)
    cfg = plan.config
    staged = cfg.staged_out_bytes  # (0 where the tile leaves no room to stage the output)

    starts, ends, counts, group_stride, num_groups = groups
    scratch = None  # an M-major copy of row-major sfa on large tiles (as the dense GEMM does)
    if copies_scales_m_major(SA.strides, m_hint, cfg):
        ld = -(-SA.shape[-2] // 4) * 4
        scratch = _m_major_scales(SA, ld, device, stream)
        sfa_strides = (1, ld, SA.shape[-1] * ld if SA.ndim == 3 else 0)
    p = driver.KernelParams(_PARAM_KINDS)
    p.set(_P["tmap_a"], tma.make_tensor_map(A.ptr, FP8, A.shape, A.strides, (cfg.block_m, BLOCK_K),
                                            tma.SWIZZLE_128B, name="a[0]"))
    # (With CTA pairs each CTA loads half of the B tile and multicasts it to both.)
    p.set(_P["tmap_b"], tma.make_tensor_map(B.ptr, FP8, (G * N, K), (B.strides[1], 1),
                                            (cfg.block_n // cfg.cluster_m, BLOCK_K), tma.SWIZZLE_128B,
                                            name="b[0]"))
    if staged:
        p.set(_P["tmap_d"], tma.make_tensor_map(O.ptr, odt, O.shape, O.strides,
                                                (_D_ROWS, _D_SLAB // odt.itemsize), tma.SWIZZLE_32B,
                                                name="out"))
    else:
        p.set(_P["tmap_d"], driver.unused_tensor_map())
    sfa_m, sfa_k, sfa_g = sfa_strides
    sfa_ptr = SA.ptr if scratch is None else scratch.ptr
    for name, value in (("sfa", sfa_ptr), ("sfa_stride_m", sfa_m), ("sfa_stride_k", sfa_k),
                        ("sfa_stride_g", sfa_g), ("sfb", SB.ptr), ("sfb_stride_n", SB.strides[1]),
                        ("sfb_stride_k", SB.strides[2]), ("sfb_stride_g", SB.strides[0]),
                        ("d", O.ptr), ("ldd", O.strides[0]), ("M", rows), ("N", N), ("K", K),
                        ("group_n", cfg.group_n), ("group_starts", starts),
                        ("group_ends", ends), ("group_counts", counts),
                        ("group_stride", group_stride), ("num_groups", num_groups)):
        p.set(_P[name], value)
    driver.launch_fast(int(plan.kernel.handle), cfg.num_sms, cfg.threads, cfg.smem_bytes, stream, p)
    del scratch  # freed in stream order, after the GEMM
