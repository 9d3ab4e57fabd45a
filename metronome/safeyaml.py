"""``yaml.safe_load`` with every failure as a one-line input error, and a bounded ``repr`` for messages.

Shared by the profile and cue-library loaders.  PyYAML lets more than ``YAMLError`` escape: a 5000-digit integer
(Python's int->str limit), a timestamp such as ``2020-13-45``, deep nesting (``RecursionError``); and a YAML alias
bomb (a few hundred bytes expanding to 9 ** 9 shared nodes) makes a plain ``repr`` in an error message take
minutes and gigabytes.
"""

from __future__ import annotations

import reprlib

import yaml

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 4, 4, 60, 60, 40


def short(value) -> str:
    """A bounded ``repr`` for error messages (safe on alias bombs and over-long integers)."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def load(data, display: str, error_cls):
    """Parse YAML text or UTF-8 bytes with ``yaml.safe_load``; raise ``error_cls("display: ...")`` on any failure."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise error_cls(f"{display}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") \
                from None
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise error_cls(f"{display}: invalid YAML: {where}{' '.join(str(problem).split())}") from None
    except (RecursionError, MemoryError):
        raise error_cls(f"{display}: invalid YAML: nested too deeply or too large") from None
    except (ValueError, OverflowError, TypeError) as exc:
        # The first clause names the problem; the rest is Python's advice.
        problem = " ".join(str(exc).split(";")[0].split())[:120] or type(exc).__name__
        raise error_cls(f"{display}: invalid YAML: unreadable value ({problem})") from None
