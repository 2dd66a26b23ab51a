"""Thin layer over the CUDA driver API (``cuda.bindings.driver``).

Everything the rest of the package needs from the driver goes through here:
checked calls, lazy initialisation, one record per GPU (primary context and the
attributes the heuristics read), streams, stream-ordered memory and kernel
launches. No framework is imported: arrays from torch, JAX or CuPy live in the
same primary context, so their pointers are valid here as they are.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from cuda.bindings import driver as cu

__all__ = [
    "CudaError", "CudaUnavailableError", "UnsupportedDeviceError", "call", "is_available",
    "device_count", "get_device", "Device", "stream_handle", "stream_wait", "launch", "LEGACY_STREAM",
]

# Special stream handles of the driver API: 0 is the legacy default stream as
# well, 1 and 2 name the legacy and per-thread default streams explicitly.
LEGACY_STREAM = 0x1
PER_THREAD_STREAM = 0x2

_SUCCESS = cu.CUresult.CUDA_SUCCESS


class CudaError(RuntimeError):
    """A CUDA driver call failed; the message names the call and the error."""

    def __init__(self, call_name: str, code: Any):
        self.call_name = call_name
        self.code = code
        super().__init__(f"{call_name} failed: {_error_text(code)}")


class CudaUnavailableError(RuntimeError):
    """No usable NVIDIA driver or GPU on this machine."""


class UnsupportedDeviceError(RuntimeError):
    """The GPU is not a Hopper (sm_90) part, which every kernel here needs."""


def _error_text(code: Any) -> str:
    try:
        name = cu.CUresult(code).name
    except ValueError:
        name = f"CUresult {int(code)}"
    try:
        err, desc = cu.cuGetErrorString(code)
        if err == _SUCCESS and desc:
            return f"{name} ({desc.decode()})"
    except Exception:  # the driver itself may be what is missing
        pass
    return name


def call(fn, *args):
    """Call a ``cuda.bindings.driver`` function and raise ``CudaError`` on failure.

    Returns the call's outputs: ``None`` for none, the value for one, a tuple for more.
    """
    result = fn(*args)
    if result[0] != _SUCCESS:
        raise CudaError(fn.__name__, result[0])
    n = len(result)
    if n == 1:
        return None
    return result[1] if n == 2 else result[1:]


# ---------------------------------------------------------------- initialisation

_init_lock = threading.Lock()
_init_error: Exception | None = None
_initialised = False


def _ensure_init() -> None:
    global _initialised, _init_error
    if _initialised:
        return
    with _init_lock:
        if _initialised:
            return
        if _init_error is None:
            try:
                call(cu.cuInit, 0)
            except CudaError as e:
                _init_error = e
            except Exception as e:  # libcuda.so not found: a machine without a driver
                _init_error = e
            else:
                _initialised = True
                return
        raise CudaUnavailableError(f"no usable CUDA driver/GPU: {_init_error}") from _init_error


def is_available() -> bool:
    """True when the CUDA driver loads and sees at least one GPU."""
    try:
        return device_count() > 0
    except CudaUnavailableError:
        return False


def device_count() -> int:
    _ensure_init()
    return call(cu.cuDeviceGetCount)


# ---------------------------------------------------------------- devices


@dataclass
class Device:
    """One GPU: its primary context and the attributes kernels and heuristics need."""

    ordinal: int
    name: str
    compute_capability: tuple[int, int]
    num_sms: int
    max_smem_per_block_optin: int
    l2_bytes: int
    memory_bytes: int
    handle: Any = field(repr=False)
    context: Any = field(repr=False)

    def is_hopper(self) -> bool:
        return self.compute_capability == (9, 0)

    def require_hopper(self) -> None:
        if not self.is_hopper():
            major, minor = self.compute_capability
            raise UnsupportedDeviceError(
                f"fp8gemm_core kernels need an sm_90 GPU (H100/H200); device {self.ordinal} is "
                f"{self.name} with compute capability {major}.{minor}")

    def activate(self) -> "_ContextScope":
        """Context manager making this GPU's primary context current, restoring the previous one."""
        return _ContextScope(self.context)


class _ContextScope:
    """Make a context current for a call and put the caller's back afterwards.

    Frameworks read the current context to decide the current device, so leaving
    ours behind would silently move the caller's next allocation to another GPU.
    On every launch's path: the get/set go through ctypes where libcuda loads
    (plain integers, no per-call binding objects), else through ``cuda.bindings``.
    """

    __slots__ = ("ctx", "prev")
    _NOTHING = -1  # prev when nothing needs restoring (0 is a valid "no context")

    def __init__(self, ctx):
        self.ctx = ctx
        self.prev = self._NOTHING

    def __enter__(self):
        c = _libcuda()
        if c is not None:
            cur = ctypes.c_void_p()
            err = c.cuCtxGetCurrent(ctypes.byref(cur))
            if err:
                raise CudaError("cuCtxGetCurrent", cu.CUresult(err))
            want = int(self.ctx)
            if (cur.value or 0) != want:
                err = c.cuCtxSetCurrent(want)
                if err:
                    raise CudaError("cuCtxSetCurrent", cu.CUresult(err))
                self.prev = cur.value or 0
            return self
        err, cur = cu.cuCtxGetCurrent()
        if err != _SUCCESS:
            raise CudaError("cuCtxGetCurrent", err)
        if int(cur) != int(self.ctx):
            call(cu.cuCtxSetCurrent, self.ctx)
            self.prev = int(cur)
        return self

    def __exit__(self, *exc):
        if self.prev != self._NOTHING:
            c = _libcuda()
            if c is not None:
                c.cuCtxSetCurrent(self.prev)
            else:
                cu.cuCtxSetCurrent(cu.CUcontext(self.prev))
            self.prev = self._NOTHING
        return False


class _LibCuda:
    """The driver functions on every call's path, called through ctypes.

    The ``cuda.bindings`` wrappers convert each argument into an object per call
    (about 5 us for ``cuLaunchKernelEx``, 1-2 us for an event record); a ctypes call
    with fixed argument types costs well under 1 us. Same driver, same functions.
    """

    def __init__(self, lib: ctypes.CDLL):
        p, u32, i32 = ctypes.c_void_p, ctypes.c_uint, ctypes.c_int
        for name, args in (("cuCtxGetCurrent", [ctypes.POINTER(p)]), ("cuCtxSetCurrent", [p]),
                           ("cuLaunchKernel", [p, u32, u32, u32, u32, u32, u32, u32, p, p, p]),
                           ("cuEventRecord", [p, p]), ("cuStreamWaitEvent", [p, p, u32])):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, i32
            setattr(self, name, fn)


_libcuda_c: Any = None


def _libcuda() -> _LibCuda | None:
    """libcuda's hot-path functions through ctypes, or None where it cannot be loaded
    (then the ``cuda.bindings`` wrappers serve)."""
    global _libcuda_c
    if _libcuda_c is None:
        try:
            _libcuda_c = _LibCuda(ctypes.CDLL("libcuda.so.1"))
        except (OSError, AttributeError):
            _libcuda_c = False
    return _libcuda_c or None


_devices: dict[int, Device] = {}


def get_device(ordinal: int = 0) -> Device:
    """The ``Device`` record for a GPU ordinal; its primary context is retained for the process."""
    dev = _devices.get(ordinal)
    if dev is not None:
        return dev
    _ensure_init()
    count = device_count()
    if not 0 <= ordinal < count:
        raise ValueError(f"device: expected a GPU ordinal in [0, {count}), got {ordinal}")
    with _init_lock:
        if ordinal in _devices:
            return _devices[ordinal]
        handle = call(cu.cuDeviceGet, ordinal)
        attr = cu.CUdevice_attribute

        def get(a):
            return call(cu.cuDeviceGetAttribute, a, handle)

        name = call(cu.cuDeviceGetName, 256, handle).split(b"\0", 1)[0].decode()
        dev = Device(
            ordinal=ordinal,
            name=name,
            compute_capability=(get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                                get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)),
            num_sms=get(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            max_smem_per_block_optin=get(attr.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
            l2_bytes=get(attr.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
            memory_bytes=call(cu.cuDeviceTotalMem, handle),
            handle=handle,
            context=call(cu.cuDevicePrimaryCtxRetain, handle),
        )
        _devices[ordinal] = dev
        return dev


# ---------------------------------------------------------------- streams


def stream_handle(stream: Any) -> int:
    """The raw ``CUstream`` handle (an int) for whatever a caller passes as ``stream``.

    Accepted: ``None`` (the legacy default stream), an int handle (0, 1 = legacy
    default, 2 = per-thread default, or a real handle), a ``cuda.bindings`` CUstream,
    or any object exposing ``__cuda_stream__()`` (CUDA stream protocol),
    ``.cuda_stream`` (torch) or ``.ptr`` (CuPy).
    """
    if stream is None:
        return 0
    if isinstance(stream, int):
        if stream < 0:
            raise ValueError(f"stream: expected a non-negative handle, got {stream}")
        return stream
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        version, handle = proto()
        return int(handle)
    for attr in ("cuda_stream", "ptr"):
        handle = getattr(stream, attr, None)
        if isinstance(handle, int):
            return handle
    if isinstance(stream, cu.CUstream):
        return int(stream)
    raise TypeError(
        "stream: expected None, an int handle or an object with __cuda_stream__, .cuda_stream "
        f"or .ptr, got {type(stream).__name__}")



_thread_events = threading.local()


def stream_wait(ordinal: int, src: int | None, dst: int | None) -> None:
    """Make stream ``dst`` of GPU ``ordinal`` wait for the work queued so far on ``src``
    (an event record and a stream wait: no host sync). One reusable event per thread
    and GPU: the wait takes the event's state at the time it is queued."""
    events = getattr(_thread_events, "events", None)
    if events is None:
        events = _thread_events.events = {}
    with get_device(ordinal).activate():
        ev = events.get(ordinal)
        if ev is None:
            ev = events[ordinal] = int(call(cu.cuEventCreate, cu.CUevent_flags.CU_EVENT_DISABLE_TIMING))
        c = _libcuda()
        if c is None:
            call(cu.cuEventRecord, cu.CUevent(ev), src or 0)
            call(cu.cuStreamWaitEvent, dst or 0, cu.CUevent(ev), 0)
            return
        err = c.cuEventRecord(ev, src or 0)
        if err:
            raise CudaError("cuEventRecord", cu.CUresult(err))
        err = c.cuStreamWaitEvent(dst or 0, ev, 0)
        if err:
            raise CudaError("cuStreamWaitEvent", cu.CUresult(err))


# ---------------------------------------------------------------- memory


def mem_alloc(nbytes: int, stream: int) -> int:
    """Stream-ordered allocation in the current context; returns the device pointer."""
    return int(call(cu.cuMemAllocAsync, max(nbytes, 1), stream))


def mem_free(ptr: int, stream: int) -> None:
    """Stream-ordered free; falls back to a synchronous free when the stream is gone."""
    err, = cu.cuMemFreeAsync(ptr, stream)
    if err != _SUCCESS:
        call(cu.cuMemFree, ptr)


def memset_d32(ptr: int, value: int, count: int, stream: int) -> None:
    """Set ``count`` 32-bit words at ``ptr`` to ``value``, in stream order."""
    call(cu.cuMemsetD32Async, ptr, value, count, stream)


def memset_d8(ptr: int, value: int, count: int, stream: int) -> None:
    """Set ``count`` bytes at ``ptr`` to ``value``, in stream order."""
    call(cu.cuMemsetD8Async, ptr, value, count, stream)


def memcpy_dtod(dst: int, src: int, nbytes: int, stream: int) -> None:
    call(cu.cuMemcpyDtoDAsync, dst, src, nbytes, stream)


def memcpy_htod(dst: int, src_host: int, nbytes: int, stream: int) -> None:
    call(cu.cuMemcpyHtoDAsync, dst, src_host, nbytes, stream)


def memcpy_dtoh(dst_host: int, src: int, nbytes: int, stream: int) -> None:
    call(cu.cuMemcpyDtoHAsync, dst_host, src, nbytes, stream)


def stream_synchronize(stream: int) -> None:
    call(cu.cuStreamSynchronize, stream)


# ---------------------------------------------------------------- kernels and launches


class KernelParams:
    """A reusable ``void*[]`` array for ``cuLaunchKernelEx``.

    Each slot points at storage owned here: pointers and ints live in ctypes
    scalars that are overwritten in place per call, and 128-byte ``CUtensorMap``
    values are pointed at directly (the driver copies them at launch). This keeps
    the per-call cost to a few attribute writes, no allocations.
    """

    def __init__(self, kinds: Sequence[str]):
        ctor = {"u64": ctypes.c_uint64, "i64": ctypes.c_int64, "i32": ctypes.c_int32,
                "u32": ctypes.c_uint32, "f32": ctypes.c_float}
        self._slots: list[Any] = []
        self._array = (ctypes.c_void_p * len(kinds))()
        for i, kind in enumerate(kinds):
            if kind == "tmap":
                self._slots.append(None)
            else:
                s = ctor[kind]()
                self._slots.append(s)
                self._array[i] = ctypes.addressof(s)
        self._tmaps: list[Any] = [None] * len(kinds)  # keep tensor maps alive while referenced
        self.address = ctypes.addressof(self._array)

    def set(self, i: int, value: Any) -> None:
        slot = self._slots[i]
        if slot is None:  # a CUtensorMap
            self._tmaps[i] = value
            self._array[i] = value.getPtr()
        else:
            slot.value = value


_UNUSED_TENSOR_MAP = None


def unused_tensor_map() -> Any:
    """An all-zero ``CUtensorMap`` for a tensor-map parameter a kernel variant never reads."""
    global _UNUSED_TENSOR_MAP
    if _UNUSED_TENSOR_MAP is None:
        _UNUSED_TENSOR_MAP = cu.CUtensorMap()
    return _UNUSED_TENSOR_MAP


def max_active_clusters(kernel: Any, block: int, smem: int, cluster: int) -> int:
    """How many clusters of ``cluster`` CTAs can be resident at once (current context's GPU).

    Not every SM can host a CTA of a cluster (GPCs with an odd SM count leave one
    out for pairs), so a persistent grid of clusters must be sized by this, not by
    the SM count, or the excess clusters run as a second wave.
    """
    config = launch_config(1 * cluster, block, smem, cluster)
    return call(cu.cuOccupancyMaxActiveClusters, kernel, config)


def launch_config(grid: int | tuple[int, ...], block: int, smem: int, cluster: int = 1) -> Any:
    """A ``CUlaunchConfig`` (stream 0) with an optional 1-D cluster dimension."""
    grid3 = (grid, 1, 1) if isinstance(grid, int) else tuple(grid) + (1,) * (3 - len(grid))
    config = cu.CUlaunchConfig()
    config.gridDimX, config.gridDimY, config.gridDimZ = grid3
    config.blockDimX, config.blockDimY, config.blockDimZ = block, 1, 1
    config.sharedMemBytes = smem
    if cluster > 1:
        attr = cu.CUlaunchAttribute()
        attr.id = cu.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
        attr.value.clusterDim.x, attr.value.clusterDim.y, attr.value.clusterDim.z = cluster, 1, 1
        config.attrs = [attr]  # assign the whole list: appending to .attrs does nothing
        config.numAttrs = 1
    return config


def launch_fast(kernel: int, grid: int, block: int, smem: int, stream: int,
                params: KernelParams) -> None:
    """Launch a kernel (``int`` handle of a CUkernel/CUfunction) on a 1-D grid: the hot path.

    Cluster shapes must be compiled into the kernel (``__cluster_dims__``).
    """
    c = _libcuda_c or _libcuda()
    if c is not None:
        err = c.cuLaunchKernel(kernel, grid, 1, 1, block, 1, 1, smem, stream, params.address, None)
        if err:
            raise CudaError("cuLaunchKernel", cu.CUresult(err))
        return
    call(cu.cuLaunchKernel, kernel, grid, 1, 1, block, 1, 1, smem, stream, params.address, 0)


def launch(kernel: Any, grid: int | tuple[int, ...], block: int, smem: int, stream: int,
           params: KernelParams, cluster: int = 1, config: Any = None) -> Any:
    """Launch ``kernel`` (a CUkernel/CUfunction) with ``cuLaunchKernelEx``.

    ``config`` is a ``CUlaunchConfig`` from an earlier call with the same shape, reused
    so a repeated launch only sets the stream. Returns the config for reuse.
    """
    if config is None:
        config = launch_config(grid, block, smem, cluster)
    config.hStream = stream
    err, = cu.cuLaunchKernelEx(config, kernel, params.address, 0)
    if err != _SUCCESS:
        raise CudaError("cuLaunchKernelEx", err)
    return config
