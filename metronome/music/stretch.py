"""Time-stretch without changing pitch: Signalsmith Stretch (MIT, by the ``python-stretch`` package, MIT).

Signalsmith Stretch is a phase vocoder with multi-peak phase locking: at the +-10 % that ``--music-sync`` allows
it keeps pitch, transients and stereo image with no audible warble.  ``python-stretch`` offers it one whole buffer
at a time at a constant ratio (each call seeks, processes, flushes and resets, so a call's output depends on its
input alone: deterministic, whoever calls it and in whatever thread or process).

A varying ratio is therefore rendered as *pieces* (:class:`Piece`): a few beats each at a constant ratio, every
piece processed with :data:`MARGIN_S` of its neighbours' audio on each side (the stretcher's edge effects fall in
the margins) and the pieces joined by equal-gain raised-cosine crossfades of :data:`XFADE_S` centred on the piece
boundaries, which are beats landing on clicks: there both neighbours place the same input sample on the same
output sample, so the crossfade is between two nearly identical signals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MARGIN_S = 0.15
XFADE_S = 0.03


@dataclass(frozen=True)
class Piece:
    """Input ``[x0, x1)`` (fractional track samples) lands on output ``[y0, y1)`` (stream samples), linearly.

    ``fade_in``/``fade_out``: crossfade with the neighbour at that end (False at a track's own start and end).
    """

    x0: float
    x1: float
    y0: float
    y1: float
    fade_in: bool = True
    fade_out: bool = True

    @property
    def ratio(self) -> float:
        """Output length over input length (> 1: slower than the original)."""
        return (self.y1 - self.y0) / (self.x1 - self.x0)


_STRETCH = {}  # one Signalsmith processor per (process, samplerate)


def stretch_frames(frames: np.ndarray, ratio: float, out_len: int, samplerate: int) -> np.ndarray:
    """``frames`` [n, 2] stretched to exactly ``out_len`` frames [out_len, 2] (ratio ~ out_len / n)."""
    st = _STRETCH.get(samplerate)
    if st is None:
        import python_stretch as ps

        st = _STRETCH[samplerate] = ps.Signalsmith.Stretch()
        st.preset(2, float(samplerate))
    st.timeFactor = 1.0 / ratio
    y = st.process(np.ascontiguousarray(frames.T, dtype=np.float32))
    out = np.zeros((out_len, 2), dtype=np.float32)
    k = min(out_len, y.shape[1])
    out[:k] = y[:, :k].T
    return out


class Stretcher:
    """Renders pieces of one track (float32 [n, 2] at the output rate).

    In play this runs in the music worker thread.  python-stretch holds the GIL while it works (~30 ms a piece);
    that delays only Python threads (the main thread's polling, which queues cues seconds ahead), never the audio
    callback, a numba ``cfunc`` that does not enter the interpreter.
    """

    def __init__(self, samplerate: int):
        self.samplerate = samplerate
        self.margin = int(round(MARGIN_S * samplerate))
        self.xfade = max(2, int(round(XFADE_S * samplerate)))

    def stretch(self, frames: np.ndarray, ratio: float, out_len: int) -> np.ndarray:
        return stretch_frames(frames, ratio, out_len, self.samplerate)

    def render(self, track: np.ndarray, piece: Piece) -> tuple[int, np.ndarray]:
        """``(start, samples)``: the piece's weighted output, to be added at stream sample ``start``."""
        n = track.shape[0]
        r = piece.ratio
        half = self.xfade // 2
        m = self.margin
        a = int(math.floor(piece.x0)) - m
        b = int(math.ceil(piece.x1)) + m
        inp = np.zeros((b - a, 2), dtype=np.float32)
        lo, hi = max(0, a), min(n, b)
        if hi > lo:
            inp[lo - a:hi - a] = track[lo:hi]
        out_len = int(round((b - a) * r))
        y = self.stretch(inp, r, out_len)
        p0 = int(round(piece.y0 - (piece.x0 - a) * r))  # stream sample of y[0]
        # Keep [y0 - half, y1 + half) (or the hard edge without a fade) and weight the fades.
        s = int(round(piece.y0)) - (half if piece.fade_in else 0)
        e = int(round(piece.y1)) + (half if piece.fade_out else 0)
        s, e = max(s, p0), min(e, p0 + out_len)
        seg = y[s - p0:e - p0].copy()
        pos = np.arange(s, e, dtype=np.float64)
        w = np.ones(e - s, dtype=np.float64)
        if piece.fade_in:
            w *= _ramp(pos, piece.y0, self.xfade)
        if piece.fade_out:
            w *= 1.0 - _ramp(pos, piece.y1, self.xfade)
        seg *= w[:, None].astype(np.float32)
        return s, seg


def _ramp(pos: np.ndarray, centre: float, width: int) -> np.ndarray:
    """0 before ``centre - width/2``, 1 after ``centre + width/2``, a raised cosine between (sums to 1 with 1-it)."""
    u = np.clip((pos - (centre - width / 2.0)) / width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)
