"""Tests of fp8gemm_core.arrays: reading arrays (numpy, DLPack, CAI), DeviceArray, checks.

CPU tests use numpy's own ``__dlpack__``, hand-built DLPack capsules (ctypes) and fake
``__cuda_array_interface__`` objects. GPU tests (marker ``gpu``) round-trip through
torch, CuPy and JAX when they are importable; the FP8 ones pass when the framework
handles FP8 over DLPack and xfail with the framework's own error when it does not,
so ``pytest -rxs`` tells which is the case on a given machine.

FP8 over DLPack as these tests found it (H200 machine, 2026-11-22; details in the
docstring of fp8gemm_core/arrays.py):

==========  ======================  ========================  =========================
framework   exports float8_e4m3fn   imports DLPack code 10    tests
==========  ======================  ========================  =========================
numpy 2.5   no (BufferError)        n/a (ml_dtypes)           numpy read directly
torch 2.11  yes (+ C exchange API)  yes, zero copy            test_gpu_torch_fp8_*
jax 0.11    yes                     yes                       test_gpu_jax_fp8
cupy 14.2   no FP8 dtype            no ("Unsupported dtype")  test_gpu_cupy_fp8 (xfail)
==========  ======================  ========================  =========================
"""

from __future__ import annotations

import ctypes
import gc
import os
import struct
import sys
import timeit
import weakref

import ml_dtypes
import numpy as np
import pytest

from fp8gemm_core import arrays
from fp8gemm_core.arrays import (BF16, FP8, ArrayInfo, DeviceArray, as_array, check_contiguous,
                                 check_device, check_dtype, check_row_major, check_same_device,
                                 check_shape, check_tma_compatible, check_writable)

F32 = np.dtype(np.float32)
U8 = np.dtype(np.uint8)

# ---------------------------------------------------------------- hand-built DLPack capsules

c_i32, c_u8, c_u16, c_u32, c_u64, c_i64, c_vp = (ctypes.c_int32, ctypes.c_uint8, ctypes.c_uint16,
                                                  ctypes.c_uint32, ctypes.c_uint64,
                                                  ctypes.c_int64, ctypes.c_void_p)


class DLTensorC(ctypes.Structure):
    _fields_ = [("data", c_vp), ("device_type", c_i32), ("device_id", c_i32), ("ndim", c_i32),
                ("code", c_u8), ("bits", c_u8), ("lanes", c_u16), ("shape", c_vp),
                ("strides", c_vp), ("byte_offset", c_u64)]


DELETER = ctypes.CFUNCTYPE(None, c_vp)


class VersionedC(ctypes.Structure):
    _fields_ = [("major", c_u32), ("minor", c_u32), ("manager_ctx", c_vp), ("deleter", DELETER),
                ("flags", c_u64), ("dl_tensor", DLTensorC)]


class LegacyC(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensorC), ("manager_ctx", c_vp), ("deleter", DELETER)]


assert ctypes.sizeof(DLTensorC) == 48 and ctypes.sizeof(VersionedC) == 80
assert ctypes.sizeof(LegacyC) == 64

_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, c_vp, ctypes.c_char_p, c_vp)(
    ("PyCapsule_New", ctypes.pythonapi))
_capsule_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
    ("PyCapsule_GetName", ctypes.pythonapi))
FAKE_PTR = 0x7F00_0000_1000


class HandMade:
    """A DLManagedTensor(Versioned) in ctypes memory whose deleter counts its calls."""

    def __init__(self, shape, strides=None, *, code=2, bits=32, lanes=1, device=(2, 0),
                 data=FAKE_PTR, byte_offset=0, versioned=True, major=1, flags=0):
        self.calls: list[int] = []
        self.device = device
        self.versioned = versioned
        n = len(shape)
        self.shape_arr = (c_i64 * max(n, 1))(*shape)
        self.strides_arr = None if strides is None else (c_i64 * max(n, 1))(*strides)
        self.deleter = DELETER(self._delete)
        t = DLTensorC(data, device[0], device[1], n, code, bits, lanes,
                      ctypes.addressof(self.shape_arr) if n else None,
                      None if self.strides_arr is None else ctypes.addressof(self.strides_arr),
                      byte_offset)
        if versioned:
            self.managed = VersionedC(major, 1, None, self.deleter, flags, t)
        else:
            self.managed = LegacyC(t, None, self.deleter)
        self.address = ctypes.addressof(self.managed)

    def _delete(self, p):
        self.calls.append(p)

    def capsule(self):
        name = b"dltensor_versioned" if self.versioned else b"dltensor"
        return _capsule_new(self.address, name, None)


class Producer:
    """An object with __dlpack__ returning a given capsule; records the keyword arguments."""

    def __init__(self, make_capsule, device=(1, 0), legacy_only=False):
        self.make_capsule = make_capsule
        self.device = device
        self.legacy_only = legacy_only
        self.kwargs: list[dict] = []
        self.capsules: list = []

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        if self.legacy_only and max_version is not None:
            raise TypeError("__dlpack__() got an unexpected keyword argument 'max_version'")
        self.kwargs.append({"stream": stream, "max_version": max_version})
        cap = self.make_capsule(max_version)
        self.capsules.append(cap)
        return cap


def numpy_producer(x, **kw):
    def make(max_version):
        return x.__dlpack__() if max_version is None else x.__dlpack__(max_version=max_version)
    return Producer(make, **kw)


def handmade_producer(made: HandMade):
    return Producer(lambda mv: made.capsule(), device=made.device)


# ---------------------------------------------------------------- numpy (direct path)


def test_numpy_contiguous():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    info = as_array(a, "a")
    assert info.ptr == a.ctypes.data
    assert info.shape == (3, 4) and info.strides == (4, 1)
    assert info.dtype == F32 and info.device is None and info.owner is a
    assert not info.readonly and info.is_contiguous()
    assert info.nbytes == 48 and info.itemsize == 4 and info.byte_strides == (16, 4)


@pytest.mark.parametrize("view", ["cols", "transpose", "offset", "negative", "size1"])
def test_numpy_views(view):
    base = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    x = {"cols": base[:, ::2], "transpose": base.T, "offset": base[1:, 3:],
         "negative": base[::-1], "size1": base[2:3, :]}[view]
    info = as_array(x, "x")
    assert info.ptr == x.ctypes.data
    assert info.shape == x.shape
    if x.flags.c_contiguous:
        assert info.is_contiguous()
        assert info.strides[-1] == 1
    else:
        assert info.strides == tuple(s // 4 for s in x.strides)
        assert not info.is_contiguous()
    np.testing.assert_array_equal(arrays._host_ndarray(info), x)


def test_numpy_zero_size_and_zero_dim():
    z = np.zeros((0, 5), np.float32)
    info = as_array(z, "z")
    assert info.shape == (0, 5) and info.nbytes == 0 and info.is_contiguous()
    s = np.array(3.5, np.float32)
    info = as_array(s, "s")
    assert info.shape == () and info.strides == () and info.nbytes == 4
    assert info.ptr == s.ctypes.data


def test_numpy_readonly_flag():
    a = np.zeros(4, np.float32)
    a.flags.writeable = False
    info = as_array(a, "a")
    assert info.readonly
    with pytest.raises(ValueError, match=r"^a: expected a writable array"):
        check_writable(info, "a")


def test_numpy_ml_dtypes_and_fp8_views():
    assert as_array(np.zeros(4, ml_dtypes.bfloat16), "b").dtype is BF16
    f8 = np.zeros((2, 16), ml_dtypes.float8_e4m3fn)
    assert as_array(f8, "a").dtype is FP8
    assert as_array(f8, "a", fp8=True).dtype is FP8
    for raw in (np.zeros((2, 16), np.uint8), np.zeros((2, 16), np.int8)):
        info = as_array(raw, "a", fp8=True)
        assert info.dtype is FP8 and info.ptr == raw.ctypes.data and info.owner is raw
    with pytest.raises(TypeError) as e:
        as_array(np.zeros(3, np.float32), "a", fp8=True)
    assert str(e.value) == "a: expected float8_e4m3fn (or a uint8 view of it), got float32"
    with pytest.raises(TypeError, match=r"^b\[0\]: expected float8_e4m3fn .*got float8_e5m2"):
        as_array(np.zeros(3, ml_dtypes.float8_e5m2), "b[0]", fp8=True)


def test_numpy_big_endian_rejected():
    with pytest.raises(TypeError, match=r"^x: expected native byte order"):
        as_array(np.zeros(3, ">f4"), "x")


def test_numpy_cannot_export_ml_dtypes_over_dlpack():
    """Why numpy arrays are read directly: numpy's __dlpack__ refuses ml_dtypes (numpy 2.4).

    Passes either way; if a numpy/ml_dtypes pair learns to export FP8 (numpy's DLPack dtype
    registry), the DLPack reader must map it to float8_e4m3fn."""
    x = np.arange(8, dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
    try:
        cap = x.__dlpack__(max_version=(1, 0))
    except BufferError:
        assert as_array(x, "x").dtype is FP8
    else:
        assert arrays._consume_capsule(cap, "x", False).dtype is FP8


def test_not_an_array():
    with pytest.raises(TypeError, match=r"^w: expected an array \(numpy, DLPack or "
                                        r"__cuda_array_interface__ object\), got list"):
        as_array([1.0, 2.0], "w")
    with pytest.raises(TypeError, match=r"^w: expected an array"):
        as_array(np.ma.masked_array([1.0, 2.0]), "w")


def test_array_info_passthrough():
    info = as_array(np.zeros((2, 32), np.uint8), "a")
    assert as_array(info, "a") is info
    assert as_array(info, "a", fp8=True).dtype is FP8


# ---------------------------------------------------------------- DLPack from numpy producers


def test_dlpack_versioned_from_numpy_producer():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    prod = numpy_producer(base)
    refs = sys.getrefcount(base)
    info = as_array(prod, "x")
    assert prod.kwargs == [{"stream": None, "max_version": (1, 0)}]  # CPU: stream None
    assert _capsule_name(prod.capsules[0]) == b"used_dltensor_versioned"
    assert info.ptr == base.ctypes.data and info.shape == (4, 6) and info.strides == (6, 1)
    assert info.dtype == F32 and info.device is None
    assert sys.getrefcount(base) == refs + 1  # numpy's managed tensor holds the array
    del info
    gc.collect()
    assert sys.getrefcount(base) == refs  # the deleter ran


def test_dlpack_legacy_fallback():
    base = np.arange(10, dtype=np.int32)
    prod = numpy_producer(base, legacy_only=True)
    refs = sys.getrefcount(base)
    info = as_array(prod, "x")
    assert prod.kwargs == [{"stream": None, "max_version": None}]
    assert _capsule_name(prod.capsules[0]) == b"used_dltensor"
    assert info.ptr == base.ctypes.data and info.dtype == np.dtype(np.int32)
    del info
    gc.collect()
    assert sys.getrefcount(base) == refs


def test_dlpack_ancient_producer_without_keywords():
    base = np.arange(5, dtype=np.float64)

    class Old:
        def __dlpack__(self):
            return base.__dlpack__()

        def __dlpack_device__(self):
            return (1, 0)

    info = as_array(Old(), "x")
    assert info.ptr == base.ctypes.data and info.dtype == np.dtype(np.float64)


def test_dlpack_non_contiguous_numpy_producer():
    base = np.arange(48, dtype=np.float32).reshape(6, 8)
    view = base[1:, ::2]
    info = as_array(numpy_producer(view), "x")
    assert info.ptr == view.ctypes.data
    assert info.shape == (5, 4) and info.strides == (8, 2)


def test_dlpack_zero_dim_and_zero_size():
    s = np.array(7, np.int64)
    info = as_array(numpy_producer(s), "s")
    assert info.shape == () and info.strides == () and info.ptr == s.ctypes.data
    z = np.zeros((3, 0), np.float32)
    info = as_array(numpy_producer(z), "z")
    assert info.shape == (3, 0) and info.nbytes == 0


def test_dlpack_readonly_flag():
    a = np.zeros(3, np.float32)
    a.flags.writeable = False
    assert as_array(numpy_producer(a), "a").readonly


def test_dlpack_export_error_names_argument():
    class Refuses:
        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, **kw):
            raise BufferError("float8 is not supported")

    with pytest.raises(TypeError, match=r"^a\[0\]: cannot read Refuses through DLPack: "
                                        r"BufferError: float8 is not supported.*uint8 view"):
        as_array(Refuses(), "a[0]", fp8=True)


# ---------------------------------------------------------------- DLPack, hand-built capsules


@pytest.mark.parametrize("versioned", [True, False])
def test_handmade_capsule_fields_and_single_delete(versioned):
    made = HandMade((4, 32), (64, 1), code=10, bits=8, byte_offset=256, versioned=versioned)
    prod = handmade_producer(made)
    info = as_array(prod, "b[0]", fp8=True)
    expected_name = b"used_dltensor_versioned" if versioned else b"used_dltensor"
    assert _capsule_name(prod.capsules[0]) == expected_name
    assert info.ptr == FAKE_PTR + 256
    assert info.shape == (4, 32) and info.strides == (64, 1)
    assert info.dtype is FP8 and info.device == 0
    assert made.calls == []
    info2 = info.replace(shape=(2, 32))  # shares the owner
    del info
    gc.collect()
    assert made.calls == []
    del info2
    gc.collect()
    assert made.calls == [made.address]
    del prod
    gc.collect()
    assert made.calls == [made.address]  # the renamed capsule did not delete again


@pytest.mark.parametrize("code,bits,expected", [
    (2, 16, np.float16), (2, 32, np.float32), (2, 64, np.float64), (4, 16, ml_dtypes.bfloat16),
    (0, 8, np.int8), (0, 32, np.int32), (0, 64, np.int64), (1, 8, np.uint8), (1, 16, np.uint16),
    (6, 8, np.bool_), (5, 64, np.complex64), (10, 8, ml_dtypes.float8_e4m3fn),
    (12, 8, ml_dtypes.float8_e5m2),
])
def test_dlpack_dtype_codes(code, bits, expected):
    made = HandMade((3,), code=code, bits=bits)
    info = as_array(handmade_producer(made), "x")
    assert info.dtype == np.dtype(expected)
    del info
    gc.collect()
    assert len(made.calls) == 1


def test_dlpack_uint8_as_fp8_and_strides_null():
    made = HandMade((2, 3, 16), None, code=1, bits=8)
    info = as_array(handmade_producer(made), "a", fp8=True)
    assert info.dtype is FP8 and info.strides == (48, 16, 1)


@pytest.mark.parametrize("kwargs,fp8,error,pattern", [
    ({"device": (10, 0)}, False, ValueError,
     r"^x: expected a CUDA or host array, got DLPack device ROCm"),
    ({"code": 17, "bits": 4}, False, TypeError,
     r"^x: unsupported DLPack dtype float4_e2m1fn \(4 bits\)"),
    ({"lanes": 4}, False, TypeError, r"^x: unsupported DLPack dtype float32x4"),
    ({"major": 2}, False, BufferError, r"^x: DLPack major version 2"),
    ({}, True, TypeError, r"^x: expected float8_e4m3fn .* got float32"),
])
def test_dlpack_rejections_still_delete_once(kwargs, fp8, error, pattern):
    made = HandMade((8,), **kwargs)
    with pytest.raises(error, match=pattern):
        as_array(handmade_producer(made), "x", fp8=fp8)
    gc.collect()
    assert made.calls == [made.address]


def test_dlpack_host_pinned_and_managed_devices():
    pinned = HandMade((4,), device=(3, 0))
    assert as_array(handmade_producer(pinned), "x").device is None
    managed = HandMade((4,), device=(13, 1))
    assert as_array(handmade_producer(managed), "x").device == 1


@pytest.mark.parametrize("stream,sent", [(None, 1), (0, 1), (1, 1), (2, 2), (-1, -1),
                                         (0x5555_0000, 0x5555_0000)])
def test_dlpack_stream_argument_for_cuda_producers(stream, sent):
    made = HandMade((4,), device=(2, 0))
    prod = handmade_producer(made)
    as_array(prod, "x", stream=stream)
    assert prod.kwargs[0]["stream"] == sent


def test_dlpack_stream_object_is_resolved():
    class TorchLikeStream:
        cuda_stream = 0x1234_5000

    made = HandMade((4,), device=(2, 0))
    prod = handmade_producer(made)
    as_array(prod, "x", stream=TorchLikeStream())
    assert prod.kwargs[0]["stream"] == 0x1234_5000


def test_dlpack_unknown_capsule():
    class Bad:
        def __dlpack_device__(self):
            return (1, 0)

        def __dlpack__(self, **kw):
            return _capsule_new(FAKE_PTR, b"something_else", None)

    with pytest.raises(TypeError, match=r"^x: __dlpack__ returned .*not an unconsumed DLPack"):
        as_array(Bad(), "x")


# ---------------------------------------------------------------- DLPack C exchange API


class ExchangeC(ctypes.Structure):
    _fields_ = [("major", c_u32), ("minor", c_u32), ("prev_api", c_vp), ("allocator", c_vp),
                ("mt_from_py", c_vp), ("mt_to_py", c_vp), ("dltensor_from_py", c_vp),
                ("current_work_stream", c_vp)]


_DLT_FROM_PY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.py_object, c_vp)
_CUR_STREAM = ctypes.CFUNCTYPE(ctypes.c_int, c_i32, c_i32, c_vp)


def make_exchange_type(current_stream: int, fail: bool = False):
    """A tensor type exposing __dlpack_c_exchange_api__ (fills a CUDA DLTensor) and __dlpack__."""
    state = {"exchange": 0, "dlpack": [], "current": current_stream}
    shape = (c_i64 * 2)(8, 64)
    strides = (c_i64 * 2)(64, 1)

    def dlt_from_py(obj, out):
        state["exchange"] += 1
        if fail:
            return -1
        t = DLTensorC.from_address(out)
        t.data, t.device_type, t.device_id, t.ndim = obj.ptr, 2, 0, 2
        t.code, t.bits, t.lanes = 1, 8, 1
        t.shape, t.strides, t.byte_offset = ctypes.addressof(shape), ctypes.addressof(strides), 0
        return 0

    def cur_stream(dev_type, dev_id, out):
        c_vp.from_address(out).value = state["current"]
        return 0

    fns = (_DLT_FROM_PY(dlt_from_py), _CUR_STREAM(cur_stream))
    api = ExchangeC(1, 3, None, None, None, None, ctypes.cast(fns[0], c_vp).value,
                    ctypes.cast(fns[1], c_vp).value)
    made = HandMade((8, 64), (64, 1), code=1, bits=8, device=(2, 0))

    class Tensor:
        __dlpack_c_exchange_api__ = _capsule_new(ctypes.addressof(api), b"dlpack_exchange_api",
                                                 None)
        _keep = (api, fns, shape, strides, made)

        def __init__(self, ptr):
            self.ptr = ptr

        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, *, stream=None, max_version=None, **kw):
            state["dlpack"].append(stream)
            return made.capsule()

    return Tensor, state


@pytest.mark.parametrize("current,stream,waits", [
    (0, None, []), (0, 1, []), (0x7000, 0x7000, []), (0x7000, -1, []),
    (0x7000, None, [(0, 0x7000, None)]), (0, 0x7000, [(0, 0, 0x7000)]),
])
def test_exchange_api_stream_handling(monkeypatch, current, stream, waits):
    recorded = []
    monkeypatch.setattr(arrays, "stream_wait", lambda *a: recorded.append(a))
    Tensor, state = make_exchange_type(current)
    x = Tensor(0x7F00_0000_2000)
    info = as_array(x, "a", fp8=True, stream=stream)
    assert info.dtype is FP8 and info.shape == (8, 64) and info.strides == (64, 1)
    assert state["dlpack"] == [] and state["exchange"] == 1
    assert info.ptr == x.ptr and info.owner is x and info.device == 0
    assert recorded == waits  # on another stream: ours waits for the producer's (event)
    assert arrays.current_stream_of(x) == current


def test_exchange_api_failure_falls_back_to_dlpack():
    Tensor, state = make_exchange_type(0, fail=True)
    info = as_array(Tensor(0x7F00_0000_2000), "a", fp8=True, stream=0x7000)
    assert state["exchange"] == 1 and state["dlpack"] == [0x7000]
    assert info.ptr == FAKE_PTR and info.dtype is FP8


@pytest.mark.parametrize("shape_at,strides_at", [(0, 24), (24, 0), (0, 4096), (4096, 0),
                                                 (0, None)])
def test_shape_and_strides_reads(shape_at, strides_at):
    buf = (ctypes.c_char * 8192)()
    base = ctypes.addressof(buf)
    ctypes.memmove(base + shape_at, struct.pack("=3q", 2, 3, 4), 24)
    if strides_at is not None:
        ctypes.memmove(base + strides_at, struct.pack("=3q", 100, 20, 1), 24)
    info = arrays._finish("x", False, 0x1000, 2, 0, 3, 2, 32, 1, base + shape_at,
                          0 if strides_at is None else base + strides_at, None, False)
    assert info.shape == (2, 3, 4)
    assert info.strides == ((12, 4, 1) if strides_at is None else (100, 20, 1))


# ---------------------------------------------------------------- __cuda_array_interface__


class FakeCAI:
    def __init__(self, **entries):
        cai = {"shape": (4, 8), "typestr": "<f4", "data": (0x7F00_0000_4000, False),
               "version": 3}
        cai.update(entries)
        self.__cuda_array_interface__ = cai


@pytest.fixture
def fake_device(monkeypatch):
    waits = []
    monkeypatch.setattr(arrays, "_pointer_device", lambda ptr: 0)
    monkeypatch.setattr(arrays, "stream_wait", lambda dev, src, dst: waits.append((dev, src, dst)))
    return waits


def test_call_reader_waits_once_per_source_stream(fake_device):
    """One event wait per (device, allocation stream) of a call's DeviceArrays; none for an
    array already on the call's stream; each call waits afresh."""
    on = lambda stream, ptr: DeviceArray(ptr, (4, 8), np.float32, 0, stream)  # noqa: E731
    for _ in range(2):
        read = arrays.call_reader(0x30)
        for i, stream in enumerate((0x10, 0x10, 0x20, 0x30, 0x10)):
            assert read(on(stream, 0x7F00_0000_0000 + 256 * i), f"x{i}").ptr == 0x7F00_0000_0000 + 256 * i
    assert fake_device == [(0, 0x10, 0x30), (0, 0x20, 0x30)] * 2


def test_cai_parsing(fake_device):
    info = as_array(FakeCAI(strides=(64, 8)), "a")
    assert info.ptr == 0x7F00_0000_4000 and info.shape == (4, 8)
    assert info.strides == (16, 2) and info.dtype == F32 and info.device == 0
    info = as_array(FakeCAI(), "a")
    assert info.strides == (8, 1) and info.is_contiguous()
    info = as_array(FakeCAI(typestr="|u1", data=(0x7F00_0000_4000, True)), "a", fp8=True)
    assert info.dtype is FP8 and info.readonly
    assert as_array(FakeCAI(typestr="|V1"), "a", fp8=True).dtype is FP8
    assert as_array(FakeCAI(typestr="<V2"), "a").dtype == np.dtype("V2")  # never guessed bf16
    assert as_array(FakeCAI(typestr="<f2", shape=(), data=(0, False)), "a").shape == ()


def test_cai_errors(fake_device):
    with pytest.raises(TypeError, match=r"^a: unsupported __cuda_array_interface__ typestr '>f4'"):
        as_array(FakeCAI(typestr=">f4"), "a")
    with pytest.raises(ValueError, match=r"^a: masked"):
        as_array(FakeCAI(mask=object()), "a")
    with pytest.raises(ValueError, match=r"^a: byte strides \(6, 4\) are not multiples"):
        as_array(FakeCAI(strides=(6, 4)), "a")
    with pytest.raises(TypeError, match=r"^a: malformed"):
        as_array(FakeCAI(data=None), "a")
    with pytest.raises(TypeError, match=r"^a: expected float8_e4m3fn .*got float32"):
        as_array(FakeCAI(), "a", fp8=True)
    with pytest.raises(TypeError, match=r"^c: expected bfloat16, got \|V2 \(opaque 2-byte void\)"):
        check_dtype(as_array(FakeCAI(typestr="<V2"), "c"), "c", BF16)


@pytest.mark.parametrize("producer,stream,waits", [
    (None, None, []), (1, None, []), (1, 0, []), (0x8000, 0x8000, []), (0x8000, -1, []),
    (0x8000, None, [(0, 0x8000, None)]), (1, 0x9000, [(0, 1, 0x9000)]),
    (2, 0x9000, [(0, 2, 0x9000)]),
])
def test_cai_stream_synchronization(fake_device, producer, stream, waits):
    as_array(FakeCAI(stream=producer), "a", stream=stream)
    assert fake_device == waits


def test_cai_v2_stream_key_ignored(fake_device):
    as_array(FakeCAI(version=2, stream=0x8000), "a", stream=0x9000)
    assert fake_device == []


def test_cai_class_property_is_cached(fake_device):
    class Prop:
        @property
        def __cuda_array_interface__(self):
            return {"shape": (3,), "typestr": "<i4", "data": (0x7F00_0000_5000, False),
                    "version": 2}

    assert as_array(Prop(), "p").dtype == np.dtype(np.int32)
    assert arrays._readers[Prop] is arrays._from_cai


# ---------------------------------------------------------------- DeviceArray without a GPU


def fake_device_array(shape=(4, 32), dtype=FP8, stream=0):
    # Wraps a fake pointer: no allocation, nothing to free (CPU-testable export paths).
    return DeviceArray(0x7F00_0000_8000, shape, dtype, 0, stream)


@pytest.mark.parametrize("max_version,name", [((1, 0), b"dltensor_versioned"),
                                              ((1, 2), b"dltensor_versioned"),
                                              (None, b"dltensor"), ((0, 8), b"dltensor")])
def test_devicearray_dlpack_export(max_version, name):
    d = fake_device_array((3, 5, 16))
    cap = d.__dlpack__(max_version=max_version)
    assert _capsule_name(cap) == name
    info = arrays._consume_capsule(cap, "x", False)
    assert info.ptr == d.ptr and info.shape == (3, 5, 16) and info.strides == (80, 16, 1)
    assert info.dtype is FP8 and info.device == 0 and not info.readonly
    assert d.__dlpack_device__() == (2, 0)
    ref = weakref.ref(d)
    del d
    gc.collect()
    assert ref() is not None  # the consumer keeps the array alive
    del info, cap
    gc.collect()
    assert ref() is None


def test_devicearray_dlpack_export_all_dtypes():
    for dt in (np.float32, np.float16, ml_dtypes.bfloat16, np.int32, np.uint8,
               ml_dtypes.float8_e4m3fn):
        d = fake_device_array((2, 2), dt)
        info = arrays._consume_capsule(d.__dlpack__(max_version=(1, 0)), "x", False)
        assert info.dtype == np.dtype(dt)


def test_devicearray_unconsumed_capsule_releases_array():
    d = fake_device_array()
    ref = weakref.ref(d)
    cap = d.__dlpack__(max_version=(1, 0))
    del d
    gc.collect()
    assert ref() is not None
    del cap
    gc.collect()
    assert ref() is None


def test_devicearray_capsule_dropped_while_exception_propagates():
    """A consumer that rejects the capsule frees it with an exception set: no SystemError."""
    d = fake_device_array()
    ref = weakref.ref(d)
    with pytest.raises(TypeError, match="has no len"):
        len(d.__dlpack__(max_version=(1, 0)))
    with pytest.raises(TypeError, match="has no len"):
        len(d.__dlpack__())
    del d
    gc.collect()
    assert ref() is None


def test_devicearray_dlpack_arguments():
    d = fake_device_array()
    with pytest.raises(BufferError, match="CUDA device 0"):
        d.__dlpack__(dl_device=(1, 0))
    with pytest.raises(BufferError, match="copy"):
        d.__dlpack__(copy=True)
    assert _capsule_name(d.__dlpack__(dl_device=(2, 0), copy=False, stream=-1)) == b"dltensor"
    assert _capsule_name(d.__dlpack__(stream=1)) == b"dltensor"  # legacy == stream 0


def test_devicearray_cai_view_and_as_array():
    d = fake_device_array((4, 32), FP8, stream=0)
    cai = d.__cuda_array_interface__
    assert cai["version"] == 3 and cai["data"] == (d.ptr, False) and cai["shape"] == (4, 32)
    assert cai["strides"] is None and cai["stream"] == 1
    assert np.dtype(cai["typestr"]).itemsize == 1
    u = d.view(np.uint8)
    assert u.ptr == d.ptr and u.dtype == U8 and u.base is d and u.shape == d.shape
    assert u.__cuda_array_interface__["typestr"] == "|u1"
    with pytest.raises(ValueError, match="item size 1"):
        d.view(np.float32)
    info = as_array(u, "a", fp8=True)
    assert info.ptr == d.ptr and info.dtype is FP8 and info.device == 0 and info.owner is u
    assert info.strides == (32, 1)
    assert arrays.to_device(info, 0) == (info, None)


# ---------------------------------------------------------------- checks


def make_info(shape, strides=None, dtype=F32, device=0, ptr=0x10000):
    strides = arrays._c_strides(tuple(shape)) if strides is None else tuple(strides)
    return ArrayInfo(ptr, tuple(shape), strides, np.dtype(dtype), device)


def test_check_device():
    host = make_info((2, 2), device=None)
    with pytest.raises(ValueError) as e:
        check_device(host, "x")
    assert str(e.value) == "x: expected a CUDA device array, got host memory"
    assert check_device(host, "x", allow_host=True) is None
    assert check_device(make_info((2,), device=1), "x") == 1
    with pytest.raises(ValueError, match=r"^x: expected an array on CUDA device 0, got one on "
                                         r"device 1"):
        check_device(make_info((2,), device=1), "x", 0)


def test_check_same_device():
    assert check_same_device(("a", make_info((2,))), ("c", None), ("b", make_info((3,)))) == 0
    with pytest.raises(ValueError, match=r"^b: expected an array on CUDA device 0 \(like a\), "
                                         r"got one on device 1"):
        check_same_device(("a", make_info((2,))), ("b", make_info((2,), device=1)))
    with pytest.raises(ValueError, match=r"^b: expected a CUDA device array, got host memory"):
        check_same_device(("a", make_info((2,))), ("b", make_info((2,), device=None)))


def test_check_dtype_and_shape():
    info = make_info((128, 255), dtype=np.float16)
    with pytest.raises(TypeError, match=r"^sfa: expected float32, got float16$"):
        check_dtype(info, "sfa", np.float32)
    with pytest.raises(TypeError, match=r"^out: expected one of \(bfloat16, float32\), got "
                                        r"float16$"):
        check_dtype(info, "out", (BF16, np.float32))
    assert check_dtype(info, "x", (np.float16,)) == np.float16
    with pytest.raises(ValueError, match=r"^a: expected shape \(128, 256\), got \(128, 255\)$"):
        check_shape(info, "a", (128, 256))
    with pytest.raises(ValueError, match=r"^a: expected shape \(\*,\), got \(128, 255\)$"):
        check_shape(info, "a", (None,))
    assert check_shape(info, "a", (None, 255)) == (128, 255)


def test_check_layouts():
    c = make_info((4, 8))
    check_contiguous(c, "c")
    check_row_major(c, "c")
    t = make_info((8, 4), (1, 8))
    with pytest.raises(ValueError, match=r"^t: expected a C-contiguous array"):
        check_contiguous(t, "t")
    with pytest.raises(ValueError, match=r"^t: expected a row-major array \(last stride 1\)"):
        check_row_major(t, "t")
    check_row_major(make_info((8, 1), (5, 3)), "col")  # one column: its stride is irrelevant
    check_row_major(make_info((8, 4), (16, 1)), "padded")


def test_check_tma_compatible():
    fp8 = make_info((64, 128), dtype=FP8)
    check_tma_compatible(fp8, "a")
    check_tma_compatible(make_info((64, 128), (256, 1), dtype=FP8), "a")  # padded rows
    check_tma_compatible(make_info((1, 100), (7, 1), dtype=FP8, ptr=0x10010), "a")  # 1 row
    with pytest.raises(ValueError, match=r"^a: TMA needs a 16-byte aligned address, got 0x10008"):
        check_tma_compatible(make_info((64, 128), dtype=FP8, ptr=0x10008), "a")
    with pytest.raises(ValueError, match=r"^b\[0\]: TMA needs strides that are positive "
                                         r"multiples of 16 bytes, got 100 bytes in dimension 0"):
        check_tma_compatible(make_info((64, 100), dtype=FP8), "b[0]")
    with pytest.raises(ValueError, match=r"^a: expected a row-major array"):
        check_tma_compatible(make_info((64, 128), (1, 64), dtype=FP8), "a")
    with pytest.raises(ValueError, match=r"^a: expected at least one dimension"):
        check_tma_compatible(make_info((), dtype=FP8), "a")
    check_tma_compatible(make_info((4, 64, 128), dtype=FP8), "b")
    check_tma_compatible(make_info((4, 3, 8), dtype=np.float32), "b")  # 96 and 32 bytes
    with pytest.raises(ValueError, match="got 24 bytes in dimension 1"):
        check_tma_compatible(make_info((4, 3, 6), (32, 6, 1), dtype=np.float32), "b")


def test_array_info_helpers():
    info = make_info((3, 1, 5), (5, 99, 1))
    assert info.is_contiguous() and info.ndim == 3 and info.size == 15
    assert info.nbytes == 60 and info.byte_strides == (20, 396, 4)
    assert not make_info((3, 5), (10, 1)).is_contiguous()
    assert make_info((0, 5), (1, 1)).is_contiguous()
    assert "float32" in repr(info) and "cuda:0" in repr(info)


# ---------------------------------------------------------------- speed (CPU part)


def test_as_array_numpy_is_cheap():
    a = np.zeros((128, 256), np.float32)
    n = 20000
    per_call = min(timeit.repeat(lambda: as_array(a, "a"), number=n, repeat=3)) / n
    print(f"\nas_array(numpy C-contiguous): {per_call * 1e6:.2f} us")
    assert per_call < 20e-6  # generous: a loaded CI machine; ~0.7 us on an idle one


# ================================================================ GPU tests

gpu = pytest.mark.gpu


def _import_jax():
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU politely
    jax = pytest.importorskip("jax")
    try:
        jax.devices("gpu")
    except RuntimeError as e:
        pytest.skip(f"jax has no GPU backend here: {e}")
    return jax


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return torch


def _cupy():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        pytest.skip(f"cupy has no CUDA here: {e}")
    return cupy


def _sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        return rng.integers(0, 100, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)


@gpu
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn,
                                   np.uint8, np.int32, np.float16])
@pytest.mark.parametrize("shape", [(), (0,), (3, 5, 7), (128, 256)])
def test_gpu_numpy_round_trip_bit_exact(dtype, shape):
    host = _sample(shape, dtype)
    d = DeviceArray.from_numpy(host, device=0, stream=0)
    assert d.shape == host.shape and d.dtype == host.dtype and d.device == 0
    back = d.to_numpy()
    assert back.dtype == host.dtype
    assert back.tobytes() == host.tobytes()
    info = as_array(d, "d")
    assert info.ptr == d.ptr and info.device == 0 and info.strides == d.strides


@gpu
def test_gpu_non_default_stream_and_views():
    from cuda.bindings import driver as cu
    from fp8gemm_core import driver
    with driver.get_device(0).activate():
        s1 = driver.call(cu.cuStreamCreate, 1)
        s2 = driver.call(cu.cuStreamCreate, 1)
    host = _sample((64, 128), ml_dtypes.float8_e4m3fn)
    d = DeviceArray.from_numpy(host, 0, int(s1))
    assert d.stream == int(s1)
    info = as_array(d, "a", fp8=True, stream=int(s2))  # s2 waits for s1 (event)
    assert info.ptr == d.ptr
    u = d.view(np.uint8)
    assert u.to_numpy(stream=int(s1)).tobytes() == host.tobytes()
    del d, u, info
    gc.collect()
    driver.stream_synchronize(int(s1))


@gpu
def test_gpu_host_memory_rejected_where_device_required():
    info = as_array(np.zeros((4, 4), np.float32), "x")
    with pytest.raises(ValueError, match=r"^x: expected a CUDA device array, got host memory$"):
        check_device(info, "x")


@gpu
def test_gpu_staging_host_arrays():
    base = _sample((16, 48), np.float32)
    view = base[::2, 8:40]
    info = as_array(view, "a")
    dev_info, keep = arrays.to_device(info, 0, 0)
    assert dev_info.device == 0 and dev_info.is_contiguous() and isinstance(keep, DeviceArray)
    np.testing.assert_array_equal(keep.to_numpy(), view)
    out = np.zeros((16, 64), np.float32)
    out_view = out[::2, 16:48]
    out_info = as_array(out_view, "out")
    staged, tmp = arrays.to_device(out_info, 0, 0, copy=False)
    arrays.copy_to_host(keep, out_info, 0)
    np.testing.assert_array_equal(out_view, view)
    assert out[1].sum() == 0 and out[:, :16].sum() == 0  # nothing outside the view written


@gpu
def test_gpu_cai_pointer_device_lookup():
    d = DeviceArray.from_numpy(np.arange(8, dtype=np.float32), 0, 0)

    class Wrap:
        def __init__(self, cai):
            self.__cuda_array_interface__ = cai

    info = as_array(Wrap(dict(d.__cuda_array_interface__)), "a", stream=0)
    assert info.ptr == d.ptr and info.device == 0
    h = np.zeros(8, np.float32)
    host_cai = {"shape": (8,), "typestr": "<f4", "data": (h.ctypes.data, False), "version": 2}
    assert as_array(Wrap(host_cai), "h").device is None


@gpu
def test_gpu_wrong_device_with_two_gpus():
    from fp8gemm_core import driver
    if driver.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    a = DeviceArray.empty((4, 4), np.float32, device=0)
    b = DeviceArray.empty((4, 4), np.float32, device=1)
    with pytest.raises(ValueError, match=r"^b: expected an array on CUDA device 0 \(like a\), "
                                         r"got one on device 1"):
        check_same_device(("a", as_array(a, "a")), ("b", as_array(b, "b", stream=-1)))
    assert as_array(b, "b", stream=-1).device == 1


# ---- torch


@gpu
def test_gpu_torch_imports_devicearray_zero_copy():
    torch = _torch_cuda()
    host = _sample((32, 48), np.float32)
    d = DeviceArray.from_numpy(host, 0, 0)
    ref = weakref.ref(d)
    t = torch.from_dlpack(d)
    assert t.data_ptr() == d.ptr and t.dtype == torch.float32 and t.device.index == 0
    assert tuple(t.shape) == (32, 48) and t.stride() == (48, 1)
    del d
    gc.collect()
    assert ref() is not None  # kept alive by the torch tensor
    np.testing.assert_array_equal(t.cpu().numpy(), host)
    del t
    gc.collect()
    assert ref() is None


@gpu
def test_gpu_torch_bf16_devicearray():
    torch = _torch_cuda()
    host = _sample((8, 16), ml_dtypes.bfloat16)
    d = DeviceArray.from_numpy(host, 0, 0)
    t = torch.from_dlpack(d)
    assert t.dtype == torch.bfloat16 and t.data_ptr() == d.ptr
    assert t.view(torch.int16).cpu().numpy().tobytes() == host.tobytes()


@gpu
@pytest.mark.parametrize("kind", ["f32", "bf16", "cols", "transpose", "offset", "cpu", "u8"])
def test_gpu_as_array_torch(kind):
    torch = _torch_cuda()
    base = torch.arange(64 * 96, dtype=torch.float32, device="cuda").reshape(64, 96)
    t = {"f32": base, "bf16": base.to(torch.bfloat16), "cols": base[:, ::2], "transpose": base.t(),
         "offset": base[3:, 16:], "cpu": base.cpu(), "u8": base.to(torch.uint8)}[kind]
    info = as_array(t, "t", stream=torch.cuda.current_stream().cuda_stream)
    assert info.ptr == t.data_ptr()
    assert info.shape == tuple(t.shape) and info.strides == tuple(t.stride())
    assert info.device == (None if kind == "cpu" else t.device.index)
    assert info.dtype == {"bf16": BF16, "u8": U8}.get(kind, F32)


@gpu
def test_gpu_torch_side_stream():
    torch = _torch_cuda()
    t = torch.ones(256, 256, device="cuda")
    side = torch.cuda.Stream()
    info = as_array(t, "t", stream=side.cuda_stream)  # torch makes `side` wait (DLPack stream)
    assert info.ptr == t.data_ptr()
    with torch.cuda.stream(side):
        info = as_array(t, "t", stream=side.cuda_stream)
        assert info.ptr == t.data_ptr()


@gpu
def test_gpu_torch_exchange_api():
    """Reports whether this torch exposes the DLPack C exchange API (the fast path)."""
    torch = _torch_cuda()
    t = torch.zeros(4, 4, device="cuda")
    reader = arrays._reader_for(type(t), t)
    if reader is arrays._from_dlpack:
        pytest.xfail(f"torch {torch.__version__}: no DLPack C exchange API; __dlpack__ is used")
    assert arrays.current_stream_of(t) == torch.cuda.current_stream().cuda_stream
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        assert arrays.current_stream_of(t) == side.cuda_stream
    assert as_array(t, "t").ptr == t.data_ptr()


@gpu
def test_gpu_torch_requires_grad():
    torch = _torch_cuda()
    w = torch.zeros(4, 4, device="cuda", requires_grad=True)
    try:
        info = as_array(w, "w")
    except TypeError as e:
        assert str(e).startswith("w: ")
    else:
        assert info.ptr == w.data_ptr()


@gpu
def test_gpu_torch_fp8_export():
    """torch float8_e4m3fn straight into as_array: DLPack code 10 when torch supports it."""
    torch = _torch_cuda()
    x = torch.randn(16, 32, device="cuda").to(torch.float8_e4m3fn)
    try:
        info = as_array(x, "a", fp8=True)
    except TypeError as e:
        assert str(e).startswith("a: ") and "uint8 view" in str(e)
        pytest.xfail(f"torch {torch.__version__} does not export float8_e4m3fn: {e}")
    assert info.dtype is FP8 and info.ptr == x.data_ptr() and info.device == 0


@gpu
def test_gpu_torch_fp8_uint8_view():
    torch = _torch_cuda()
    x = torch.randn(16, 32, device="cuda").to(torch.float8_e4m3fn)
    info = as_array(x.view(torch.uint8), "a", fp8=True)
    assert info.dtype is FP8 and info.ptr == x.data_ptr()
    with pytest.raises(TypeError, match=r"^a: expected float8_e4m3fn \(or a uint8 view of it\), "
                                        r"got bfloat16"):
        as_array(x.to(torch.bfloat16), "a", fp8=True)


@gpu
def test_gpu_torch_imports_fp8_devicearray():
    torch = _torch_cuda()
    host = _sample((8, 32), ml_dtypes.float8_e4m3fn)
    d = DeviceArray.from_numpy(host, 0, 0)
    u = torch.from_dlpack(d.view(np.uint8))  # always works
    assert u.dtype == torch.uint8 and u.data_ptr() == d.ptr
    try:
        t = torch.from_dlpack(d)
    except Exception as e:
        pytest.xfail(f"torch {torch.__version__} does not import DLPack float8_e4m3fn: "
                     f"{type(e).__name__}: {e}")
    assert t.dtype == torch.float8_e4m3fn and t.data_ptr() == d.ptr
    assert t.view(torch.uint8).cpu().numpy().tobytes() == host.tobytes()


# ---- cupy


@gpu
def test_gpu_cupy_round_trip():
    cupy = _cupy()
    host = _sample((32, 48), np.float32)
    d = DeviceArray.from_numpy(host, 0, 0)
    c = cupy.from_dlpack(d)
    assert c.data.ptr == d.ptr
    np.testing.assert_array_equal(cupy.asnumpy(c), host)
    c2 = cupy.asarray(d)  # through our __cuda_array_interface__
    assert c2.data.ptr == d.ptr
    for x in (c, c[:, ::2], c.T, c[5:, 7:]):
        info = as_array(x, "c", stream=cupy.cuda.get_current_stream().ptr)
        assert info.ptr == x.data.ptr and info.device == 0
        assert info.strides == tuple(s // 4 for s in x.strides)


@gpu
def test_gpu_cupy_cai_path():
    cupy = _cupy()
    c = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)

    class OnlyCAI:
        def __init__(self, arr):
            self.__cuda_array_interface__ = arr.__cuda_array_interface__

    info = as_array(OnlyCAI(c), "c", stream=0)
    assert info.ptr == c.data.ptr and info.device == 0 and info.shape == (3, 4)


@gpu
def test_gpu_cupy_fp8():
    cupy = _cupy()
    host = _sample((8, 32), ml_dtypes.float8_e4m3fn)
    raw = cupy.asarray(host.view(np.uint8))
    info = as_array(raw, "a", fp8=True)  # CuPy has no FP8 dtype: uint8 views are the way
    assert info.dtype is FP8 and info.ptr == raw.data.ptr
    d = DeviceArray.from_numpy(host, 0, 0)
    u = cupy.from_dlpack(d.view(np.uint8))
    assert u.data.ptr == d.ptr and cupy.asnumpy(u).tobytes() == host.tobytes()
    try:
        cupy.from_dlpack(d)
    except Exception as e:
        pytest.xfail(f"cupy {cupy.__version__} does not import DLPack float8_e4m3fn: "
                     f"{type(e).__name__}: {e}")


# ---- jax


def _jax_ptr(x):
    return x.unsafe_buffer_pointer()


@gpu
def test_gpu_jax_round_trip():
    jax = _import_jax()
    import jax.numpy as jnp
    host = _sample((32, 48), np.float32)
    d = DeviceArray.from_numpy(host, 0, 0)
    j = jnp.from_dlpack(d)
    np.testing.assert_array_equal(np.asarray(j), host)
    assert _jax_ptr(j) == d.ptr
    x = jax.device_put(jnp.asarray(host), jax.devices("gpu")[0])
    info = as_array(x, "x")
    assert info.ptr == _jax_ptr(x) and info.device == 0 and info.dtype == F32


@gpu
def test_gpu_jax_fp8():
    jax = _import_jax()
    import jax.numpy as jnp
    host = _sample((16, 32), ml_dtypes.float8_e4m3fn)
    x = jax.device_put(jnp.asarray(host), jax.devices("gpu")[0])
    try:
        info = as_array(x, "a", fp8=True)
    except TypeError as e:
        pytest.xfail(f"jax {jax.__version__} does not export float8_e4m3fn: {e}")
    assert info.dtype is FP8 and info.ptr == _jax_ptr(x)
    d = DeviceArray.from_numpy(host, 0, 0)
    try:
        j = jnp.from_dlpack(d)
    except Exception as e:
        pytest.xfail(f"jax {jax.__version__} does not import DLPack float8_e4m3fn: "
                     f"{type(e).__name__}: {e}")
    assert j.dtype == jnp.float8_e4m3fn
    assert np.asarray(j).tobytes() == host.tobytes()


# ---- launch-path cost


@gpu
def test_gpu_as_array_cost_report():
    """Prints what as_array costs per framework (run with -s to see it)."""
    rows = []
    d = DeviceArray.empty((128, 256), np.float32)
    rows.append(("DeviceArray", lambda: as_array(d, "a")))
    rows.append(("numpy", (lambda h: lambda: as_array(h, "a"))(np.zeros((128, 256), np.float32))))
    try:
        import torch
        if torch.cuda.is_available():
            t = torch.zeros(128, 256, device="cuda")
            cur = torch.cuda.current_stream().cuda_stream
            side = torch.cuda.Stream().cuda_stream
            rows.append(("torch (current stream)", lambda: as_array(t, "a", stream=cur)))
            rows.append(("torch (other stream)", lambda: as_array(t, "a", stream=side)))
            rows.append(("torch stream=-1", lambda: as_array(t, "a", stream=-1)))
    except ImportError:
        pass
    try:
        import cupy
        c = cupy.zeros((128, 256), cupy.float32)
        rows.append(("cupy", lambda: as_array(c, "a")))
    except ImportError:
        pass
    out = []
    for label, fn in rows:
        fn()
        n = 2000
        us = min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6
        out.append(f"{label:24s} {us:7.2f} us")
    print("\nas_array cost:\n  " + "\n  ".join(out))
