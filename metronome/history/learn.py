"""``downbeat learn``: a runner's flat pace, grade -> pace curve and cadence from their own recorded runs.

Everything is computed on each run's profile grid (:func:`profiles.load_profile`: 5 m steps, smoothed grade,
recorded *moving* time with pauses squeezed out).  Each 5 m interval is one observation: its grade (mean of its two
ends), its distance and time, and the cadence of the nearest recorded sample.  Left out, so that the curve is the
runner's *running* (and power-hiking) pace:

* pauses the moving-time filter left in: slower than :data:`MIN_SPEED_MPS` (0.3 m/s, about 1 km/h: standing at a
  junction or an aid station);
* legs no runner covers on foot: faster than :data:`MAX_SPEED_MPS` (7 m/s = 2:23 min/km, faster than the men's
  marathon world-record pace of 5.7 m/s: a car, a lift, a GPS jump);
* walking on runnable ground: cadence under :data:`WALK_CADENCE_SPM` (130 steps/min) on grades between -8 % and
  +8 %.  Walking cadence is 100-125 steps/min (Tudor-Locke et al. 2018, Br J Sports Med 52:776: 100 steps/min is
  moderate walking, ~130 brisk walking), running cadence 150-190 (Heiderscheit et al. 2011).  Hiking *steep*
  climbs is how a runner moves there, so it stays in.

Grade bins are :data:`BIN_WIDTH_PCT` (5 points) wide and centred on 0 (the flat bin is -2.5..+2.5 %); a bin counts
only with at least :data:`MIN_BIN_M` (200 m) of running in it, which is 40 grid intervals.  A bin's factor is its
total time over its total distance, relative to the flat bin's; its position is the distance-weighted mean grade
inside it.  Without enough flat running (:data:`MIN_FLAT_M`) the flat pace is the one that makes the default model
(:func:`profiles.pace.grade_factor`) reproduce the runs' total time, and the curve is relative to that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from metronome.errors import ProfileError
from profiles import load_profile, pace

from .runner import FACTOR_RANGE, RunnerProfile
from .samples import Samples, read_samples

MIN_SPEED_MPS = 0.3
MAX_SPEED_MPS = 7.0
WALK_CADENCE_SPM = 130.0
WALK_CHECK_GRADE_PCT = 8.0
BIN_WIDTH_PCT = 5.0
MIN_BIN_M = 200.0
MIN_FLAT_M = 500.0
FLAT_HALF_WIDTH_PCT = BIN_WIDTH_PCT / 2


@dataclass(frozen=True)
class Run:
    """One recorded activity: its profile (grade, moving time) and its raw samples (cadence)."""

    display: str
    profile: object
    samples: Samples

    @property
    def has_time(self) -> bool:
        return self.profile.kind == "activity"


def load_run(path) -> Run:
    """Load an activity for learn/review/progress; :class:`ProfileError` naming the file if it is unusable."""
    from profiles.loader import resolve

    file_path, _, _, display = resolve(path)        # bundled names too (e.g. "mojstrovka")
    profile = load_profile(path)
    return Run(display, profile, read_samples(file_path, display))


@dataclass(frozen=True)
class Intervals:
    """The grid intervals of one or more runs that count as running (see the module notes)."""

    grade_pct: np.ndarray
    distance_m: np.ndarray
    time_s: np.ndarray
    cadence_spm: np.ndarray      # NaN where the run has no cadence

    @property
    def total_m(self) -> float:
        return float(self.distance_m.sum())


def run_intervals(run: Run, start_m: float = 0.0, end_m: float | None = None) -> Intervals:
    """Running intervals of ``run`` whose midpoint lies in ``start_m..end_m``."""
    p = run.profile
    d, t, g = p.distance_m, p.time_s, p.grade_pct
    dd, dt = np.diff(d), np.diff(t)
    mid = 0.5 * (d[1:] + d[:-1])
    gm = 0.5 * (g[1:] + g[:-1])
    cad = np.full(mid.size, np.nan)
    s = run.samples
    if s.cadence_spm is not None and s.distance_m.size:
        # Nearest recorded sample by distance: a value the file has, never an interpolation.
        j = np.clip(np.searchsorted(s.distance_m, mid), 1, s.distance_m.size - 1)
        left_closer = (mid - s.distance_m[j - 1]) <= (s.distance_m[j] - mid)
        cad = s.cadence_spm[np.where(left_closer, j - 1, j)].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = dd / dt
    end_m = float(d[-1]) if end_m is None else end_m
    keep = (mid >= start_m) & (mid <= end_m) & (v >= MIN_SPEED_MPS) & (v <= MAX_SPEED_MPS)
    walking = (np.abs(gm) < WALK_CHECK_GRADE_PCT) & (cad < WALK_CADENCE_SPM)   # NaN cadence: not walking
    keep &= ~walking
    return Intervals(gm[keep], dd[keep], dt[keep], cad[keep])


def _concat(parts) -> Intervals:
    return Intervals(*(np.concatenate([getattr(p, f) for p in parts]) if parts else np.empty(0)
                       for f in ("grade_pct", "distance_m", "time_s", "cadence_spm")))


def learn_intervals(iv: Intervals, name: str = "runner", sources=()) -> RunnerProfile:
    """A :class:`RunnerProfile` from running intervals; :class:`ProfileError` if there is too little to learn."""
    if iv.total_m < MIN_BIN_M:
        raise ProfileError(f"{', '.join(sources) or 'runs'}: only {iv.total_m:.0f} m of timed running: need at "
                           f"least {MIN_BIN_M:.0f} m to learn a pace")
    flat = np.abs(iv.grade_pct) < FLAT_HALF_WIDTH_PCT
    if iv.distance_m[flat].sum() >= MIN_FLAT_M:
        flat_s_per_m = iv.time_s[flat].sum() / iv.distance_m[flat].sum()
    else:
        flat_s_per_m = iv.time_s.sum() / float(np.sum(iv.distance_m * pace.grade_factor(iv.grade_pct)))
    lo, hi = pace.FLAT_PACE_RANGE_S_PER_KM
    flat_pace = float(np.clip(flat_s_per_m * 1000.0, lo, hi))
    bins = np.round(iv.grade_pct / BIN_WIDTH_PCT).astype(np.int64)
    curve, cad_curve = [], []
    for b in np.unique(bins):
        m = bins == b
        dist = float(iv.distance_m[m].sum())
        if dist < MIN_BIN_M:
            continue
        g_mean = float(np.sum(iv.grade_pct[m] * iv.distance_m[m]) / dist)
        if b == 0:
            factor = 1.0   # by definition: the flat pace is this bin's (or, without flat data, see above)
            g_mean = 0.0 if iv.distance_m[flat].sum() >= MIN_FLAT_M else g_mean
        else:
            factor = float(iv.time_s[m].sum() / dist / (flat_pace / 1000.0))
        if FACTOR_RANGE[0] <= factor <= FACTOR_RANGE[1]:
            curve.append((g_mean, factor, dist))
        c = iv.cadence_spm[m]
        c = c[np.isfinite(c) & (c > 0)]
        if c.size >= MIN_BIN_M / 5:   # a cadence for most of the bin's 5 m intervals
            cad_curve.append((g_mean, float(np.median(c)), dist))
    if 0 not in set(bins.tolist()) or not any(abs(g) < FLAT_HALF_WIDTH_PCT for g, _, _ in curve):
        curve.append((0.0, 1.0, 0.0))   # the flat anchor of the curve (pace estimated as described above)
        curve.sort()
    c_flat = iv.cadence_spm[flat]
    c_flat = c_flat[np.isfinite(c_flat) & (c_flat > 0)]
    # Cadence on slopes only gives no base figure: it is never extrapolated to the flat.
    base = float(np.median(c_flat)) if c_flat.size >= MIN_BIN_M / 5 else None
    return RunnerProfile(flat_pace_s_per_km=flat_pace, pace_curve=tuple(curve), base_cadence_spm=base,
                         cadence_curve=tuple(cad_curve), name=name, sources=tuple(sources))


@dataclass(frozen=True)
class LearnResult:
    runner: RunnerProfile
    runs: tuple
    warnings: tuple


def learn_runs(paths, name: str = "runner") -> LearnResult:
    """Learn from activity files.  Files without usable timestamps are skipped with a warning; if none is usable,
    :class:`ProfileError`.  A file that cannot be read at all is an error (the user named it)."""
    runs, warnings, parts = [], [], []
    for path in paths:
        run = load_run(path)
        if not run.has_time:
            warnings.append(f"{run.display}: no usable timestamps: skipped (a pace needs times)")
            continue
        if run.samples.cadence_spm is None:
            warnings.append(f"{run.display}: no cadence data ({run.samples.cadence_note}): pace only")
        runs.append(run)
        parts.append(run_intervals(run))
    if not runs:
        raise ProfileError(f"{', '.join(os.fspath(p) for p in paths)}: no run with usable timestamps to learn from")
    runner = learn_intervals(_concat(parts), name, [os.path.basename(r.display) for r in runs])
    if runner.base_cadence_spm is None:
        warnings.append("no flat running with cadence in any run: base cadence not learned")
    return LearnResult(runner, tuple(runs), tuple(warnings))
