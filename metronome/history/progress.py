"""``downbeat progress``: descents and cadence run by run, the trend, and the next session by graded exposure.

Graded exposure (the coaching practice Downbeat follows): step up the load only when the current load is
handled.  Here "handled" means the cadence held on the latest run's descents: at least :data:`HELD_IN_BAND_PCT`
(60 %) of the descent samples within +-3 % of target.  That threshold is this project's choice, not a published
figure: a clear majority of the descent on the beat.  When it held, the next session is one step harder: steeper
by :data:`GRADE_STEP_PCT` (1 point) while the treadmill allows it, else longer by :data:`DURATION_STEP_S` (60 s) per
interval; when it did not hold, or the runs have no cadence, the same again.

The session is written as a treadmill workout (the format of ``profiles/bundled/treadmill-decline.yaml``):
warm-up, :data:`REPEATS` descent intervals with flat recoveries, cool-down.  Treadmill declines: most decline-capable
treadmills go down to -3..-9 % (the bundled workout's note), so the grade is kept in :data:`TREADMILL_GRADE_RANGE_PCT`.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from metronome.errors import InputError

from .review import RunReview, review_file

HELD_IN_BAND_PCT = 60.0
GRADE_STEP_PCT = 1.0
DURATION_STEP_S = 60.0
REPEATS = 4
TREADMILL_GRADE_RANGE_PCT = (-9.0, -3.0)
INTERVAL_RANGE_S = (60.0, 600.0)
#: Treadmill belt speeds the workout schema accepts are 0.5..30 km/h; a descent interval is kept to a jog..run.
INTERVAL_SPEED_RANGE_KMH = (6.0, 16.0)
DEFAULT_INTERVAL_SPEED_KMH = 10.0
ACTIVITY_EXTENSIONS = (".fit", ".gpx", ".tcx")


@dataclass(frozen=True)
class Row:
    review: RunReview

    def to_dict(self) -> dict:
        tot = self.review.descent_totals()
        r = lambda x, n=1: None if x is None else round(float(x), n)   # noqa: E731
        return {"run": self.review.display, "date": self.review.date.date().isoformat() if self.review.date else None,
                "descents": len(self.review.descents), "descent_m": r(tot["length_m"], 0),
                "steepest_grade_pct": r(tot["steepest_grade_pct"]), "cadence_spm": r(tot["cadence_spm"]),
                "target_spm": r(tot["target_spm"]), "in_band_pct": r(tot["in_band_pct"])}


@dataclass(frozen=True)
class NextSession:
    decision: str           # "steeper", "longer" or "same"
    reason: str
    grade_pct: float
    interval_s: float
    speed_kmh: float
    base_cadence_spm: float | None

    def workout(self) -> dict:
        """The session as a treadmill workout document (profiles/course.py workout schema)."""
        flat_kmh = round(max(6.0, self.speed_kmh - 1.0), 1)
        segs = [{"duration_s": 300, "incline_pct": 0, "speed_kmh": flat_kmh, "note": "warm-up"}]
        for i in range(REPEATS):
            segs.append({"duration_s": int(self.interval_s), "incline_pct": round(self.grade_pct, 1),
                         "speed_kmh": round(self.speed_kmh, 1)})
            segs.append({"duration_s": 90, "incline_pct": 0, "speed_kmh": flat_kmh, "note": "recover"})
        segs[-1] = {"duration_s": 240, "incline_pct": 0, "speed_kmh": flat_kmh, "note": "cool-down"}
        doc = {"name": f"Next descent session ({self.decision})", "kind": "workout",
               "description": self.reason}
        if self.base_cadence_spm is not None:
            doc["base_cadence_spm"] = round(float(self.base_cadence_spm), 1)
        doc["segments"] = segs
        return doc


@dataclass(frozen=True)
class Progress:
    rows: tuple
    trend: str
    next_session: NextSession
    warnings: tuple


def activity_files(args) -> tuple[list, list]:
    """Expand RUN...|FOLDER arguments into files (a folder: its .fit/.gpx/.tcx files, sorted); warnings for a
    folder's other files are not given (a folder may hold anything), missing arguments are errors later."""
    files, warnings = [], []
    for a in args:
        p = Path(os.fspath(a))
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in ACTIVITY_EXTENSIONS)
            if not found:
                warnings.append(f"{p}: no .fit, .gpx or .tcx files in this folder")
            files.extend((q, True) for q in found)
        else:
            files.append((p, False))
    return files, warnings


def _clip(x, lo, hi):
    return max(lo, min(hi, x))


def next_session(rows) -> NextSession:
    """Graded exposure from the latest run (see the module notes)."""
    latest = next((r.review for r in reversed(rows) if r.review.descents), None)
    base = next((r.review.base_cadence_spm for r in reversed(rows) if r.review.base_source != "default"), None)
    if latest is None:
        return NextSession("same", "no descents in these runs: start at the gentlest treadmill decline",
                           TREADMILL_GRADE_RANGE_PCT[1], INTERVAL_RANGE_S[0] * 3, DEFAULT_INTERVAL_SPEED_KMH, base)
    tot = latest.descent_totals()
    lo, hi = TREADMILL_GRADE_RANGE_PCT
    grade = _clip(round(tot["steepest_grade_pct"]), lo, hi)
    interval = _clip(round((tot["longest_s"] or 180.0) / 30.0) * 30.0, *INTERVAL_RANGE_S)
    speeds = [d.speed_mps for d in latest.descents if d.speed_mps]
    speed = _clip(round(3.6 * sum(speeds) / len(speeds) * 2) / 2, *INTERVAL_SPEED_RANGE_KMH) if speeds \
        else DEFAULT_INTERVAL_SPEED_KMH
    band = tot["in_band_pct"]
    if band is None:
        return NextSession("same", f"{latest.display}: no cadence data, so no sign the cadence held: same again",
                           grade, interval, speed, base)
    if band < HELD_IN_BAND_PCT:
        return NextSession("same", f"{latest.display}: {band:.0f} % of descent within +-3 % of target (under "
                           f"{HELD_IN_BAND_PCT:.0f} %): same again", grade, interval, speed, base)
    if grade - GRADE_STEP_PCT >= lo:
        return NextSession("steeper", f"{latest.display}: cadence held ({band:.0f} % in band): "
                           f"{grade - GRADE_STEP_PCT:.0f} % instead of {grade:.0f} %", grade - GRADE_STEP_PCT,
                           interval, speed, base)
    longer = _clip(interval + DURATION_STEP_S, *INTERVAL_RANGE_S)
    return NextSession("longer", f"{latest.display}: cadence held ({band:.0f} % in band) at the treadmill's "
                       f"steepest {grade:.0f} %: intervals of {longer:.0f} s instead of {interval:.0f} s", grade,
                       longer, speed, base)


def trend(rows) -> str:
    with_cad = [r for r in rows if r.review.descent_totals()["in_band_pct"] is not None]
    if len(with_cad) < 2:
        return "trend: needs two runs with descents and cadence"
    a, b = with_cad[0].review.descent_totals(), with_cad[-1].review.descent_totals()
    d_band = b["in_band_pct"] - a["in_band_pct"]
    d_cad = b["cadence_spm"] - a["cadence_spm"]
    word = "better" if d_band > 5 else "worse" if d_band < -5 else "steady"
    return (f"trend over {len(with_cad)} runs: {word}: in-band share {a['in_band_pct']:.0f} % -> "
            f"{b['in_band_pct']:.0f} %, descent cadence {d_cad:+.0f} spm, steepest descent "
            f"{a['steepest_grade_pct']:.1f} % -> {b['steepest_grade_pct']:.1f} %")


def progress(args, **review_kwargs) -> Progress:
    """Review every run; a bad file *inside a folder* is a warning and skipped, a bad file named on its own is an
    error (:class:`InputError`)."""
    files, warnings = activity_files(args)
    rows = []
    for path, from_folder in files:
        try:
            rows.append(Row(review_file(path, **review_kwargs)))
        except InputError as exc:
            if not from_folder:
                raise
            warnings.append(f"{exc} (skipped)")
    if not rows:
        raise InputError(f"{', '.join(os.fspath(a) for a in args)}: no usable run")
    far = _dt.datetime.max.replace(tzinfo=_dt.timezone.utc)
    rows.sort(key=lambda r: (r.review.date or far, r.review.display))
    return Progress(tuple(rows), trend(rows), next_session(rows), tuple(warnings))


def write_workout(session: NextSession, path) -> Path:
    """Write the next session as a workout YAML, atomically (same scheme as runner profiles)."""
    path = Path(os.fspath(path))
    text = "# Treadmill workout written by `downbeat progress` (graded exposure).\n" + \
        yaml.safe_dump(session.workout(), sort_keys=False, default_flow_style=None, width=120)
    from ..atomic import atomic_file

    with atomic_file(path) as f:
        f.write(text)
    return path
