"""Where the beats of a track are (``--music-sync``): librosa's beat tracker, run once per file and cached.

librosa (ISC licence) finds the beats in two steps: an onset-strength envelope (spectral flux of a mel
spectrogram) and Ellis's dynamic-programming tracker (2007, J New Music Res 36:51), which picks onsets spaced
close to one global tempo.  It runs on a mono mixdown resampled to :data:`ANALYSIS_RATE` with a hop of
:data:`HOP` samples (5.8 ms frames).  Tracker output is then smoothed (:func:`smooth_beats`): a local straight-line
fit over a few beats removes the frame quantisation and the tracker's jitter, so the stretch ratio that follows
from them changes slowly instead of beat by beat.

The result is cached by the file's content hash in ``$XDG_CACHE_HOME/downbeat/beats`` (one small JSON per track):
the first analysis of a 5-minute track costs a few seconds, later sessions none.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, require_modules

ANALYSIS_RATE = 22050
HOP = 128
#: Bump when the analysis changes: old cache entries are then ignored.
ANALYSIS_VERSION = 1
SMOOTH_BEATS = 4  # each beat is re-estimated from a line through it and this many neighbours on each side


@dataclass(frozen=True)
class Beats:
    """Beat times of one track (seconds from its first sample) and its median tempo."""

    times_s: np.ndarray
    tempo_bpm: float

    @property
    def period_s(self) -> float:
        return 60.0 / self.tempo_bpm


def cache_dir(environ=os.environ) -> str:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "downbeat", "beats")


def file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def require_librosa() -> None:
    """librosa and python-stretch come with the ``musicsync`` extra; say so instead of a traceback."""
    require_modules(("librosa", "python_stretch"), "musicsync", "music_sync")


def track_beats(mono: np.ndarray, samplerate: int) -> np.ndarray:
    """Beat times (s) that librosa's tracker finds in ``mono`` (float, any rate), unsmoothed."""
    import librosa
    import soxr

    y = np.ascontiguousarray(mono, dtype=np.float32)
    if samplerate != ANALYSIS_RATE:
        y = soxr.resample(y, samplerate, ANALYSIS_RATE, quality="HQ").astype(np.float32)
    env = librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=HOP)
    _, frames = librosa.beat.beat_track(onset_envelope=env, sr=ANALYSIS_RATE, hop_length=HOP, units="frames")
    return librosa.frames_to_time(np.asarray(frames), sr=ANALYSIS_RATE, hop_length=HOP).astype(np.float64)


def smooth_beats(times_s: np.ndarray, half_width: int = SMOOTH_BEATS) -> np.ndarray:
    """Each beat replaced by a least-squares line through its 2 x ``half_width`` + 1 neighbours, at its index.

    Beats of steady music lie on a line in (index, time); the fit keeps slow tempo drift and removes jitter.
    """
    t = np.asarray(times_s, dtype=np.float64)
    n = t.size
    if n < 3:
        return t.copy()
    out = np.empty(n)
    idx = np.arange(n, dtype=np.float64)
    for i in range(n):
        a, b = max(0, i - half_width), min(n, i + half_width + 1)
        x, y = idx[a:b], t[a:b]
        xm, ym = x.mean(), y.mean()
        slope = float(np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2))
        out[i] = ym + slope * (i - xm)
    # Never out of order (a fit at a tempo jump could cross): keep strictly increasing.
    for i in range(1, n):
        if out[i] <= out[i - 1]:
            out[i] = out[i - 1] + 1e-3
    return out


def _analyse(path: str) -> Beats:
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"{path}: cannot decode ({' '.join(str(exc).split())[:120]})", field="music") from None
    times = track_beats(data.mean(axis=1), sr)
    if times.size < 4:
        return Beats(times, 0.0)
    # Rounded as the cache stores them: a fresh analysis and a cached one give the same session, bit for bit.
    times = np.round(smooth_beats(times), 6)
    return Beats(times, round(60.0 / float(np.median(np.diff(times))), 6))


def analyse(path: str, use_cache: bool = True, environ=os.environ) -> Beats:
    """The beats of the audio file ``path`` (from the cache when this content was analysed before).

    ``tempo_bpm`` is 0 when fewer than 4 beats are found (no steady beat: the track cannot be synced).
    """
    key = None
    folder = cache_dir(environ)
    if use_cache:
        try:
            key = file_hash(path)
            with open(os.path.join(folder, key + ".json"), encoding="utf-8") as fh:
                doc = json.load(fh)
            if doc.get("version") == ANALYSIS_VERSION:
                return Beats(np.asarray(doc["times_s"], dtype=np.float64), float(doc["tempo_bpm"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    beats = _analyse(path)
    if key is not None:
        try:
            from ..atomic import atomic_file

            os.makedirs(folder, exist_ok=True)
            with atomic_file(os.path.join(folder, key + ".json")) as fh:
                json.dump({"version": ANALYSIS_VERSION, "tempo_bpm": beats.tempo_bpm,
                           "times_s": [round(float(t), 6) for t in beats.times_s]}, fh)
        except OSError:
            pass  # no cache: the next session analyses again
    return beats


def alignment_ms(audio: np.ndarray, samplerate: int, clicks: np.ndarray) -> np.ndarray:
    """Signed distance (ms) from each beat the tracker finds in ``audio`` to the nearest click sample.

    The check of ``--music-sync``: run on the music alone (``--clicks off``, no cues), the beats found in the
    output should sit on the clicks.
    """
    x = np.asarray(audio, dtype=np.float32)
    found = track_beats(x.mean(axis=1) if x.ndim == 2 else x, samplerate) * samplerate
    c = np.sort(np.asarray(clicks, dtype=np.float64))
    if found.size == 0 or c.size == 0:
        return np.zeros(0)
    j = np.clip(np.searchsorted(c, found), 1, c.size - 1)
    near = np.where(np.abs(found - c[j - 1]) <= np.abs(c[j] - found), c[j - 1], c[j])
    return (found - near) * 1000.0 / samplerate
