"""Grade filter: smoothing, hysteresis and dropout handling -> target cadence (deterministic, clock-injected)."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Callable

from ..errors import SensorError
from ..levels import LevelTracker
from ..tempo import TempoSettings, target_cadence
from .protocol import Reading

# --------------------------------------------------------------------------------------------------------------
# Grade filter
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterParams:
    """Live-filter constants (the hysteresis itself comes from :class:`~metronome.tempo.TempoSettings`).

    Attributes
    ----------
    smoothing_s : float
        Moving-average window for the grade.  A boxcar (not an exponential) so that a clean step of exactly the
        hysteresis size is seen in full after ``smoothing_s`` instead of approaching it forever.
    hold_last_s : float
        After the last grade-bearing reading, keep its tempo this long; then use the fallback.
    max_integrate_gap_s : float
        Distance is integrated from speed only across gaps up to this long (a dropout must not add phantom
        metres).
    """

    smoothing_s: float = 3.0
    hold_last_s: float = 30.0
    max_integrate_gap_s: float = 5.0

    def __post_init__(self):
        for name in ("smoothing_s", "hold_last_s", "max_integrate_gap_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SensorError(f"{name}: {v!r} must be a positive number of seconds")


#: ``fallback(now_s[, distance_m]) -> bpm``: the tempo to use when no live grade is available (before the first
#: packet, after a dropout longer than ``hold_last_s``, or always for a grade-less foot pod).  ``now_s`` is the
#: feed's ``clock()`` (not session time: subtract your own start time); ``distance_m``, passed only to callables
#: that accept two arguments, is the live cumulative distance if the sensor reports/implies one, else ``None``.
Fallback = Callable[[float, "float | None"], float]

MODES = ("waiting", "live", "hold", "fallback")


def _accepts_two_args(fn) -> bool:
    """True if ``fn(now_s, distance_m)`` is a valid call; one-argument fallbacks get only ``now_s``."""
    if fn is None:
        return False
    import inspect
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(0.0, None)
        return True
    except TypeError:
        return False


class GradeFilter:
    """Smoothing + hysteresis + dropout handling -> target cadence.  Deterministic: every call takes ``now_s``.

    * The grade is a moving average over ``smoothing_s``.
    * The *level* the tempo follows changes only when the smoothed grade stays on one side of the level by at
      least ``settings.hysteresis_pct`` for ``settings.hold_s`` seconds **or** ``settings.hold_m`` metres
      (whichever comes first; metres only if the sensor reports distance or speed).  The new level is the mean of
      the raw grades received during that stretch (the smoothed values would drag the transition in).
    * The first reading, and the first after a dropout, sets the level at once: there is nothing older to be
      hysteretic about.
    * Dropout: the last level's tempo is held for ``hold_last_s``; after that (and before any grade at all) the
      target is ``fallback(now_s, distance_m)``, or the base cadence without a fallback.
    * The result is always clamped to ``[settings.min_bpm, settings.max_bpm]``; a non-finite fallback value is
      replaced by the base cadence.
    """

    def __init__(self, settings: TempoSettings, fallback: Fallback | None = None,
                 params: FilterParams = FilterParams()):
        self.settings = settings
        self.fallback = fallback
        self._fallback_wants_distance = _accepts_two_args(fallback)
        self.params = params
        self._window: collections.deque = collections.deque(maxlen=1024)  # (t, grade) within smoothing_s
        self.smoothed_grade_pct: float | None = None
        self.level_grade_pct: float | None = None
        self.last_grade_pct: float | None = None
        self.last_good_s: float | None = None
        self.speed_mps: float | None = None
        self.cadence_spm: float | None = None
        self.distance_m: float | None = None
        self._has_distance = False
        self._last_push_s: float | None = None
        self._tracker = LevelTracker(settings.hysteresis_pct, settings.hold_s, settings.hold_m)

    # -- input ------------------------------------------------------------------------------------------------
    def push(self, reading: Reading, now_s: float) -> None:
        """Feed one accepted reading received at ``now_s`` (feed clock)."""
        self._update_motion(reading, now_s)
        g = reading.grade_pct
        if g is None:
            return
        p = self.params
        fresh = self.last_good_s is None or now_s - self.last_good_s > p.hold_last_s
        self.last_grade_pct = g
        self.last_good_s = now_s
        if fresh:
            self._window.clear()
            self._window.append((now_s, g))
            self.smoothed_grade_pct = self.level_grade_pct = g
            self._tracker.reset(g)
            return
        win = self._window
        win.append((now_s, g))
        while win and win[0][0] <= now_s - p.smoothing_s:
            win.popleft()
        self.smoothed_grade_pct = sum(x for _, x in win) / len(win)
        self._hysteresis(g, now_s)

    def _update_motion(self, r: Reading, now_s: float) -> None:
        if r.cadence_spm is not None:
            self.cadence_spm = r.cadence_spm
        prev_speed = self.speed_mps
        if r.speed_mps is not None:
            self.speed_mps = r.speed_mps
        if r.distance_m is not None:
            self.distance_m = r.distance_m  # the sender's cumulative distance wins over our integral
            self._has_distance = True
        elif r.speed_mps is not None:
            if self.distance_m is None:
                self.distance_m = 0.0
            elif self._last_push_s is not None and prev_speed is not None:
                dt = now_s - self._last_push_s
                if 0.0 < dt <= self.params.max_integrate_gap_s:
                    self.distance_m += 0.5 * (prev_speed + r.speed_mps) * dt
            self._has_distance = True
        self._last_push_s = now_s

    def _hysteresis(self, raw: float, now_s: float) -> None:
        # The same tracker the offline tempo map runs over a profile (metronome.levels): time or distance hold.
        dist = self.distance_m if self._has_distance else None
        if self._tracker.push(self.smoothed_grade_pct, now_s, raw=raw, position_alt=dist):
            self.level_grade_pct = self._tracker.level

    # -- output -----------------------------------------------------------------------------------------------
    def mode(self, now_s: float) -> str:
        """``waiting`` (nothing yet), ``live`` (grade <= 2 s old), ``hold`` (<= hold_last_s), ``fallback``.

        A sensor that sends data but never a grade (a foot pod) is in ``fallback`` from its first packet.
        """
        if self.last_good_s is None:
            return "waiting" if self._last_push_s is None else "fallback"
        age = now_s - self.last_good_s
        if age > self.params.hold_last_s:
            return "fallback"
        return "live" if age <= 2.0 else "hold"

    def target_bpm(self, now_s: float) -> float:
        s = self.settings
        m = self.mode(now_s)
        if m in ("live", "hold"):
            bpm = float(target_cadence(self.level_grade_pct, s))
        else:
            bpm = s.base_cadence_spm
            if self.fallback is not None:
                try:
                    if self._fallback_wants_distance:
                        fb = float(self.fallback(now_s, self.distance_m if self._has_distance else None))
                    else:
                        fb = float(self.fallback(now_s))
                except Exception:  # a broken fallback must not silence the metronome
                    fb = float("nan")
                if math.isfinite(fb):
                    bpm = fb
        return min(max(bpm, s.min_bpm), s.max_bpm)
