"""fp8gemm_core.jit: NVRTC compiles, the content-keyed disk cache, dumps, spill checks
(all on the CPU: NVRTC needs no GPU), and a load + launch on an sm_90 GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from fp8gemm_core import driver, jit

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def jit_env(tmp_path, monkeypatch):
    """Each test gets its own empty cache directory, no dumps, no verbose output and an
    empty memory cache, so origins ("compiled"/"disk"/"memory") are predictable."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FP8GEMM_CORE_CACHE_DIR", str(cache))
    for var in ("FP8GEMM_CORE_DISABLE_DISK_CACHE", "FP8GEMM_CORE_JIT_VERBOSE",
                "FP8GEMM_CORE_JIT_DUMP", "FP8GEMM_CORE_JIT_LINEINFO"):
        monkeypatch.delenv(var, raising=False)
    jit.clear_memory_cache()
    yield cache
    jit.clear_memory_cache()


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _kernel_dir_copy(root: Path, header: str = "#define HEADER_VALUE 1\n") -> Path:
    """A kernel directory with selftest.cu and a source that includes a header."""
    kdir = root / "cuda"
    kdir.mkdir(parents=True)
    shutil.copy(jit.KERNEL_DIR / "selftest.cu", kdir / "selftest.cu")
    (kdir / "value.cuh").write_text("#pragma once\n" + header)
    (kdir / "uses_header.cu").write_text(textwrap.dedent("""\
        // a comment naming "not_a_file.cuh" and // #include "missing.cuh" is not an include
        /* #include "also_missing.cuh" */
        #include "value.cuh"
        extern "C" __global__ void write_value(int* x) { x[threadIdx.x] = HEADER_VALUE; }
        """))
    return kdir


# ---------------------------------------------------------------- compiling


def test_kernel_dir_is_the_checkout_cuda_dir():
    assert jit.KERNEL_DIR == REPO / "cuda"
    assert (jit.KERNEL_DIR / "selftest.cu").is_file()


def test_compile_plain_and_template_kernels():
    plain = jit.compile_kernel("selftest.cu", "add_one")
    assert plain.lowered_name == "add_one"
    tmpl = jit.compile_kernel("selftest.cu", "scale_kernel<256>")
    assert tmpl.lowered_name.startswith("_Z") and "scale_kernel" in tmpl.lowered_name
    assert tmpl.lowered_name != jit.compile_kernel("selftest.cu", "scale_kernel<512>").lowered_name
    for ck in (plain, tmpl):
        assert ck.cubin[:4] == b"\x7fELF"
        assert ck.registers > 0
        assert (ck.spill_stores, ck.spill_loads, ck.stack_frame) == (0, 0, 0)
        assert ck.origin == "compiled" and ck.compile_seconds > 0
        assert len(ck.key) == 64
        jit.check_no_spills(ck)


def test_compile_error_raises_nvrtc_error_with_log():
    prelude = "__device__ int broken() { return undefined_symbol_xyz; }\n"
    with pytest.raises(jit.NvrtcError) as info:
        jit.compile_kernel("selftest.cu", "add_one", prelude=prelude)
    msg = str(info.value)
    assert "nvrtcCompileProgram" in msg and "NVRTC_ERROR_COMPILATION" in msg
    assert "undefined_symbol_xyz" in msg and "undefined_symbol_xyz" in info.value.log
    assert "--gpu-architecture=sm_90a" in msg  # the options are in the message too


def test_unknown_kernel_name_is_an_nvrtc_error():
    with pytest.raises(jit.NvrtcError, match="no_such_kernel"):
        jit.compile_kernel("selftest.cu", "no_such_kernel")


def test_missing_source_and_missing_include_are_clear_errors(tmp_path):
    with pytest.raises(jit.JitError, match="nope.cu.*not found"):
        jit.compile_kernel("nope.cu", "k")
    with pytest.raises(ValueError, match="relative"):
        jit.compile_kernel(str(jit.KERNEL_DIR / "selftest.cu"), "add_one")
    kdir = _kernel_dir_copy(tmp_path)
    (kdir / "bad.cu").write_text('#include "value.cuh"\n#include "gone.cuh"\n')
    with pytest.raises(jit.JitError, match='bad.cu includes "gone.cuh"'):
        jit.compile_kernel("bad.cu", "k", kernel_dir=kdir)


def test_prelude_reaches_the_compiler_and_the_key():
    base = jit.compile_kernel("selftest.cu", "scale_kernel<64>")
    biased = jit.compile_kernel("selftest.cu", "scale_kernel<64>",
                                prelude="#define SELFTEST_BIAS 2.5f\n")
    assert biased.key != base.key and biased.cubin != base.cubin


def test_included_header_is_compiled_from_its_hashed_content(tmp_path):
    kdir = _kernel_dir_copy(tmp_path)
    ck = jit.compile_kernel("uses_header.cu", "write_value", kernel_dir=kdir)
    assert ck.lowered_name == "write_value"
    (kdir / "value.cuh").write_text("#pragma once\n#define HEADER_VALUE 12345\n")
    changed = jit.compile_kernel("uses_header.cu", "write_value", kernel_dir=kdir,
                                 options=["-DUNUSED=1"])  # another memory-cache entry
    assert changed.key != ck.key and changed.cubin != ck.cubin


def test_resource_lines_missing_fail_loudly():
    with pytest.raises(jit.JitError, match="no ptxas resource usage"):
        jit._parse_resources("some warning\n", "add_one")
    log = textwrap.dedent("""\
        ptxas info    : 0 bytes gmem
        ptxas info    : Compiling entry function 'a' for 'sm_90a'
        ptxas info    : Function properties for a
        ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
        ptxas info    : Used 40 registers, used 1 barriers, 352 bytes cmem[0]
        ptxas info    : Compiling entry function 'b' for 'sm_90a'
        ptxas info    : Function properties for b
        ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 8 registers, used 0 barriers
        ptxas info    : Function properties for _Z6helperv
        ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        """)
    assert jit._parse_resources(log, "a") == (40, 16, 8, 4)
    assert jit._parse_resources(log, "b") == (8, 0, 0, 0)
    with pytest.raises(jit.JitError):
        jit._parse_resources(log, "_Z6helperv")  # not an entry: no register count


# ---------------------------------------------------------------- spills and local memory

_LOCAL_MEMORY_KERNELS = """
// A run-time index into an array too big for registers: lives in local memory.
extern "C" __global__ void uses_local(float* x, int n) {
  float buf[256];
  for (int k = 0; k < n; ++k) buf[k & 255] = x[k];
  x[threadIdx.x] = buf[threadIdx.x & 255];
}
// 40 values live across a loop, squeezed into 32 registers: spills.
extern "C" __global__ void spills(float* x, int n) {
  float acc[40];
#pragma unroll
  for (int k = 0; k < 40; ++k) acc[k] = x[k * n + threadIdx.x];
  for (int j = 0; j < n; ++j) {
#pragma unroll
    for (int k = 0; k < 40; ++k) acc[k] = acc[k] * acc[(k + 1) % 40] + x[j];
  }
#pragma unroll
  for (int k = 0; k < 40; ++k) x[k * n + threadIdx.x] = acc[k];
}
"""


@pytest.mark.parametrize("name_expr", ["add_one", "smem_reverse", "scale_kernel<128>"])
def test_selftest_kernels_do_not_spill(name_expr):
    jit.check_no_spills(jit.compile_kernel("selftest.cu", name_expr))


def test_check_no_spills_detects_local_memory():
    ck = jit.compile_kernel("selftest.cu", "uses_local", prelude=_LOCAL_MEMORY_KERNELS)
    assert ck.stack_frame >= 1024
    with pytest.raises(jit.SpillError, match=r"uses_local.*local memory.*bytes stack frame"):
        jit.check_no_spills(ck)


def test_warn_if_spills_warns_only_on_spills():
    ck = jit.compile_kernel("selftest.cu", "spills", prelude=_LOCAL_MEMORY_KERNELS,
                            options=["--maxrregcount=32"])
    with pytest.warns(jit.SpillWarning, match=r"spill stores.*NVRTC \d+\.\d+: correct results"):
        jit.warn_if_spills(ck)
    clean = jit.compile_kernel("selftest.cu", "add_one")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jit.warn_if_spills(clean)


def test_check_no_spills_detects_register_spills():
    ck = jit.compile_kernel("selftest.cu", "spills", prelude=_LOCAL_MEMORY_KERNELS,
                            options=["--maxrregcount=32"])
    assert ck.registers <= 32 and ck.spill_stores > 0 and ck.spill_loads > 0
    with pytest.raises(jit.SpillError, match="spill stores"):
        jit.check_no_spills(ck)


# ---------------------------------------------------------------- caches


def test_memory_then_disk_cache(jit_env):
    first = jit.compile_kernel("selftest.cu", "scale_kernel<32>")
    assert first.origin == "compiled"
    assert _entries(jit_env) == sorted([f"{first.key}.cubin", f"{first.key}.json"])
    again = jit.compile_kernel("selftest.cu", "scale_kernel<32>")
    assert again.origin == "memory" and again.compile_seconds == 0 and again.cubin == first.cubin
    jit.clear_memory_cache()
    disk = jit.compile_kernel("selftest.cu", "scale_kernel<32>")
    assert disk.origin == "disk" and disk.compile_seconds == 0
    assert (disk.cubin, disk.key, disk.lowered_name, disk.registers) == (
        first.cubin, first.key, first.lowered_name, first.registers)
    meta = json.loads((jit_env / f"{first.key}.json").read_text())
    assert meta["name_expr"] == "scale_kernel<32>" and meta["source"] == "selftest.cu"
    assert meta["lowered_name"] == first.lowered_name and meta["compile_seconds"] > 0
    assert meta["nvrtc_version"] == "%d.%d" % jit.nvrtc_version()
    assert not any(str(REPO) in opt for opt in meta["options"])


def test_disable_disk_cache(jit_env, monkeypatch):
    monkeypatch.setenv("FP8GEMM_CORE_DISABLE_DISK_CACHE", "1")
    first = jit.compile_kernel("selftest.cu", "add_one")
    jit.clear_memory_cache()
    again = jit.compile_kernel("selftest.cu", "add_one")
    assert again.origin == "compiled"
    # Compiling the same program twice must still give ptxas' resource lines: NVRTC 12.9+
    # has its own cache (where a driver is installed) whose hits skip ptxas and its -v log.
    assert again.registers == first.registers > 0
    assert _entries(jit_env) == []


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FP8GEMM_CORE_CACHE_DIR", str(tmp_path / "x"))
    assert jit.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("FP8GEMM_CORE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_dir() == tmp_path / "xdg" / "fp8gemm_core"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jit.cache_dir() == tmp_path / "home" / ".cache" / "fp8gemm_core"


def test_key_depends_on_content_only(tmp_path, monkeypatch):
    a = _kernel_dir_copy(tmp_path / "checkout_a")
    b = _kernel_dir_copy(tmp_path / "somewhere" / "else" / "checkout_b")
    key_a = jit.cache_key("uses_header.cu", "write_value", kernel_dir=a)
    # another absolute checkout path, another cache directory: same key
    assert jit.cache_key("uses_header.cu", "write_value", kernel_dir=b) == key_a
    monkeypatch.setenv("FP8GEMM_CORE_CACHE_DIR", str(tmp_path / "other_cache"))
    assert jit.cache_key("uses_header.cu", "write_value", kernel_dir=a) == key_a
    # ... and the key compile_kernel stores under is that key
    assert jit.compile_kernel("uses_header.cu", "write_value", kernel_dir=b).key == key_a
    # the content of an included file changes the key, and so do options and the name
    (b / "value.cuh").write_text("#pragma once\n#define HEADER_VALUE 2\n")
    assert jit.cache_key("uses_header.cu", "write_value", kernel_dir=b) != key_a
    assert jit.cache_key("uses_header.cu", "write_value", kernel_dir=a, options=["-DX=1"]) != key_a
    assert jit.cache_key("selftest.cu", "add_one", kernel_dir=a) != jit.cache_key(
        "selftest.cu", "scale_kernel<4>", kernel_dir=a)


def test_cache_copied_to_another_checkout_hits(tmp_path, monkeypatch):
    a = _kernel_dir_copy(tmp_path / "a")
    b = _kernel_dir_copy(tmp_path / "b")
    first = jit.compile_kernel("uses_header.cu", "write_value", kernel_dir=a)
    jit.clear_memory_cache()
    shutil.copytree(jit.cache_dir(), tmp_path / "copied")
    monkeypatch.setenv("FP8GEMM_CORE_CACHE_DIR", str(tmp_path / "copied"))
    hit = jit.compile_kernel("uses_header.cu", "write_value", kernel_dir=b)
    assert hit.origin == "disk" and hit.cubin == first.cubin


@pytest.mark.parametrize("damage", ["truncate_cubin", "garbage_json", "no_json", "no_cubin",
                                    "json_missing_field"])
def test_damaged_entry_is_recompiled(jit_env, damage):
    first = jit.compile_kernel("selftest.cu", "add_one")
    cubin, meta = jit_env / f"{first.key}.cubin", jit_env / f"{first.key}.json"
    if damage == "truncate_cubin":
        cubin.write_bytes(first.cubin[: len(first.cubin) // 2])
    elif damage == "garbage_json":
        meta.write_text('{"format": 1, "key": ')
    elif damage == "no_json":
        meta.unlink()
    elif damage == "no_cubin":
        cubin.unlink()
    else:
        m = json.loads(meta.read_text())
        del m["lowered_name"]
        meta.write_text(json.dumps(m))
    jit.clear_memory_cache()
    again = jit.compile_kernel("selftest.cu", "add_one")
    assert again.origin == "compiled" and again.cubin == first.cubin
    jit.clear_memory_cache()
    assert jit.compile_kernel("selftest.cu", "add_one").origin == "disk"  # repaired


def test_unwritable_cache_dir_warns_once_and_still_compiles(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FP8GEMM_CORE_CACHE_DIR", str(blocker / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ck = jit.compile_kernel("selftest.cu", "scale_kernel<8>")
        jit.compile_kernel("selftest.cu", "scale_kernel<16>")
    assert ck.origin == "compiled" and ck.cubin
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "in memory only" in msgs[0]
    assert jit.compile_kernel("selftest.cu", "scale_kernel<8>").origin == "memory"


def test_threads_compile_once():
    results, errors = [], []
    start = threading.Barrier(8)

    def work():
        try:
            start.wait()
            results.append(jit.compile_kernel("selftest.cu", "scale_kernel<1024>"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.origin for r in results) == ["compiled"] + ["memory"] * 7
    assert len({r.cubin for r in results}) == 1


_WORKER = """
import os, sys, time
from pathlib import Path
from fp8gemm_core import jit
Path(sys.argv[1]).touch()                      # ready
go = Path(sys.argv[2])
deadline = time.monotonic() + 60
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
ck = jit.compile_kernel("selftest.cu", "scale_kernel<777>")
print(ck.origin, ck.key, len(ck.cubin))
"""


def test_processes_compiling_the_same_kernel_at_once(jit_env, tmp_path):
    n = 4
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / f"ready{i}"), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.005)
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    lines = [out.split() for out, _ in outs]
    assert len({(key, size) for _, key, size in lines}) == 1
    key = lines[0][1]
    assert _entries(jit_env) == sorted([f"{key}.cubin", f"{key}.json"])  # no temp files left
    assert jit.compile_kernel("selftest.cu", "scale_kernel<777>").origin == "disk"


# ---------------------------------------------------------------- verbose and dumps


def test_verbose_reports_compiles_and_hits(monkeypatch, capfd):
    monkeypatch.setenv("FP8GEMM_CORE_JIT_VERBOSE", "1")
    jit.compile_kernel("selftest.cu", "scale_kernel<3>")
    err = capfd.readouterr().err
    assert "disk miss scale_kernel<3>" in err and "--gpu-architecture=sm_90a" in err
    assert "registers" in err and "spill" in err
    jit.clear_memory_cache()
    jit.compile_kernel("selftest.cu", "scale_kernel<3>")
    assert "disk hit scale_kernel<3>" in capfd.readouterr().err


def test_quiet_by_default(capfd):
    jit.compile_kernel("selftest.cu", "scale_kernel<5>")
    assert capfd.readouterr().err == ""


def test_dump_writes_tu_ptx_cubin(tmp_path, monkeypatch):
    dump = tmp_path / "dump"
    monkeypatch.setenv("FP8GEMM_CORE_JIT_DUMP", str(dump))
    ck = jit.compile_kernel("selftest.cu", "scale_kernel<9>", prelude="#define SELFTEST_BIAS 1.0f")
    stem = dump / f"scale_kernel_9-{ck.key[:16]}"
    tu = Path(f"{stem}.cu").read_text()
    assert "#define SELFTEST_BIAS 1.0f" in tu and '#include "selftest.cu"' in tu
    assert (Path(f"{stem}.include") / "selftest.cu").is_file()
    assert Path(f"{stem}.cubin").read_bytes() == ck.cubin
    assert ".target sm_90a" in Path(f"{stem}.ptx").read_text()
    assert ck.lowered_name in Path(f"{stem}.ptx").read_text()
    # a disk hit has no PTX at hand: the dump compiles it for compute_90a
    shutil.rmtree(dump)
    jit.clear_memory_cache()
    hit = jit.compile_kernel("selftest.cu", "scale_kernel<9>", prelude="#define SELFTEST_BIAS 1.0f")
    assert hit.origin == "disk"
    assert ".target sm_90a" in Path(f"{stem}.ptx").read_text()
    if shutil.which("cuobjdump") or shutil.which("nvdisasm"):
        assert Path(f"{stem}.sass").read_text()


# ---------------------------------------------------------------- GPU


@pytest.fixture
def device():
    dev = driver.get_device(0)
    dev.require_hopper()
    return dev


def _to_device(arr: np.ndarray) -> int:
    ptr = driver.mem_alloc(arr.nbytes, 0)
    driver.memcpy_htod(ptr, arr.ctypes.data, arr.nbytes, 0)
    return ptr


def _from_device(ptr: int, like: np.ndarray) -> np.ndarray:
    out = np.empty_like(like)
    driver.memcpy_dtoh(out.ctypes.data, ptr, out.nbytes, 0)
    driver.stream_synchronize(0)
    return out


@pytest.mark.gpu
def test_launch_selftest_kernels(device):
    rng = np.random.default_rng()
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    with device.activate():
        ptr = _to_device(x)
        try:
            k = jit.get_kernel("selftest.cu", "scale_kernel<1000>",
                               prelude="#define SELFTEST_BIAS 0.5f\n", device=device)
            assert jit.get_kernel("selftest.cu", "scale_kernel<1000>",
                                  prelude="#define SELFTEST_BIAS 0.5f\n", device=device) is k
            params = driver.KernelParams(["u64", "f32"])
            params.set(0, ptr)
            params.set(1, 3.0)
            driver.launch(k.handle, (n + 127) // 128, 128, 0, 0, params)
            # the GPU fuses x * a + b into one FMA (one rounding), numpy rounds twice
            np.testing.assert_allclose(_from_device(ptr, x), x * 3.0 + 0.5,
                                       rtol=1e-6, atol=1e-6)

            add = jit.get_kernel("selftest.cu", "add_one", device=device)
            p2 = driver.KernelParams(["u64", "i32"])
            p2.set(0, ptr)
            p2.set(1, n - 1)  # the last element stays
            driver.launch(add.handle, (n + 255) // 256, 256, 0, 0, p2)
            expect = x * 3.0 + 0.5
            expect[: n - 1] += 1.0
            np.testing.assert_allclose(_from_device(ptr, x), expect, rtol=1e-6, atol=1e-6)
        finally:
            driver.mem_free(ptr, 0)
            driver.stream_synchronize(0)


@pytest.mark.gpu
def test_launch_with_more_than_48k_dynamic_smem(device):
    smem = 160 * 1024
    count = smem // 4
    x = np.random.default_rng().standard_normal(count).astype(np.float32)
    with device.activate():
        ptr = _to_device(x)
        try:
            k = jit.get_kernel("selftest.cu", "smem_reverse", device=device, max_dynamic_smem=smem)
            k.ensure_smem(device, smem)  # already allowed: a no-op
            params = driver.KernelParams(["u64", "i32"])
            params.set(0, ptr)
            params.set(1, count)
            driver.launch(k.handle, 1, 256, smem, 0, params)
            np.testing.assert_array_equal(_from_device(ptr, x), x[::-1])
            with pytest.raises(ValueError, match="exceed"):
                k.ensure_smem(device, device.max_smem_per_block_optin + 1)
        finally:
            driver.mem_free(ptr, 0)
            driver.stream_synchronize(0)
