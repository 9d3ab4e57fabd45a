"""FIT export (issue 16): course with cue points, cadence workout, the `export` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.support.fit_check import SEMICIRCLE_DEG, fitdecode_messages, garmin_decode, haversine_m
from metronome.export import _fit
from metronome.cli.export import export
from metronome.export.fit_course import POINT_TYPES, build_course, cue_label
from metronome.export.fit_workout import build_workout, cadence_band
from metronome.session import load_profile, plan_session, tempo_settings_for
from profiles import load_profile as import_profile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SR = 48000
COURSES = ["mojstrovka", "demo-descent", str(DATA / "cerknicko-jezero.gpx"), str(DATA / "cerknicko-jezero.tcx"),
           str(DATA / "activity-small-fenix2-run.fit")]


def _plan(spec):
    profile = load_profile(spec)
    plan = plan_session(profile, tempo_settings_for(profile), cues=True)
    return profile, plan


@pytest.fixture(scope="module")
def exported():
    """Every course exported once: ``{spec: (profile, plan, CourseExport)}``."""
    out = {}
    for spec in COURSES:
        profile, plan = _plan(spec)
        out[spec] = (profile, plan, build_course(profile, plan.planned_cues, SR))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Course
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", COURSES)
def test_course_decodes_with_garmin_sdk_and_fitdecode(exported, spec):
    profile, plan, ex = exported[spec]
    msgs = garmin_decode(ex.data)
    assert msgs["file_id_mesgs"][0]["type"] == "course"
    assert msgs["course_mesgs"][0]["sport"] == "running"
    assert len(msgs["lap_mesgs"]) == 1
    assert [e["event_type"] for e in msgs["event_mesgs"]] == ["start", "stop_disable_all"]
    assert len(msgs["record_mesgs"]) == ex.track.distance_m.size >= 2
    assert len(msgs.get("course_point_mesgs", [])) == len(plan.planned_cues)
    order = [name for name, _ in fitdecode_messages(ex.data)]
    # file_id, course, lap, timer start, records, course points, timer stop (module docstring).
    assert order[:4] == ["file_id", "course", "lap", "event"] and order[-1] == "event"
    body = order[4:-1]
    assert body == ["record"] * len(msgs["record_mesgs"]) + ["course_point"] * len(msgs.get("course_point_mesgs", []))
    recs = msgs["record_mesgs"]
    times = [r["timestamp"] for r in recs]
    assert all(b > a for a, b in zip(times, times[1:])), "record timestamps must increase"
    assert abs(recs[-1]["distance"] - profile.total_distance_m) < 0.01
    assert abs(msgs["lap_mesgs"][0]["total_distance"] - profile.total_distance_m) < 0.01
    # Timing is the plan's: the last record is at the plan's duration.
    assert abs((times[-1] - times[0]).total_seconds() - profile.duration_s) <= 1.0


@pytest.mark.parametrize("spec", COURSES)
def test_course_points_at_the_planned_cues(exported, spec):
    profile, plan, ex = exported[spec]
    points = garmin_decode(ex.data).get("course_point_mesgs", [])
    cues = sorted(plan.planned_cues, key=lambda c: c.start_sample)
    recs = garmin_decode(ex.data)["record_mesgs"]
    with_pos = [r for r in recs if "position_lat" in r]
    for cue, pt in zip(cues, points):
        planned_m = float(profile.distance_at_time(cue.start_sample / SR))
        assert abs(pt["distance"] - planned_m) <= 5.0, (cue.cue_id, pt["distance"], planned_m)
        assert 0 < len(pt["name"].encode("utf-8")) <= _fit.COURSE_POINT_NAME_BYTES
        assert pt["type"] in POINT_TYPES
        if with_pos and "position_lat" in pt:
            # The point's position is on the track, within 5 m of where the track is at the planned distance.
            d = np.array([r["distance"] for r in with_pos])
            lat = np.interp(planned_m, d, [r["position_lat"] * SEMICIRCLE_DEG for r in with_pos])
            lon = np.interp(planned_m, d, [r["position_long"] * SEMICIRCLE_DEG for r in with_pos])
            got = haversine_m(pt["position_lat"] * SEMICIRCLE_DEG, pt["position_long"] * SEMICIRCLE_DEG, lat, lon)
            assert got <= 5.0, (cue.cue_id, got)
    if spec == "mojstrovka":
        assert len(points) >= 5 and all("position_lat" in p for p in points)


@pytest.mark.parametrize("spec", COURSES)
def test_course_round_trip_keeps_distance_and_descent(exported, spec, tmp_path):
    profile, _, ex = exported[spec]
    path = tmp_path / "course.fit"
    path.write_bytes(ex.data)
    back = import_profile(str(path))
    assert abs(back.total_distance_m / profile.total_distance_m - 1) <= 0.01
    assert abs(back.total_descent_m / profile.total_descent_m - 1) <= 0.01, \
        (profile.total_descent_m, back.total_descent_m)


def test_course_without_positions_warns_and_still_round_trips(exported):
    profile, _, ex = exported["demo-descent"]
    assert ex.track.lat_deg is None
    assert any("no map positions" in w for w in ex.warnings)
    assert all("position_lat" not in r for r in garmin_decode(ex.data)["record_mesgs"])
    exported_gpx = exported["mojstrovka"][2]
    assert exported_gpx.warnings == ()


def test_course_is_reproducible(exported):
    profile, plan, ex = exported["mojstrovka"]
    assert build_course(profile, plan.planned_cues, SR).data == ex.data


def test_cue_labels_fit_a_watch():
    from cues.library import load_library

    for cue in load_library():
        for g in (-45.0, -12.4, -4.0, 0.2):
            label = cue_label(cue.id, cue.phrasings[0], g)
            assert 0 < len(label.encode("utf-8")) <= _fit.COURSE_POINT_NAME_BYTES, label
    assert cue_label("steep_shorten", "x", -12.4) == "-12% shorten"
    # Unknown cues (a user library): first whole words of the phrasing; multi-byte text never cut mid-character.
    assert cue_label("my_cue", "Watch the roots on the left.", -5) == "Watch the roots"
    label = cue_label("x", "Ščepec čaja pred spustom", -5)
    assert len(label.encode("utf-8")) <= _fit.COURSE_POINT_NAME_BYTES
    label.encode("utf-8").decode("utf-8")


def test_unvoiced_plan_places_the_same_kinds_of_cue_on_beats():
    from cues.session import plan_profile_cues_unvoiced

    profile, plan = _plan("demo-descent")
    unvoiced = plan_profile_cues_unvoiced(profile, plan.tempo_map, SR)
    beats = set(plan.tempo_map.beat_samples().tolist())
    assert unvoiced and all(c.start_sample in beats for c in unvoiced)
    assert {c.trigger for c in unvoiced} == {c.trigger for c in plan.planned_cues}
    # Cue points of the unvoiced plan land near the voiced ones (same rules; clips assumed 2.5 s long).
    voiced = {(c.trigger, c.event_sample): c.start_sample for c in plan.planned_cues}
    near = [abs(c.start_sample - voiced[(c.trigger, c.event_sample)]) / SR
            for c in unvoiced if (c.trigger, c.event_sample) in voiced]
    assert near and max(near) <= 15.0


# ------------------------------------------------------------------------------------------------------------------
# Workout
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["mojstrovka", "demo-descent", "treadmill-decline", "hill-repeats",
                                  str(DATA / "cerknicko-jezero.gpx")])
def test_workout_steps_cover_the_course_with_the_plans_cadence(spec):
    profile = load_profile(spec)
    ts = tempo_settings_for(profile)
    wk = build_workout(profile, ts)
    msgs = garmin_decode(wk.data)
    assert msgs["file_id_mesgs"][0]["type"] == "workout"
    assert msgs["workout_mesgs"][0]["sport"] == "running"
    steps = msgs["workout_step_mesgs"]
    assert len(steps) == msgs["workout_mesgs"][0]["num_valid_steps"] == len(wk.steps) >= 1
    fd = [f for name, f in fitdecode_messages(wk.data) if name == "workout_step"]
    assert len(fd) == len(steps)
    total = sum(s["duration_distance"] for s in steps)
    assert abs(total / profile.total_distance_m - 1) <= 0.01, (total, profile.total_distance_m)
    assert all(s["duration_type"] == "distance" and s["target_type"] == "cadence" for s in steps)
    # Targets: the band is centred on the plan's target (rpm = strides/min: low + high = steps/min).
    tm = plan_session(profile, ts, cues=False).tempo_map
    for step, s in zip(steps, wk.steps):
        lo, hi = step["custom_target_cadence_low"], step["custom_target_cadence_high"]
        assert lo + hi == round(s.target_spm) and 2 * lo < s.target_spm < 2 * hi
        assert f"{s.grade_pct:.0f}%" in step["wkt_step_name"]
    # ...and the plan's target is the tempo the map holds on that stretch: where the map reached the plateau
    # (its ramp ends where the step starts), its bpm there equals the step's target.
    reached = 0
    for s in wk.steps:
        t = float(profile.time_at_distance(s.start_m + 1e-6)) if s.start_m > 0 else 0.0
        bpm = float(tm.bpm_at(round(t * SR)))
        if abs(bpm - s.target_spm) < 0.05:
            reached += 1
    assert reached >= 0.5 * len(wk.steps), (reached, len(wk.steps))
    if spec in ("demo-descent", "treadmill-decline"):
        assert reached == len(wk.steps)  # authored plateaus are long: every ramp completes


def test_cadence_band_units():
    assert cadence_band(170.0) == (83, 87)             # 166..174 spm
    lo, hi = cadence_band(173.4, "rpm", 3)
    assert lo + hi == 173
    assert cadence_band(173.4, "spm", 4) == (169, 177)
    with pytest.raises(ValueError):
        cadence_band(170, "hz")


def test_workout_in_spm_writes_steps_per_minute():
    profile = load_profile("demo-descent")
    wk = build_workout(profile, tempo_settings_for(profile), cadence_unit="spm")
    for step, s in zip(garmin_decode(wk.data)["workout_step_mesgs"], wk.steps):
        assert step["custom_target_cadence_low"] < s.target_spm < step["custom_target_cadence_high"]
        assert step["custom_target_cadence_low"] + step["custom_target_cadence_high"] == 2 * round(s.target_spm)


# ------------------------------------------------------------------------------------------------------------------
# Command
# ------------------------------------------------------------------------------------------------------------------
def test_export_command_writes_both_files(tmp_path):
    c, w = tmp_path / "c.fit", tmp_path / "w.fit"
    res = CliRunner().invoke(export, ["mojstrovka", "--fit-course", str(c), "--fit-workout", str(w), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    garmin_decode(c.read_bytes())
    garmin_decode(w.read_bytes())
    assert len(summary["fit_course"]["course_points"]) == len(garmin_decode(c.read_bytes())["course_point_mesgs"])
    assert summary["fit_workout"]["cadence_unit"] == "rpm"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_export_command_flags(tmp_path):
    c = tmp_path / "c.fit"
    res = CliRunner().invoke(export, ["demo-descent", "--fit-course", str(c), "--no-cues", "--base-cadence", "180",
                                      "--name", "A very long course name for a small watch screen"])
    assert res.exit_code == 0, res.output
    msgs = garmin_decode(c.read_bytes())
    assert "course_point_mesgs" not in msgs
    assert len(msgs["course_mesgs"][0]["name"].encode()) <= _fit.NAME_BYTES


def _run_main(args, env=None, preamble=""):
    """``downbeat export ...`` through the real entry point (its exit-code mapping and lazy registration)."""
    code = f"import sys; {preamble}from metronome import cli; cli.main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, "export", *args], capture_output=True, text=True,
                          cwd=str(ROOT), env=env, timeout=120)


def test_missing_extra_is_one_line_exit_1(tmp_path):
    out = tmp_path / "c.fit"
    res = _run_main(["demo-descent", "--fit-course", str(out)], preamble="sys.modules['fit_tool'] = None; ")
    assert res.returncode == 1
    assert res.stderr.strip() == f"downbeat: error: FIT export needs the optional 'fit' extra (fit-tool): " \
                                 f"{_fit.INSTALL_HINT}"
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["demo-descent"], "nothing to do"),
    (["demo-descent", "--fit-course", "/nonexistent-dir/c.fit"], "does not exist"),
    (["demo-descent", "--fit-course", "{tmp}/c.gpx"], "must end in .fit"),
    (["demo-descent", "--fit-course", "{tmp}/c.fit", "--fit-workout", "{tmp}/c.fit"], "its own name"),
    (["no-such-course", "--fit-course", "{tmp}/c.fit"], "no such file"),
    (["demo-descent", "--fit-workout", "{tmp}/w.fit", "--cadence-band", "0"], "--cadence-band"),
    (["demo-descent", "--fit-workout", "{tmp}/w.fit", "--base-cadence", "20"], "--base-cadence"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = _run_main(args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


def test_failed_export_keeps_an_existing_file(tmp_path):
    out = tmp_path / "c.fit"
    out.write_bytes(b"old course")
    res = _run_main(["no-such-course", "--fit-course", str(out)])
    assert res.returncode == 2 and out.read_bytes() == b"old course"


def test_export_without_speech_engine_plans_cue_points_unvoiced(tmp_path):
    """No espeak-ng (empty PATH, empty voice cache): the course still gets its cue points, with a warning."""
    out = tmp_path / "c.fit"
    env = dict(os.environ, PATH=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    res = _run_main(["demo-descent", "--fit-course", str(out)], env=env)
    assert res.returncode == 0, res.stderr
    assert "planned without speech" in res.stderr
    assert all(line.startswith("downbeat: warning: ") for line in res.stderr.strip().splitlines())
    points = garmin_decode(out.read_bytes()).get("course_point_mesgs", [])
    profile, plan = _plan("demo-descent")
    assert len(points) >= len(plan.planned_cues) - 2
