"""FP8 (E4M3) quantization with fine-grained scales, on the GPU: the casts that feed the GEMMs.

``per_token_cast_to_fp8`` (activations, one scale per 1 x 128 of a row) and
``per_block_cast_to_fp8`` (weights, one scale per 128 x 128 block) run ``cuda/quant.cu``
and are bit-identical to ``fp8gemm_core.reference`` (same fp32 operations in the same
order, see its docstrings). Scales come out in the layout the GEMMs read best: per-token
scales M-major (a ``[..., ceil(K/128), M]`` buffer seen as ``[..., M, ceil(K/128)]``).
On numpy inputs both functions run the numpy reference and return numpy arrays.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from . import arrays, driver, jit, reference
from .arrays import DeviceArray, StridedView
from .heuristics import effective_num_sms

__all__ = ["per_token_cast_to_fp8", "per_block_cast_to_fp8", "quant_kernel_configs"]

GROUP = 128  # the kernels' group / block edge (the GEMMs' scale granularity)
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)
_IN_KINDS = {F32: 0, np.dtype(ml_dtypes.bfloat16): 1, np.dtype(np.float16): 2}
_TOKEN_PARAMS = ("u64", "i64", "i64", "u64", "i64", "i64", "u64", "i64", "i64", "i64", "i32", "i32",
                 "i32", "u64")
_BLOCK_PARAMS = _TOKEN_PARAMS[:-1]


def per_token_cast_to_fp8(x: Any, *, group: int = GROUP, ue8m0: bool = False, masked_m: Any = None,
                          out: tuple[Any, Any] | None = None, stream: Any = None) -> tuple[Any, Any]:
    """Quantize activations to E4M3 with one fp32 scale per row per 128 columns.

    Args:
        x: [M, K] or [G, M, K] float32, bfloat16 or float16, K contiguous; a device array
            (torch, JAX, CuPy, DeviceArray) or a numpy array (then the numpy reference runs).
        group: K group width; the GPU kernel supports 128 (the GEMMs' granularity).
        ue8m0: round each scale up to a power of two.
        masked_m: optional [G] int32 on the device (x 3-D): only rows m < masked_m[g] are
            quantized; others are left untouched (zeros when the outputs are allocated).
            Read by the kernel only, so the call can be captured in a CUDA graph.
        out: optional ``(x_fp8, sf)`` to write into: x_fp8 like x (E4M3 or uint8, rows
            contiguous), sf [..., M, ceil(K/128)] float32 with any strides.
        stream: stream to launch on (None: the legacy default stream).
    Returns:
        ``(x_fp8, sf)``: ``out`` if given, else a float8_e4m3fn ``DeviceArray`` and an M-major
        ``StridedView`` of a ``[..., ceil(K/128), M]`` DeviceArray (``.base``), which
        ``fp8_gemm_nt`` and the grouped GEMMs read fastest.
    """
    if _is_host(x):
        if masked_m is not None or out is not None:
            raise TypeError("x: numpy input runs the reference, which takes neither masked_m nor out")
        return reference.per_token_cast_to_fp8(x, group=group, ue8m0=ue8m0)
    _check_group(group, "group")
    s = driver.stream_handle(stream)
    read = arrays.call_reader(s)
    X = read(x, "x")
    in_kind = _check_input(X)
    lead, M, K = X.shape[:-2], X.shape[-2], X.shape[-1]
    G = lead[0] if lead else 1
    kg = -(-K // GROUP)
    MM = None
    if masked_m is not None:
        if X.ndim != 3:
            raise ValueError(f"x: masked_m needs a 3-D [G, M, K] input, got shape {X.shape}")
        MM = read(masked_m, "masked_m")
        arrays.check_shape(MM, "masked_m", (G,))
        arrays.check_dtype(MM, "masked_m", I32)
        if G > 1 and MM.strides[0] != 1:
            raise ValueError(f"masked_m: expected a contiguous vector, got stride {MM.strides[0]}")
    device = _device(("x", X), ("masked_m", MM))

    if out is None:
        q = DeviceArray.empty(X.shape, E4M3, device.ordinal, s)
        sf_buf = DeviceArray.empty((*lead, kg, M), F32, device.ordinal, s)
        sf = StridedView(sf_buf, (*lead, M, kg), ((kg * M,) if lead else ()) + (1, M))
        if MM is not None:  # rows past masked_m stay zero
            _zero(q, device, s)
            _zero(sf_buf, device, s)
        result = (q, sf)
        Q = arrays.as_array(q, "out[0]", stream=-1)
        SF = arrays.as_array(sf, "out[1]", stream=-1)
    else:
        result = out
        Q, SF = _read_out(out, X.shape, (*lead, M, kg), s)
    if X.size == 0:
        return result
    vec = _vectorizable(X, Q)
    kernel = jit.get_kernel("quant.cu", f"per_token_cast<{in_kind}, {int(bool(ue8m0))}, {int(vec)}, "
                            f"{int(MM is not None)}>", device=device)
    p = driver.KernelParams(_TOKEN_PARAMS)
    values = (X.ptr, _stride(X, 0), X.strides[-2], Q.ptr, _stride(Q, 0), Q.strides[-2], SF.ptr,
              _stride(SF, 0), SF.strides[-2], SF.strides[-1], G, M, K, 0 if MM is None else MM.ptr)
    for i, v in enumerate(values):
        p.set(i, v)
    warps = G * M * -(-kg // (256 // X.itemsize))  # one warp per 4 KiB of a row
    grid = max(1, min(-(-warps // 8), 32 * effective_num_sms(device.num_sms)))
    with device.activate():
        driver.launch_fast(int(kernel.handle), grid, 256, 0, s, p)
    return result


def per_block_cast_to_fp8(x: Any, *, block: int = GROUP, ue8m0: bool = False,
                          out: tuple[Any, Any] | None = None, stream: Any = None) -> tuple[Any, Any]:
    """Quantize weights to E4M3 with one fp32 scale per 128 x 128 block.

    Args:
        x: [N, K] or [G, N, K] float32, bfloat16 or float16, K contiguous; device or numpy
            (then the numpy reference runs).
        block: block edge; the GPU kernel supports 128.
        ue8m0: round each scale up to a power of two.
        out: optional ``(x_fp8, sf)``: x_fp8 like x, sf [..., ceil(N/128), ceil(K/128)] float32.
        stream: stream to launch on.
    Returns:
        ``(x_fp8, sf)``: E4M3 ``DeviceArray`` and row-major sf ``DeviceArray`` (or ``out``).
    """
    if _is_host(x):
        if out is not None:
            raise TypeError("x: numpy input runs the reference, which takes no out")
        return reference.per_block_cast_to_fp8(x, block=block, ue8m0=ue8m0)
    _check_group(block, "block")
    s = driver.stream_handle(stream)
    X = arrays.as_array(x, "x", stream=s)
    in_kind = _check_input(X)
    lead, N, K = X.shape[:-2], X.shape[-2], X.shape[-1]
    G = lead[0] if lead else 1
    nb, kb = -(-N // GROUP), -(-K // GROUP)
    device = _device(("x", X))
    if out is None:
        q = DeviceArray.empty(X.shape, E4M3, device.ordinal, s)
        sf = DeviceArray.empty((*lead, nb, kb), F32, device.ordinal, s)
        result = (q, sf)
        Q = arrays.as_array(q, "out[0]", stream=-1)
        SF = arrays.as_array(sf, "out[1]", stream=-1)
    else:
        result = out
        Q, SF = _read_out(out, X.shape, (*lead, nb, kb), s)
    if X.size == 0:
        return result
    vec = _vectorizable(X, Q)
    kernel = jit.get_kernel("quant.cu", f"per_block_cast<{in_kind}, {int(bool(ue8m0))}, {int(vec)}>",
                            device=device)
    p = driver.KernelParams(_BLOCK_PARAMS)
    values = (X.ptr, _stride(X, 0), X.strides[-2], Q.ptr, _stride(Q, 0), Q.strides[-2], SF.ptr,
              _stride(SF, 0), SF.strides[-2], SF.strides[-1], G, N, K)
    for i, v in enumerate(values):
        p.set(i, v)
    grid = max(1, min(G * nb * kb, 8 * effective_num_sms(device.num_sms)))
    with device.activate():
        driver.launch_fast(int(kernel.handle), grid, 256, 0, s, p)
    return result


def quant_kernel_configs() -> list[tuple[str, str, str]]:
    """Every (source, name_expr, prelude) these launchers can pick: for AOT builds and spill checks."""
    specs = []
    for kind in _IN_KINDS.values():
        for ue8m0 in (0, 1):
            for vec in (0, 1):
                specs += [("quant.cu", f"per_token_cast<{kind}, {ue8m0}, {vec}, {masked}>", "")
                          for masked in (0, 1)]
                specs.append(("quant.cu", f"per_block_cast<{kind}, {ue8m0}, {vec}>", ""))
    return specs


# ---------------------------------------------------------------- helpers


def _is_host(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _check_group(group: Any, name: str) -> None:
    if group != GROUP:
        raise ValueError(f"{name}: the GPU kernel supports {GROUP} (the GEMMs' scale granularity), "
                         f"got {group!r}; numpy inputs run the reference with any size")


def _check_input(X) -> int:
    if X.dtype not in _IN_KINDS:
        raise TypeError(f"x: expected float32, bfloat16 or float16, got {X.dtype}")
    if X.ndim not in (2, 3):
        raise ValueError(f"x: expected a 2-D [M, K] or 3-D [G, M, K] array, got shape {X.shape}")
    if X.size and X.shape[-1] > 1 and X.strides[-1] != 1:
        raise ValueError(f"x: expected contiguous rows (last stride 1), got strides {X.strides}")
    return _IN_KINDS[X.dtype]


def _device(*named):
    host = [name for name, a in named if a is not None and a.device is None]
    if host:
        raise TypeError(f"{', '.join(host)}: expected device arrays (or x as a numpy array, which runs "
                        "the reference), got host memory")
    device = driver.get_device(arrays.check_same_device(*named))
    device.require_hopper()
    return device


def _read_out(out, q_shape, sf_shape, s):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out: expected a pair (x_fp8, sf), got {type(out).__name__}")
    Q = arrays.as_array(out[0], "out[0]", fp8=True, stream=s)
    SF = arrays.as_array(out[1], "out[1]", stream=s)
    arrays.check_shape(Q, "out[0]", q_shape)
    arrays.check_shape(SF, "out[1]", sf_shape)
    arrays.check_dtype(SF, "out[1]", F32)
    if Q.size and q_shape[-1] > 1 and Q.strides[-1] != 1:
        raise ValueError(f"out[0]: expected contiguous rows (last stride 1), got strides {Q.strides}")
    return Q, SF


def _stride(A, dim: int) -> int:
    return A.strides[dim] if A.ndim == 3 else 0


def _vectorizable(X, Q) -> bool:
    """Whether every row of x starts 16-byte aligned and every row of q (16 / item size)-byte
    aligned: the kernels then load 16 bytes of x and store 16 / item size bytes per lane."""
    e = 16 // X.itemsize
    return all(s % e == 0 for s in X.strides[:-1] + Q.strides[:-1]) and X.ptr % 16 == 0 and Q.ptr % e == 0


def _zero(a: DeviceArray, device, stream: int) -> None:
    if a.nbytes:
        with device.activate():
            driver.memset_d8(a.ptr, 0, a.nbytes, stream)
