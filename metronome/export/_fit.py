"""What the FIT writers share: the optional encoder, FIT time, string limits and atomic file output.

Encoder: ``fit-tool`` (PyPI ``fit-tool``, BSD-3-Clause licence, pure Python, no dependencies; a community-maintained
fork of Stages Cycling's library).  It is an optional extra (``pip install 'downbeat[fit]'``, about 3.6 MB installed)
because only ``downbeat export`` needs it.  Garmin's own ``garmin-fit-sdk`` also has an encoder, but it is
licensed under Garmin's *FIT Protocol License Agreement*, which is not an OSI open-source licence (it grants a
non-transferable, non-sublicensable licence for the licensee's internal business purposes), so Downbeat does not
ship on it; the tests use Garmin's *decoder* only, as the independent check that the files are valid.
"""

from __future__ import annotations

import datetime as _dt
import os

from metronome.errors import DownbeatError

#: The FIT epoch, 1989-12-31T00:00:00Z (FIT protocol, ``date_time`` type).
FIT_EPOCH = _dt.datetime(1989, 12, 31, tzinfo=_dt.timezone.utc)
#: ``date_time`` values below this are relative seconds, not absolute times (FIT profile, ``date_time`` type).
FIT_DATE_TIME_MIN_S = 0x10000000
#: Default start time of an exported plan: fixed, so the same plan always gives the same bytes.  (Any absolute
#: time works: a watch uses only the differences, e.g. for its virtual partner.)
DEFAULT_START = _dt.datetime(2024, 1, 1, 8, 0, 0, tzinfo=_dt.timezone.utc)
#: Longest name a course point can carry on a watch: 15 bytes + NUL.  The FIT profile gives
#: ``course_point.name`` no length; coursepointer (github.com/mshroyer/coursepointer, src/fit.rs), whose course
#: points are checked on a Fenix 7's "Up Ahead" screen, writes a 16-byte name field, and Garmin's chartplotters
#: cap route names at 15 characters (Garmin support FAQ "Limited Character Space for User Data Names").
COURSE_POINT_NAME_BYTES = 15
#: Course and workout names: 31 bytes + NUL (coursepointer writes a 32-byte course name field).
NAME_BYTES = 31
INSTALL_HINT = "pip install 'downbeat[fit]'"


class MissingExtraError(DownbeatError):
    """An optional dependency is not installed.  Exit code 1: the input is fine, the installation is not (exit 2
    means "fix your command or file", which would send the user looking in the wrong place)."""

    exit_code = 1


def fit_tool():
    """Import ``fit_tool`` or raise :class:`MissingExtraError` with the one-line install command."""
    try:
        import fit_tool  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"FIT export needs the optional 'fit' extra (fit-tool): {INSTALL_HINT}") from None
    return fit_tool


def fit_ms(when: _dt.datetime, offset_s: float = 0.0) -> int:
    """fit-tool's timestamp unit (milliseconds since the Unix epoch) of ``when + offset_s``, on whole seconds.

    FIT ``date_time`` fields hold whole seconds; rounding here keeps what is written and what is checked equal.
    """
    return int(round(when.timestamp() + offset_s)) * 1000


def fit_name(text: str, limit_bytes: int) -> str:
    """``text`` cut to at most ``limit_bytes`` of UTF-8 (never inside a character), trailing space removed."""
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    return data[:limit_bytes].decode("utf-8", errors="ignore").rstrip(" :,.-")


def check_output_path(path: str, what: str) -> None:
    """Bad output paths are bad input (exit 2), found before any work is done."""
    from metronome.errors import InputError

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{what}: {path}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"{what}: {path}: is a directory")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it: an error never leaves half a file, and an
    existing file is replaced only by a complete one."""
    from metronome.render import AtomicOutput

    out = AtomicOutput(path)
    try:
        with open(out.tmp, "wb") as f:
            f.write(data)
        out.commit()
    except BaseException:
        out.abort()
        raise
