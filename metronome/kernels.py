"""The kernels as this process runs them: compiled ahead of time (:mod:`metronome._aot`) or by numba's JIT.

Both are the functions of :mod:`metronome._kernels`, compiled by the same numba; the ahead-of-time module loads with
numpy alone (no numba, no LLVM: issue 19's start-up and memory), the JIT is the fallback where that module cannot be
built (no C compiler).  ``DOWNBEAT_KERNELS`` picks: ``auto`` (default: the compiled module; while it is missing,
the JIT, and the console script builds the module in the background once the command is done: see
:func:`build_in_background`), ``aot`` (the compiled module, built now if missing, or an error) or ``jit``.

The compiled module's wrappers trust their arguments (no type check: a wrong dtype or a strided array would be read
as if it were right), so every array is checked here first: the engine's arrays once, when it is built
(:func:`check_block_args`), the output block on every call (a few attribute reads per 65536 frames).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ._layout import BLOCK_ARGS, BLOCK_READ_ONLY
from .errors import DownbeatError, InputError

MODE_ENV = "DOWNBEAT_KERNELS"
MODES = ("auto", "aot", "jit")


class _Resolved:
    backend: str | None = None  # "aot" | "jit"
    module = None  # the compiled module (aot) or metronome._kernels (jit)
    path: str | None = None  # the compiled module's file
    reason: str = ""  # why the JIT runs (empty with aot)
    built_s: float | None = None  # seconds this process spent building the module
    build_later: bool = False  # auto mode, no module yet but one can be built: build_in_background() does it


_R = _Resolved()


def _say(line: str) -> None:
    print(f"downbeat: {line}", file=sys.stderr, flush=True)


def mode(environ=os.environ) -> str:
    m = (environ.get(MODE_ENV) or "auto").strip().lower()
    if m not in MODES:
        raise InputError(f"{MODE_ENV}: {m!r} is not one of {', '.join(MODES)}")  # bad input: exit 2
    return m


def resolve(say=_say):
    """Pick the backend once per process; returns ``_R``.

    Without a compiled module, ``auto`` runs the JIT now (a first run: ~3.5 s of compiling, where building the
    module would take ~9 s, benchmarks/README.md section 5) and leaves the build to :func:`build_in_background`;
    ``aot`` builds it now (``say`` gets one line first: it takes seconds).
    """
    if _R.backend is not None:
        return _R
    from . import _aot

    m = mode()
    if m != "jit":
        path = _aot.find()
        if path is None and m == "auto":
            problem = _aot.toolchain_problem()
            if problem is None and not _aot.build_in_progress():
                _R.build_later = True
                problem = "not compiled ahead of time yet (it is built in the background after this run)"
            _R.reason = problem or "another process is compiling the kernels ahead of time"
        elif path is None:
            try:
                import time

                if say is not None:
                    say(f"preparing the audio engine (first run only, ~{_aot.BUILD_S} s)")
                t0 = time.perf_counter()
                path = _aot.build()
                _R.built_s = time.perf_counter() - t0
            except _aot.AotUnavailable as exc:
                if m == "aot":
                    raise DownbeatError(f"{MODE_ENV}=aot: the kernels cannot be compiled ahead of time: {exc}") from None
                _R.reason = str(exc)
        if path is not None:
            _R.module, _R.path, _R.backend = _aot.load(path), path, "aot"
            return _R
    else:
        _R.reason = f"{MODE_ENV}=jit"
    from . import _kernels

    _R.module, _R.backend = _kernels, "jit"
    return _R


def build_in_background(say=_say) -> bool:
    """Start ``python -m metronome._aot`` as a detached, low-priority process if this process ran the JIT only
    because the module was not built yet (as ``git gc --auto`` packs a repository after a command).  Called by the
    console script when a command is done, so it never competes with a session's audio.  Returns True if started.
    """
    if not _R.build_later:
        return False
    _R.build_later = False
    from . import _aot

    if _aot.find() is not None or _aot.build_in_progress():
        return False
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding this package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    env.pop(MODE_ENV, None)
    try:
        subprocess.Popen([sys.executable, "-m", "metronome._aot"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=root,
                         start_new_session=True, preexec_fn=lambda: os.nice(10))
    except OSError:
        return False
    if say is not None:
        say("compiling the audio engine ahead of time in the background (once): later starts take ~0.2 s")
    return True


def backend() -> str:
    return resolve().backend


def status() -> dict:
    """What ``doctor`` and ``--json`` report (resolves the backend)."""
    r = resolve()
    return {"backend": r.backend, "path": r.path, "reason": r.reason or None, "built_s": r.built_s}


# -- argument checks (the compiled module's wrappers do none) ------------------------------------------------
def _check(name: str, a, dtype, ndim: int, writable: bool) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim or not a.flags.c_contiguous:
        got = f"{a.dtype}[{a.ndim}-D]" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"kernel argument {name!r}: {got} (C-contiguous: "
                         f"{getattr(getattr(a, 'flags', None), 'c_contiguous', False)}), "
                         f"expected C-contiguous {np.dtype(dtype)}[{ndim}-D]")
    if writable and not a.flags.writeable:
        raise ValueError(f"kernel argument {name!r} is read-only; the kernel writes it")


def check_block_args(args) -> None:
    """Check process_block's arguments after ``out`` against :data:`~metronome._layout.BLOCK_ARGS`."""
    if len(args) != len(BLOCK_ARGS):
        raise ValueError(f"kernel arguments: {len(args)} given, {len(BLOCK_ARGS)} declared")
    for (name, dtype, ndim), a in zip(BLOCK_ARGS, args):
        if dtype is None:
            if not isinstance(a, float):
                raise ValueError(f"kernel argument {name!r}: {type(a).__name__}, expected float")
        else:
            _check(name, a, dtype, ndim, name not in BLOCK_READ_ONLY)


def check_out(out) -> None:
    _check("out", out, np.float32, 2, True)


# -- the kernels ---------------------------------------------------------------------------------------------
def process(out: np.ndarray, blocksize: int, args) -> None:
    """:func:`metronome._kernels.process_blocks` over ``out`` (C-contiguous float32 [frames, channels]) with
    ``args`` already checked by :func:`check_block_args`."""
    check_out(out)
    if blocksize < 1:
        raise ValueError(f"kernel argument 'blocksize': {blocksize!r} is not a positive number of frames")
    m = resolve().module
    if _R.backend == "aot":
        m.process_blocks(out, int(blocksize), *args)
    elif blocksize >= out.shape[0]:
        m.process_block(out, *args)  # the overload the C callback reuses (one compile less on a cold cache)
    else:
        m.process_blocks(out, int(blocksize), *args)


def process_pcm16(out: np.ndarray, blocksize: int, scratch: np.ndarray, args) -> None:
    """:func:`metronome._kernels.process_blocks_pcm16`: ``out`` int16 [frames, channels] (C order), ``scratch``
    float32 [>= blocksize, channels]; ``args`` checked by :func:`check_block_args`."""
    _check("out", out, np.int16, 2, True)
    _check("scratch", scratch, np.float32, 2, True)
    if blocksize < 1:
        raise ValueError(f"kernel argument 'blocksize': {blocksize!r} is not a positive number of frames")
    if scratch.shape[0] < min(int(blocksize), out.shape[0]) or scratch.shape[1] != out.shape[1]:
        raise ValueError(f"kernel argument 'scratch': {scratch.shape} holds no block of {blocksize} x {out.shape[1]}")
    resolve().module.process_blocks_pcm16(out, int(blocksize), scratch, *args)


def map_phase_at_breakpoints(map_sample, map_bpm, samplerate: float, out) -> None:
    for name, a in (("map_sample", map_sample), ("map_bpm", map_bpm)):
        _check(name, a, np.float64, 1, False)
    _check("out", out, np.float64, 1, True)
    resolve().module.map_phase_at_breakpoints(map_sample, map_bpm, float(samplerate), out)


def beat_times(map_sample, map_bpm, map_phase, samplerate: float, end_sample: float, out) -> int:
    for name, a in (("map_sample", map_sample), ("map_bpm", map_bpm), ("map_phase", map_phase)):
        _check(name, a, np.float64, 1, False)
    _check("out", out, np.float64, 1, True)
    return int(resolve().module.beat_times(map_sample, map_bpm, map_phase, float(samplerate), float(end_sample),
                                           out))


_CALLBACK = {}


def pa_callback_address() -> int:
    """Address of the PortAudio C callback (``int cb(const void*, void*, unsigned long, const
    PaStreamCallbackTimeInfo*, PaStreamCallbackFlags, void*)``), compiled or loaded before any stream opens."""
    r = resolve()
    if "address" not in _CALLBACK:
        if r.backend == "aot":
            import ctypes

            from ._aot import CALLBACK_SYMBOL

            lib = ctypes.CDLL(r.path)  # already loaded as the module: dlopen returns the same handle
            _CALLBACK["lib"] = lib
            _CALLBACK["address"] = ctypes.cast(getattr(lib, CALLBACK_SYMBOL), ctypes.c_void_p).value
        else:
            _CALLBACK["address"] = r.module.pa_callback().address
    return _CALLBACK["address"]
