"""The ``downbeat`` command line: the only layer that speaks of flags, prints, reads argv or exits.

:mod:`.app` holds the group and :func:`main` (exit-code contract); each sub-command group lives in its own module
(:mod:`.profile`, :mod:`.cues`, :mod:`.doctor`) with its plotting in :mod:`.plot`.
"""

from .app import cli, main

__all__ = ["cli", "main"]
