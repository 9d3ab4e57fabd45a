"""Pace model and review figures on real runs (issue 15): not a speed benchmark, an accuracy one.

For each run with timestamps:

* default model: the run's grade with its times stripped, timed by ``profiles.pace`` at the default 5:30 min/km,
  against the recorded moving time (pauses removed, as ``profiles.load_profile`` reports it);
* old model: the same with the pre-issue-15 model (GAP quartic clamped to +-30 %), for comparison;
* half -> half: a runner profile learned (``metronome.history.learn``) from the first half of the distance
  predicting the moving time of the second half;
* review cadence: Downbeat's overall and per-descent cadence against the independent computation in
  ``tests/history_reference.py`` (largest difference, steps/min).

    python3 benchmarks/bench_pace_model.py [EXTRA_RUN ...]

Default runs: the timed activities in tests/data (and ../shared/data).  Extra runs (e.g. a mountain race GPX that
cannot be shipped) are added on the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import history_reference as ref  # noqa: E402
from metronome.history.learn import learn_intervals, load_run, run_intervals  # noqa: E402
from metronome.history.review import review_run  # noqa: E402
from metronome.history.runner import predict_time_s  # noqa: E402

DEFAULT_RUNS = ["activity-small-fenix2-run.fit", "garmin-fenix-5-run.fit", "cerknicko-jezero.gpx",
                "cerknicko-jezero.tcx", "sample-activity.fit"]
OLD_COEFFS = (-5.2944e-7, -3.9896e-6, 2.05357e-3, 3.265674e-2, 1.0)


def old_time_s(p) -> float:
    g = 0.5 * (p.grade_pct[1:] + p.grade_pct[:-1])
    f = np.clip(np.polyval(OLD_COEFFS, g), 0.7, 1.3)
    return float(np.sum(np.diff(p.distance_m) * 0.330 * f))


def hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def main(argv):
    paths = [ROOT / "tests" / "data" / n for n in DEFAULT_RUNS] + [Path(a) for a in argv]
    print("| run | sport | km | ascent m | moving time | default model | old model | first half -> second half "
          "| review cadence: max diff (spm) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        run = load_run(path)
        p = run.profile
        if not run.has_time:
            print(f"| {path.name} | no usable timestamps: skipped |")
            continue
        real = p.duration_s
        model = predict_time_s(p)
        old = old_time_s(p)
        half = p.total_distance_m / 2
        try:
            rp = learn_intervals(run_intervals(run, 0.0, half))
            pred2 = predict_time_s(p, rp, start_m=half)
            real2 = float(p.time_at_distance(p.total_distance_m) - p.time_at_distance(half))
            halves = f"{hms(pred2)} vs {hms(real2)} ({100 * (pred2 / real2 - 1):+.1f} %)"
        except Exception as exc:   # too short to split
            halves = f"n/a ({str(exc).split(': ')[-1][:40]})"
        rv = review_run(run)
        if rv.cadence_spm is None:
            cad = "no cadence"
        else:
            pts = ref.points(path)
            diffs = [abs(rv.cadence_spm - ref.mean_cadence(pts))]
            diffs += [abs(d.actual_spm - ref.mean_cadence(pts, d.start_m, d.end_m)) for d in rv.descents
                      if d.actual_spm is not None]
            cad = f"{max(diffs):.3f} over overall + {len(rv.descents)} descents"
        print(f"| {path.name} | {run.samples.sport or '?'} | {p.total_distance_m / 1000:.1f} | "
              f"{p.total_ascent_m:.0f} | {hms(real)} | {hms(model)} ({100 * (model / real - 1):+.1f} %) | "
              f"{hms(old)} ({100 * (old / real - 1):+.1f} %) | {halves} | {cad} |")


if __name__ == "__main__":
    main(sys.argv[1:])
