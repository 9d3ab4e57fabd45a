"""Files Downbeat writes: size and time estimates, free-space checks, outputs that would overwrite inputs, write
failures (a full disk) and the temporary files of renders that were killed.

Everything here is bad input or the user's environment: :class:`~metronome.errors.InputError`, one line naming the
file, exit 2.  Notes and warnings are returned as strings for the CLI to print.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from dataclasses import dataclass

from .errors import InputError

# RIFF/WAVE keeps chunk sizes in unsigned 32-bit fields (Microsoft/IBM RIFF spec, 1991), so the whole file must stay
# under 4 GiB.  The margin leaves room for the header chunks libsndfile writes around the data (fmt, fact, PEAK;
# well under 1 KiB).  Above it the renderer writes RF64 (EBU Tech 3306: WAV with 64-bit sizes, same .wav name).
WAV_MAX_DATA_BYTES = 2 ** 32 - 1 - 65536

# Compressed sizes, as a fraction of the PCM data: measured on this project's own output (clicks, mostly silence,
# plus speech cues), `downbeat render demo-descent -o demo.flac|.ogg` at 48 kHz and a 5 km course at 96 kHz:
# FLAC 0.021-0.027, Ogg Vorbis 0.0034-0.0072 of PCM_16.  Rounded up (an estimate, not a promise).
COMPRESSED_RATIO = {"FLAC": 0.03, "OGG": 0.01}
BYTES_PER_SAMPLE = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4, "VORBIS": 2}
# Render speed in frames per second of wall time, for the time estimate only: WAV/PCM from benchmarks/README.md
# section 1 (whole process 1128-2231x real time at 48 kHz, ~50-100 M frames/s); FLAC and OGG measured on this 2-core
# VM with `downbeat render demo-descent --json` (FLAC 1000x, Vorbis 224x real time at 48 kHz).  Low ends, rounded.
FRAMES_PER_S = {"WAV": 50e6, "RF64": 50e6, "FLAC": 40e6, "OGG": 10e6}
EVENT_ROW_BYTES = 48  # "beat,123456789,2572.016563,176.8000,normal\r\n" is 44 bytes
# Above either, say how big and how long before starting (a 999 km course is a 92 h, 64 GB WAV).
LARGE_BYTES = 1e9
LARGE_AUDIO_S = 2 * 3600.0


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


@dataclass(frozen=True)
class OutputEstimate:
    """What a render will write, computed before it starts.

    Attributes
    ----------
    container : str
        libsndfile format actually written: ``WAV``, ``RF64`` (a .wav over 4 GiB), ``FLAC`` or ``OGG``.
    audio_bytes, events_bytes : int
        Estimated sizes (exact for WAV/RF64 data, a measured ratio for FLAC/OGG).
    audio_s, render_s : float
        Length of the audio; rough wall time of the render.
    warnings : tuple of str
    """

    container: str
    audio_bytes: int
    events_bytes: int
    audio_s: float
    render_s: float
    warnings: tuple = ()

    @property
    def large(self) -> bool:
        return self.audio_bytes + self.events_bytes > LARGE_BYTES or self.audio_s > LARGE_AUDIO_S

    def note(self, path) -> str:
        return (f"{path} will hold {fmt_hours(self.audio_s)} of audio, about {fmt_bytes(self.audio_bytes)}; "
                f"rendering takes about {fmt_hours(max(self.render_s, 1.0))} (Ctrl-C stops it cleanly)")


def estimate(path, fmt: str, subtype: str, frames: int, samplerate: int, channels: int, *, beats: float = 0.0,
             events: bool = False) -> OutputEstimate:
    """Size and time of a render of ``frames`` frames to ``path`` (``fmt``/``subtype`` from ``output_format``)."""
    pcm = int(frames) * int(channels) * BYTES_PER_SAMPLE.get(subtype, 4)
    container, warnings = fmt, []
    if fmt == "WAV" and pcm > WAV_MAX_DATA_BYTES:
        container = "RF64"
        warnings.append(f"{path}: {fmt_bytes(pcm)} is more than the 4 GiB a WAV file can hold; writing RF64 "
                        "(EBU Tech 3306, a .wav with 64-bit sizes: ffmpeg, sox, Audacity and libsndfile read it, some "
                        "players do not; .flac is about 30x smaller)")
    audio = int(pcm * COMPRESSED_RATIO.get(fmt, 1.0)) + 4096
    ev = int(beats * EVENT_ROW_BYTES) + 64 if events else 0
    return OutputEstimate(container, audio, ev, frames / samplerate, frames / FRAMES_PER_S.get(container, 10e6),
                          tuple(warnings))


def check_free_space(needs: dict) -> None:
    """``needs``: {output path: bytes}.  InputError if a folder cannot hold what is to be written in it."""
    per_folder: dict[str, list] = {}
    for path, n in needs.items():
        folder = os.path.dirname(os.path.abspath(path))
        per_folder.setdefault(folder, []).append((path, n))
    for folder, items in per_folder.items():
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue  # a missing folder is reported by the writer, with its own message
        total = sum(n for _, n in items)
        if total > free:
            path = max(items, key=lambda it: it[1])[0]
            raise InputError(f"{path}: needs about {fmt_bytes(total)} but only {fmt_bytes(free)} is free in "
                             f"{folder!r}; free some space or write elsewhere" +
                             ("" if str(path).lower().endswith((".flac", ".ogg")) else " (.flac is ~30x smaller)"))


# ----------------------------------------------------------------------------------------------------------------
# Outputs that are inputs
# ----------------------------------------------------------------------------------------------------------------
MAX_PACK_FILES = 10_000  # a voice pack holds a few dozen recordings; do not walk a whole disk given by mistake


def input_files(profile_spec=None, voice_pack=None) -> list[str]:
    """The files a session reads: the profile (a path or a bundled name) and every file of the voice pack."""
    found = []
    if profile_spec:
        if os.path.exists(str(profile_spec)):
            found.append(str(profile_spec))
        else:
            try:
                from profiles.loader import bundled_path

                p = bundled_path(str(profile_spec))
                if p is not None:
                    found.append(str(p))
            except Exception:  # a bad name is reported by the loader, with its own message
                pass
    if voice_pack and os.path.isdir(str(voice_pack)):
        n = 0
        for root, _dirs, files in os.walk(str(voice_pack)):
            for name in files:
                found.append(os.path.join(root, name))
                n += 1
            if n >= MAX_PACK_FILES:
                break
    return found


def _same(a, b) -> bool:
    try:
        return os.path.samefile(a, b)  # same inode: the same path, a symlink or a hard link
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting_inputs(outputs, inputs) -> None:
    """``outputs``: (flag, path) pairs (path may be None).  InputError if one is an input or another output."""
    outs = [(flag, str(p)) for flag, p in outputs if p]
    for flag, path in outs:
        for src in inputs:
            if _same(path, src):
                raise InputError(f"{flag}: {path!r} is an input of this session ({src}); writing it would destroy "
                                 "it; give the output its own name")
    for i, (flag, path) in enumerate(outs):
        for flag2, path2 in outs[i + 1:]:
            if _same(path, path2):
                raise InputError(f"{flag2}: {path2!r} is also the {flag} file; give each output its own name")


# ----------------------------------------------------------------------------------------------------------------
# Write failures
# ----------------------------------------------------------------------------------------------------------------
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


def write_error(path, exc: BaseException, detail: str = "") -> InputError:
    """One-line InputError for a failed write of ``path`` (``detail``: libsndfile's own error text, if any)."""
    folder = os.path.dirname(os.path.abspath(str(path)))
    code = getattr(exc, "errno", None)
    text = f"{detail} {exc}"
    full = code in _FULL or "No space left" in text or "quota" in text.lower()
    if not full and not isinstance(exc, OSError):
        try:  # libsndfile says only "System error." in the exception; an empty disk says the rest
            full = shutil.disk_usage(folder).free < 1 << 20
        except OSError:
            pass
    if full:
        return InputError(f"{path}: no space left on device in {folder!r} (an earlier file of that name is kept; "
                          "free some space or write elsewhere)")
    why = getattr(exc, "strerror", None) or detail or str(exc) or type(exc).__name__
    return InputError(f"{path}: cannot write: {' '.join(str(why).split())}")


# ----------------------------------------------------------------------------------------------------------------
# Temporary files of killed renders
# ----------------------------------------------------------------------------------------------------------------
PARTIAL_PREFIX = ".downbeat-"
PARTIAL_SUFFIX = ".partial"
# ".downbeat-<pid>-<random><ext>.partial"; older versions wrote ".downbeat-<random><ext>.partial" (no pid).
_PARTIAL_RE = re.compile(r"^\.downbeat-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+(?:\.\w+)?\.partial$")
# A live render writes its temporary every block (well under a second apart, benchmarks/README.md section 1): an
# old-style partial untouched for an hour belongs to no running render.
LEGACY_STALE_S = 3600.0


def partial_prefix() -> str:
    return f"{PARTIAL_PREFIX}{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a pid we cannot ask about): leave its file alone
    return True


def clean_stale_partials(folder) -> list[str]:
    """Remove the temporary files that killed renders (SIGKILL, power loss) left in ``folder``.

    A temporary carries its writer's pid; it is removed when that process is gone.  Returns one line per folder
    with what was removed (for the CLI to print), or an empty list.
    """
    removed, freed = [], 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now = time.time()
    for e in entries:
        m = _PARTIAL_RE.match(e.name)
        if not m:
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not e.is_file(follow_symlinks=False):
                continue
            pid = m.group("pid")
            stale = (not _pid_alive(int(pid))) if pid else now - st.st_mtime > LEGACY_STALE_S
            if stale:
                os.unlink(e.path)
                removed.append(e.name)
                freed += st.st_size
        except OSError:
            continue
    if not removed:
        return []
    names = ", ".join(removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
    return [f"removed {len(removed)} temporary file(s) left in {folder!r} by renders that were killed "
            f"({names}; {fmt_bytes(freed)})"]
