"""The kernels of :mod:`metronome._kernels` compiled ahead of time into a small extension module (``numba.pycc``).

Why (issue 19, benchmarks/README.md section 12): importing numba and LLVM and loading the cached kernels cost a run
0.5-0.9 s and ~110 MiB before the first sample, several times the whole render of a 30-minute track.  This module
compiles the same functions (their Python source, ``py_func``), with the same numba and LLVM and no fast-math, into
``_kernels_aot_<hash>.so``, which imports in a few milliseconds with numpy alone.  IEEE operations in the same order
give the same bits: ``tests/test_aot.py`` compares the compiled-ahead and just-in-time kernels sample for sample
(every block size, cues, live mode, music, the C callback).

* Name: ``_kernels_aot_<hash>``, the hash over the kernel sources (:data:`SOURCES`) and numba's and numpy's
  versions, so a module built from other sources is never loaded (an edit or an upgrade builds a new one).
* Folder: ``__pycache__`` beside the kernels (a normal or editable install) or, when that is read-only, the folder
  :mod:`metronome._jitcache` chose for numba's own cache; looked up in both, in that order.
* Target: this machine's CPU, name and features, exactly as numba's JIT targets it (AVX2 here: the silent path's
  stores and the PCM conversion run 2x faster than on the generic x86-64); the CPU's feature flags (Linux'
  ``/proc/cpuinfo``) are part of the hash, so a module is never loaded on a CPU it was not built for.  Where they
  cannot be read, the generic CPU of the architecture.
* The PortAudio callback: numba gives every compiled function a C-ABI wrapper; the callback's is exported under
  :data:`CALLBACK_SYMBOL` (``dlsym``-able), so live play runs it without numba too.
* numba.pycc is "pending deprecation" (numba 0.57+, no replacement released yet); a numba without it makes
  :func:`build` fail, and the JIT runs, as without a compiler.
* Building needs a C compiler and Python's headers (numba.pycc compiles its small C runtime); without them
  :func:`build` raises :class:`AotUnavailable` and the kernels run through numba's JIT (:mod:`metronome.kernels`).
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES

import numpy as np

from ._jitcache import CHOICE as CACHE_CHOICE, writable_dir
from .atomic import replace_or_remove
from ._layout import BLOCK_ARGS, BLOCK_READ_ONLY

HERE = os.path.dirname(os.path.abspath(__file__))
#: The files whose code the compiled module holds.
SOURCES = ("_kernels.py", "_layout.py", "_intrinsics.py", "_aot.py")  # _aot: the exports and how they are built
CALLBACK_SYMBOL = "downbeat_pa_callback"
#: Seconds a build takes on the 2-core test VM (8.4-8.8 s from a fresh install, benchmarks/README.md section 5; said
#: on the first run so the wait is not silent).
BUILD_S = 9


class AotUnavailable(Exception):
    """The module cannot be built here (no compiler, no headers, no writable folder); the message says why."""


def _numba_version_file() -> bytes:
    """numba's ``_version.py`` (its version): found without importing numba or scanning installed metadata."""
    import importlib.util

    spec = importlib.util.find_spec("numba")
    if spec is None or not spec.origin:
        return b"no numba"
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "_version.py"), "rb") as f:
            return f.read()
    except OSError:
        return spec.origin.encode()


def cpu_identity() -> bytes | None:
    """The CPU's feature flags (``flags`` / ``Features`` of the first CPU in /proc/cpuinfo), None where unknown."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            for line in f:
                key = line.split(b":", 1)[0].strip().lower()
                if key in (b"flags", b"features"):
                    return line.split(b":", 1)[1].strip()
    except OSError:
        pass
    return None


def source_hash(sources=SOURCES, folder: str = HERE) -> str:
    """Hash of the kernel sources, numba's and numpy's versions and the CPU (16 hex digits): the module's name
    carries it."""
    try:  # the builtin SHA-256 (hashlib would load OpenSSL first: 3 ms of every start)
        from _sha2 import sha256
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256
    h = sha256()
    h.update(b"cpu " + (cpu_identity() or b"generic") + b"\0")
    for name in sources:
        with open(os.path.join(folder, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    h.update(_numba_version_file() + f"numpy {np.__version__} {sys.implementation.cache_tag}".encode())
    return h.hexdigest()[:16]


def module_name(digest: str | None = None) -> str:
    return f"_kernels_aot_{digest or source_hash()}"


def folders() -> list[str]:
    """Where the module is looked for, and built (the first writable one)."""
    out = [os.path.join(HERE, "__pycache__")]
    if CACHE_CHOICE.path and os.path.abspath(CACHE_CHOICE.path) not in map(os.path.abspath, out):
        out.append(CACHE_CHOICE.path)
    return out


def find(name: str | None = None) -> str | None:
    """Path of the compiled module for the current sources, or None."""
    filename = (name or module_name()) + EXTENSION_SUFFIXES[0]
    for folder in folders():
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    return None


def load(path: str):
    """Import the compiled module at ``path`` (its name is its file's stem)."""
    import importlib.util

    name = os.path.basename(path).split(".")[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: A build folder younger than this means another process is building (a crashed build is ignored after it).
BUILD_STALE_S = 600


def build_in_progress() -> bool:
    """True if another process is building the module now (its ``.aot-build-*`` folder is recent)."""
    import time

    for folder in folders():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.startswith(".aot-build-"):
                try:
                    if time.time() - os.stat(os.path.join(folder, name)).st_mtime < BUILD_STALE_S:
                        return True
                except OSError:
                    pass
    return False


def toolchain_problem() -> str | None:
    """None if a C compiler and Python's headers are here, else what is missing (for the fallback's reason)."""
    import shutil
    import sysconfig

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc!r} not found; Debian: apt-get install gcc)"
    include = sysconfig.get_paths().get("include") or ""
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h; Debian: apt-get install python3-dev)"
    return None


def signatures():
    """{exported name: (kernel function, numba signature)}, the block arguments typed from BLOCK_ARGS."""
    from numba import from_dtype, types as T

    from . import _kernels as K

    def arr(dtype, ndim, read_only):
        return T.Array(from_dtype(np.dtype(dtype)), ndim, "C", readonly=read_only)

    block = tuple(T.float64 if dt is None else arr(dt, nd, name in BLOCK_READ_ONLY) for name, dt, nd in BLOCK_ARGS)
    f8, ro1, rw1 = T.float64, arr(np.float64, 1, True), arr(np.float64, 1, False)
    return {
        "process_blocks": (K.process_blocks, T.void(arr(np.float32, 2, False), T.int64, *block)),
        "process_blocks_pcm16": (K.process_blocks_pcm16, T.void(arr(np.int16, 2, False), T.int64,
                                                                arr(np.float32, 2, False), *block)),
        "beat_times": (K.beat_times, T.int64(ro1, ro1, ro1, f8, f8, rw1)),
        "map_phase_at_breakpoints": (K.map_phase_at_breakpoints, T.void(ro1, ro1, f8, rw1)),
        "to_pcm16_flat": (K._to_pcm16_flat, T.void(arr(np.float32, 1, True), arr(np.int16, 1, False))),
        "pa_callback": (K._pa_callback, K.PA_CALLBACK_SIG),
    }


def _compiler_classes():
    """numba.pycc's CC with the callback's C-ABI wrapper made visible as CALLBACK_SYMBOL."""
    import warnings

    with warnings.catch_warnings():
        # "pending deprecation ... replacement technology is being developed" (numba 0.57+): still numba's way to
        # compile ahead of time; should it go, building fails and the JIT runs (metronome.kernels).
        warnings.simplefilter("ignore")
        from numba.pycc import CC
    from numba.pycc import compiler as pycc_compiler
    from numba.pycc.compiler import ModuleCompiler

    class _Compiler(ModuleCompiler):
        def write_native_object(self, output, wrap=False, **kws):
            self.export_python_wrap = wrap
            # The Python wrappers release the GIL around each kernel call, as the JIT kernels do (nogil=True):
            # the renderer's encoder thread (and any other) runs while the kernel does.  pycc builds its own
            # compiler flags inside _cull_exports, so they are swapped for the duration of that call.
            plain = pycc_compiler.Flags

            def flags():
                f = plain()
                f.release_gil = True
                return f

            pycc_compiler.Flags = flags
            try:
                library = self._cull_exports()
            finally:
                pycc_compiler.Flags = plain
            found = [fn for fn in library.get_defined_functions()
                     if fn.name.startswith("cfunc.") and "_pa_callback" in fn.name]
            if len(found) != 1:
                raise AotUnavailable(f"numba.pycc: the callback's C wrapper was not found ({len(found)} candidates)")
            found[0].name = CALLBACK_SYMBOL
            found[0].visibility = "default"
            with open(output, "wb") as f:
                f.write(library.emit_native_object())

    class _CC(CC):
        def _compile_object_files(self, build_dir):
            host = cpu_identity() is not None
            if host:
                # The JIT's target: the host CPU's name and its features as LLVM reads them (pycc would take the
                # features implied by the name alone, which a virtual machine may not all offer).
                from numba.core.codegen import AOTCPUCodegen

                plain_features = AOTCPUCodegen._customize_tm_features
                AOTCPUCodegen._customize_tm_features = lambda cg: cg._get_host_cpu_features()
            try:
                compiler = _Compiler(self._export_entries, self._basename, self._use_nrt,
                                     cpu_name="host" if host else self._target_cpu)
            finally:
                if host:
                    AOTCPUCodegen._customize_tm_features = plain_features
            compiler.external_init_function = self._init_function
            obj = os.path.join(build_dir, os.path.splitext(self._output_file)[0] + ".o")
            compiler.write_native_object(obj, wrap=True)
            return [obj], compiler.dll_exports

    return _CC


def build(folder: str | None = None) -> str:
    """Compile the module for the current sources into ``folder`` (default: the first writable of
    :func:`folders`); returns its path.  Written under a temporary name and renamed, so a concurrent run never
    loads half a file.  Raises :class:`AotUnavailable` when it cannot be built here."""
    import shutil
    import tempfile

    problem = toolchain_problem()
    if problem:
        raise AotUnavailable(problem)
    candidates = [folder] if folder else folders()
    target = next((f for f in candidates if writable_dir(f) is None), None)
    if target is None:
        raise AotUnavailable(f"no writable folder for the compiled kernels ({', '.join(candidates)})")
    name = module_name()
    work = tempfile.mkdtemp(prefix=".aot-build-", dir=target)
    try:
        CC = _compiler_classes()
        cc = CC(name)
        cc.output_dir = work
        cc.verbose = False
        for export, (fn, sig) in signatures().items():
            cc.export(export, sig)(getattr(fn, "py_func", fn))
        try:
            cc.compile()
        except AotUnavailable:
            raise
        except Exception as exc:  # a compiler or linker failure: the JIT still works
            raise AotUnavailable(f"numba.pycc failed: {type(exc).__name__}: {exc}") from None
        built = [p for p in os.listdir(work) if p.startswith(name) and p.endswith(EXTENSION_SUFFIXES[0])]
        if len(built) != 1:
            raise AotUnavailable(f"numba.pycc wrote no module into {work}")
        final = os.path.join(target, built[0])
        replace_or_remove(os.path.join(work, built[0]), final, True)
        for old in os.listdir(target):  # modules of earlier sources are never loaded again (~0.8 MB each)
            if old.startswith("_kernels_aot_") and old != built[0]:
                try:
                    os.unlink(os.path.join(target, old))  # a process that has one loaded keeps its mapping
                except OSError:
                    pass
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    """``python -m metronome._aot``: build the module now (the install step; a first run would do it too)."""
    import time

    t0 = time.perf_counter()
    path = find()
    if path is None:
        try:
            path = build()
        except AotUnavailable as exc:
            print(f"downbeat: kernels not compiled ahead of time: {exc}; they run through numba's JIT",
                  file=sys.stderr)
            return 0
        print(f"downbeat: compiled the audio kernels ahead of time in {time.perf_counter() - t0:.1f} s: {path}")
    else:
        print(f"downbeat: the audio kernels are compiled ahead of time: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
