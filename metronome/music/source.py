"""The playlist as one gapless stream of frames: tracks in order, end to end, repeated until the session ends
(or once).  Deterministic: the same tracks give the same frames however the reader chunks them."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..settings import MusicSettings
from .decode import DecodedTrack, decode_track

#: Decoded tracks are kept for the next repetition while they fit in this many bytes (a short playlist on repeat
#: is decoded once; a long one is decoded again each time round, one track in memory at a time).
CACHE_BYTES = 512 << 20


class MusicSource:
    """Pull frames of the playlist: :meth:`read_into` fills a float32 [n, 2] array.

    Parameters
    ----------
    tracks : sequence of Track
        From :func:`metronome.music.playlist.resolve`.
    samplerate : int
        Output rate.
    target_lufs : float
        Every track is scaled to this integrated loudness (see :mod:`.loudness`).
    settings : MusicSettings
    max_peak : float, optional
        Peak limit of every track after its gain (the music's share of the ceiling, :class:`MusicPlan`).
    on_error : callable(str), optional
        Live play: a track that fails to decode is reported here and skipped.  Without it (render) the failure
        is raised (InputError naming the file).
    """

    def __init__(self, tracks, samplerate: int, target_lufs: float, settings: MusicSettings = MusicSettings(), *,
                 on_error=None, max_peak: float | None = None):
        if not tracks:
            raise InputError("music: no tracks given", field="music")
        self.tracks = tuple(tracks)
        self.samplerate = samplerate
        self.target_lufs = target_lufs
        self.settings = settings
        self.on_error = on_error
        self.max_peak = max_peak
        self.played: list[dict] = []  # one row per track of the first time round: path, lufs, gain_db
        self.starts = 0  # tracks started, repetitions included
        self.skipped = 0
        self._cache: dict[int, DecodedTrack] = {}
        self._cache_bytes = 0
        self._index = -1
        self._current: DecodedTrack | None = None
        self._offset = 0
        self._loops = 0
        self.ended = False

    def _decode(self, i: int) -> DecodedTrack | None:
        if i in self._cache:
            return self._cache[i]
        try:
            d = decode_track(self.tracks[i], self.samplerate, self.target_lufs, self.settings.max_gain_db,
                             self.max_peak)
        except InputError as exc:
            if self.on_error is None:
                raise
            self.on_error(str(exc))
            self.skipped += 1
            return None
        if self._cache_bytes + d.frames.nbytes <= CACHE_BYTES:
            self._cache[i] = d
            self._cache_bytes += d.frames.nbytes
        return d

    def _next_track(self) -> bool:
        """Advance to the next playable track; False at the end of the music."""
        failures = 0
        while True:
            self._index += 1
            if self._index >= len(self.tracks):
                if self.settings.once:
                    return False
                self._index = 0
                self._loops += 1
            d = self._decode(self._index)
            if d is not None and d.frames.shape[0] > 0:
                self._current, self._offset = d, 0
                self.starts += 1
                if self._loops == 0:  # one row per track, not per repetition
                    self.played.append({"path": d.track.path, "lufs": round(d.lufs, 2),
                                        "gain_db": round(20 * math.log10(d.gain), 2) if d.gain > 0 else None})
                return True
            failures += 1
            if failures >= len(self.tracks):  # nothing in the playlist decodes: no music, not a busy loop
                return False

    def read_into(self, dst: np.ndarray) -> int:
        """Fill ``dst`` (float32 [n, 2]) with the next frames; returns how many (fewer only at the end)."""
        n = dst.shape[0]
        done = 0
        while done < n and not self.ended:
            if self._current is None or self._offset >= self._current.frames.shape[0]:
                if not self._next_track():
                    self.ended = True
                    break
            src = self._current.frames
            k = min(n - done, src.shape[0] - self._offset)
            dst[done:done + k] = src[self._offset:self._offset + k]
            self._offset += k
            done += k
        return done
