"""The ``downbeat`` command line: the only layer that speaks of flags, prints, reads argv or exits.

:mod:`.app` holds the group and :func:`main` (exit-code contract); each sub-command group lives in its own module
(:mod:`.profile`, :mod:`.cues`, :mod:`.doctor`) with its plotting in :mod:`.plot`.  ``cli`` and ``main`` are
loaded on first use, so ``python -m metronome.cli`` reaches :mod:`metronome.entry` (Ctrl-C safe start-up) before
click and the rest are imported.
"""

__all__ = ["cli", "main"]


def __getattr__(name):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
