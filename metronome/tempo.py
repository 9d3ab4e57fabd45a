"""Tempo model (grade -> cadence) and the immutable, sample-indexed :class:`TempoMap`.

The tempo map follows klick's design: plain data (breakpoints) plus a position cursor held by whoever reads it.
Between breakpoints the tempo is linear in time, so beat times have a closed form (see
:func:`metronome._kernels.beat_time`).

Default model (DESIGN.md), one click per step, grade ``g`` in percent, negative downhill::

    down  = max(0, -g - 2)          # the first 2 % of descent needs no change
    steep = max(0,  g - 8)          # steep climbs: shorter, slower power-hiking steps
    f     = clamp(1 + 0.005 down - 0.005 steep, 0.94, 1.08)   (upper cap user-settable up to 1.10)
    target = base_cadence * f

Why: runners keep their cadence nearly flat downhill while the impact peak rises sharply (+54 % at -9 degrees,
Gottschall & Kram 2005, J Biomech 38:445), so a small cadence increase is the lever that shortens the stride.
Raising step rate by 5-10 % reduces knee and hip loading (Heiderscheit et al. 2011, Med Sci Sports Exerc 43:296).
Tempo changes below the just-noticeable difference (~1.5-3 %, Drake & Botte 1993, Percept Psychophys 54:277) are
not heard as jumps, hence ramps of at most 0.4 % per beat and a hysteresis that ignores grade noise.
"""

from __future__ import annotations

import math

import numpy as np

from . import kernels as K
from .errors import InputError
from .settings import TempoSettings
from .levels import plateaus



def cadence_factor(grade_pct, settings: TempoSettings = TempoSettings()):
    """Cadence factor for a grade (scalar or array), per the default model above."""
    g = np.asarray(grade_pct, dtype=np.float64)
    down = np.maximum(0.0, -g - settings.down_deadzone_pct)
    steep = np.maximum(0.0, g - settings.steep_threshold_pct)
    f = 1.0 + settings.down_gain_per_pct * down - settings.steep_gain_per_pct * steep
    return np.clip(f, settings.lower_cap, settings.upper_cap)


def target_cadence(grade_pct, settings: TempoSettings = TempoSettings()):
    """Target cadence (steps per minute) for a grade."""
    return settings.base_cadence_spm * cadence_factor(grade_pct, settings)


def max_ramp_rate_bpm_per_s(bpm_low: float, settings: TempoSettings) -> float:
    """Largest tempo slope (bpm per second) that keeps the change per beat within the limit.

    ``d bpm / d beat = (d bpm / d t) * 60 / bpm``; requiring ``<= max_change_per_beat * bpm`` at the slowest tempo
    of the ramp gives the bound.
    """
    return settings.max_change_per_beat * bpm_low * bpm_low / 60.0


class TempoMap:
    """Immutable tempo map: breakpoints ``(sample, bpm)``, tempo linear between them, constant after the last.

    Parameters
    ----------
    sample : array_like of float
        Breakpoint positions in samples, strictly increasing, first must be 0.
    bpm : array_like of float
        Tempo at each breakpoint (beats per minute), each in (0, 1000).
    samplerate : int
    end_sample : int, optional
        Length of the session; defaults to the last breakpoint.

    Beat ``k`` is at the sample time where the integral of ``bpm / 60`` reaches ``k`` (beat 0 at sample 0); clicks
    start at that time rounded to the nearest sample.
    """

    __slots__ = ("_sample", "_bpm", "_phase", "samplerate", "end_sample")

    def __init__(self, sample, bpm, samplerate: int, end_sample: int | None = None):
        s = np.array(sample, dtype=np.float64)
        b = np.array(bpm, dtype=np.float64)
        if s.ndim != 1 or s.shape != b.shape or s.size == 0:
            raise InputError(f"tempo map: sample and bpm must be equal-length 1-D arrays, got {s.shape} and {b.shape}")
        if s[0] != 0:
            raise InputError(f"tempo map: first breakpoint must be at sample 0, got {s[0]!r}")
        if not np.all(np.isfinite(s)) or np.any(np.diff(s) <= 0):
            raise InputError("tempo map: breakpoint samples must be finite and strictly increasing")
        if not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b >= 1000):
            bad = b[~(np.isfinite(b) & (b > 0) & (b < 1000))][0]
            raise InputError(f"tempo map: bpm {bad!r} is outside (0, 1000)")
        if not (isinstance(samplerate, (int, np.integer)) and 8000 <= samplerate <= 384000):
            raise InputError(f"samplerate: {samplerate!r} is not an integer in 8000..384000", field="samplerate")
        phase = np.empty_like(s)
        K.map_phase_at_breakpoints(s, b, float(samplerate), phase)
        for arr in (s, b, phase):
            arr.flags.writeable = False
        object.__setattr__(self, "_sample", s)
        object.__setattr__(self, "_bpm", b)
        object.__setattr__(self, "_phase", phase)
        object.__setattr__(self, "samplerate", int(samplerate))
        object.__setattr__(self, "end_sample", int(end_sample if end_sample is not None else s[-1]))

    def __setattr__(self, name, value):
        raise AttributeError("TempoMap is immutable")

    # -- plain data -------------------------------------------------------------------------------------------
    @property
    def sample(self) -> np.ndarray:
        return self._sample

    @property
    def bpm(self) -> np.ndarray:
        return self._bpm

    @property
    def phase(self) -> np.ndarray:
        """Cumulative beats at each breakpoint."""
        return self._phase

    @classmethod
    def constant(cls, bpm: float, samplerate: int, duration_s: float) -> "TempoMap":
        end = int(round(duration_s * samplerate))
        return cls([0.0, max(end, 1)], [bpm, bpm], samplerate, end_sample=end)

    # -- queries ----------------------------------------------------------------------------------------------
    def bpm_at(self, sample) -> np.ndarray:
        """Tempo at sample time(s)."""
        return np.interp(sample, self._sample, self._bpm)

    def beat_times(self, end_sample: int | None = None) -> np.ndarray:
        """Exact (fractional) sample times of every beat before ``end_sample`` (default: the map's end)."""
        end = self.end_sample if end_sample is None else end_sample
        # Upper bound on the beat count: fastest tempo over the whole span, plus one.
        cap = int(math.ceil(float(self._bpm.max()) / 60.0 * end / self.samplerate)) + 2
        out = np.empty(cap, dtype=np.float64)
        n = K.beat_times(self._sample, self._bpm, self._phase, float(self.samplerate), float(end), out)
        return out[:n]

    def beat_samples(self, end_sample: int | None = None) -> np.ndarray:
        """Sample index at which each click starts: the exact beat time rounded half up, as the kernel does."""
        return np.floor(self.beat_times(end_sample) + 0.5).astype(np.int64)

    def ramps(self) -> list[tuple[int, int]]:
        """``(start_sample, end_sample)`` of every stretch where the tempo changes."""
        out = []
        for i in range(len(self._sample) - 1):
            if self._bpm[i + 1] != self._bpm[i]:
                a, b = int(self._sample[i]), int(self._sample[i + 1])
                if out and out[-1][1] == a:
                    out[-1] = (out[-1][0], b)
                else:
                    out.append((a, b))
        return out

    def max_change_per_beat(self) -> float:
        """Largest relative tempo change per beat anywhere on the map (0 for a constant map)."""
        worst = 0.0
        for i in range(len(self._sample) - 1):
            b0, b1 = self._bpm[i], self._bpm[i + 1]
            if b0 == b1:
                continue
            slope_per_s = (b1 - b0) / (self._sample[i + 1] - self._sample[i]) * self.samplerate
            worst = max(worst, abs(slope_per_s) * 60.0 / min(b0, b1) ** 2)
        return worst

    def __repr__(self):
        return (f"TempoMap({len(self._sample)} breakpoints, {self._bpm.min():.1f}-{self._bpm.max():.1f} bpm, "
                f"{self.end_sample / self.samplerate:.1f} s @ {self.samplerate} Hz)")


# ------------------------------------------------------------------------------------------------------------------
# Profile -> tempo map
# ------------------------------------------------------------------------------------------------------------------
def grade_plateaus(position, grade_pct, hold, hysteresis_pct=1.0):
    """Collapse a noisy grade series into plateaus with hysteresis.

    The level changes only when the grade differs from the current level by at least ``hysteresis_pct`` points
    continuously over at least ``hold`` (same unit as ``position``: metres or seconds).  The new level is the mean
    grade over the held stretch and it takes effect where the stretch began (so a known profile can ramp early).

    Returns
    -------
    list of (start_position, level_pct)
    """
    position = np.asarray(position, dtype=np.float64)
    grade_pct = np.asarray(grade_pct, dtype=np.float64)
    # The first level: the mean over the first hold window, so a start on noise does not fix the level (a known
    # profile can look ahead; a live feed cannot, see GradeFilter).
    first = position <= position[0] + hold
    return plateaus(position, grade_pct, hold, hysteresis_pct, float(grade_pct[first].mean()))


def tempo_map_from_profile(profile, settings: TempoSettings, samplerate: int) -> TempoMap:
    """Tempo map for a known profile: plateaus of target cadence joined by ramps that *end* where the grade changes.

    Each ramp obeys the per-beat limit.  If two changes are too close for the full ramp, the ramp starts right
    after the previous change and reaches only as far as the limit allows (the limit is never exceeded); the next
    plateau continues from the tempo actually reached.
    """
    has_distance = profile.total_distance_m > 0 and profile.kind != "workout"
    if has_distance:
        position, hold = profile.distance_m, settings.hold_m
    else:
        position, hold = profile.time_s, settings.hold_s
    plateaus = grade_plateaus(position, profile.grade_pct, hold, settings.hysteresis_pct)
    # Positions -> times.
    pos_arr = np.array([p for p, _ in plateaus])
    times = np.interp(pos_arr, position, profile.time_s) if has_distance else pos_arr
    targets = [float(target_cadence(g, settings)) for _, g in plateaus]
    duration = profile.duration_s
    sr = samplerate

    # Work in integer samples so the breakpoints are exactly what the kernel sees: the ramp start is rounded
    # *away* from the change, so rounding only ever lengthens a ramp and never makes it steeper than the limit.
    bp_s = [0]
    bp_b = [targets[0]]
    current = targets[0]
    prev_change = 0
    for t_change, target in zip(times[1:], targets[1:]):
        if target == current:
            continue
        change = int(round(t_change * sr))
        rate_per_sample = max_ramp_rate_bpm_per_s(min(current, target), settings) / sr
        start = change - int(math.ceil(abs(target - current) / rate_per_sample))
        if start < prev_change:
            start = prev_change
            reach = current + math.copysign(min(abs(target - current), rate_per_sample * (change - start)),
                                            target - current)
        else:
            reach = target
        if change <= start or reach == current:
            continue
        if start > bp_s[-1]:
            bp_s.append(start)
            bp_b.append(current)
        bp_s.append(change)
        bp_b.append(reach)
        current = reach
        prev_change = change
    end = int(round(duration * sr))
    if end > bp_s[-1]:
        bp_s.append(end)
        bp_b.append(current)
    return TempoMap(np.array(bp_s, dtype=np.float64), np.array(bp_b), sr, end_sample=end)
