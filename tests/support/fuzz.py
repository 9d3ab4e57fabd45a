"""Shared helpers of the fuzz/safety/security suites (issue 7).  This module holds no tests.

Budgets
-------
Every fuzz loop runs :func:`budget` cases: the default keeps the whole issue-7 suite under a few minutes on a
shared 2-core machine; ``DOWNBEAT_FUZZ_EXAMPLES=N`` scales every boundary so that its main loop runs ``N`` cases
(the smaller loops keep their proportion).  Every loop reports its count with :func:`report`, printed with
``pytest -s`` and appended as JSON lines to ``$DOWNBEAT_FUZZ_REPORT`` when that is set (the issue note quotes it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import struct
import threading

DEFAULT_EXAMPLES = 200


def budget(default: int) -> int:
    """Number of cases for a loop whose default (at ``DEFAULT_EXAMPLES``) is ``default``.

    Parameters
    ----------
    default : int
        Cases this loop runs by default.

    Returns
    -------
    int
        ``default`` scaled by ``DOWNBEAT_FUZZ_EXAMPLES / DEFAULT_EXAMPLES`` (at least 1).
    """
    env = os.environ.get("DOWNBEAT_FUZZ_EXAMPLES")
    if not env:
        return default
    return max(1, round(default * int(env) / DEFAULT_EXAMPLES))


def report(boundary: str, tally: dict) -> None:
    """Print (and optionally record) how many cases a boundary saw, by outcome.

    Parameters
    ----------
    boundary : str
        E.g. ``"profile:gpx bytes"``.
    tally : dict
        Outcome -> count, e.g. ``{"loaded": 12, "rejected": 188}``.
    """
    total = sum(tally.values())
    print(f"\nFUZZ {boundary}: {total} cases {dict(sorted(tally.items()))}")
    path = os.environ.get("DOWNBEAT_FUZZ_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"boundary": boundary, "cases": total, **tally}) + "\n")


class Hang(Exception):
    """Raised by :func:`deadline` when a case runs longer than allowed (a hang is a bug like any other)."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``.

    SIGALRM interrupts Python code (the parsers are Python or release back to it often); on a thread other than
    the main one (no signals there) the block simply runs without a limit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def assert_one_line_error(exc: BaseException, max_chars: int = 1000) -> str:
    """Check an :class:`~metronome.errors.InputError` message is what the CLI contract promises.

    One non-empty line (the CLI prints it as is after ``downbeat: error:``), and bounded: a message that echoes a
    whole hostile document back is a memory/time bomb of its own.

    Returns
    -------
    str
        The message.
    """
    msg = str(exc)
    assert msg.strip(), f"empty message from {type(exc).__name__}"
    assert "\n" not in msg and "\r" not in msg, f"multi-line message: {msg[:300]!r}"
    assert len(msg) <= max_chars, f"{len(msg)}-character message: {msg[:200]!r}..."
    return msg


# ----------------------------------------------------------------------------------------------------------------
# Byte-level mutations
# ----------------------------------------------------------------------------------------------------------------
INTERESTING_BYTES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"<", b">", b"&", b'"', b"'", b"\n", b"-", b"9", b".",
                     b"e", b"]]>", b"<!--", b"&amp;", b"\xef\xbb\xbf", b"\xc3", b"\xed\xa0\x80"]


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One random structural-agnostic mutation of ``data``.

    Parameters
    ----------
    data : bytes
        A real file's content.
    rng : random.Random
        Seeded by the caller, so every case is reproducible from its index.

    Returns
    -------
    (bytes, str)
        The mutated content and a short description (printed when the case fails).
    """
    n = len(data)
    op = rng.choice(["flip", "set", "truncate", "insert", "duplicate", "delete", "splice", "multi"])
    if op == "multi":
        out, what = data, []
        for _ in range(rng.randint(2, 8)):
            out, w = mutate_bytes(out, rng)
            what.append(w)
        return out, " + ".join(what)
    if n == 0:
        return rng.choice(INTERESTING_BYTES), "replace empty"
    i = rng.randrange(n)
    if op == "flip":
        b = bytearray(data)
        bit = rng.randrange(8)
        b[i] ^= 1 << bit
        return bytes(b), f"flip bit {bit} of byte {i}"
    if op == "set":
        b = bytearray(data)
        b[i] = rng.randrange(256)
        return bytes(b), f"set byte {i} to {b[i]}"
    if op == "truncate":
        return data[:i], f"truncate at {i}"
    if op == "insert":
        chunk = rng.choice(INTERESTING_BYTES) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 16))
        return data[:i] + chunk + data[i:], f"insert {chunk!r} at {i}"
    j = min(n, i + rng.randint(1, max(1, n // 8)))
    if op == "duplicate":
        k = rng.randint(1, 4)
        return data[:j] + data[i:j] * k + data[j:], f"duplicate [{i}:{j}] x{k}"
    if op == "delete":
        return data[:i] + data[j:], f"delete [{i}:{j}]"
    k = rng.randrange(n)
    return data[:k] + data[i:j] + data[k + (j - i):], f"splice [{i}:{j}] over {k}"


# ----------------------------------------------------------------------------------------------------------------
# FIT framing: recompute the CRCs after a mutation so the decoder parses the mutated records instead of stopping
# at the first checksum (which would make byte-level fuzzing of FIT shallow).
# ----------------------------------------------------------------------------------------------------------------
def fix_fit_crcs(data: bytes) -> bytes:
    """Rewrite the header CRC (14-byte headers) and the trailing file CRC of a FIT file.

    Returns ``data`` unchanged if it is too short to have them.
    """
    from fitdecode.utils import compute_crc

    if len(data) < 16:
        return data
    b = bytearray(data)
    hsize = b[0]
    if hsize == 14:
        b[12:14] = struct.pack("<H", compute_crc(b, start=0, end=12))
    b[-2:] = struct.pack("<H", compute_crc(b, start=0, end=len(b) - 2))
    return bytes(b)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" built from YAML anchors: ``width ** levels`` leaves if expanded, a few hundred bytes as
    written.  PyYAML shares aliased nodes, so loading is cheap; what explodes is anything that walks or prints the
    expanded value (``repr`` in an error message, ``copy.deepcopy``, JSON dumps...)."""
    lines = ["description:"]
    for i in range(levels):
        item = f"*l{i - 1}" if i else "lol"
        lines.append(f"  - &l{i} [{', '.join([item] * width)}]")
    return "\n".join(lines) + "\n"
