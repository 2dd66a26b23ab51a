"""Run-time compilation of the CUDA sources in ``cuda/`` with NVRTC, for sm_90a.

A kernel is named by a source file in ``cuda/`` and a name expression: the name of
a ``__global__`` function or a template instantiation (``"tma_copy<2>"``). The
translation unit NVRTC compiles is ``prelude + '#include "<source>"'``, where the
prelude is code generated in Python (defines, the wgmma wrapper for a tile width).

Caches, fastest first:

* memory: ``(source, name_expr, prelude, options, kernel dir)`` -> ``CompiledKernel``;
  a repeated call is one dict lookup and does not look at files again.
* disk: ``<cache_dir()>/<key>.cubin`` + ``<key>.json``. The key is a sha256 over
  content only (the translation unit, every file it includes, the options, the
  NVRTC version, the arch), never over absolute paths, so a cache directory copied
  to another machine or container still hits. Entries are written atomically
  (temp file + ``os.replace``, cubin before metadata) and checked on load (the
  metadata records the cubin's size and sha256), so concurrent compiles of the
  same kernel and half-written or corrupt entries are harmless: a bad entry is
  recompiled and overwritten.

Loading goes through ``cuLibraryLoadData`` (context-independent); ``get_kernel``
combines compile and load behind one more dict for the launch path.

Environment:

* ``FP8GEMM_CORE_CACHE_DIR``: cache directory (default ``$XDG_CACHE_HOME/fp8gemm_core``
  or ``~/.cache/fp8gemm_core``).
* ``FP8GEMM_CORE_DISABLE_DISK_CACHE=1``: neither read nor write the disk cache.
* ``FP8GEMM_CORE_JIT_VERBOSE=1``: print options, compile time, registers/spills and
  disk hits/misses to stderr (memory hits stay silent: they are the hot path).
* ``FP8GEMM_CORE_JIT_DUMP=<dir>``: for every kernel compiled or loaded from disk,
  write the translation unit (and the files it includes), the PTX, the cubin, the
  NVRTC log and, when ``cuobjdump`` or ``nvdisasm`` is on PATH, the SASS.
* ``FP8GEMM_CORE_JIT_LINEINFO=1``: compile with ``-lineinfo`` (for profilers).
* ``FP8GEMM_CORE_SASS_PASSES=0``: skip the post-compile SASS passes a prelude asks for
  with a line ``// fp8gemm_core sass pass: <name>`` (see ``sass``; for A/B measurements).

The memory caches do not watch these variables or the files: after changing
either within a process, call ``clear_memory_cache()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cuda.bindings import driver as cu
from cuda.bindings import nvrtc

from . import driver, sass

__all__ = [
    "KERNEL_DIR", "ARCH", "JitError", "NvrtcError", "SpillError", "CompiledKernel", "Kernel",
    "compile_kernel", "cache_key", "load_kernel", "get_kernel", "check_no_spills", "cache_dir",
    "clear_memory_cache", "nvrtc_version", "SpillWarning", "warn_if_spills",
]


def _find_kernel_dir() -> Path:
    here = Path(__file__).resolve().parent
    packaged = here / "cuda"  # an installed wheel puts the sources inside the package
    return packaged if packaged.is_dir() else here.parent / "cuda"


KERNEL_DIR: Path = _find_kernel_dir()
"""Where kernel sources live. Tests may point it elsewhere (or pass ``kernel_dir=``)."""

ARCH = "sm_90a"
# Bump when the cache layout, the key recipe or the metadata changes meaning.
FORMAT_VERSION = 1

_DEFAULT_SMEM_LIMIT = 48 * 1024  # dynamic shared memory allowed without the opt-in attribute
_LOG_PREFIX = "[fp8gemm_core.jit]"


# ---------------------------------------------------------------- errors and checked NVRTC calls


class JitError(RuntimeError):
    """Compiling, caching or loading a kernel failed."""


class NvrtcError(JitError):
    """An NVRTC call failed. The message names the call and the error; for a failed
    compilation it also carries the options and the compiler log (``.log``)."""

    def __init__(self, call_name: str, code: Any, log: str = "", context: str = ""):
        self.call_name = call_name
        self.code = code
        self.log = log
        msg = f"{call_name} failed: {_nvrtc_error_text(code)}"
        if context:
            msg += f"\n{context}"
        if log.strip():
            msg += f"\n--- NVRTC log ---\n{log.rstrip()}"
        super().__init__(msg)


class SpillError(JitError):
    """A kernel uses local memory (register spills or a stack frame)."""


def _nvrtc_error_text(code: Any) -> str:
    try:
        name = nvrtc.nvrtcResult(code).name
    except ValueError:
        name = f"nvrtcResult {int(code)}"
    return name


_NVRTC_SUCCESS = nvrtc.nvrtcResult.NVRTC_SUCCESS


def _nvrtc_call(fn, *args):
    """Call a ``cuda.bindings.nvrtc`` function; raise ``NvrtcError`` on failure.

    Returns the call's outputs: ``None`` for none, the value for one, a tuple for more.
    """
    result = fn(*args)
    if result[0] != _NVRTC_SUCCESS:
        raise NvrtcError(fn.__name__, result[0])
    n = len(result)
    if n == 1:
        return None
    return result[1] if n == 2 else result[1:]


_nvrtc_version: tuple[int, int] | None = None


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library in use."""
    global _nvrtc_version
    if _nvrtc_version is None:
        major, minor = _nvrtc_call(nvrtc.nvrtcVersion)
        _nvrtc_version = (int(major), int(minor))
    return _nvrtc_version


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class CompiledKernel:
    """A compiled kernel: its cubin and what ptxas said about its resources."""

    source: str
    name_expr: str
    lowered_name: str
    cubin: bytes = dataclasses.field(repr=False)
    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    key: str
    compile_seconds: float  # 0 when it came from a cache
    origin: str  # "compiled" | "disk" | "memory"
    log: str = dataclasses.field(default="", repr=False, compare=False)  # the NVRTC/ptxas log


def check_no_spills(compiled: CompiledKernel) -> None:
    """Raise ``SpillError`` when the kernel spills registers or has a stack frame.

    Either means local memory (off-chip, through L1) on the kernel's path; a shipped
    kernel should have none, so tests call this on every configuration they build.
    """
    if compiled.spill_stores or compiled.spill_loads or compiled.stack_frame:
        raise SpillError(
            f"kernel {compiled.name_expr} ({compiled.source}, {compiled.lowered_name}) uses local "
            f"memory: {compiled.stack_frame} bytes stack frame, {compiled.spill_stores} bytes spill "
            f"stores, {compiled.spill_loads} bytes spill loads, with {compiled.registers} registers. "
            "Look for arrays indexed with run-time values, calls that were not inlined or more live "
            "values than the register budget (__launch_bounds__ / setmaxnreg).")


class SpillWarning(UserWarning):
    """A kernel spills registers or uses a stack frame under this NVRTC: results are right,
    speed is not. Shipped kernels are checked under NVRTC 13.0 and the latest; ptxas
    versions in between allocate registers differently."""


def warn_if_spills(compiled: CompiledKernel) -> None:
    """Warn (``SpillWarning``) when ``check_no_spills`` would raise; ``get_kernel`` calls it
    once per loaded kernel."""
    try:
        check_no_spills(compiled)
    except SpillError as e:
        major, minor = nvrtc_version()
        warnings.warn(f"{e} (NVRTC {major}.{minor}: correct results, lower speed; please report it)",
                      SpillWarning, stacklevel=3)


_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)'")
_PROPS_RE = re.compile(r"Function properties for (\S+)")
_STACK_RE = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS_RE = re.compile(r"Used (\d+) registers")


def _parse_resources(log: str, lowered_name: str) -> tuple[int, int, int, int]:
    """(registers, stack_frame, spill_stores, spill_loads) of one entry from ptxas -v output."""
    current = None  # entry function whose "Used N registers" line comes next
    pending = None  # function whose "Function properties" header was the last line
    regs: dict[str, int] = {}
    props: dict[str, tuple[int, int, int]] = {}
    for line in log.splitlines():
        m = _ENTRY_RE.search(line)
        if m:
            current = m.group(1)
            continue
        m = _PROPS_RE.search(line)
        if m:
            pending = m.group(1)
            continue
        m = _STACK_RE.search(line)
        if m and pending is not None:
            props[pending] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            pending = None
            continue
        m = _REGS_RE.search(line)
        if m and current is not None:
            regs[current] = int(m.group(1))
    if lowered_name not in regs or lowered_name not in props:
        raise JitError(
            f"the NVRTC log has no ptxas resource usage for {lowered_name} (was "
            f"--ptxas-options=-v overridden?); refusing to report zeros.\n--- NVRTC log ---\n{log}")
    stack, stores, loads = props[lowered_name]
    return regs[lowered_name], stack, stores, loads


# ---------------------------------------------------------------- sources, includes and the key


_TOKEN_RE = re.compile(
    r'"(?:\\.|[^"\\\n])*"'      # string literal (kept: #include "x" is one)
    r"|'(?:\\.|[^'\\\n])*'"     # character literal
    r"|//[^\n]*"                # line comment
    r"|/\*.*?\*/",              # block comment
    re.DOTALL)
_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^">\n]+)[">]', re.MULTILINE)


def _strip_comments(text: str) -> str:
    def repl(m: re.Match) -> str:
        tok = m.group(0)
        if tok.startswith("//"):
            return " "
        if tok.startswith("/*"):
            return " " + "\n" * tok.count("\n")  # keep line structure for the include scan
        return tok
    return _TOKEN_RE.sub(repl, text)


def _gather_includes(tu: str, kernel_dir: Path) -> dict[str, str]:
    """Every file the translation unit includes from ``kernel_dir``, recursively.

    Returns ``{include name as written: file content}``. Quoted includes are looked
    up next to the including file, then in ``kernel_dir``; one that is found nowhere
    is an error (also inside an inactive ``#if``: the scan does not preprocess).
    ``<...>`` includes not present in ``kernel_dir`` are NVRTC built-ins and skipped.
    The contents go both into the cache key and, as in-memory headers, to NVRTC, so
    the cubin is built from exactly the bytes that were hashed.
    """
    found: dict[str, tuple[Path, str]] = {}

    def scan(text: str, including_dir: Path | None, including_name: str) -> None:
        for m in _INCLUDE_RE.finditer(_strip_comments(text)):
            quote, name = m.group(1), m.group(2).strip()
            candidates = []
            if quote == '"' and including_dir is not None:
                candidates.append(including_dir / name)
            candidates.append(kernel_dir / name)
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                if quote == "<":
                    continue
                raise JitError(
                    f'{including_name} includes "{name}", which is not in the kernel directory '
                    f"{kernel_dir} (kernel sources must be self-contained: no CUDA toolkit headers)")
            path = path.resolve()
            if name in found:
                if found[name][0] != path:
                    raise JitError(
                        f'include name "{name}" refers to two files, {found[name][0]} and {path}; '
                        "give them distinct names")
                continue
            content = path.read_text(encoding="utf-8")
            found[name] = (path, content)
            scan(content, path.parent, name)

    scan(tu, None, "the translation unit")
    return {name: content for name, (path, content) in found.items()}


def _translation_unit(source: str, prelude: str) -> str:
    return f'{prelude}\n#include "{source}"\n'


def _check_source(source: str, kernel_dir: Path) -> None:
    if not isinstance(source, str) or not source or Path(source).is_absolute() or '"' in source:
        raise ValueError(f"source: expected a file name relative to {kernel_dir}, got {source!r}")
    if not (kernel_dir / source).is_file():
        raise JitError(f"kernel source {source!r} not found in {kernel_dir}")


def _base_options(kernel_dir: Path, options: Sequence[str]) -> tuple[list[str], list[str]]:
    """(options given to NVRTC, options that enter the cache key).

    They differ only by the include path, an absolute path that must stay out of the
    key. The include path is a fallback: the files NVRTC needs are passed in memory.
    """
    keyed = [f"--gpu-architecture={ARCH}", "-std=c++17", "--ptxas-options=-v", "-default-device"]
    if nvrtc_version() >= (12, 9):
        # NVRTC 12.9+ keeps its own cache of compiled programs (in the driver's compute
        # cache, so only where a driver is installed); a hit there skips ptxas, and the log
        # then lacks the -v resource lines. The disk cache here makes it redundant anyway.
        keyed.append("--no-cache")
    if os.environ.get("FP8GEMM_CORE_JIT_LINEINFO") == "1":
        keyed.append("-lineinfo")
    for opt in options:
        if not isinstance(opt, str):
            raise TypeError(f"options: expected strings, got {opt!r}")
        keyed.append(opt)
    actual = keyed[:2] + [f"--include-path={kernel_dir}"] + keyed[2:]
    return actual, keyed


_SASS_PASS_LINE = re.compile(r"^// fp8gemm_core sass pass: ([\w-]+)[ \t]*$", re.M)


def _sass_passes(prelude: str) -> list[str]:
    """The SASS passes ``prelude`` asks for (none when FP8GEMM_CORE_SASS_PASSES=0)."""
    names = _SASS_PASS_LINE.findall(prelude)
    for name in names:
        if name not in sass.PASSES:
            raise JitError(f"prelude: unknown sass pass {name!r} (known: {', '.join(sass.PASSES)})")
    return [] if os.environ.get("FP8GEMM_CORE_SASS_PASSES", "1") == "0" else names


def _key(tu: str, name_expr: str, headers: dict[str, str], keyed_options: list[str],
         passes: list[str]) -> str:
    h = hashlib.sha256()

    def part(tag: str, data: str) -> None:
        b = data.encode("utf-8")
        h.update(f"{tag}:{len(b)}:".encode())  # length-prefixed: no ambiguity between parts
        h.update(b)

    part("format", str(FORMAT_VERSION))
    part("nvrtc", "%d.%d" % nvrtc_version())
    part("arch", ARCH)
    part("tu", tu)
    part("name_expr", name_expr)
    for opt in keyed_options:
        part("option", opt)
    for name in passes:
        part("sass", f"{name}@{sass.VERSION}")
    for name in sorted(headers):
        part("include", name)
        part("content", headers[name])
    return h.hexdigest()


def cache_key(source: str, name_expr: str, *, prelude: str = "", options: Sequence[str] = (),
              kernel_dir: Path | str | None = None) -> str:
    """The content-only cache key ``compile_kernel`` would use (reads the sources)."""
    kdir = Path(kernel_dir) if kernel_dir is not None else KERNEL_DIR
    _check_source(source, kdir)
    tu = _translation_unit(source, prelude)
    _, keyed = _base_options(kdir, options)
    headers = _gather_includes(tu, kdir)
    return _key(tu, name_expr, headers, keyed, _sass_passes(prelude))


# ---------------------------------------------------------------- NVRTC


def _program_log(prog) -> str:
    size = _nvrtc_call(nvrtc.nvrtcGetProgramLogSize, prog)
    if size <= 1:
        return ""
    buf = bytearray(size)
    _nvrtc_call(nvrtc.nvrtcGetProgramLog, prog, buf)
    return bytes(buf).rstrip(b"\0").decode("utf-8", errors="replace")


def _run_nvrtc(tu: str, headers: dict[str, str], options: list[str], name_expr: str | None,
               want_cubin: bool, want_ptx: bool, what: str):
    """One NVRTC compile; returns (cubin or None, ptx or None, lowered name or None, log)."""
    names = sorted(headers)
    prog = _nvrtc_call(nvrtc.nvrtcCreateProgram, tu.encode(), b"fp8gemm_core_jit.cu", len(names),
                       [headers[n].encode() for n in names], [n.encode() for n in names])
    try:
        if name_expr is not None:
            _nvrtc_call(nvrtc.nvrtcAddNameExpression, prog, name_expr.encode())
        opts = [o.encode() for o in options]
        err, = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        log = _program_log(prog)
        if err != _NVRTC_SUCCESS:
            raise NvrtcError("nvrtcCompileProgram", err, log,
                             f"while compiling {what}\noptions: {' '.join(options)}")
        lowered = None
        if name_expr is not None:
            lowered = _nvrtc_call(nvrtc.nvrtcGetLoweredName, prog, name_expr.encode()).decode()
        cubin = ptx = None
        if want_cubin:
            size = _nvrtc_call(nvrtc.nvrtcGetCUBINSize, prog)
            buf = bytearray(size)
            _nvrtc_call(nvrtc.nvrtcGetCUBIN, prog, buf)
            cubin = bytes(buf)
            if not cubin:
                raise JitError(f"NVRTC produced an empty cubin for {what}")
        if want_ptx:
            # NVRTC 13.5 still hands out the PTX after a real-arch (sm_90a) compile; other
            # versions may not, in which case the caller compiles again for compute_90a.
            err, size = nvrtc.nvrtcGetPTXSize(prog)
            if err == _NVRTC_SUCCESS and size > 1:
                buf = bytearray(size)
                err, = nvrtc.nvrtcGetPTX(prog, buf)
                if err == _NVRTC_SUCCESS:
                    ptx = bytes(buf).rstrip(b"\0").decode("utf-8", errors="replace")
        return cubin, ptx, lowered, log
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


# ---------------------------------------------------------------- environment helpers


def _verbose() -> bool:
    return os.environ.get("FP8GEMM_CORE_JIT_VERBOSE", "") not in ("", "0")


def _say(msg: str) -> None:
    print(f"{_LOG_PREFIX} {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """The disk cache directory (not created here)."""
    env = os.environ.get("FP8GEMM_CORE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "fp8gemm_core"
    return Path.home() / ".cache" / "fp8gemm_core"


def _disk_cache_enabled() -> bool:
    return os.environ.get("FP8GEMM_CORE_DISABLE_DISK_CACHE", "") in ("", "0")


# ---------------------------------------------------------------- disk cache

_REQUIRED_META = {
    "format": int, "key": str, "source": str, "name_expr": str, "lowered_name": str,
    "registers": int, "spill_stores": int, "spill_loads": int, "stack_frame": int,
    "cubin_size": int, "cubin_sha256": str,
}
_warned_dirs: set[str] = set()


def _load_entry(directory: Path, key: str) -> CompiledKernel | None:
    """The cached kernel for ``key``, or None when absent, incomplete or corrupt."""
    meta_path, cubin_path = directory / f"{key}.json", directory / f"{key}.cubin"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        if _verbose():
            _say(f"disk entry {key[:16]} unreadable ({e}); recompiling")
        return None
    try:
        for field, typ in _REQUIRED_META.items():
            if not isinstance(meta.get(field), typ):
                raise ValueError(f"metadata field {field!r} missing or not {typ.__name__}")
        if meta["format"] != FORMAT_VERSION or meta["key"] != key:
            raise ValueError("metadata of another format or key")
        cubin = cubin_path.read_bytes()
        if (len(cubin) != meta["cubin_size"]
                or hashlib.sha256(cubin).hexdigest() != meta["cubin_sha256"]):
            raise ValueError("cubin does not match its metadata (half-written or corrupt)")
    except (OSError, ValueError) as e:
        if _verbose():
            _say(f"disk entry {key[:16]} rejected ({e}); recompiling")
        return None
    return CompiledKernel(
        source=meta["source"], name_expr=meta["name_expr"], lowered_name=meta["lowered_name"],
        cubin=cubin, registers=meta["registers"], spill_stores=meta["spill_stores"],
        spill_loads=meta["spill_loads"], stack_frame=meta["stack_frame"], key=key,
        compile_seconds=0.0, origin="disk", log=str(meta.get("log", "")))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a shared cache should be readable
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _store_entry(directory: Path, ck: CompiledKernel, options: list[str]) -> None:
    meta = {
        "format": FORMAT_VERSION, "key": ck.key, "source": ck.source, "name_expr": ck.name_expr,
        "lowered_name": ck.lowered_name, "registers": ck.registers,
        "spill_stores": ck.spill_stores, "spill_loads": ck.spill_loads,
        "stack_frame": ck.stack_frame, "compile_seconds": ck.compile_seconds,
        "nvrtc_version": "%d.%d" % nvrtc_version(), "arch": ARCH, "options": options,
        "cubin_size": len(ck.cubin), "cubin_sha256": hashlib.sha256(ck.cubin).hexdigest(),
        "log": ck.log,
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # The cubin first: metadata that names a cubin is only ever written after it.
        _atomic_write(directory / f"{ck.key}.cubin", ck.cubin)
        _atomic_write(directory / f"{ck.key}.json", json.dumps(meta, indent=1).encode())
    except OSError as e:
        d = str(directory)
        if d not in _warned_dirs:
            _warned_dirs.add(d)
            warnings.warn(
                f"fp8gemm_core: cannot write the kernel cache in {d} ({e}); compiled kernels are "
                "kept in memory only. Set FP8GEMM_CORE_CACHE_DIR to a writable directory.",
                RuntimeWarning, stacklevel=4)


# ---------------------------------------------------------------- dumps


def _safe_stem(name_expr: str, key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name_expr).strip("_")[:80] + "-" + key[:16]


def _dump(dump_dir: str, ck: CompiledKernel, tu: str, headers: dict[str, str],
          options: list[str], ptx: str | None) -> None:
    out = Path(dump_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / _safe_stem(ck.name_expr, ck.key)
    Path(f"{stem}.cu").write_text(tu)
    inc = Path(f"{stem}.include")
    for name, content in headers.items():
        p = inc / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    if ptx is None:  # this NVRTC gave no PTX for the real-arch build, or we loaded a cubin
        ptx_opts = [o for o in options
                    if not o.startswith(("--gpu-architecture=", "--ptxas-options"))]
        ptx_opts.insert(0, "--gpu-architecture=compute_90a")
        _, ptx, _, _ = _run_nvrtc(tu, headers, ptx_opts, ck.name_expr, False, True,
                                  f"{ck.name_expr} (PTX for the dump)")
    Path(f"{stem}.ptx").write_text(ptx or "")
    Path(f"{stem}.cubin").write_bytes(ck.cubin)
    Path(f"{stem}.log").write_text(
        f"source: {ck.source}\nname_expr: {ck.name_expr}\nlowered_name: {ck.lowered_name}\n"
        f"options: {' '.join(options)}\nnvrtc: %d.%d\n\n{ck.log}" % nvrtc_version())
    for tool, args in (("cuobjdump", ["-sass"]), ("nvdisasm", [])):
        exe = shutil.which(tool)
        if exe is None:
            continue
        try:
            res = subprocess.run([exe, *args, f"{stem}.cubin"], capture_output=True, text=True,
                                 timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            _say(f"{tool} failed on {stem}.cubin: {e}")
            continue
        if res.returncode == 0:
            Path(f"{stem}.sass").write_text(res.stdout)
            break
        _say(f"{tool} failed on {stem}.cubin: {res.stderr.strip()}")
    if _verbose():
        _say(f"dumped {ck.name_expr} to {stem}.*")


# ---------------------------------------------------------------- compile


_memory: dict[tuple, CompiledKernel] = {}
_memory_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}


def _lock_for(mkey: tuple) -> threading.Lock:
    with _memory_lock:
        lock = _key_locks.get(mkey)
        if lock is None:
            lock = _key_locks[mkey] = threading.Lock()
        return lock


def compile_kernel(source: str, name_expr: str, *, prelude: str = "", options: Sequence[str] = (),
                   kernel_dir: Path | str | None = None) -> CompiledKernel:
    """Compile ``name_expr`` from ``cuda/<source>`` (behind the memory and disk caches).

    ``prelude`` is put in front of ``#include "<source>"`` in the translation unit;
    ``options`` are extra NVRTC options (``-DNAME=1``, ``--maxrregcount=...``).
    ``kernel_dir`` replaces ``KERNEL_DIR`` (tests). Raises ``NvrtcError`` with the
    compiler log when compilation fails.
    """
    kdir = Path(kernel_dir) if kernel_dir is not None else KERNEL_DIR
    if isinstance(options, str):
        raise TypeError("options: expected a sequence of strings, got one string")
    opts = options if isinstance(options, tuple) else tuple(options)
    mkey = (source, name_expr, prelude, opts, str(kdir))
    hit = _memory.get(mkey)
    if hit is not None:
        return hit
    with _lock_for(mkey):  # one compile per kernel in this process; others wait for it
        hit = _memory.get(mkey)
        if hit is not None:
            return hit
        result = _compile_uncached(source, name_expr, prelude, opts, kdir)
        _memory[mkey] = dataclasses.replace(result, compile_seconds=0.0, origin="memory")
        return result


def _compile_uncached(source: str, name_expr: str, prelude: str, options: tuple[str, ...],
                      kdir: Path) -> CompiledKernel:
    if not isinstance(name_expr, str) or not name_expr.strip():
        raise ValueError(
            f"name_expr: expected a kernel name or template instantiation, got {name_expr!r}")
    if not isinstance(prelude, str):
        raise TypeError(f"prelude: expected a string, got {type(prelude).__name__}")
    _check_source(source, kdir)
    tu = _translation_unit(source, prelude)
    actual_opts, keyed_opts = _base_options(kdir, options)
    headers = _gather_includes(tu, kdir)
    passes = _sass_passes(prelude)
    key = _key(tu, name_expr, headers, keyed_opts, passes)
    verbose = _verbose()
    dump_dir = os.environ.get("FP8GEMM_CORE_JIT_DUMP")
    use_disk = _disk_cache_enabled()
    directory = cache_dir()

    if use_disk:
        ck = _load_entry(directory, key)
        if ck is not None:
            if verbose:
                _say(f"disk hit {name_expr} ({source}) key {key[:16]}: {ck.registers} registers, "
                     f"{ck.spill_stores}/{ck.spill_loads} B spill stores/loads, "
                     f"{ck.stack_frame} B stack")
            if dump_dir:
                _dump(dump_dir, ck, tu, headers, actual_opts, None)
            return ck
        if verbose:
            _say(f"disk miss {name_expr} ({source}) key {key[:16]} in {directory}")

    if verbose:
        _say(f"compiling {name_expr} ({source}) with: {' '.join(actual_opts)}")
    t0 = time.perf_counter()
    cubin, ptx, lowered, log = _run_nvrtc(tu, headers, actual_opts, name_expr, True,
                                          bool(dump_dir), f"{name_expr} from {source}")
    for name in passes:
        cubin, changed = sass.PASSES[name](cubin)
        log += f"\nsass pass {name}: {changed} instructions changed\n"
    seconds = time.perf_counter() - t0
    registers, stack, stores, loads = _parse_resources(log, lowered)
    ck = CompiledKernel(source=source, name_expr=name_expr, lowered_name=lowered, cubin=cubin,
                        registers=registers, spill_stores=stores, spill_loads=loads,
                        stack_frame=stack, key=key, compile_seconds=seconds, origin="compiled",
                        log=log)
    if verbose:
        _say(f"compiled {name_expr} in {seconds:.3f} s: {registers} registers, {stores}/{loads} B "
             f"spill stores/loads, {stack} B stack, cubin {len(cubin)} B, key {key[:16]}")
        extra = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith("ptxas")]
        if extra:
            _say("compiler messages:\n" + "\n".join(extra))
    if use_disk:
        _store_entry(directory, ck, keyed_opts)
    if dump_dir:
        _dump(dump_dir, ck, tu, headers, actual_opts, ptx)
    return ck


# ---------------------------------------------------------------- loading


class Kernel:
    """A loaded kernel. ``handle`` is the ``CUkernel`` (context-independent), which
    ``cuLaunchKernelEx`` (``driver.launch``) takes as it is."""

    __slots__ = ("handle", "compiled", "library", "_smem", "_lock")

    def __init__(self, handle: Any, compiled: CompiledKernel, library: Any):
        self.handle = handle
        self.compiled = compiled
        self.library = library
        self._smem: dict[int, int] = {}  # device ordinal -> dynamic smem limit set so far
        self._lock = threading.Lock()

    def ensure_smem(self, device: driver.Device, nbytes: int) -> None:
        """Allow ``nbytes`` of dynamic shared memory on ``device`` (the attribute is per device).

        Only requests above 48 KiB need it; the limit only grows, and a repeat is a dict lookup.
        """
        if nbytes <= self._smem.get(device.ordinal, _DEFAULT_SMEM_LIMIT):
            return
        if nbytes > device.max_smem_per_block_optin:
            raise ValueError(
                f"{self.compiled.name_expr}: {nbytes} bytes of dynamic shared memory exceed the "
                f"{device.max_smem_per_block_optin} bytes per block of device {device.ordinal}")
        with self._lock:
            if nbytes <= self._smem.get(device.ordinal, _DEFAULT_SMEM_LIMIT):
                return
            with device.activate():
                driver.call(cu.cuKernelSetAttribute,
                            cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                            nbytes, self.handle, device.handle)
            self._smem[device.ordinal] = nbytes

    def __repr__(self) -> str:
        return f"Kernel({self.compiled.name_expr!r}, {self.compiled.lowered_name!r})"


_libraries: dict[str, Any] = {}        # cubin key -> CUlibrary, for the life of the process
_kernels: dict[tuple[str, str], Kernel] = {}
_load_lock = threading.Lock()
_fast: dict[tuple, Kernel] = {}


def load_kernel(compiled: CompiledKernel, device: driver.Device, max_dynamic_smem: int = 0) -> Kernel:
    """Load ``compiled`` (one ``CUlibrary`` per cubin per process) and allow
    ``max_dynamic_smem`` bytes of dynamic shared memory on ``device``."""
    k = _kernels.get((compiled.key, compiled.lowered_name))
    if k is None:
        with _load_lock:
            k = _kernels.get((compiled.key, compiled.lowered_name))
            if k is None:
                lib = _libraries.get(compiled.key)
                with device.activate():
                    if lib is None:
                        lib = driver.call(cu.cuLibraryLoadData, compiled.cubin, None, None, 0,
                                          None, None, 0)
                        _libraries[compiled.key] = lib
                    handle = driver.call(cu.cuLibraryGetKernel, lib, compiled.lowered_name.encode())
                k = Kernel(handle, compiled, lib)
                _kernels[(compiled.key, compiled.lowered_name)] = k
    k.ensure_smem(device, max_dynamic_smem)
    return k


def get_kernel(source: str, name_expr: str, *, prelude: str = "", options: Sequence[str] = (),
               device: driver.Device, max_dynamic_smem: int = 0) -> Kernel:
    """``compile_kernel`` + ``load_kernel``; a repeated call is one dict lookup."""
    opts = options if isinstance(options, tuple) else tuple(options)
    fkey = (source, name_expr, prelude, opts, device.ordinal, max_dynamic_smem)
    k = _fast.get(fkey)
    if k is not None:
        return k
    k = load_kernel(compile_kernel(source, name_expr, prelude=prelude, options=opts), device,
                    max_dynamic_smem)
    warn_if_spills(k.compiled)
    _fast[fkey] = k
    return k


def clear_memory_cache() -> None:
    """Forget compiled kernels and ``get_kernel`` lookups held in memory (the disk cache
    stays). Loaded libraries stay loaded: launches may still use them."""
    with _memory_lock:
        _memory.clear()
        _key_locks.clear()
    _fast.clear()
