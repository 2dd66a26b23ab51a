"""Tensor maps: argument checks on any machine; an exact TMA round trip on the GPU."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from fp8gemm_core import driver, jit, tma
from fp8gemm_core.arrays import DeviceArray

from gpu_support import requires_gpu


@pytest.mark.parametrize("kwargs,match", [
    (dict(ptr=8), "16-byte aligned"),
    (dict(strides=(100, 1)), "multiples of 16 bytes"),
    (dict(strides=(128, 2)), "stride 1"),
    (dict(box=(300, 64)), "box sizes"),
    (dict(box=(8, 256), swizzle=128), "at most 128 bytes"),
    (dict(swizzle=48), "swizzle must be"),
    (dict(box=(8, 8), swizzle=0), "multiple of 16 bytes"),
])
def test_encode_rejects_bad_arguments(kwargs, match):
    args = dict(ptr=1 << 20, dtype=np.dtype(np.uint8), shape=(64, 128), strides=(128, 1),
                box=(8, 128), swizzle=128, name="x")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match) as e:
        tma.make_tensor_map(**args)
    assert str(e.value).startswith("x:")


def _round_trip(host: np.ndarray, box: tuple[int, ...], swizzle: int) -> np.ndarray:
    dev = driver.get_device(0)
    src = DeviceArray.from_numpy(host, device=0, stream=0)
    poison = np.full_like(host.view(np.uint8), 0xA5).view(host.dtype)
    dst = DeviceArray.from_numpy(poison, device=0, stream=0)
    strides = tuple(s // host.itemsize for s in host.strides)
    with dev.activate():
        tm_src = tma.make_tensor_map(src.ptr, host.dtype, host.shape, strides, box, swizzle, name="src")
        tm_dst = tma.make_tensor_map(dst.ptr, host.dtype, host.shape, strides, box, swizzle, name="dst")
    dims = len(host.shape)
    box_bytes = math.prod(box) * host.itemsize
    smem = 1024 + box_bytes + 16 + 16
    kernel = jit.get_kernel("tma_copy.cu", f"tma_copy<{dims}>", device=dev, max_dynamic_smem=smem)
    params = driver.KernelParams(("tmap", "tmap", "i32", "i32", "i32", "u32"))
    rev_box = tuple(reversed(box)) + (1,) * (3 - dims)
    for i, v in enumerate((tm_src, tm_dst, *rev_box, box_bytes)):
        params.set(i, v)
    grid = tuple(math.ceil(d / b) for d, b in zip(reversed(host.shape), reversed(box)))
    with dev.activate():
        driver.launch(kernel.handle, grid, 32, smem, 0, params)
    return dst.to_numpy(stream=0)


@requires_gpu
@pytest.mark.parametrize("swizzle", [0, 32, 64, 128])
@pytest.mark.parametrize("dtype", [np.uint8, ml_dtypes.bfloat16, np.float32])
def test_round_trip_2d(swizzle, dtype):
    rng = np.random.default_rng()
    dtype = np.dtype(dtype)
    inner = (swizzle or 64) // dtype.itemsize        # box inner extent: one swizzle span
    rows, cols = 8 * 13 + 5, inner * 3 + 16 // dtype.itemsize  # partial boxes at both edges
    host = rng.integers(0, 256, size=(rows, cols * dtype.itemsize), dtype=np.uint8).view(dtype)
    got = _round_trip(host, (16, inner), swizzle)
    assert np.array_equal(got.view(np.uint8), host.view(np.uint8))


@requires_gpu
@pytest.mark.parametrize("swizzle", [0, 32, 64, 128])
def test_round_trip_3d(swizzle):
    rng = np.random.default_rng()
    inner = swizzle or 64
    host = rng.integers(0, 256, size=(5, 40, inner * 2 + 16), dtype=np.uint8)
    got = _round_trip(host, (2, 8, inner), swizzle)
    assert np.array_equal(got, host)


@requires_gpu
def test_tensor_maps_are_cached():
    ptr = 1 << 24  # encoding only reads the address, so any aligned value works
    with driver.get_device(0).activate():
        a = tma.make_tensor_map(ptr, np.dtype(np.uint8), (64, 128), (128, 1), (8, 128), 128)
        b = tma.make_tensor_map(ptr, np.dtype(np.uint8), (64, 128), (128, 1), (8, 128), 128)
        c = tma.make_tensor_map(ptr + 1024, np.dtype(np.uint8), (64, 128), (128, 1), (8, 128), 128)
    assert a is b and a is not c
