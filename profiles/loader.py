"""``load_profile``: one entry point for every profile format, bundled names included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from metronome.errors import ProfileError

from .schema import Profile

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_EXTENSIONS = (".yaml", ".gpx")
EXTENSIONS = (".yaml", ".yml", ".gpx", ".fit", ".tcx")
#: Larger than any real activity (a 24 h 1 s FIT is ~3 MB, a 100 km GPX ~3 MB): refuse before reading it all.
MAX_FILE_BYTES = 256 * 1024 * 1024


def bundled_names() -> list[str]:
    """Names of the bundled profiles (``profiles/bundled/NAME.yaml`` or ``.gpx``), sorted."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted({p.stem for p in BUNDLED_DIR.iterdir() if p.suffix in BUNDLED_EXTENSIONS and p.is_file()})


def bundled_path(name: str) -> Path | None:
    """Path of the bundled profile ``name`` (with or without extension), or ``None``."""
    stem, ext = os.path.splitext(name)
    if ext in BUNDLED_EXTENSIONS:
        candidates = [BUNDLED_DIR / name]
    else:
        candidates = [BUNDLED_DIR / (name + e) for e in BUNDLED_EXTENSIONS]
    return next((p for p in candidates if p.is_file()), None)


def _is_bare_name(text: str) -> bool:
    return bool(text) and os.sep not in text and (os.altsep is None or os.altsep not in text) and text not in (".", "..")


def resolve(path_or_name) -> tuple[Path, str, str, str]:
    """``(path, name, source, display)`` for a path or a bundled name.

    A bare name (no path separator) that is not an existing file resolves to a bundled profile.
    """
    text = os.fspath(path_or_name)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text.strip():
        raise ProfileError("profile: '' is not a file or a bundled profile name")
    if _is_bare_name(text) and not os.path.lexists(text):
        p = bundled_path(text)
        if p is None:
            raise ProfileError(f"{text}: no such file or bundled profile (bundled: {', '.join(bundled_names())})")
        return p, p.stem, f"bundled:{p.stem}", f"bundled:{p.stem}"
    p = Path(text)
    return p, p.stem, text, text


def _file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK,
                       "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return what
    return "not a regular file"


def _read_bytes(path: Path, display: str) -> bytearray:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ProfileError(f"{display}: is a directory, not a profile file")
        if not stat.S_ISREG(st.st_mode):
            # open() on a FIFO blocks until a writer appears (forever, for `render pipe.gpx`); devices and sockets
            # are no profile either.
            raise ProfileError(f"{display}: is {_file_kind(st.st_mode)}, not a regular file: a profile must be a "
                               f"file")
        size = st.st_size
        if size > MAX_FILE_BYTES:
            raise ProfileError(f"{display}: {size} bytes is larger than the {MAX_FILE_BYTES >> 20} MiB limit")
        # O_NONBLOCK: if the file was swapped for a FIFO since the stat, open() returns at once instead of waiting
        # for a writer, and the fstat below refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb", closefd=True) as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ProfileError(f"{display}: is {_file_kind(mode)}, not a regular file: a profile must be a file")
            # One buffer of the announced size read in place, not chunks joined afterwards (which holds the
            # file twice: 480 MB for a 240 MB TCX) nor f.read(MAX_FILE_BYTES + 1) (which allocates the whole
            # 256 MiB up front for every file and fails under a tight address-space limit).  A file that grew
            # since the stat is read on in chunks, still bounded by MAX_FILE_BYTES.
            data = bytearray(size + 1)
            view = memoryview(data)
            total = 0
            while total < len(data):
                got = f.readinto(view[total:])
                if not got:
                    break
                total += got
            view.release()
            del data[total:]
            while total == size + 1 and total <= MAX_FILE_BYTES:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                data += chunk
                total += len(chunk)
        if total > MAX_FILE_BYTES:
            raise ProfileError(f"{display}: larger than the {MAX_FILE_BYTES >> 20} MiB limit")
    except FileNotFoundError:
        raise ProfileError(f"{display}: no such file") from None
    except PermissionError:
        raise ProfileError(f"{display}: permission denied") from None
    except IsADirectoryError:
        raise ProfileError(f"{display}: is a directory, not a profile file") from None
    except OSError as exc:
        raise ProfileError(f"{display}: cannot read ({exc.strerror or exc})") from None
    if not data or data.isspace():  # isspace: no copy of a 200 MB file just to test it
        raise ProfileError(f"{display}: empty file")
    return data


def load_profile(path_or_name, *, flat_pace_s_per_km=None, smoothing_m=None, use_recorded_time=None) -> Profile:
    """Load a course, workout or activity as a :class:`Profile`.

    Parameters
    ----------
    path_or_name : str or path-like
        A ``.yaml``/``.yml`` course or workout, a ``.gpx``, ``.fit`` or ``.tcx`` file, or the name of a bundled
        profile (see :func:`bundled_names`), e.g. ``"demo-descent"``.
    flat_pace_s_per_km : float, optional
        The runner's pace on the flat for the pace model (default: the file's, else 330 s/km = 5:30 min/km).
    smoothing_m : float, optional
        Grade smoothing window.  Default: 50 m for device/barometric elevation, 100 m when the elevation is noisy
        (GPS-only); authored YAML courses are not smoothed.
    use_recorded_time : bool, optional
        Use an activity's own timestamps (pauses removed) instead of the pace model.  Default: yes when every
        point has a plausible timestamp; ``True`` makes unusable timestamps an error, ``False`` always uses the
        pace model.

    Raises
    ------
    ProfileError
        For every problem with the input, as a one-line ``file: field: problem`` message.
    """
    path, name, source, display = resolve(path_or_name)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise ProfileError(f"{display}: unknown profile type {ext or '(no extension)'!r} "
                           f"(expected one of {', '.join(EXTENSIONS)})")
    data = _read_bytes(path, display)
    if smoothing_m is not None:
        try:
            smoothing_m = float(smoothing_m)
        except (TypeError, ValueError):
            raise ProfileError(f"{display}: smoothing_m: {smoothing_m!r} is not a number") from None
    kwargs = dict(name=name, source=source, display=display, flat_pace_s_per_km=flat_pace_s_per_km,
                  smoothing_m=smoothing_m, use_recorded_time=use_recorded_time)
    if ext in (".yaml", ".yml"):
        from .course import parse_yaml, profile_from_yaml
        return profile_from_yaml(parse_yaml(bytes(data), display), **kwargs)
    from .track import profile_from_track
    if ext == ".gpx":
        from .gpx import read_gpx
        raw = read_gpx(data, display)
    elif ext == ".tcx":
        from .tcx import read_tcx
        raw = read_tcx(data, display)
    else:
        from .fit import read_fit
        raw = read_fit(data, display)
    return profile_from_track(raw, **kwargs)


def read_track(path_or_name):
    """The raw points of a GPX, FIT or TCX file, in recording order (:class:`~.track.RawTrack`), not resampled.

    For replaying a recorded run as a live position feed (issue 14): the fixes keep their own timestamps, pauses
    included, where :func:`load_profile` squeezes pauses out and resamples onto a 5 m grid.

    Raises
    ------
    ProfileError
        Not a track file (YAML courses have no recorded points), or anything :func:`load_profile` refuses to read.
    """
    path, _name, _source, display = resolve(path_or_name)
    ext = path.suffix.lower()
    if ext not in (".gpx", ".fit", ".tcx"):
        raise ProfileError(f"{display}: a recorded track must be .gpx, .fit or .tcx, not {ext or '(none)'!r}")
    data = _read_bytes(path, display)
    if ext == ".gpx":
        from .gpx import read_gpx
        return read_gpx(data, display)
    if ext == ".tcx":
        from .tcx import read_tcx
        return read_tcx(data, display)
    from .fit import read_fit
    return read_fit(data, display)
