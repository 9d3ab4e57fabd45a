"""``downbeat review``: how a recorded run's descents went against the cadence Downbeat would have set.

Descents are found exactly as the cue planner finds them (:func:`cues.terrain.hysteresis_runs` with
:class:`cues.terrain.TerrainRules`: grade <= -4 % held over 100 m to enter, > -2.5 % held over 50 m to leave), on
the run's profile grid (distance, smoothed grade).  The target cadence at each point is what the tempo map holds
there: :func:`metronome.tempo.target_cadence` of the grade plateau (:func:`metronome.tempo.grade_plateaus`, the
same hysteresis and hold as a render); the ramps between plateaus (at most 0.4 % per beat) are not modelled, so a
few seconds after each change count against the band.

Actual cadence comes from the file's own samples (:mod:`.samples`, steps/min): the mean over the samples with
cadence > 0 whose distance lies in the descent.  "In band" is the share of those samples within +-3 % of the
target at their distance; +-3 % is the upper end of the just-noticeable tempo difference (Drake & Botte 1993), so a
runner inside it is on the beat as far as they can hear.  Speed is the descent's length over its moving time.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np

from cues.terrain import TerrainRules, hysteresis_runs
from metronome.tempo import TempoSettings, grade_plateaus, target_cadence

from .learn import Run, load_run
from .runner import RunnerProfile

IN_BAND_FRACTION = 0.03


@dataclass(frozen=True)
class DescentReview:
    start_m: float
    end_m: float
    grade_pct: float
    target_spm: float
    actual_spm: float | None
    in_band_pct: float | None
    speed_mps: float | None
    n_cadence_samples: int

    @property
    def length_m(self) -> float:
        return self.end_m - self.start_m

    def to_dict(self) -> dict:
        r = lambda x, n=2: None if x is None else round(float(x), n)   # noqa: E731
        return {"start_m": r(self.start_m, 1), "end_m": r(self.end_m, 1), "length_m": r(self.length_m, 1),
                "grade_pct": r(self.grade_pct), "target_spm": r(self.target_spm), "actual_spm": r(self.actual_spm),
                "in_band_pct": r(self.in_band_pct, 1), "speed_mps": r(self.speed_mps, 3),
                "cadence_samples": self.n_cadence_samples}


@dataclass(frozen=True)
class RunReview:
    display: str
    date: _dt.datetime | None
    base_cadence_spm: float
    base_source: str
    cadence_spm: float | None
    descents: tuple
    cadence_note: str
    distance_m: float
    profile: object
    target_spm: np.ndarray          # target cadence at each grid point
    samples: object

    @property
    def has_cadence(self) -> bool:
        return self.cadence_spm is not None

    def descent_totals(self) -> dict:
        """Over all descents: length, cadence (sample-weighted), in-band share, steepest mean grade."""
        length = sum(d.length_m for d in self.descents)
        n = sum(d.n_cadence_samples for d in self.descents if d.actual_spm is not None)
        cad = band = None
        if n:
            cad = sum(d.actual_spm * d.n_cadence_samples for d in self.descents if d.actual_spm is not None) / n
            band = sum(d.in_band_pct * d.n_cadence_samples for d in self.descents if d.actual_spm is not None) / n
        target = (sum(d.target_spm * d.length_m for d in self.descents) / length) if length else None
        steepest = min((d.grade_pct for d in self.descents), default=None)
        longest_s = max(((d.length_m / d.speed_mps) for d in self.descents if d.speed_mps), default=None)
        return {"length_m": length, "cadence_spm": cad, "in_band_pct": band, "target_spm": target,
                "steepest_grade_pct": steepest, "longest_s": longest_s}

    def to_dict(self) -> dict:
        tot = self.descent_totals()
        r = lambda x, n=2: None if x is None else round(float(x), n)   # noqa: E731
        return {"run": self.display, "date": self.date.isoformat() if self.date else None,
                "cadence_spm": r(self.cadence_spm), "base_cadence_spm": r(self.base_cadence_spm, 1),
                "base_cadence_source": self.base_source, "distance_m": r(self.distance_m, 1),
                "cadence_note": self.cadence_note or None,
                "descents": [d.to_dict() for d in self.descents],
                "descent_cadence_spm": r(tot["cadence_spm"]), "descent_in_band_pct": r(tot["in_band_pct"], 1)}

    def summary(self) -> str:
        tot = self.descent_totals()
        head = f"{len(self.descents)} descent{'s' if len(self.descents) != 1 else ''}, " \
               f"{tot['length_m'] / 1000:.2f} km"
        if not self.descents:
            return f"{head}: nothing to review (no stretch of <= -4 % held for 100 m)"
        if tot["cadence_spm"] is None:
            return f"{head}; no cadence data ({self.cadence_note}): reviewed without cadence"
        return (f"{head}; cadence on descents {tot['cadence_spm']:.0f} spm against a target of "
                f"{tot['target_spm']:.0f}, {tot['in_band_pct']:.0f} % within +-3 %; run overall "
                f"{self.cadence_spm:.0f} spm")


def base_cadence_for(run: Run, base_cadence=None, runner: RunnerProfile | None = None) -> tuple[float, str]:
    """The base cadence a session would use: ``--base-cadence``, else the runner profile's, else this run's own
    flat cadence (median over flat running samples), else the default 170."""
    if base_cadence is not None:
        return float(base_cadence), "--base-cadence"
    if runner is not None and runner.base_cadence_spm is not None:
        return float(runner.base_cadence_spm), f"runner profile {runner.name}"
    from .learn import learn_intervals, run_intervals

    if run.samples.cadence_spm is not None and run.has_time:
        try:
            own = learn_intervals(run_intervals(run)).base_cadence_spm
        except Exception:   # too little running to learn from: fall through to the default
            own = None
        if own is not None and 60.0 <= own <= 240.0:
            return float(own), "this run's flat cadence"
    return TempoSettings.base_cadence_spm, "default"


def review_run(run: Run, settings: TempoSettings | None = None, rules: TerrainRules = TerrainRules(),
               base_cadence=None, runner: RunnerProfile | None = None) -> RunReview:
    p = run.profile
    if settings is None:
        base, source = base_cadence_for(run, base_cadence, runner)
        settings = TempoSettings(base_cadence_spm=base)
    else:
        source = "settings"
    d, g, t = p.distance_m, p.grade_pct, p.time_s
    levels = grade_plateaus(d, g, settings.hold_m, settings.hysteresis_pct)
    starts = np.array([s for s, _ in levels])
    level_at = np.array([lv for _, lv in levels])[np.clip(np.searchsorted(starts, d, side="right") - 1, 0, None)]
    target = np.asarray(target_cadence(level_at, settings), dtype=np.float64)
    s = run.samples
    cad = s.cadence_spm
    has_cad = cad is not None and bool(np.any(cad > 0))
    note = s.cadence_note if cad is None else ("" if has_cad else "every cadence sample is 0")
    overall = float(np.mean(cad[cad > 0])) if has_cad else None
    descents = []
    for i0, i1 in hysteresis_runs(d, g, rules.descent_enter_pct, rules.descent_exit_pct, rules.descent_hold_m,
                                  rules.descent_exit_hold_m):
        a, b = float(d[i0]), float(d[i1])
        tgt = float(np.mean(target[i0:i1 + 1]))
        actual = band = None
        n = 0
        if has_cad:
            m = (s.distance_m >= a) & (s.distance_m <= b) & (cad > 0)
            n = int(m.sum())
            if n:
                actual = float(np.mean(cad[m]))
                tgt_at = np.interp(s.distance_m[m], d, target)
                band = 100.0 * float(np.mean(np.abs(cad[m] - tgt_at) <= IN_BAND_FRACTION * tgt_at))
        speed = (b - a) / float(t[i1] - t[i0]) if run.has_time and t[i1] > t[i0] else None
        descents.append(DescentReview(a, b, float(np.mean(g[i0:i1 + 1])), tgt, actual, band, speed, n))
    return RunReview(run.display, s.start_time, settings.base_cadence_spm, source, overall, tuple(descents), note,
                     p.total_distance_m, p, target, s)


def review_file(path, **kwargs) -> RunReview:
    return review_run(load_run(path), **kwargs)
