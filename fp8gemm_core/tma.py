"""TMA tensor maps (``CUtensorMap``) built with ``cuTensorMapEncodeTiled``.

A tensor map describes a 2D/3D tensor in global memory and the box one TMA
instruction moves. Kernels take it by value as a ``const __grid_constant__``
parameter; ``driver.KernelParams`` points the launch at the 128-byte struct.
Encoding costs a driver call, so maps are cached per (pointer, shape, strides,
box, swizzle, fill): a repeated call with the same arrays reuses them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Sequence

import ml_dtypes
import numpy as np
from cuda.bindings import driver as cu

from .driver import call

__all__ = ["SWIZZLE_NONE", "SWIZZLE_32B", "SWIZZLE_64B", "SWIZZLE_128B", "make_tensor_map"]

SWIZZLE_NONE, SWIZZLE_32B, SWIZZLE_64B, SWIZZLE_128B = 0, 32, 64, 128

_SWIZZLE = {
    SWIZZLE_NONE: cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_NONE,
    SWIZZLE_32B: cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_32B,
    SWIZZLE_64B: cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_64B,
    SWIZZLE_128B: cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
}

_DT = cu.CUtensorMapDataType
_DATA_TYPE = {
    np.dtype(np.uint8): _DT.CU_TENSOR_MAP_DATA_TYPE_UINT8,
    np.dtype(np.int8): _DT.CU_TENSOR_MAP_DATA_TYPE_UINT8,  # raw bytes either way
    np.dtype(ml_dtypes.float8_e4m3fn): _DT.CU_TENSOR_MAP_DATA_TYPE_UINT8,
    np.dtype(np.uint16): _DT.CU_TENSOR_MAP_DATA_TYPE_UINT16,
    np.dtype(np.float16): _DT.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
    np.dtype(ml_dtypes.bfloat16): _DT.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
    np.dtype(np.int32): _DT.CU_TENSOR_MAP_DATA_TYPE_INT32,
    np.dtype(np.uint32): _DT.CU_TENSOR_MAP_DATA_TYPE_UINT32,
    np.dtype(np.float32): _DT.CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
}

_CACHE_SIZE = 4096
_cache: OrderedDict[tuple, Any] = OrderedDict()
_lock = threading.Lock()


def make_tensor_map(ptr: int, dtype: np.dtype, shape: Sequence[int], strides: Sequence[int],
                    box: Sequence[int], swizzle: int = SWIZZLE_NONE, *, name: str = "tensor",
                    oob_nan: bool = False) -> Any:
    """Encode (or fetch from the cache) a tiled tensor map.

    Call with the context of the array's GPU current (``Device.activate()``): the
    driver refuses to encode without one.

    Args:
        ptr: device address of element [0, ..., 0]; must be 16-byte aligned.
        dtype: element dtype (numpy/ml_dtypes); FP8 is moved as raw bytes.
        shape, strides: the tensor in row-major order (outermost first), strides in
            elements; the innermost stride must be 1, the others multiples of 16 bytes.
        box: box size per dimension, same order as ``shape``; each in [1, 256].
        swizzle: 0, 32, 64 or 128 (bytes); with a swizzle the box's inner extent
            in bytes must not exceed it.
        name: the argument name used in error messages.
        oob_nan: fill out-of-bounds elements with NaN instead of zeros (floats only).
    Returns:
        a ``cuda.bindings.driver.CUtensorMap`` (128 bytes, pass by value).
    """
    key = (ptr, dtype, tuple(shape), tuple(strides), tuple(box), swizzle, oob_nan)
    tmap = _cache.get(key)
    if tmap is not None:
        return tmap
    tmap = _encode(ptr, np.dtype(dtype), list(shape), list(strides), list(box), swizzle, name,
                   oob_nan)
    with _lock:
        _cache[key] = tmap
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return tmap


def _encode(ptr, dtype, shape, strides, box, swizzle, name, oob_nan):
    rank = len(shape)
    if not 1 <= rank <= 5 or len(strides) != rank or len(box) != rank:
        raise ValueError(f"{name}: shape, strides and box must have the same rank (1-5), got "
                         f"{shape}, {strides}, {box}")
    if dtype not in _DATA_TYPE:
        raise TypeError(f"{name}: no TMA data type for dtype {dtype}")
    if swizzle not in _SWIZZLE:
        raise ValueError(f"{name}: swizzle must be one of 0, 32, 64, 128, got {swizzle}")
    size = dtype.itemsize
    if ptr % 16:
        raise ValueError(f"{name}: TMA needs a 16-byte aligned base address, got 0x{ptr:x}")
    if strides[-1] != 1:
        raise ValueError(f"{name}: TMA needs a contiguous innermost dimension (stride 1), got "
                         f"strides {tuple(strides)}")
    for s in strides[:-1]:
        if (s * size) % 16:
            raise ValueError(f"{name}: TMA needs strides that are multiples of 16 bytes, got "
                             f"strides {tuple(strides)} (elements of {size} bytes)")
    if any(not 1 <= b <= 256 for b in box):
        raise ValueError(f"{name}: TMA box sizes must be in [1, 256], got {tuple(box)}")
    inner_bytes = box[-1] * size
    if swizzle and inner_bytes > swizzle:
        raise ValueError(f"{name}: a {swizzle}-byte swizzle allows at most {swizzle} bytes in the "
                         f"box's inner dimension, got {inner_bytes}")
    if not swizzle and inner_bytes % 16:
        raise ValueError(f"{name}: the box's inner dimension must span a multiple of 16 bytes, "
                         f"got {inner_bytes}")
    if any(d < 1 for d in shape):
        raise ValueError(f"{name}: TMA cannot describe an empty tensor, got shape {tuple(shape)}")

    # The driver wants dimensions innermost first and byte strides of the outer dims.
    dims = [cu.cuuint64_t(d) for d in reversed(shape)]
    byte_strides = [cu.cuuint64_t(s * size) for s in reversed(strides[:-1])]
    box_dims = [cu.cuuint32_t(b) for b in reversed(box)]
    elem_strides = [cu.cuuint32_t(1)] * rank
    fill = (cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA
            if oob_nan else cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    return call(cu.cuTensorMapEncodeTiled, _DATA_TYPE[dtype], rank, ptr, dims, byte_strides,
                box_dims, elem_strides, cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
                _SWIZZLE[swizzle], cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                fill)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
