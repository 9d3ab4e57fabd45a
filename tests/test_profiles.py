"""profiles: pace model, grade processing, YAML courses/workouts, name resolution, input validation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metronome.errors import InputError, ProfileError
from profiles import bundled_names, load_profile
from profiles import grade as G
from profiles import pace


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def course_yaml(segments, **top):
    doc = {"name": "t", "kind": "course", **top, "segments": segments}
    return yaml.safe_dump(doc)


# --------------------------------------------------------------------------------------------------------------
# Pace model
# --------------------------------------------------------------------------------------------------------------
def test_pace_factor_on_moderate_descents_is_the_published_gap_polynomial():
    for g in (-6.0, -5.0, -3.0, -1.0, 0.0):
        expected = -5.2944e-7 * g**4 - 3.9896e-6 * g**3 + 2.05357e-3 * g**2 + 3.265674e-2 * g + 1
        assert pace.grade_factor(g) == pytest.approx(expected, rel=1e-12)
    assert pace.grade_factor(0.0) == 1.0
    assert pace.grade_factor(-5.0) < 0.9                                   # gentle descent: faster


def test_pace_factor_climbs_follow_minetti_and_steep_descents_tobler():
    """Issue 15: steep climbs are power-hiked (Minetti 2002 cost ratio) and steep descents braked (Tobler 1993);
    the old model clamped everything to +-30 % of the flat pace, i.e. 1:48 for a 3:19 mountain race."""
    for g in (2.0, 10.0, 20.0, 30.0, 45.0):
        i = g / 100
        cost = 155.4 * i**5 - 30.4 * i**4 - 43.3 * i**3 + 46.3 * i**2 + 19.5 * i + 3.6
        assert pace.grade_factor(g) == pytest.approx(cost / 3.6, rel=1e-12)
    for g in (-10.0, -20.0, -30.0, -45.0):
        assert pace.grade_factor(g) == pytest.approx(math.exp(3.5 * (abs(g / 100 + 0.05) - 0.05)), rel=1e-12)
    assert pace.grade_factor(30.0) == pytest.approx(3.49, abs=0.01)        # ~1000 m/h climbing at 5:30 flat
    assert pace.grade_factor(-30.0) == pytest.approx(2.01, abs=0.01)


def test_pace_factor_is_continuous_and_bounded():
    g = np.linspace(-60, 60, 120001)
    f = pace.grade_factor(g)
    assert np.all(np.isfinite(f)) and f.min() >= 0.87
    assert np.max(np.abs(np.diff(f))) < 1e-3                               # no jump anywhere (step 0.001 %)
    assert pace.grade_factor(60.0) == pace.grade_factor(45.0)              # clipped to the profiles' range
    assert np.all(np.diff(f[g >= 0]) >= 0) and np.all(np.diff(f[g <= -6.5]) <= 0)


def test_custom_factor_replaces_the_default_curve():
    t = pace.elapsed_time_s([0.0, 1000.0], [10.0, 10.0], 300.0, factor=lambda g: np.full(np.shape(g), 2.0))
    assert t[-1] == pytest.approx(600.0)


def test_flat_speed_is_the_flat_pace():
    assert pace.speed_mps(0.0, 330.0) == pytest.approx(1000 / 330)
    t = pace.elapsed_time_s([0.0, 500.0, 1000.0], [0.0, 0.0, 0.0], 330.0)
    assert t[-1] == pytest.approx(330.0)


@pytest.mark.parametrize("text, seconds", [("5:30", 330.0), ("4:05", 245.0), ("300", 300.0)])
def test_parse_pace(text, seconds):
    assert pace.parse_pace(text) == seconds


@pytest.mark.parametrize("text", ["5:60", "abc", "5:3", "1:00", "45:00", "", "-5:30"])
def test_parse_pace_rejects(text):
    with pytest.raises(InputError, match="--flat-pace"):
        pace.parse_pace(text)


# --------------------------------------------------------------------------------------------------------------
# Grade processing
# --------------------------------------------------------------------------------------------------------------
def test_spike_is_rejected_and_smoothing_keeps_the_slope():
    d = np.arange(0, 2000, 10.0)
    ele = 500 - 0.08 * d                       # a steady -8 % descent
    ele_spiky = ele.copy()
    ele_spiky[100] += 40.0                     # one GPS fix 40 m too high
    mask = G.reject_spikes(d, ele_spiky)
    assert mask[100] and mask.sum() == 1
    # Through the whole track pipeline: the grade stays near -8 % everywhere, including around the spike.
    from profiles.track import RawTrack, profile_from_track
    raw = RawTrack(elevation_m=ele_spiky, time_s=np.full(d.size, np.nan), segment=np.zeros(d.size, int),
                   distance_m=d)
    p = profile_from_track(raw, name="x", source="x", display="x")
    assert np.allclose(p.grade_pct, -8.0, atol=0.05)
    assert p.kind == "course"


def test_smoothing_window_removes_noise_but_not_a_real_step():
    rng = np.random.default_rng(1)
    d = G.regular_grid(3000.0)
    true = np.where(d < 1500, 0.0, -0.10 * (d - 1500))        # flat, then -10 %
    noisy = true + rng.normal(0, 1.0, d.size)
    _, g = G.smooth_grade(d, noisy, 100.0)
    assert abs(np.median(g[d < 1300])) < 1.0
    assert np.median(g[d > 1700]) == pytest.approx(-10.0, abs=1.0)
    assert np.std(g[(d > 1700) & (d < 2900)]) < 2.0        # raw 5 m differences would have std ~ 28 %
    assert np.std(np.diff(noisy) / 5 * 100) > 20


def test_noise_estimate_distinguishes_barometer_from_gps():
    rng = np.random.default_rng(2)
    base = 300 + 0.05 * np.arange(1000) * 5
    assert G.elevation_noise_m(np.round(base + rng.normal(0, 0.05, 1000), 1)) < G.NOISY_ELEVATION_M
    assert G.elevation_noise_m(base + rng.normal(0, 3.0, 1000)) > G.NOISY_ELEVATION_M


def test_climb_totals_hysteresis():
    e = np.array([0, 0.3, 0, 0.3, 0, 10, 10.2, 5])
    assert G.climb_totals_m(e) == pytest.approx((10.8, 5.8))
    up, down = G.climb_totals_m(e, 1.0)
    assert up == pytest.approx(10.2) and down == pytest.approx(5.2)


def test_moving_average_and_median_keep_a_straight_line_exactly():
    x = np.linspace(0, 50, 101)
    assert np.allclose(G.moving_average(x, 7), x)
    assert np.allclose(G.running_median(x, 3), x)


# --------------------------------------------------------------------------------------------------------------
# YAML courses and workouts
# --------------------------------------------------------------------------------------------------------------
def test_course_yaml_distance_grade_tags_and_time(tmp_path):
    p = load_profile(write(tmp_path, "c.yaml", course_yaml([
        {"distance_m": 500, "grade_pct": 0},
        {"distance_m": 1000, "grade_pct": -10, "technical": True, "surface": "scree"},
        {"distance_m": 500, "grade_pct": 5}], base_cadence_spm=172, flat_pace_s_per_km=300)))
    assert p.kind == "course" and p.name == "t" and p.base_cadence_spm == 172
    assert p.total_distance_m == pytest.approx(2000.0)
    assert p.total_descent_m == pytest.approx(100.0) and p.total_ascent_m == pytest.approx(25.0)
    assert np.all(np.diff(p.distance_m) <= G.GRID_STEP_M + 1e-9)
    assert p.grade_pct[np.searchsorted(p.distance_m, 1000)] == -10.0
    expected = 500 * 0.3 + 1000 * 0.3 * pace.grade_factor(-10) + 500 * 0.3 * pace.grade_factor(5)
    assert p.duration_s == pytest.approx(expected, rel=2e-3)   # trapezoid grade only at the two corners
    labels = {t.label: (t.start_m, t.end_m) for t in p.tags}
    assert labels == {"technical": (500.0, 1500.0), "surface=scree": (500.0, 1500.0)}
    assert p.source.endswith("c.yaml")


def test_flat_pace_argument_overrides_file(tmp_path):
    f = write(tmp_path, "c.yaml", course_yaml([{"distance_m": 1000, "grade_pct": 0}], flat_pace_s_per_km=300))
    assert load_profile(f).duration_s == pytest.approx(300.0)
    assert load_profile(f, flat_pace_s_per_km=360).duration_s == pytest.approx(360.0)


def test_workout_yaml(tmp_path):
    p = load_profile(write(tmp_path, "w.yml", yaml.safe_dump({"name": "w", "kind": "workout", "segments": [
        {"duration_s": 600, "incline_pct": 0, "speed_kmh": 10},
        {"duration_s": 300, "incline_pct": -6, "speed_kmh": 12}]})))
    assert p.kind == "workout"
    assert p.duration_s == 900.0
    assert p.total_distance_m == pytest.approx(10 / 3.6 * 600 + 12 / 3.6 * 300)
    assert p.total_descent_m == pytest.approx(0.06 * 12 / 3.6 * 300)
    assert p.grade_at_time(700.0) == -6.0 and p.grade_at_time(100.0) == 0.0
    assert p.speed_mps[np.searchsorted(p.time_s, 800)] == pytest.approx(12 / 3.6)


@pytest.mark.parametrize("segments, top, message", [
    ([{"distance_m": 100, "grade_pct": "steep"}], {}, r"c\.yaml: segments\[0\]\.grade_pct: 'steep' is not a number"),
    ([{"distance_m": 100, "grade_pct": 0}, {"distance_m": 100, "grade_pct": -50}], {},
     r"segments\[1\]\.grade_pct: -50 is outside -45\.\.45 %"),
    ([{"distance_m": -5, "grade_pct": 0}], {}, r"segments\[0\]\.distance_m: -5 is outside"),
    ([{"distance_m": 1e300, "grade_pct": 0}], {}, r"segments\[0\]\.distance_m: 1e\+300 is outside"),
    ([{"distance_m": float("nan"), "grade_pct": 0}], {}, r"distance_m: nan is not a finite number"),
    ([{"distance_m": 100}], {}, r"segments\[0\]\.grade_pct: missing"),
    ([{"distance_m": 100, "grade": -5}], {}, r"segments\[0\]\.grade: unknown field"),
    ([{"distance_m": 100, "grade_pct": 0, "technical": "very"}], {}, r"technical: 'very' is not true or false"),
    ([{"distance_m": True, "grade_pct": 0}], {}, r"distance_m: True is not a number"),
    (["oops"], {}, r"segments\[0\]: 'oops' is not a mapping"),
    ([], {}, r"segments: \[\] is not a non-empty list"),
    ([{"distance_m": 100, "grade_pct": 0}], {"base_cadence_spm": 500}, r"base_cadence_spm: 500 is outside 60\.\.240"),
    ([{"distance_m": 100, "grade_pct": 0}], {"flat_pace_s_per_km": 10}, r"flat_pace_s_per_km: 10 is outside"),
    ([{"distance_m": 100, "grade_pct": 0}], {"kind": "race"}, r"kind: 'race' is not 'course' or 'workout'"),
    ([{"distance_m": 100, "grade_pct": 0}], {"colour": "red"}, r"c\.yaml: colour: unknown field"),
])
def test_course_yaml_errors_name_file_field_and_value(tmp_path, segments, top, message):
    f = write(tmp_path, "c.yaml", course_yaml(segments, **top))
    with pytest.raises(ProfileError, match=message) as exc:
        load_profile(f)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("seg, message", [
    ({"duration_s": 60, "incline_pct": -6}, r"segments\[0\]\.speed_kmh: missing"),
    ({"duration_s": 0, "incline_pct": -6, "speed_kmh": 10}, r"duration_s: 0 is outside"),
    ({"duration_s": 60, "incline_pct": -60, "speed_kmh": 10}, r"incline_pct: -60 is outside"),
    ({"duration_s": 60, "incline_pct": -6, "speed_kmh": 100}, r"speed_kmh: 100 is outside"),
    ({"duration_s": 60, "grade_pct": -6, "speed_kmh": 10}, r"segments\[0\]\.grade_pct: unknown field"),
])
def test_workout_yaml_errors(tmp_path, seg, message):
    f = write(tmp_path, "w.yaml", yaml.safe_dump({"name": "w", "kind": "workout", "segments": [seg]}))
    with pytest.raises(ProfileError, match=message):
        load_profile(f)


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("   \n\n", "empty file"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: [unclosed\n", r"invalid YAML: line \d+, column \d+"),
    ("name: x\nsegments: *nope\n", "invalid YAML"),
    ("!!python/object:os.system {}\n", "invalid YAML"),    # safe_load refuses object construction
    ("name: x\n", "segments: missing"),
])
def test_bad_yaml_documents(tmp_path, text, message):
    f = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ProfileError, match=message):
        load_profile(f)


def test_binary_garbage_and_non_utf8(tmp_path):
    for ext in (".yaml", ".gpx", ".tcx", ".fit"):
        f = tmp_path / f"garbage{ext}"
        f.write_bytes(bytes(range(256)) * 8)
        with pytest.raises(ProfileError, match=f"garbage{ext}: "):
            load_profile(f)


@given(st.lists(st.tuples(st.floats(1.0, 3000.0), st.floats(-45.0, 45.0)), min_size=1, max_size=25),
       st.floats(180.0, 900.0))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_courses_time_increases_and_distance_adds_up(tmp_path, segs, pace_s):
    f = write(tmp_path, "h.yaml", course_yaml([{"distance_m": d, "grade_pct": g} for d, g in segs],
                                              flat_pace_s_per_km=pace_s))
    p = load_profile(f)
    assert p.total_distance_m == pytest.approx(math.fsum(d for d, _ in segs), rel=1e-9)
    assert np.all(np.diff(p.time_s) > 0)
    assert np.all(np.diff(p.distance_m) > 0)
    assert np.all(np.abs(p.grade_pct) <= 45.0)
    # Time is bounded by the pace model's range: F is 0.87 at best and 5.4 at +45 %.
    flat_s = p.total_distance_m / 1000 * pace_s
    f_lo, f_hi = pace.grade_factor(np.linspace(-45, 45, 9001)).min(), pace.grade_factor(45.0)
    assert f_lo * flat_s * (1 - 1e-9) <= p.duration_s <= f_hi * flat_s * (1 + 1e-9)
    # Net elevation change is the sum of grade x length.
    net = math.fsum(d * g / 100 for d, g in segs)
    assert p.elevation_m[-1] - p.elevation_m[0] == pytest.approx(net, abs=1e-6 * max(1.0, abs(net)) + 1e-6)


# --------------------------------------------------------------------------------------------------------------
# Name resolution and file-level errors
# --------------------------------------------------------------------------------------------------------------
def test_bundled_profiles_load_and_fit_their_brief():
    names = bundled_names()
    assert {"demo-descent", "treadmill-decline", "hill-repeats", "mojstrovka"} <= set(names)
    demo = load_profile("demo-descent")
    assert demo.source == "bundled:demo-descent" and demo.kind == "course"
    assert 15 * 60 <= demo.duration_s <= 25 * 60
    assert 3000 <= demo.total_distance_m <= 5000
    assert demo.grade_pct.min() <= -10 and demo.grade_pct.max() > 0
    assert any(t.label == "technical" for t in demo.tags)
    tm = load_profile("treadmill-decline")
    assert tm.kind == "workout" and 20 * 60 <= tm.duration_s <= 30 * 60
    assert {-3.0, -6.0, -9.0} <= set(np.unique(tm.grade_pct))
    assert load_profile("demo-descent.yaml").total_distance_m == demo.total_distance_m


def test_bundled_licence_next_to_bundled_gpx():
    from profiles.loader import BUNDLED_DIR
    for gpx in BUNDLED_DIR.glob("*.gpx"):
        assert (BUNDLED_DIR / (gpx.stem + ".LICENSE")).is_file()


def test_local_file_wins_over_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "demo-descent.yaml", course_yaml([{"distance_m": 100, "grade_pct": 0}]))
    assert load_profile("demo-descent.yaml").total_distance_m == 100.0
    assert load_profile("demo-descent").source == "bundled:demo-descent"


@pytest.mark.parametrize("spec, message", [
    ("no-such-profile", r"no-such-profile: no such file or bundled profile \(bundled: .*demo-descent"),
    ("./missing.gpx", r"missing\.gpx: no such file"),
    ("", "is not a file or a bundled profile"),
])
def test_missing(spec, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(spec)


def test_directory_empty_file_and_unknown_extension(tmp_path):
    d = tmp_path / "dir.gpx"
    d.mkdir()
    with pytest.raises(ProfileError, match="is a directory"):
        load_profile(d)
    e = tmp_path / "empty.fit"
    e.write_bytes(b"")
    with pytest.raises(ProfileError, match="empty.fit: empty file"):
        load_profile(e)
    c = write(tmp_path, "run.csv", "a,b\n")
    with pytest.raises(ProfileError, match=r"run\.csv: unknown profile type '\.csv'"):
        load_profile(c)


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    f = write(tmp_path, "c.yaml", course_yaml([{"distance_m": 100, "grade_pct": 0}]))
    f.chmod(0)
    with pytest.raises(ProfileError, match="permission denied"):
        load_profile(f)


def test_bad_keyword_values(tmp_path):
    f = write(tmp_path, "c.yaml", course_yaml([{"distance_m": 100, "grade_pct": 0}]))
    with pytest.raises(InputError, match="flat_pace_s_per_km"):
        load_profile(f, flat_pace_s_per_km=5)
    with pytest.raises(ProfileError, match="smoothing_m"):
        load_profile(f, smoothing_m="wide")
    with pytest.raises(ProfileError, match="smoothing_m"):
        load_profile(f, smoothing_m=-1)


def test_profile_arrays_are_read_only():
    p = load_profile("hill-repeats")
    with pytest.raises(ValueError):
        p.grade_pct[0] = 3.0
