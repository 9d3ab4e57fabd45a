"""metronome.history (issue 15): learn, review, progress, runner profiles, and the review's cadence figures checked
against an independent computation from the files' own records (tests/support/history_reference.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tests.support import history_reference as ref
from metronome.errors import InputError
from metronome.history import runner as R
from metronome.cli.history import learn, progress, review
from metronome.history.learn import learn_intervals, learn_runs, load_run, run_intervals
from metronome.history.progress import HELD_IN_BAND_PCT, Row, next_session
from metronome.history.review import DescentReview, review_file
from metronome.history.samples import read_samples
from profiles import load_profile

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FENIX2 = DATA / "activity-small-fenix2-run.fit"
FENIX5 = DATA / "garmin-fenix-5-run.fit"
TCX = DATA / "cerknicko-jezero.tcx"
NO_CADENCE = DATA / "cerknicko-jezero.gpx"


def invoke(cmd, *args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result, name):
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("downbeat: error: ") and name in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def garmin_gpx(tmp_path_factory):
    """The fenix 2 run as a Garmin-Connect-style GPX with gpxtpx:cad: a third format, same run."""
    return ref.fit_to_gpx(FENIX2, tmp_path_factory.mktemp("gpx") / "fenix2.gpx")


def _real_runs():
    runs = [FENIX2, FENIX5, TCX]
    shared = SHARED / "fitparse"
    runs += sorted(p for p in shared.glob("*.fit") if p.name in ("activity-small-fenix2-run.fit",
                                                                 "garmin-fenix-5-run.fit"))
    return runs


# ------------------------------------------------------------------------------------------------------------------
# Review: cadence figures against the independent computation
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", _real_runs(), ids=lambda p: p.name)
def test_review_cadence_matches_an_independent_computation(path):
    rv = review_file(path)
    pts = ref.points(path)
    assert rv.cadence_spm == pytest.approx(ref.mean_cadence(pts), abs=2.0)
    for d in rv.descents:
        assert d.actual_spm == pytest.approx(ref.mean_cadence(pts, d.start_m, d.end_m), abs=2.0)


def test_review_cadence_of_a_gpx_with_gpxtpx_cad(garmin_gpx):
    rv = review_file(garmin_gpx)
    pts = ref.points(garmin_gpx)
    assert rv.descents, "the fenix 2 run ends on a descent"
    assert rv.cadence_spm == pytest.approx(ref.mean_cadence(pts), abs=2.0)
    for d in rv.descents:
        assert d.actual_spm == pytest.approx(ref.mean_cadence(pts, d.start_m, d.end_m), abs=2.0)
    # Same run as the FIT: same figures within the 2 spm the issue allows (GPX has no fractional cadence).
    assert rv.cadence_spm == pytest.approx(review_file(FENIX2).cadence_spm, abs=2.0)


def test_cadence_units_are_steps_for_runs_only(tmp_path, garmin_gpx):
    raw_cad = [float(x) for x in __import__("re").findall(r"<gpxtpx:cad>(\d+)<", garmin_gpx.read_text())]
    s = read_samples(garmin_gpx)
    assert np.nanmax(s.cadence_spm) == 2 * max(raw_cad)          # strides/min in the file -> steps/min
    bike = ref.fit_to_gpx(FENIX2, tmp_path / "ride.gpx", track_type="cycling")
    s = read_samples(bike)
    assert s.cadence_spm is None and "not a run" in s.cadence_note   # pedal rpm is not steps: no figure invented
    assert read_samples(DATA / "sample-activity.fit").cadence_spm is None   # a cycling FIT


def test_review_json_shape_and_target_cadence():
    r = invoke(review, FENIX2, "--json", "--base-cadence", "170")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert isinstance(doc["cadence_spm"], float)
    for d in doc["descents"]:
        assert {"start_m", "end_m", "grade_pct", "target_spm", "actual_spm", "in_band_pct", "speed_mps"} <= set(d)
        assert d["end_m"] > d["start_m"] and d["grade_pct"] <= -2.5
        # The target is the tempo model's for that grade: base 170, +0.5 % per point beyond -2 %.
        assert 170 < d["target_spm"] <= 170 * 1.08
        assert 0 <= d["in_band_pct"] <= 100 and d["speed_mps"] > 0


def test_review_without_cadence_says_so():
    r = invoke(review, NO_CADENCE)
    assert r.exit_code == 0
    assert "no cadence data" in r.output and "reviewed without cadence" in r.output
    doc = json.loads(invoke(review, NO_CADENCE, "--json").output)
    assert doc["cadence_spm"] is None
    assert doc["descents"] and all(d["actual_spm"] is None and d["in_band_pct"] is None for d in doc["descents"])


def test_review_png(tmp_path):
    out = tmp_path / "r.png"
    r = invoke(review, FENIX2, "--png", out)
    assert r.exit_code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name, content", [("missing.fit", None), ("bad.gpx", b"<gpx><trk>"),
                                           ("bad.fit", b"not a fit file at all")])
def test_review_bad_input_is_one_line_exit_2(tmp_path, name, content):
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    one_error_line(invoke(review, f), name)


# ------------------------------------------------------------------------------------------------------------------
# Learn and runner profiles
# ------------------------------------------------------------------------------------------------------------------
def test_learn_writes_a_runner_profile_that_loads(tmp_path):
    out = tmp_path / "runner.yaml"
    r = invoke(learn, FENIX2, "-o", out)
    assert r.exit_code == 0, r.output
    rp = R.load_runner(out)
    assert 250 < rp.flat_pace_s_per_km < 330                       # the fenix 2 runner: 4:51 min/km on the flat
    assert rp.base_cadence_spm == pytest.approx(np.median(
        [c for d, c in ref.points(FENIX2) if c and c > 130]), abs=3)   # flat running cadence, steps/min
    assert any(g < 0 for g, _, _ in rp.pace_curve) and any(g > 0 for g, _, _ in rp.pace_curve)
    assert rp.grade_factor(0.0) == pytest.approx(1.0)


def test_learn_without_cadence_invents_none(tmp_path):
    out = tmp_path / "runner.yaml"
    r = invoke(learn, NO_CADENCE, "-o", out)
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load(out.read_text())
    assert "base_cadence_spm" not in doc and "cadence_curve" not in doc
    assert "no cadence data" in r.output


def test_learn_refuses_runs_without_times_and_keeps_the_old_profile(tmp_path):
    out = tmp_path / "runner.yaml"
    out.write_text("old")
    one_error_line(invoke(learn, DATA / "cerknicko-without-times.gpx", "-o", out), "cerknicko-without-times.gpx")
    assert out.read_text() == "old"


def test_default_runner_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert R.default_runner_path() == tmp_path / "downbeat" / "runner.yaml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert R.default_runner_path() == Path.home() / ".config" / "downbeat" / "runner.yaml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert R.load_runner_or_default() is None
    r = invoke(learn, FENIX2)
    assert r.exit_code == 0 and (tmp_path / "downbeat" / "runner.yaml").is_file()
    assert R.load_runner_or_default() is not None


def test_first_half_predicts_the_second_half_within_8_percent():
    """Issue 15 must-show on the one real run in tests/data long enough to split (9 km, fenix 2)."""
    run = load_run(FENIX2)
    p = run.profile
    half = p.total_distance_m / 2
    rp = learn_intervals(run_intervals(run, 0.0, half))
    predicted = R.predict_time_s(p, rp, start_m=half)
    real = float(p.time_at_distance(p.total_distance_m) - p.time_at_distance(half))
    assert abs(predicted / real - 1) < 0.08


def test_apply_runner_times_courses_and_sets_base_cadence():
    rp = R.RunnerProfile(flat_pace_s_per_km=300.0, pace_curve=((-10.0, 1.5, 500), (0.0, 1.0, 500), (10.0, 2.0, 500)),
                         base_cadence_spm=176.0, name="me")
    course = load_profile("demo-descent")
    mine = R.apply_runner(course, rp)
    assert mine.base_cadence_spm == 176.0 and mine.kind == "course"
    expected = np.sum(np.diff(course.distance_m) * 0.3 * rp.grade_factor(
        0.5 * (course.grade_pct[1:] + course.grade_pct[:-1])))
    assert mine.duration_s == pytest.approx(expected, rel=1e-9) and mine.duration_s != course.duration_s
    assert any("runner profile me" in n for n in mine.notes)
    act = load_profile(FENIX2)
    assert np.array_equal(R.apply_runner(act, rp).time_s, act.time_s)   # a recording keeps its own timing
    # Beyond the learned range: the default model, scaled to meet the curve's last point (continuous).
    assert rp.grade_factor(10.0001) == pytest.approx(2.0, rel=1e-3)


@pytest.mark.parametrize("text, field", [
    ("kind: runner\nflat_pace_s_per_km: 5\n", "flat_pace_s_per_km"),
    ("kind: runner\nflat_pace_s_per_km: 300\npace_curve: [{grade_pct: 5, factor: nope}]\n", "pace_curve[0].factor"),
    ("kind: runner\nflat_pace_s_per_km: 300\nbase_cadence_spm: 20\n", "base_cadence_spm"),
    ("kind: runner\nflat_pace: 300\n", "flat_pace"),
    ("kind: course\n", "kind"),
    ("[1, 2\n", "invalid YAML"),
])
def test_bad_runner_profiles_name_the_field(tmp_path, text, field):
    f = tmp_path / "runner.yaml"
    f.write_text(text)
    with pytest.raises(InputError, match=f"runner.yaml: .*{field.replace('[', '.').replace(']', '.')}"):
        R.load_runner(f)
    one_error_line(invoke(review, FENIX2, "--runner", f), "runner.yaml")


def test_runner_profile_round_trips(tmp_path):
    rp = learn_runs([FENIX2]).runner
    f = R.save_runner(rp, tmp_path / "sub" / "r.yaml")
    assert R.load_runner(f).to_dict() == rp.to_dict()
    assert not [p for p in f.parent.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------------------------------
def test_progress_over_a_folder_names_and_skips_bad_files_and_writes_a_workout_that_loads(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("activity-small-fenix2-run.fit", "garmin-fenix-5-run.fit", "cerknicko-jezero.tcx",
                 "activity-unexpected-eof.fit", "WorkoutIndividualSteps.fit"):
        (runs / name).write_bytes((DATA / name).read_bytes())
    (runs / "broken.gpx").write_text("<gpx><trk")
    (runs / "notes.txt").write_text("not an activity")
    out = tmp_path / "next.yaml"
    r = CliRunner().invoke(progress, [str(runs), "--workout", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("downbeat: warning: ")]
    assert len(warnings) == 3
    for bad in ("activity-unexpected-eof.fit", "WorkoutIndividualSteps.fit", "broken.gpx"):
        assert sum(bad in w for w in warnings) == 1
    assert "2015-08-15" in r.output and "next session:" in r.output
    w = load_profile(out)
    assert w.kind == "workout" and w.duration_s > 600 and w.grade_pct.min() < 0


def test_progress_named_bad_file_is_an_error(tmp_path):
    f = tmp_path / "bad.fit"
    f.write_bytes(b"garbage")
    one_error_line(invoke(progress, FENIX2, f), "bad.fit")


def _row(band, grade=-6.0, date="2024-01-01"):
    import datetime as dt

    from metronome.history.review import RunReview

    d = DescentReview(0.0, 600.0, grade, 175.0, 174.0 if band is not None else None, band, 3.0,
                      100 if band is not None else 0)
    return Row(RunReview(f"run-{date}", dt.datetime.fromisoformat(date + "T08:00:00+00:00"), 170.0, "this run's",
                         174.0 if band is not None else None, (d,), "", 5000.0, None, np.zeros(2), None))


def test_graded_exposure_steps_up_only_when_cadence_held():
    held = next_session([_row(20.0), _row(HELD_IN_BAND_PCT + 5)])
    assert held.decision == "steeper" and held.grade_pct == -7.0
    assert next_session([_row(HELD_IN_BAND_PCT - 5)]).decision == "same"
    assert next_session([_row(HELD_IN_BAND_PCT - 5)]).grade_pct == -6.0
    assert next_session([_row(None)]).decision == "same"              # no cadence: no sign it held
    at_limit = next_session([_row(90.0, grade=-9.0)])
    # 600 m at 3 m/s = 200 s, rounded to 210 s; one step longer is 270 s.
    assert at_limit.decision == "longer" and at_limit.interval_s == 270.0 and at_limit.grade_pct == -9.0


def test_history_does_not_import_the_audio_side():
    code = ("import sys, metronome.history.learn, metronome.history.review, metronome.history.progress, "
            "metronome.history.runner, metronome.history.samples;"
            "bad = [m for m in ('metronome.cli', 'metronome.live', 'metronome.engine', 'metronome.session') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stdout + r.stderr
