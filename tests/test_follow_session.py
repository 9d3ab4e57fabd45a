"""Distance-locked coaching (issue 14): ``render COURSE --follow replay:RUN`` on real recorded runs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from metronome.engine import warm_kernels
from tests.support import runs
from tests.support.track_files import DATA, write_gpx

FOLLOW_RUNS = ("road run, Fenix 2 (9.0 km)", "same run, 10-min pause", "walk-and-run up, Mojstrovka",
               "walk-and-run down, Mojstrovka")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    warm_kernels(48000, 2, for_play=False, say=None)
    return runs.build_runs(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("name", FOLLOW_RUNS)
def test_coaching_at_every_descent_within_the_window(built, name, tmp_path):
    run = built[name]
    res, sched, plan = runs.follow_render(run, run, tmp_path / "o.wav")
    ds = runs.descents_of(plan)
    assert ds, f"{name}: no descent of 150 m to check"
    arrivals = runs.arrival_times(run, [d.start_m for d in ds])
    cue_t = [e.time_s for e in res.events if e.kind == "cue"]
    report = runs.window_report(cue_t, arrivals)
    assert all(ok for _, ok in report), f"{name}: descents at {[round(d.start_m) for d in ds]} m, " \
                                        f"arrivals {arrivals}, cue offsets {report}"


def test_the_time_plan_misses_after_a_pause_and_follow_mode_does_not(built, tmp_path):
    run = built["same run, 10-min pause"]
    res, sched, plan = runs.follow_render(run, run, tmp_path / "o.wav")
    arrivals = runs.arrival_times(run, [d.start_m for d in runs.descents_of(plan)])
    timed = runs.window_report(runs.time_plan_cue_times(run), arrivals)
    assert not any(ok for _, ok in timed)  # the time plan squeezed the 10 minutes out: far too early
    kinds = [e.kind for e in sched.follower.events]
    assert kinds.count("lost_fix") == 1 and kinds.count("fix_regained") == 1
    base = plan.course.base_bpm
    lost = [s for s in sched.steps if s.state == "lost_fix"]
    assert lost and all(s.target_bpm == base for s in lost)
    # While lost, the kernel reaches the base cadence and holds it (beats of the pause's second half).
    t_lost = lost[0].sample / 48000
    mid = [e.bpm for e in res.events if e.kind == "beat" and t_lost + 120 < e.time_s < t_lost + 500]
    assert mid and all(b == pytest.approx(base) for b in mid)


def test_events_csv_has_distance_and_counts_from_the_first_fix(built, tmp_path):
    run = built["walk-and-run down, Mojstrovka"]
    ev = tmp_path / "ev.csv"
    res, sched, plan = runs.follow_render(run, run, tmp_path / "o.wav", events=ev)
    rows = list(csv.DictReader(open(ev, newline="")))
    assert list(rows[0]) == ["kind", "sample", "time_s", "bpm", "clip", "distance_m"]
    assert rows[0]["sample"] == "0" and float(rows[0]["time_s"]) == 0.0
    d = np.array([float(r["distance_m"]) for r in rows])
    assert np.all(np.diff(d) >= 0) and d[-1] > 0.95 * plan.course.total_m


def test_follow_render_is_bit_identical_for_any_blocksize(built, tmp_path):
    run = built["walk-and-run down, Mojstrovka"]
    ref = None
    for bs in (1, 64, 65, 128, 8192, 8193):
        out = tmp_path / f"o{bs}.wav"
        res, _, _ = runs.follow_render(run, run, out, blocksize=bs)
        x, _ = sf.read(out, dtype="int16")
        assert res.cues >= 2
        if ref is None:
            ref = x
        else:
            assert np.array_equal(x, ref), bs


def test_off_course_detour_said_once_base_cadence_then_coaching_resumes(tmp_path):
    """The road run with a 300 m detour 150 m off the course for 2 minutes, half-way."""
    from profiles.loader import read_track

    raw = read_track(DATA / "activity-small-fenix2-run.fit")
    ok = np.isfinite(raw.lat_deg) & np.isfinite(raw.elevation_m)
    lat, lon, ele, t = raw.lat_deg[ok].copy(), raw.lon_deg[ok].copy(), raw.elevation_m[ok], raw.time_s[ok]
    a = int(np.searchsorted(t, t[0] + 1200))
    b = int(np.searchsorted(t, t[0] + 1320))
    lat[a:b] += 150.0 / 111_320.0  # 150 m north of the course
    run = write_gpx(tmp_path / "detour.gpx", lat, lon, ele, t)
    course = DATA / "activity-small-fenix2-run.fit"
    res, sched, plan = runs.follow_render(course, run, tmp_path / "o.wav")
    kinds = [e.kind for e in sched.follower.events]
    assert kinds.count("off_course") == 1 and kinds.count("on_course") == 1
    cues = [e.clip for e in res.events if e.kind == "cue"]
    assert cues.count("off_course-1") == 1 and cues.count("back_on_course-1") == 1
    off = [s for s in sched.steps if s.state == "off_course"]
    assert off and all(s.target_bpm == plan.course.base_bpm for s in off)
    # Coaching resumes: the descent near the end is still coached in its window.
    ds = runs.descents_of(plan)
    report = runs.window_report([e.time_s for e in res.events if e.kind == "cue"],
                                runs.arrival_times(course, [d.start_m for d in ds]))  # same times, no detour
    assert report and all(ok for _, ok in report), report


def test_tempo_is_in_place_where_the_grade_changes(built, tmp_path):
    """Each tempo level the runner reaches is reached by the kernel by then (ramps timed from the speed)."""
    run = built["walk-and-run down, Mojstrovka"]
    res, sched, plan = runs.follow_render(run, run, tmp_path / "o.wav")
    c = plan.course
    beats = [(e.time_s, e.bpm) for e in res.events if e.kind == "beat"]
    bt = np.array([b[0] for b in beats])
    bb = np.array([b[1] for b in beats])
    arr = runs.arrival_times(run, c.level_m[1:])
    checked = 0
    for j, ta in enumerate(arr, start=1):
        nxt = arr[j] if j < len(arr) else np.inf  # the next change, when it comes soon, may already be ramping
        if nxt - ta < 20.0 or ta < 5.0:
            continue
        k = int(np.searchsorted(bt, ta + 60.0 / bb[0] + 1.0))  # one beat + one update after arrival
        assert bb[min(k, bb.size - 1)] == pytest.approx(c.level_bpm[j], abs=0.05), (j, c.level_m[j], ta)
        checked += 1
    assert checked >= 3


def test_cli_follow_renders_and_refuses_bad_urls(tmp_path):
    import subprocess
    import sys

    run = str(DATA / "activity-small-fenix2-run.fit")
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", run, "--follow", "udp://127.0.0.1:9",
                        "-o", str(tmp_path / "o.wav")], capture_output=True, text=True)
    assert r.returncode == 2 and "--follow" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", run, "--follow", "replay:" + run,
                        "-o", str(tmp_path / "o.wav"), "--json", "--no-cues"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert '"reached_km": 9.0' in r.stdout
