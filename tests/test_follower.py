"""Course follower (issue 14): projection, plausible progress, off-course and lost-fix, on synthetic and real courses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metronome.errors import InputError
from metronome.follower import CourseFollower, CoursePath, FollowerParams
from metronome.sensors import Fix, Reading
from profiles import load_profile

DATA = Path(__file__).parent / "data"
M_PER_DEG = 6371008.8 * math.pi / 180.0
LAT0, LON0 = 46.0, 14.0


def _from_xy(x_m, y_m):
    """Local metres around (46N, 14E) -> lat/lon arrays."""
    lat = LAT0 + np.asarray(y_m) / M_PER_DEG
    lon = LON0 + np.asarray(x_m) / (M_PER_DEG * math.cos(math.radians(LAT0)))
    return lat, lon


def _path_from_xy(x, y, step_m=5.0):
    """A course through the given corner points, resampled every ``step_m`` like a Profile grid."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    grid = np.arange(0.0, d[-1], step_m)
    grid = np.append(grid, d[-1])
    lat, lon = _from_xy(np.interp(grid, d, x), np.interp(grid, d, y))
    return CoursePath(grid, lat, lon)


def out_and_back(leg_m=1000.0, gap_m=4.0):
    """Out along y=0, a tight turn, back along y=gap: the return leg passes within GPS noise of the outward one."""
    return _path_from_xy([0, leg_m, leg_m, 0], [0, 0, gap_m, gap_m])


def loop(radius_m=150.0, laps=2):
    """A circle run ``laps`` times: every place is passed ``laps`` times, and the start is the finish."""
    a = np.linspace(0, 2 * math.pi * laps, int(200 * laps) + 1)
    return _path_from_xy(radius_m * np.sin(a), radius_m * (1 - np.cos(a)))


def switchback(legs=6, leg_m=120.0, gap_m=15.0):
    """Hairpins down a slope: legs ``gap_m`` apart, closer than twice the GPS error."""
    xs, ys = [], []
    for k in range(legs):
        x0, x1 = (0.0, leg_m) if k % 2 == 0 else (leg_m, 0.0)
        xs += [x0, x1]
        ys += [k * gap_m, k * gap_m]
    return _path_from_xy(xs, ys)


def _noisy(path, d_m, rng, sigma_m):
    lat, lon = path.point_at(d_m)
    if sigma_m:
        nx, ny = rng.normal(0.0, sigma_m, 2)
        lat += ny / M_PER_DEG
        lon += nx / (M_PER_DEG * math.cos(math.radians(lat)))
    return lat, lon


def run(path, d_true, *, sigma_m=0.0, acc_m=None, seed=0, dt_s=1.0, speed=None, follower=None, t0=0.0):
    """Feed fixes at course distances ``d_true`` (one per ``dt_s``); returns the states."""
    rng = np.random.default_rng(seed)
    f = follower or CourseFollower(path)
    out = []
    for k, d in enumerate(d_true):
        t = t0 + k * dt_s
        lat, lon = _noisy(path, d, rng, sigma_m)
        out.append(f.update(Fix(t_s=t, lat_deg=lat, lon_deg=lon, accuracy_m=acc_m,
                                speed_mps=None if speed is None else speed[k]), t))
    return f, out


def _check_tracks(states, d_true, tol_m, dt_s=1.0, params=FollowerParams()):
    d = np.array([s.distance_m for s in states])
    assert np.all(np.diff(d) >= 0), "went back"
    err = d - np.asarray(d_true)
    assert np.max(np.abs(err)) <= tol_m, (np.argmax(np.abs(err)), err[np.argmax(np.abs(err))])
    return err


# --------------------------------------------------------------------------------------------------------------
def test_exact_fixes_on_a_straight_course():
    p = _path_from_xy([0, 1000], [0, 0])
    d_true = np.arange(0, 1000, 3.0)
    f, states = run(p, d_true, acc_m=5.0)
    _check_tracks(states, d_true, 4.0)  # the first few fixes: the speed estimate starts at 0
    assert states[-1].state == "on_course" and states[-1].confidence > 0.5
    assert states[-1].speed_mps == pytest.approx(3.0, abs=0.2)
    assert [e.kind for e in f.events] == ["acquired"]


def test_a_runner_joining_mid_course_is_placed_where_they_are_not_back_toward_the_start():
    """The first fix (joining mid-way, or a session resumed after --reconnect) goes to the nearest point of the pass
    it is on, not to that pass's segment nearest the start (which lies up to off_course_m behind)."""
    p = _path_from_xy([0, 2000], [0, 0])
    f, states = run(p, [1200.0, 1203.0, 1206.0], acc_m=5.0)
    assert states[0].distance_m == pytest.approx(1200.0, abs=1.0)
    # A loop: start and finish are one place; the first pass (the start) is still preferred there.
    lp = loop(laps=1)
    _, st = run(lp, [2.0], acc_m=5.0)
    assert st[0].distance_m < 10.0


@pytest.mark.parametrize("sigma", [5.0, 10.0, 15.0])
def test_out_and_back_never_jumps_to_the_other_leg(sigma):
    p = out_and_back()
    d_true = np.arange(0, p.total_m, 3.0)
    _, states = run(p, d_true, sigma_m=sigma, acc_m=sigma, seed=int(sigma))
    _check_tracks(states, d_true, 3.5 * sigma + 5)
    # at the start of the return leg (d ~ 1010 m) the fix sits 4 m from the *outward* leg's end: no jump back;
    # on the outward leg near the start, the return leg's end (d ~ 2000 m) is as near: no jump ahead


@pytest.mark.parametrize("sigma", [5.0, 15.0])
def test_loop_run_twice_stays_on_its_lap(sigma):
    p = loop(laps=2)
    lap = p.total_m / 2
    d_true = np.arange(0, p.total_m, 2.5)
    _, states = run(p, d_true, sigma_m=sigma, acc_m=sigma, seed=3)
    err = _check_tracks(states, d_true, 3.5 * sigma + 5)
    assert abs(err[-1]) < lap / 4  # still on lap 2 at the end, not lap 1
    assert states[0].distance_m < 3.5 * sigma + 5  # the shared start/finish starts at 0, not at the finish


def test_switchback_legs_closer_than_the_noise():
    p = switchback()
    d_true = np.arange(0, p.total_m, 2.0)
    _, states = run(p, d_true, sigma_m=8.0, acc_m=8.0, seed=5)
    _check_tracks(states, d_true, 35.0)


def test_pause_holds_the_distance():
    p = out_and_back()
    d_true = np.concatenate([np.arange(0, 500, 3.0), np.full(120, 500.0), np.arange(503, 900, 3.0)])
    speed = np.concatenate([np.full(167, 3.0), np.zeros(120), np.full(133, 3.0)])
    _, states = run(p, d_true, sigma_m=8.0, acc_m=8.0, seed=7, speed=speed)
    _check_tracks(states, d_true, 35.0)
    during = np.array([s.distance_m for s in states[170:287]])
    assert during.max() - during.min() < 15.0  # two minutes standing: the noise does not ratchet it on
    assert all(s.state == "on_course" for s in states)


def test_off_course_detour_is_said_once_and_rejoins_ahead():
    p = _path_from_xy([0, 2000], [0, 0])
    f = CourseFollower(p)
    t = 0.0
    d = 0.0
    states = []
    # 300 m on course, then 60 s on a path 120 m off the course while moving on 150 m, then back on course
    for k in range(100):
        lat, lon = p.point_at(d)
        states.append(f.update(Fix(t, lat, lon, accuracy_m=5.0), t))
        t += 1.0
        d += 3.0
    held = states[-1].distance_m
    for k in range(60):
        lat, lon = _from_xy(d, 120.0)
        states.append(f.update(Fix(t, float(lat), float(lon), accuracy_m=5.0), t))
        t += 1.0
        d += 2.5
    off = [s for s in states[100:]]
    assert [s.state for s in off[:10]] == ["on_course"] * 10  # up to 10 s off the line: not yet off course
    assert all(s.state == "off_course" for s in off[12:])
    assert max(s.distance_m for s in off) == held  # progress holds while off course
    assert all(s.confidence == 0.0 for s in off[12:])
    for k in range(30):
        lat, lon = p.point_at(d)
        states.append(f.update(Fix(t, lat, lon, accuracy_m=5.0), t))
        t += 1.0
        d += 3.0
    assert states[-1].state == "on_course" and abs(states[-1].distance_m - (d - 3.0)) < 10.0
    kinds = [e.kind for e in f.events]
    assert kinds == ["acquired", "off_course", "on_course"]
    assert f.events[1].distance_m == held


def test_lost_fix_holds_then_reports_lost_once_then_regained():
    p = _path_from_xy([0, 2000], [0, 0])
    f, states = run(p, np.arange(0, 300, 3.0), acc_m=5.0)
    t_last = 99.0
    d_held = states[-1].distance_m
    s = [f.poll(t_last + k * 0.5) for k in range(1, 60)]
    assert all(x.distance_m == d_held for x in s)  # no dead reckoning
    lost = [x for x in s if x.state == "lost_fix"]
    assert lost and lost[0].t_s == pytest.approx(t_last + 10.5)  # first poll after lost_after_s
    assert all(x.confidence == 0.0 for x in lost)
    assert [e.kind for e in f.events] == ["acquired", "lost_fix"]
    # 40 s later the fix is back, 120 m further on (in a tunnel at 3 m/s)
    lat, lon = p.point_at(d_held + 120.0)
    x = f.update(Fix(t_last + 40.0, lat, lon, accuracy_m=5.0), t_last + 40.0)
    assert x.state == "on_course" and abs(x.distance_m - (d_held + 120.0)) < 10.0
    assert [e.kind for e in f.events] == ["acquired", "lost_fix", "fix_regained"]


def test_batched_fixes_use_their_own_times():
    """Ten fixes pushed in one HTTP batch arrive at one caller time: the fix times set the motion model."""
    p = _path_from_xy([0, 1000], [0, 0])
    f = CourseFollower(p)
    for b in range(10):
        now = 10.0 * (b + 1)
        for k in range(10):
            t = 10.0 * b + k
            lat, lon = p.point_at(3.0 * t)
            st_ = f.update(Fix(1.7e9 + t, lat, lon, accuracy_m=5.0), now)
    assert st_.speed_mps == pytest.approx(3.0, abs=0.3) and abs(st_.distance_m - 297.0) < 5.0


def test_distance_only_treadmill():
    """A course without coordinates (a YAML workout): the treadmill's Total Distance, from its own zero."""
    prof = load_profile("demo-descent")
    assert prof.lat_deg is None
    f = CourseFollower(prof)
    states = [f.push(Reading(grade_pct=None, distance_m=5000.0 + 2.5 * k, speed_mps=2.5), float(k)) for k in range(200)]
    d = np.array([s.distance_m for s in states])
    assert d[0] == 0.0 and d[-1] == pytest.approx(2.5 * 199, abs=1.0) and np.all(np.diff(d) >= 0)
    assert states[-1].mode == "distance" and states[-1].speed_mps == pytest.approx(2.5, abs=0.1)
    # the device restarts from 0: continue from where we are, never back
    x = f.push(Reading(grade_pct=None, distance_m=3.0), 200.0)
    assert x.distance_m >= d[-1]
    y = f.push(Reading(grade_pct=None, distance_m=6.0), 201.0)
    assert y.distance_m == pytest.approx(x.distance_m + 3.0, abs=1.5)
    # a position fix on a course without coordinates cannot be placed: ignored, counted
    f.push(Fix(None, 46.0, 14.0), 202.0)
    assert f.ignored == 1


@pytest.mark.parametrize("name", ["cerknicko-jezero.gpx", "Mojstrovka.gpx", "cerknicko-jezero.tcx"])
def test_real_course_followed_with_noise(name):
    prof = load_profile(DATA / name)
    p = CoursePath.from_profile(prof)
    assert p.has_geometry
    d_true = np.arange(0.0, prof.total_distance_m, 2.8)
    _, states = run(p, d_true, sigma_m=10.0, acc_m=10.0, seed=11)
    _check_tracks(states, d_true, 40.0)
    assert sum(s.state == "on_course" for s in states) == len(states)


def test_real_out_and_back_built_from_a_track():
    """Mojstrovka up and the same way down: every point passed twice, the two passes on the same path."""
    prof = load_profile(DATA / "Mojstrovka.gpx")
    lat, lon, d = prof.lat_deg, prof.lon_deg, prof.distance_m
    lat2 = np.concatenate([lat, lat[::-1][1:]])
    lon2 = np.concatenate([lon, lon[::-1][1:]])
    d2 = np.concatenate([d, d[-1] + (d[-1] - d[::-1][1:])])
    p = CoursePath(d2, lat2, lon2)
    d_true = np.arange(0.0, p.total_m, 2.5)
    _, states = run(p, d_true, sigma_m=10.0, acc_m=10.0, seed=13)
    _check_tracks(states, d_true, 40.0)


def test_bad_inputs():
    with pytest.raises(InputError, match="distance_m"):
        CoursePath([0.0, 5.0, 3.0])
    with pytest.raises(InputError, match="start_m"):
        CourseFollower(CoursePath([0.0, 5.0]), start_m=10.0)
    with pytest.raises(InputError, match="off_course_m"):
        FollowerParams(off_course_m=-1)


def test_profile_positions_follow_the_file():
    prof = load_profile(DATA / "cerknicko-jezero.gpx")
    assert prof.lat_deg.size == prof.distance_m.size and not prof.lat_deg.flags.writeable
    assert prof.lat_deg[0] == pytest.approx(45.772175, abs=1e-5)


# --------------------------------------------------------------------------------------------------------------
# Property: on out-and-back, loop and switchback courses, with noise, pauses and speed changes, the reported
# distance never goes back, never gets ahead of the runner by more than the noise allows, and never falls behind
# onto another pass of the same place.
# --------------------------------------------------------------------------------------------------------------
COURSES = {"out_and_back": out_and_back(600.0, 3.0), "loop": loop(100.0, 3), "switchback": switchback(5, 100.0, 18.0)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(COURSES)), sigma=st.floats(5.0, 15.0), seed=st.integers(0, 2**31),
       speeds=st.lists(st.sampled_from([0.0, 1.5, 2.5, 3.5, 5.0]), min_size=3, max_size=8),
       dt_s=st.sampled_from([1.0, 2.0]))
def test_never_jumps_back_or_ahead(kind, sigma, seed, speeds, dt_s):
    p = COURSES[kind]
    # piecewise-constant speed, ~60 s each stretch (0 = a pause), until the course ends
    v = np.repeat(np.array(speeds), int(60 / dt_s))
    d_true = np.minimum(np.concatenate([[0.0], np.cumsum(v * dt_s)])[:-1], p.total_m)
    # Receivers report Doppler speed (gpsd TPV speed, Android/iOS location speed), noisy by ~0.3 m/s.  Without it a
    # sudden stop a few metres before a hairpin can carry the estimate round the bend (the limit is documented).
    speed = np.clip(v + np.random.default_rng(seed + 1).normal(0.0, 0.3, v.size), 0.0, None)
    f, states = run(p, d_true, sigma_m=sigma, acc_m=sigma, seed=seed, dt_s=dt_s, speed=speed)
    d = np.array([s.distance_m for s in states])
    assert np.all(np.diff(d) >= 0.0)
    prm = f.params
    assert np.all(np.diff(d) <= prm.max_speed_mps * dt_s + 3 * sigma + prm.margin_m + 1e-9)
    err = d - d_true
    assert np.max(np.abs(err)) <= 4.0 * sigma + 10.0, (int(np.argmax(np.abs(err))), float(err[np.argmax(np.abs(err))]))
