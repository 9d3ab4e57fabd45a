"""The ``downbeat`` console script, kept tiny so it runs before the heavy imports.

Importing click, numpy, numba and matplotlib takes most of a second; Ctrl-C in that window used to print a
20-line ``KeyboardInterrupt`` traceback.  Until :func:`metronome.cli.main` takes over (and restores Python's own
SIGINT handler so renders can remove their temporary files), Ctrl-C just ends the process: nothing has been written
yet, so there is nothing to clean up.
"""

import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    try:
        os.write(2, b"downbeat: interrupted\n")
    finally:
        os._exit(130)  # 128 + SIGINT, as a shell reports it


def _unraisable(hook_args):
    """Ctrl-C that lands inside a C callback (numba's cache loader is called from llvmlite through ctypes) cannot
    propagate: Python prints "Exception ignored ... KeyboardInterrupt" with a traceback and carries on.  That only
    happens while kernels load, before any file is written, so it ends the process like Ctrl-C at start-up."""
    if issubclass(hook_args.exc_type, KeyboardInterrupt):
        _interrupted_while_starting(signal.SIGINT, None)
    sys.__unraisablehook__(hook_args)


def main(argv=None):
    """Install the start-up SIGINT handler, import the CLI, run it."""
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    sys.unraisablehook = _unraisable
    from metronome.cli import main as cli_main

    try:
        cli_main(argv)
    except SystemExit as exc:
        build_kernels_later()
        if exc.code in (0, None) and _may_skip_teardown():
            # A finished render: every file is committed and flushed, no other thread runs.  Tearing down the
            # interpreter (numpy, cffi, soundfile, click modules) would add ~25 ms to a 0.35 s render of 30
            # minutes (benchmarks/README.md section 12), and nothing is left for it to do.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        raise


def build_kernels_later() -> None:
    """A command that ran the kernels through numba's JIT because the compiled module was missing starts its build
    in the background now that it is done (metronome.kernels.build_in_background; also after Ctrl-C, from
    metronome.cli.app).  Never imports the kernels: a process that did not load them has nothing to build."""
    kernels = sys.modules.get("metronome.kernels")
    if kernels is not None:
        try:
            kernels.build_in_background()
        except Exception:  # a faster next start is not worth failing this one over
            pass


def _may_skip_teardown() -> bool:
    app = sys.modules.get("metronome.cli.app")
    if app is None or not getattr(app, "FINISHED_RENDER", None):
        return False
    import threading

    return all(t is threading.main_thread() or t.daemon for t in threading.enumerate())
