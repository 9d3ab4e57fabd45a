"""Beat-matched music (``--music-sync``): every track stretched so its beats fall on the steps of the tempo map.

The plan, made once before audio starts (:func:`plan_sync`):

1. each track's beats (:mod:`.beats`, cached) give its tempo; its *meter* is the one of same time (one beat per
   step), half time (one beat per two steps) or double time (two beats per step) that needs the least stretch
   at the session's median cadence.  A track that needs more than ``max_stretch`` in every meter is left out
   (a warning names it); the others play in the order that needs the least stretching first.
2. as a track starts (at the stream position where the previous one ended), its first beat is put on the first
   click it can reach at its nominal ratio, and each following beat (every other beat in double time) on the
   click one step (two in half time) after: a phase-locked loop that aims every beat at the click nearest to
   where the current ratio takes it, the ratio clamped to ``1 +- max_stretch``.  A missed or extra beat of the
   tracker is absorbed (the next beat aims at the nearest click again), a phase error is caught up at most
   ``max_stretch`` per beat.
3. the beats are grouped :data:`PIECE_BEATS` at a time into :class:`~.stretch.Piece` s of constant ratio, which
   :class:`~.stretch.Stretcher` renders and crossfades: the ratio changes every ~1.4 s, slowly.

:class:`SyncedSource` has :class:`~.source.MusicSource`'s reading interface, so the renderer and the live worker
fill the ring from it as from plain music.  Pieces are rendered in order as the reader needs them and each piece
depends only on the plan and the track, so the stream is the same however it is read: render and play agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..settings import MusicSettings
from .stretch import Piece, Stretcher

#: (steps, music beats) per anchor: same time, half time, double time.
METERS = ((1, 1), (2, 1), (1, 2))
METER_NAMES = {(1, 1): "same", (2, 1): "half", (1, 2): "double"}
PIECE_BEATS = 4
MAX_PIECE_S = 3.0
#: Clicks are continued at the last tempo this far past the tempo map's end (the music runs into the tail).
CLICKS_PAST_END_S = 600.0
#: Stretched music may peak higher than its source (a phase vocoder does not keep peaks): this much headroom
#: under the plan's peak limit, and anything still above the limit is clipped to it.
SYNC_HEADROOM_DB = 3.0


@dataclass(frozen=True)
class TrackSync:
    """A track's tempo and meter against the session's cadence."""

    index: int  # in the resolved track list
    tempo_bpm: float
    beats_s: np.ndarray
    steps: int
    beats: int
    ratio: float  # nominal stretch (output / input length) at the median cadence

    @property
    def meter(self) -> str:
        return METER_NAMES[(self.steps, self.beats)]


@dataclass(frozen=True)
class SyncPlan:
    """Tracks in play order with their meters, the clicks (absolute samples), and what was left out."""

    tracks: tuple  # TrackSync, in play order
    clicks: np.ndarray  # float64 absolute sample of every step click, continued past the tempo map's end
    max_stretch: float
    start_sample: int = 0
    left_out: tuple = ()  # (path, tempo_bpm, least stretch needed)


def best_meter(tempo_bpm: float, step_bpm: float) -> tuple[int, int, float]:
    """``(steps, beats, ratio)`` of the meter needing the least stretch: ratio = steps x tempo / (beats x cadence)."""
    best = None
    for steps, beats in METERS:
        ratio = steps * tempo_bpm / (beats * step_bpm)
        if best is None or abs(math.log(ratio)) < abs(math.log(best[2])):
            best = (steps, beats, ratio)
    return best


def session_clicks(tempo_map, past_end_s: float = CLICKS_PAST_END_S) -> np.ndarray:
    """Every click sample of the tempo map, continued at its last tempo ``past_end_s`` past its end."""
    c = tempo_map.beat_samples().astype(np.float64)
    sr = tempo_map.samplerate
    last_bpm = float(tempo_map.bpm_at(tempo_map.end_sample))
    period = 60.0 * sr / last_bpm
    first = c[-1] + period if c.size else 0.0
    extra = first + period * np.arange(int(past_end_s * sr / period) + 1)
    return np.concatenate([c, np.round(extra)])


def plan_sync(tracks, tempo_map, settings: MusicSettings = MusicSettings(), start_sample: int = 0,
              analyse=None, warn=None) -> SyncPlan:
    """Analyse every track (cached), pick its meter, order them, and fix the clicks (see the module docstring).

    Raises InputError (field ``music_sync``) when no track can be synced within ``settings.max_stretch``.
    """
    from .beats import analyse as default_analyse, require_librosa

    if analyse is None:
        require_librosa()
        analyse = default_analyse
    clicks = session_clicks(tempo_map)
    sr = tempo_map.samplerate
    span = tempo_map.beat_times()
    step_bpm = float(np.median(60.0 * sr / np.diff(span))) if span.size > 2 else float(tempo_map.bpm[0])
    lim = settings.max_stretch
    synced, left_out = [], []
    for i, t in enumerate(tracks):
        b = analyse(t.path)
        if b.tempo_bpm <= 0:
            left_out.append((t.path, 0.0, math.inf))
            continue
        steps, beats, ratio = best_meter(b.tempo_bpm, step_bpm)
        if abs(ratio - 1.0) > lim:
            left_out.append((t.path, b.tempo_bpm, ratio))
            continue
        synced.append(TrackSync(i, b.tempo_bpm, b.times_s, steps, beats, ratio))
    for path, tempo, ratio in left_out:
        if warn is not None:
            what = "no steady beat found" if tempo <= 0 else (
                f"{tempo:.1f} bpm needs {100 * (ratio - 1):+.0f} % to meet {step_bpm:.0f} spm")
            warn(f"--music-sync: {path}: {what} (more than +-{100 * lim:.0f} %): left out")
    if not synced:
        raise InputError(f"music_sync: no track can follow {step_bpm:.0f} spm within +-{100 * lim:.0f} % "
                         "(same, half or double time)", field="music_sync")
    synced.sort(key=lambda s: abs(math.log(s.ratio)))  # stable: equal needs keep the playlist's order
    return SyncPlan(tuple(synced), clicks, lim, int(start_sample), tuple(left_out))


def plan_track(beat_x: np.ndarray, n_frames: int, steps: int, beats: int, clicks: np.ndarray, pos: float,
               lim: float, nominal: float, max_piece: float) -> list[Piece]:
    """The pieces of one track starting no earlier than stream sample ``pos`` (``clicks`` in stream samples).

    ``beat_x``: its beats in track samples at the output rate; ``max_piece``: longest piece, output samples.
    """
    lo, hi = 1.0 - lim, 1.0 + lim
    ax = np.asarray(beat_x, dtype=np.float64)[::beats]
    ax = ax[(ax >= 0) & (ax < n_frames)]
    r0 = min(max(nominal, lo), hi)
    if ax.size < 2:
        return [Piece(0.0, float(n_frames), pos, pos + n_frames * r0, False, False)]
    i = int(np.searchsorted(clicks, pos + ax[0] * r0))
    i = min(i, clicks.size - 1)
    xs, ys = [float(ax[0])], [float(clicks[i])]
    for x_next in ax[1:]:
        L = float(x_next) - xs[-1]
        j = min(max(int(np.searchsorted(clicks, ys[-1], side="right")) - 1, 0), clicks.size - 2)
        r_pred = min(max(steps * (clicks[j + 1] - clicks[j]) / L, lo), hi)
        pred = ys[-1] + L * r_pred
        t = int(np.searchsorted(clicks, pred))
        if t >= clicks.size:
            t = clicks.size - 1
        elif t > 0 and pred - clicks[t - 1] < clicks[t] - pred:
            t -= 1
        r = min(max((clicks[t] - ys[-1]) / L, lo), hi)
        xs.append(float(x_next))
        ys.append(ys[-1] + L * r)
    last_r = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    # The intro at the nominal ratio: the first click was chosen so that it starts at or after ``pos``.
    bounds = [(0.0, ys[0] - xs[0] * r0)]
    for k in range(0, len(xs) - 1, PIECE_BEATS):
        bounds.append((xs[k], ys[k]))
    bounds.append((xs[-1], ys[-1]))
    bounds.append((float(n_frames), ys[-1] + (n_frames - xs[-1]) * last_r))
    pieces = []
    for (x0, y0), (x1, y1) in zip(bounds[:-1], bounds[1:]):
        if x1 - x0 < 1.0:
            continue
        parts = max(1, int(math.ceil((y1 - y0) / max_piece)))
        for p in range(parts):
            a, b = p / parts, (p + 1) / parts
            pieces.append(Piece(x0 + (x1 - x0) * a, x0 + (x1 - x0) * b, y0 + (y1 - y0) * a, y0 + (y1 - y0) * b))
    if pieces:  # a track's own start and end are hard edges (its file has its own fades)
        f = pieces[0]
        pieces[0] = Piece(f.x0, f.x1, f.y0, f.y1, False, f.fade_out)
        la = pieces[-1]
        pieces[-1] = Piece(la.x0, la.x1, la.y0, la.y1, la.fade_in, False)
    return pieces


class SyncedSource:
    """The synced playlist as one stream, read like :class:`~.source.MusicSource` (:meth:`read_into`)."""

    def __init__(self, base, sync: SyncPlan, samplerate: int, max_peak: float | None = None):
        self.base = base  # a MusicSource over the resolved tracks: decoding, loudness, its cache and errors
        self.sync = sync
        self.samplerate = samplerate
        self.max_peak = max_peak
        self.stretcher = Stretcher(samplerate)
        self.clicks = sync.clicks - sync.start_sample
        self._rows: dict[int, dict] = {}
        self.starts = 0
        self.ended = False
        self._order = -1
        self._loops = 0
        self._pieces: list[Piece] = []
        self._track = None
        self._acc = np.zeros((1 << 16, 2), dtype=np.float32)
        self._acc0 = 0  # stream sample of _acc[0]
        self._cursor = 0  # next stream sample to read
        self._final = 0  # samples before this are complete
        self._end = 0  # stream sample where the current track's output ends

    @property
    def played(self) -> list[dict]:
        return [self._rows[k] for k in sorted(self._rows, key=lambda k: self._rows[k]["order"])]

    @property
    def skipped(self) -> int:
        return self.base.skipped

    def _room(self, until: int) -> None:
        """Make ``_acc`` cover ``[_cursor, until)`` (dropping what was read; new rows are zero)."""
        if until - self._acc0 <= self._acc.shape[0]:
            return
        keep = self._acc[self._cursor - self._acc0:]
        cap = max(self._acc.shape[0], 2 * (until - self._cursor))
        new = np.zeros((cap, 2), dtype=np.float32)
        new[:keep.shape[0]] = keep
        self._acc, self._acc0 = new, self._cursor

    def _next_track(self) -> bool:
        tracks = self.sync.tracks
        failures = 0
        while True:
            self._order += 1
            if self._order >= len(tracks):
                if self.base.settings.once:
                    return False
                self._order, self._loops = 0, self._loops + 1
            ts = tracks[self._order]
            d = self.base._decode(ts.index)
            if d is None or d.frames.shape[0] == 0:
                failures += 1
                if failures >= len(tracks):
                    return False
                continue
            beat_x = ts.beats_s * self.samplerate
            pieces = plan_track(beat_x, d.frames.shape[0], ts.steps, ts.beats, self.clicks, float(self._end),
                                self.sync.max_stretch, ts.ratio, MAX_PIECE_S * self.samplerate)
            self._track, self._pieces = d.frames, pieces
            self.starts += 1
            ratios = [p.ratio for p in pieces]
            row = self._rows.setdefault(ts.index, {
                "order": self._order, "path": d.track.path, "lufs": round(d.lufs, 2),
                "gain_db": round(20 * math.log10(d.gain), 2) if d.gain > 0 else None,
                "tempo_bpm": round(ts.tempo_bpm, 2), "meter": ts.meter, "stretch_min": math.inf,
                "stretch_max": -math.inf})
            row["stretch_min"] = round(float(min(row["stretch_min"], min(ratios))), 4)
            row["stretch_max"] = round(float(max(row["stretch_max"], max(ratios))), 4)
            return True

    def _render_next(self) -> bool:
        """Render the next piece into ``_acc`` (starting the next track when needed); False at the end."""
        if not self._pieces:
            if not self._next_track():
                return False
        piece = self._pieces.pop(0)
        start, seg = self.stretcher.render(self._track, piece)
        if self.max_peak is not None:
            np.clip(seg, -self.max_peak, self.max_peak, out=seg)
        if start < self._final:  # never into what was already read (a rounding sample at most)
            seg, start = seg[self._final - start:], self._final
        self._room(start + seg.shape[0])
        a = start - self._acc0
        self._acc[a:a + seg.shape[0]] += seg[:self._acc.shape[0] - a]
        end = start + seg.shape[0]
        if piece.fade_out:
            self._final = int(round(piece.y1)) - self.stretcher.xfade // 2
        else:
            self._final = end
            self._end = end
            self._track = None
        return True

    def read_into(self, dst: np.ndarray) -> int:
        """Fill ``dst`` (float32 [n, 2]) with the next frames; returns how many (fewer only at the end)."""
        n = dst.shape[0]
        done = 0
        while done < n and not self.ended:
            if self._cursor >= self._final:
                if not self._render_next():
                    self.ended = True
                    break
                continue
            k = min(n - done, self._final - self._cursor)
            a = self._cursor - self._acc0
            dst[done:done + k] = self._acc[a:a + k]
            self._cursor += k
            done += k
        return done
