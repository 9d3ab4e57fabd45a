"""Tap calibration: the output offset of a device no cable can loop back (headphones, Bluetooth).

The user taps a key along with steady clicks.  Each tap is paired with the nearest click; after a warm-up (people
need a few beats to lock on) the tap-minus-click offsets are robustly averaged: outliers beyond
:data:`MAD_K` scaled median absolute deviations are dropped (Leys et al., "Detecting outliers: do not use standard
deviation around the mean, use absolute deviation around the median", J. Exp. Soc. Psych. 49, 2013, recommend 2.5
to 3), and the median of the rest is the offset.

What the offset contains: everything between the kernel producing a click's first sample and the key press --
the stream's buffering, the device (a Bluetooth codec adds 100-300 ms), and the person.  People tapping along a
metronome tap 20-60 ms *before* the click on average ("negative mean asynchrony", Repp, "Sensorimotor
synchronization: a review of the tapping literature", Psychon. Bull. Rev. 12, 2005), so a tap offset is an
estimate of the device latency minus that anticipation; it is the figure the runner's own feet will show.

:func:`tap_offset` is pure logic (times in, result out).  :func:`run_tap_session` is the thin interactive part:
clicks from :class:`metronome.engine.LivePlayer`, keys from stdin in cbreak mode, both on the monotonic clock.
"""

from __future__ import annotations

import dataclasses
import os
import select
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: Clicks ignored at the start while the user locks on (Repp 2005: synchronization settles within ~3-5 taps).
WARMUP_CLICKS = 4
#: Outlier cut in scaled MAD units (Leys et al. 2013: 3 is "very conservative", 2.5 "moderately").
MAD_K = 3.0
#: MAD -> standard deviation for normal data (1 / Phi^-1(3/4)).
MAD_SCALE = 1.4826
#: Floor of the outlier cut: with perfectly steady synthetic taps the MAD is 0 and nothing may be dropped for a
#: 0.1 ms difference (a key scan is ~1 ms anyway).
MIN_CUT_S = 0.002
#: Fewer kept taps than this give no offset (the median of a handful of taps is ~10 ms uncertain).
MIN_TAPS = 8


@dataclass(frozen=True)
class TapResult:
    """Attributes: ``offset_s`` (median tap - click), ``taps_used``, ``taps_dropped`` (outliers + unpaired),
    ``mad_s`` (median absolute deviation of the kept offsets), ``warnings`` (one line each)."""

    offset_s: float
    taps_used: int
    taps_dropped: int
    mad_s: float
    warnings: tuple = ()

    def record(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("warnings")
        return d


def tap_offset(click_times_s, tap_times_s, warmup_clicks: int = WARMUP_CLICKS, mad_k: float = MAD_K,
               min_taps: int = MIN_TAPS) -> TapResult:
    """Offset of taps relative to clicks (positive: taps come after the clicks).

    Parameters
    ----------
    click_times_s : array_like
        Times the clicks were produced, increasing, on the same clock as the taps.
    tap_times_s : array_like
        Key-press times.
    warmup_clicks : int
        Taps nearest to the first ``warmup_clicks`` clicks are ignored.

    Raises
    ------
    InputError
        Fewer than ``min_taps`` usable taps (the message says how many there were).
    """
    clicks = np.asarray(click_times_s, dtype=np.float64)
    taps = np.sort(np.asarray(tap_times_s, dtype=np.float64))
    if clicks.ndim != 1 or clicks.size < 2 or not np.all(np.diff(clicks) > 0):
        raise InputError("click_times_s: need at least 2 increasing click times")
    if taps.size == 0:
        raise InputError("tap_times_s: no taps")
    # Nearest click to each tap (a tap can only answer one click: half an interval either side).
    j = np.clip(np.searchsorted(clicks, taps), 1, clicks.size - 1)
    left, right = clicks[j - 1], clicks[j]
    nearest = np.where(taps - left <= right - taps, j - 1, j)
    d = taps - clicks[nearest]
    keep = nearest >= warmup_clicks
    # Two taps for one click (a double press): keep the one closer to the click's others -> first pass median.
    d, nearest = d[keep], nearest[keep]
    unpaired = int(np.count_nonzero(~keep))
    if d.size:
        order = np.argsort(np.abs(d - np.median(d)), kind="stable")
        _, first = np.unique(nearest[order], return_index=True)
        chosen = np.sort(order[first])
        unpaired += d.size - chosen.size
        d = d[chosen]
    if d.size < min_taps:
        raise InputError(f"taps: {d.size} usable taps after the {warmup_clicks}-click warm-up, need {min_taps}")
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med)))
    cut = max(mad_k * MAD_SCALE * mad, MIN_CUT_S)
    inl = np.abs(d - med) <= cut
    kept = d[inl]
    if kept.size < min_taps:
        raise InputError(f"taps: only {kept.size} taps agree with each other (of {d.size}), need {min_taps}")
    off = float(np.median(kept))
    mad_kept = float(np.median(np.abs(kept - off)))
    warnings = []
    interval = float(np.median(np.diff(clicks)))
    if abs(off) > 0.4 * interval:
        warnings.append(f"tap offset {off * 1000:.0f} ms is close to half the click interval "
                        f"({interval * 1000:.0f} ms): taps may be paired with the wrong click; try a slower tempo")
    if mad_kept > 0.03:
        warnings.append(f"taps are unsteady (MAD {mad_kept * 1000:.0f} ms): the offset is uncertain; tap again")
    return TapResult(offset_s=off, taps_used=int(kept.size), taps_dropped=unpaired + int(d.size - kept.size),
                     mad_s=mad_kept, warnings=tuple(warnings))


# ------------------------------------------------------------------------------------------------------------------
# The interactive part (thin)
# ------------------------------------------------------------------------------------------------------------------
def run_tap_session(device=None, bpm: float = 100.0, seconds: float = 30.0, samplerate: int = 48000,
                    stream=None, now=time.monotonic):
    """Play clicks at ``bpm`` for ``seconds`` and collect key presses from ``stream`` (default stdin).

    Returns ``(device_label, click_times_s, tap_times_s)``, times on the monotonic clock, the label as offsets
    are stored (``"NAME (HOST API)"``).  A click's time is when the kernel produced
    its first sample: the main thread samples (monotonic time, engine position) pairs and takes the earliest
    consistent clock, ``t0 = min(t - pos / samplerate)``, so click ``n`` at engine sample ``s`` is at
    ``t0 + s / samplerate``.  Keys are read in cbreak mode (no Enter needed, no echo); 'q' or Escape stops early.
    """
    import termios
    import tty

    from .. import _layout as K
    from ..devices import find_device
    from ..engine import Engine, freeze_kernels, warm_kernels
    from ..mix import EngineSettings
    from ..player import LivePlayer
    from ..tempo import TempoMap

    stream = stream if stream is not None else sys.stdin
    if not stream.isatty():
        raise InputError("--tap: stdin is not a terminal (tap calibration reads key presses)")

    from ..devices import list_devices

    dev = find_device(device)
    label = list_devices()[dev].label
    warm_kernels(samplerate, 2)
    freeze_kernels()
    tm = TempoMap.constant(float(bpm), samplerate, seconds + 2.0)
    engine = Engine(tm, EngineSettings(samplerate=samplerate, channels=2, accent_every=0))
    fd = stream.fileno()
    old = termios.tcgetattr(fd)
    taps, offsets = [], []
    player = LivePlayer(engine, device=dev)
    try:
        tty.setcbreak(fd)
        player.start()
        end = now() + seconds
        while now() < end:
            r, _, _ = select.select([fd], [], [], 0.002)
            t = now()
            pos = engine.st[K.ST_POS]
            if pos > 0:
                offsets.append(t - pos / samplerate)
            if r:
                ch = os.read(fd, 1)
                if ch in (b"q", b"\x1b"):
                    break
                taps.append(t)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        player.stop()
    if not offsets:
        raise InputError("--tap: the audio stream never started")
    t0 = min(offsets)
    pos_end = int(engine.st[K.ST_POS])
    click_samples = tm.beat_samples(pos_end)  # where the kernel starts each click
    return label, t0 + click_samples / samplerate, np.asarray(taps)
