"""scale_to_finish_time and distance_anchors (issue 16, library functions for render)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cues.terrain import terrain_events
from metronome.errors import InputError
from metronome.export.finish import distance_anchors, scale_to_finish_time
from metronome.session import load_profile, plan_session, tempo_settings_for


@pytest.mark.parametrize("spec", ["demo-descent", "mojstrovka", "treadmill-decline"])
@pytest.mark.parametrize("finish_s", [900.0, 1234.5, 3 * 3600.0])
def test_scaled_profile_ends_exactly_at_the_finish_time(spec, finish_s):
    p = load_profile(spec)
    q = scale_to_finish_time(p, finish_s)
    assert q.duration_s == finish_s
    k = finish_s / p.duration_s
    np.testing.assert_allclose(q.time_s, p.time_s * k, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(q.speed_mps, p.speed_mps / k, rtol=1e-12)
    assert np.array_equal(q.distance_m, p.distance_m) and np.array_equal(q.grade_pct, p.grade_pct)
    assert q.total_descent_m == p.total_descent_m
    assert p.duration_s != finish_s  # the input is untouched
    assert "timing scaled" in q.notes[-1]


def test_scaled_plan_renders_to_the_finish_time():
    """The session plan built on the scaled profile lasts the finish time (to the sample)."""
    p = scale_to_finish_time(load_profile("demo-descent"), 1500.0)
    tm = plan_session(p, tempo_settings_for(p), cues=False).tempo_map
    assert abs(tm.end_sample / tm.samplerate - 1500.0) <= 1.0 / tm.samplerate


@pytest.mark.parametrize("bad", [0, -5, math.nan, math.inf, "soon", None, 10.0])
def test_bad_finish_time_names_the_field(bad):
    with pytest.raises(InputError, match="finish_time_s"):
        scale_to_finish_time(load_profile("demo-descent"), bad)  # 10 s for 4.4 km: 440 m/s


def test_distance_anchors_every_interval_and_before_each_descent():
    p = load_profile("demo-descent")
    anchors = distance_anchors(p, 1000)
    marks = [(d, t) for d, t in anchors if "descent" not in t]
    assert marks == [(1000.0, "1 kilometre"), (2000.0, "2 kilometres"), (3000.0, "3 kilometres"),
                     (4000.0, "4 kilometres")]
    starts = [float(p.distance_at_time(e.start_s)) for e in terrain_events(p) if e.kind == "descent_start"]
    assert len(starts) == 2
    warn = [(d, t) for d, t in anchors if t.startswith("descent in")]
    assert warn[0] == (starts[0] - 300.0, "descent in 300 metres")
    # The second descent starts 250 m after the first ends: its anchor is where the first ends, saying what is left.
    ends = [float(p.distance_at_time(e.end_s)) for e in terrain_events(p) if e.kind == "descent_start"]
    assert starts[1] - ends[0] == 250.0
    assert warn[1] == (ends[0], "descent in 250 metres") and len(warn) == 2
    assert [d for d, _ in anchors] == sorted(d for d, _ in anchors)


def test_distance_anchor_words_and_limits():
    p = load_profile("mojstrovka")  # 2.7 km, its descent starts far from the start
    texts = dict(distance_anchors(p, 500, descent_lead_m=250))
    assert texts[500.0] == "500 metres" and texts[1500.0] == "1.5 kilometres" and texts[2000.0] == "2 kilometres"
    assert "descent in 250 metres" in texts.values()
    assert all(d < p.total_distance_m for d in texts)
    # A descent closer to the start than the lead gets no anchor (there is nothing before it to say it).
    near = [d for d, t in distance_anchors(p, 1000, descent_lead_m=5000) if t.startswith("descent")]
    assert near == []


@pytest.mark.parametrize("bad", [0, 50, -100, math.nan, "far"])
def test_bad_anchor_interval_names_the_field(bad):
    with pytest.raises(InputError, match="interval_m"):
        distance_anchors(load_profile("demo-descent"), bad)


def test_no_distance_no_anchors():
    import dataclasses

    p = load_profile("demo-descent")
    flat = dataclasses.replace(p, distance_m=np.zeros_like(p.distance_m))
    assert distance_anchors(flat, 1000) == []
