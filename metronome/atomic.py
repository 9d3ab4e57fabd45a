"""One way to write a file so that nobody ever sees half of it (ground floor: stdlib only).

Write into a temporary file in the target's own folder (same file system, so the rename is atomic), flush and
fsync it, then ``os.replace`` it onto the target.  On any failure the temporary is removed and the old file, if
any, is untouched.  ``mkstemp`` makes files private (0600); what we write are ordinary files, so the user's umask
decides their mode, as for any other file they create.  The audio renderer uses :func:`temporary_beside` (libsndfile
writes by path); everything else writes through :func:`atomic_file`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_beside(path, *, prefix: str | None = None, suffix: str = ".tmp") -> str:
    """Create an empty temporary file in ``path``'s folder with the umask's mode; return its name."""
    path = Path(os.fspath(path))
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix,
                               dir=folder)
    try:
        os.fchmod(fd, _umask_mode())
    finally:
        os.close(fd)
    return tmp


def replace_or_remove(tmp: str, path, ok: bool) -> None:
    """Finish a write: ``os.replace(tmp, path)`` when ``ok``, else remove ``tmp`` (never raises for the removal)."""
    if ok:
        os.replace(tmp, path)
        return
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(path, mode: str = "w", *, encoding: str | None = "utf-8", prefix: str | None = None,
                suffix: str = ".tmp", fsync: bool = True):
    """``with atomic_file(path) as f: f.write(...)``: the target appears whole, or not at all."""
    tmp = temporary_beside(path, prefix=prefix, suffix=suffix)
    ok = False
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        ok = True
    finally:
        replace_or_remove(tmp, path, ok)
