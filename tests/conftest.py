"""pytest configuration (markers live in pyproject.toml; tests/ is a package, shared helpers in tests/support)."""

import os

# The default speech engine is the best one installed (cues/tts.py), which differs between machines: the suite
# pins espeak-ng, in this process and every child it starts, so clip lengths (hence cue plans) are the same
# everywhere.  Tests of another engine name it (``voice="festival"``); tests of the choice itself unset this.
os.environ["DOWNBEAT_VOICE"] = "espeak-ng"


def pytest_sessionstart(session):
    """Fill numba's cache once, before any test starts Downbeat in a child process.

    On a fresh clone the kernels are not compiled yet: the first child would spend seconds compiling and print
    the one-line "preparing the audio engine" notice, which tests that count stderr lines would take for an
    error.  The tests of that notice and of a cold cache use a cache folder of their own.
    """
    from metronome.engine import warm_kernels

    warm_kernels(say=None)
