"""``--music PATH...`` -> the ordered list of audio files to play (files, folders, M3U/M3U8 and PLS playlists).

Only local files: a playlist entry that is a URL (``http://...``) is refused with its line, not fetched.  Every
track is checked up front from its header (:func:`soundfile.info`), so a bad file is one line and exit 2 before
the session starts, never a gap in the middle of a run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from ..errors import InputError

#: What a folder contributes (libsndfile 1.2 decodes these; Opus and Vorbis live in Ogg containers).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".w64", ".caf")
PLAYLIST_EXTENSIONS = (".m3u", ".m3u8", ".pls")
MAX_PLAYLIST_BYTES = 1 << 20  # a playlist of 10 000 entries is ~1 MB
MAX_TRACKS = 10000
MAX_DEPTH = 4  # playlists that name playlists


@dataclass(frozen=True)
class Track:
    """One file of the playlist, with what its header says."""

    path: str
    samplerate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.samplerate


def _natural_key(name: str):
    """Track 2 before track 10 (file managers and players sort this way)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _folder(path: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort(key=_natural_key)
        for f in sorted(files, key=_natural_key):
            if f.lower().endswith(AUDIO_EXTENSIONS) and not f.startswith("."):
                found.append(os.path.join(root, f))
    if not found:
        raise InputError(f"{path}: no audio files in this folder ({', '.join(AUDIO_EXTENSIONS)})", field="music")
    return found


def _entry_path(entry: str, base: str, where: str) -> str:
    if entry.lower().startswith("file://"):
        entry = unquote(urlparse(entry).path)
    elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", entry):
        raise InputError(f"{where}: {entry[:80]!r} is a URL; only local files can be played", field="music")
    entry = os.path.expanduser(entry)
    return entry if os.path.isabs(entry) else os.path.normpath(os.path.join(base, entry))


def _read_playlist(path: str) -> list[tuple[str, str]]:
    """(entry path, 'playlist:line') of an M3U/M3U8 or PLS file, in play order."""
    try:
        size = os.path.getsize(path)
        if size > MAX_PLAYLIST_BYTES:
            raise InputError(f"{path}: playlist is {size} bytes, more than {MAX_PLAYLIST_BYTES}", field="music")
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read playlist ({exc.strerror or exc})", field="music") from None
    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    base = os.path.dirname(os.path.abspath(path))
    out = []
    if path.lower().endswith(".pls"):
        entries = {}
        for n, line in enumerate(text.splitlines(), 1):
            m = re.match(r"^\s*File(\d+)\s*=\s*(.*?)\s*$", line, re.IGNORECASE)
            if m:
                entries[int(m.group(1))] = (m.group(2), n)
        if not entries:
            raise InputError(f"{path}: no FileN= entries (not a PLS playlist?)", field="music")
        for k in sorted(entries):
            entry, n = entries[k]
            out.append((_entry_path(entry, base, f"{path}:{n}"), f"{path}:{n}"))
        return out
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append((_entry_path(line, base, f"{path}:{n}"), f"{path}:{n}"))
    if not out:
        raise InputError(f"{path}: the playlist names no files", field="music")
    return out


def _expand(path: str, where: str, depth: int, out: list[tuple[str, str]]) -> None:
    if len(out) > MAX_TRACKS:
        raise InputError(f"{where}: more than {MAX_TRACKS} tracks", field="music")
    if os.path.isdir(path):
        out.extend((p, p) for p in _folder(path))
    elif path.lower().endswith(PLAYLIST_EXTENSIONS):
        if not os.path.isfile(path):
            raise InputError(f"{where}: {path}: no such playlist", field="music")
        if depth >= MAX_DEPTH:
            raise InputError(f"{where}: playlists nested more than {MAX_DEPTH} deep", field="music")
        for entry, at in _read_playlist(path):
            _expand(entry, at, depth + 1, out)
    elif os.path.isfile(path):
        out.append((path, where))
    else:
        what = f"{where}: {path}" if where != path else path
        raise InputError(f"{what}: no such file or folder", field="music")


def resolve(paths, max_track_s: float | None = None) -> tuple[Track, ...]:
    """The tracks named by ``--music`` arguments, in play order, each checked from its header.

    Raises
    ------
    InputError
        Naming the argument (or the playlist and line) that is missing, unreadable or not audio.
    """
    import soundfile as sf

    expanded: list[tuple[str, str]] = []
    for p in paths:
        _expand(os.path.expanduser(str(p)), str(p), 0, expanded)
    if not expanded:
        raise InputError("music: no tracks given", field="music")
    tracks = []
    for path, where in expanded:
        label = path if where == path else f"{where}: {path}"
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            detail = " ".join(str(exc).split())[:120]
            raise InputError(f"{label}: not an audio file Downbeat can decode ({detail})", field="music") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise InputError(f"{label}: holds no audio", field="music")
        dur = info.frames / info.samplerate
        if max_track_s is not None and dur > max_track_s:
            raise InputError(f"{label}: {dur / 60:.0f} min long, more than the {max_track_s / 60:.0f} min a track "
                             "may last (each track is decoded whole)", field="music")
        tracks.append(Track(os.path.abspath(path), int(info.samplerate), int(info.channels), int(info.frames)))
    return tuple(tracks)
