"""Where numba keeps Downbeat's compiled kernels, decided before numba is imported.

numba's ``cache=True`` writes the compiled kernels beside the source (``metronome/__pycache__``) or, when that is
not writable, under ``~/.cache/numba``; when neither is writable, *decorating* a function raises
``RuntimeError: cannot cache function ...``, i.e. importing :mod:`metronome._kernels` fails and every command,
``--help`` and ``doctor`` included, dies at import (a read-only install with a read-only or missing home).  So the
folder is chosen here, in this order, each tested by really creating a file in it (root ignores file modes, so
``os.access`` says nothing on a read-only mount):

1. ``NUMBA_CACHE_DIR`` if the user set it and it is writable;
2. numba's own default, ``__pycache__`` beside ``metronome/_kernels.py`` (a normal install);
3. ``$XDG_CACHE_HOME/downbeat/numba`` (default ``~/.cache/downbeat/numba``), put into ``NUMBA_CACHE_DIR``;
4. a private folder in the temporary directory, ``downbeat-numba-UID`` (mode 0700 and owned by us, checked:
   numba's cache holds code that is loaded and run, so a folder someone else could write to is never used);
5. none: the kernels compile on every run (a few seconds) and :data:`CHOICE` carries a one-line warning.

:data:`CHOICE` is computed once, at import; the kernels' decorators read :data:`CHOICE.enabled`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass

#: The kernels' source: numba's in-tree cache is ``__pycache__`` beside it.
KERNELS_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kernels.py")


@dataclass(frozen=True)
class CacheChoice:
    """The cache folder in use.

    Attributes
    ----------
    enabled : bool
        False when no folder was writable: every run compiles.
    path : str or None
        The folder numba writes to (None when disabled).
    source : str
        ``NUMBA_CACHE_DIR``, ``in-tree``, ``user`` (step 3), ``temp`` (step 4) or ``none``.
    tried : tuple of (str, str)
        Folders found unwritable, each with the reason.
    warning : str or None
        One line for stderr when the kernels cannot be cached (or a user-set folder was refused).
    """

    enabled: bool
    path: str | None
    source: str
    tried: tuple = ()
    warning: str | None = None


#: Set beside ``NUMBA_CACHE_DIR`` when this module chose the folder, so that child processes report the same choice.
CHOSEN_MARK = "DOWNBEAT_NUMBA_CACHE_CHOSEN"


def writable_dir(path: str) -> str | None:
    """None if ``path`` can be created and written to, else the reason (as numba's own check does it)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def private_temp_dir(path: str) -> str | None:
    """None if ``path`` is (or was just made) a folder only we can write to, else the reason."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return "not a private folder of this user"
    return writable_dir(path)


def temp_cache_dir() -> str:
    """``downbeat-numba-UID`` in the temporary directory; ``""`` if there is no writable one at all."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    try:
        return os.path.join(tempfile.gettempdir(), f"downbeat-numba-{uid}")
    except OSError:  # "No usable temporary directory found in [...]"
        return ""


def user_cache_dir(environ=os.environ) -> str:
    """``$XDG_CACHE_HOME/downbeat/numba``, default ``~/.cache/downbeat/numba`` (XDG base directory spec)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "downbeat", "numba")


def choose(environ=os.environ) -> CacheChoice:
    """Pick the cache folder (see the module docstring); sets ``NUMBA_CACHE_DIR`` in ``environ`` to match it
    (child processes, e.g. doctor's probes, then use the same folder)."""
    tried = []
    user_set = environ.get("NUMBA_CACHE_DIR")
    if user_set and environ.get(CHOSEN_MARK) == user_set:
        user_set = None  # set by a parent Downbeat process's choice (a doctor probe, a resumed session): redo it
    if user_set:
        why = writable_dir(user_set)
        if why is None:
            return CacheChoice(True, user_set, "NUMBA_CACHE_DIR")
        tried.append((user_set, why))
    in_tree = os.path.join(os.path.dirname(KERNELS_SOURCE), "__pycache__")
    for source, path, check in (("in-tree", in_tree, writable_dir), ("user", user_cache_dir(environ), writable_dir),
                                ("temp", temp_cache_dir(), private_temp_dir)):
        if not path:
            tried.append(("the temporary directory", "none is writable"))
            continue
        why = check(path)
        if why is None:
            if source == "in-tree":
                environ.pop("NUMBA_CACHE_DIR", None)  # numba's default when no NUMBA_CACHE_DIR is set
                environ.pop(CHOSEN_MARK, None)
            else:
                environ["NUMBA_CACHE_DIR"] = environ[CHOSEN_MARK] = path
            warning = None
            if user_set:
                warning = (f"NUMBA_CACHE_DIR={user_set} is not writable ({tried[0][1]}); "
                           f"caching the compiled audio engine in {path} instead")
            return CacheChoice(True, path, source, tuple(tried), warning)
        tried.append((path, why))
    if user_set:
        environ.pop("NUMBA_CACHE_DIR")  # numba would try it for every function
    places = "; ".join(f"{p}: {w}" for p, w in tried)
    return CacheChoice(False, None, "none", tuple(tried),
                       f"no writable folder for the compiled audio engine ({places}): it is compiled again on "
                       f"every run; set NUMBA_CACHE_DIR to a writable folder")


CHOICE = choose()
if "numba" in sys.modules:  # imported before us (a test, a script): numba read its config already
    from numba.core import config as _config

    _config.CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", "")
