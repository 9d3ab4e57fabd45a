"""Terrain events from profiles: descents, steep sections, technical tags, hysteresis against GPS noise."""

from __future__ import annotations

import numpy as np
import pytest

from cues.terrain import TerrainRules, hysteresis_runs, terrain_events
from profiles.schema import Profile, Tag

STEP_M = 10.0


def make_profile(grade_pct, speed_mps=3.0, tags=(), kind="course", step_m=STEP_M):
    g = np.asarray(grade_pct, dtype=float)
    d = np.arange(g.size) * step_m
    v = np.full(g.size, float(speed_mps))
    t = np.concatenate([[0.0], np.cumsum(step_m / v[1:])])
    elev = np.concatenate([[0.0], np.cumsum(g[1:] / 100.0 * step_m)])
    return Profile("test", "test", kind, d, elev, g, t, v, tuple(tags))


def segs(*pairs):
    """``segs((grade, metres), ...)`` -> grade per 10 m grid point."""
    return np.concatenate([np.full(int(m / STEP_M), float(g)) for g, m in pairs])


def kinds(events):
    return [e.kind for e in events]


def test_single_descent():
    p = make_profile(segs((0, 500), (-6, 1000), (0, 500)))
    ev = terrain_events(p)
    assert kinds(ev) == ["descent_start", "long_descent", "descent_end"]
    start, long_, end = ev
    assert start.time_s == pytest.approx(500 / 3.0)
    assert start.end_s == pytest.approx(1500 / 3.0)
    assert start.grade_pct == pytest.approx(-6.0, abs=0.1)
    assert long_.time_s == pytest.approx(start.time_s + 90.0)
    assert end.time_s == pytest.approx(start.end_s)
    assert {e.descent_index for e in ev} == {0}


@pytest.mark.parametrize("metres, expected", [(90, 0), (100, 0), (120, 1), (200, 1)])
def test_descent_needs_100_m(metres, expected):
    # Grid points span (n - 1) * 10 m, so 100 m of points covers 90 m of course: not yet a descent.
    p = make_profile(segs((0, 300), (-6, metres), (0, 300)))
    assert kinds(terrain_events(p)).count("descent_start") == expected


def test_short_descent_has_no_long_descent_event_and_ends_before_profile_end():
    p = make_profile(segs((0, 300), (-6, 200)))  # 200 m at 3 m/s: 67 s, runs to the end
    assert kinds(terrain_events(p)) == ["descent_start"]  # no end event: the profile ends descending


def test_flat_bumps_and_noise_inside_a_descent_do_not_split_it():
    rng = np.random.default_rng(1)
    g = segs((0, 300), (-7, 1500), (0, 500))
    g[30:180] += rng.uniform(-2.5, 2.5, 150)  # GPS noise, sometimes above -4 %
    g[80:83] = 0.0  # a 30 m flat bump
    ev = terrain_events(make_profile(g))
    assert kinds(ev).count("descent_start") == 1
    assert kinds(ev).count("descent_end") == 1


def test_grade_wobbling_around_the_threshold_is_no_event_storm():
    # Alternating -4.5 / -3 every 10 m for 3 km: never 100 m at or below -4 %, so never a descent...
    g = np.tile([-4.5, -3.0], 150)
    assert terrain_events(make_profile(g)) == []
    # ...and alternating -5 / -3.5 (inside the hysteresis band once in) enters once and stays in.
    g = np.concatenate([np.full(20, -5.0), np.tile([-5.0, -3.5], 150)])
    ev = terrain_events(make_profile(g))
    assert kinds(ev) == ["descent_start", "long_descent"]


def test_descent_ends_only_after_the_exit_hold():
    p = make_profile(segs((-6, 500), (0, 40), (-6, 500), (0, 60), (-6, 500)))
    ev = terrain_events(p)
    # The 40 m flat does not end the descent; the 60 m flat (> 50 m exit hold) does.
    assert kinds(ev).count("descent_start") == 2
    assert kinds(ev).count("descent_end") == 1


def test_steep_sections_inside_descents_only():
    p = make_profile(segs((0, 300), (-6, 300), (-13, 200), (-6, 300), (0, 300), (-14, 40), (0, 300)))
    ev = terrain_events(p)
    steep = [e for e in ev if e.kind == "steep_descent"]
    assert len(steep) == 1
    assert steep[0].time_s == pytest.approx(600 / 3.0)
    assert steep[0].grade_pct == pytest.approx(-13.0, abs=0.5)
    assert steep[0].descent_index == 0


def test_technical_tags():
    tags = (Tag(700.0, 900.0, "technical"), Tag(100.0, 200.0, "surface=rocks"), Tag(1900.0, 1950.0, "Technical"))
    p = make_profile(segs((0, 500), (-8, 1000), (0, 500)), tags=tags)
    tech = [e for e in terrain_events(p) if e.kind == "technical"]
    assert [round(e.time_s, 3) for e in tech] == [round(700 / 3.0, 3), round(1900 / 3.0, 3)]
    assert tech[0].descent_index == 0 and tech[1].descent_index == -1
    assert tech[0].end_s == pytest.approx(900 / 3.0)
    assert tech[0].grade_pct == pytest.approx(-8.0)


def test_time_only_profile_uses_time_holds():
    # A treadmill workout without distance: 1 point per second.
    g = np.concatenate([np.zeros(60), np.full(120, -6.0), np.zeros(60)])
    t = np.arange(g.size, dtype=float)
    z = np.zeros(g.size)
    p = Profile("w", "w", "workout", z, z, g, t, z, ())
    ev = terrain_events(p)
    assert kinds(ev) == ["descent_start", "long_descent", "descent_end"]
    assert ev[0].time_s == 60.0 and ev[-1].time_s == 180.0


def test_events_are_sorted_and_rules_are_respected():
    rules = TerrainRules(descent_enter_pct=-8.0, descent_exit_pct=-6.0)
    p = make_profile(segs((0, 300), (-6, 600), (-9, 600), (0, 300)))
    ev = terrain_events(p, rules)
    assert ev[0].kind == "descent_start" and ev[0].time_s == pytest.approx(900 / 3.0)
    assert [e.time_s for e in ev] == sorted(e.time_s for e in ev)


def test_hysteresis_runs_reference():
    pos = np.arange(0, 100, 10.0)
    g = np.array([0, -5, -5, -5, -3, -5, 0, 0, 0, 0], float)
    assert hysteresis_runs(pos, g, -4, -2.5, 20, 20) == [(1, 6)]
    assert hysteresis_runs(pos, g, -4, -2.5, 30, 20) == []


def test_workout_incline_changes_name_the_coming_incline():
    from cues.terrain import cue_events, incline_changes

    g = np.concatenate([np.zeros(60), np.full(120, -6.0), np.full(60, -3.0), np.zeros(61)])
    t = np.arange(g.size, dtype=float)
    z = np.zeros(g.size)
    p = Profile("w", "w", "workout", z, z, g, t, z, ())
    ch = incline_changes(p)
    assert [(e.time_s, e.grade_pct, e.end_s) for e in ch] == [(60.0, -6.0, 180.0), (180.0, -3.0, 240.0),
                                                              (240.0, 0.0, 300.0)]
    assert all(e.kind == "incline_change" for e in ch)
    assert sorted(kinds(cue_events(p))) == sorted(kinds(terrain_events(p)) + ["incline_change"] * 3)
    # A course has no incline announcements (it is not set by hand).
    assert incline_changes(make_profile(segs((0, 300), (-6, 600)))) == []
