"""Spoken distance anchors (cues/anchors.py): where they go, on the beat, never over another cue, dropped not late."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cues.anchors import (Anchor, AnchorRules, anchor_texts, course_anchors, place_anchors, plan_profile_anchors,
                          sample_clock)
from cues.library import distance_words, load_library
from cues.planner import PlannedCue, PlannerRules
from cues.session import plan_profile_cues_unvoiced
from metronome.course_plan import distance_at_sample
from metronome.errors import CueError, InputError
from metronome.session import load_profile, plan_session, tempo_settings_for
from metronome.tempo import TempoMap

LIB = load_library()
SR = 8000
RULES = AnchorRules()


def _lengths(anchors, seconds=1.2):
    return {k: int(seconds * SR) for k in anchor_texts(anchors, LIB)}


def _steady(seconds=600.0, bpm=180.0):
    """A constant tempo map and a course clock of 3 m/s: distance d is at d / 3 s."""
    tm = TempoMap.constant(bpm, SR, seconds)
    return tm, (lambda d: int(round(d / 3.0 * SR))), tm.beat_samples()


def test_distance_words():
    assert [distance_words(d) for d in ("300", 1000, "2500", "5000", 999.6, "42500", "100")] == [
        "300 metres", "1 kilometre", "2.5 kilometres", "5 kilometres", "1000 metres", "42.5 kilometres",
        "100 metres"]
    assert LIB.get("distance_mark").text(0, "5000") == "5 kilometres."
    assert LIB.get("descent_in").text(0, "300") == "Descent in 300 metres."
    with pytest.raises(CueError, match="distance"):
        distance_words("far")


def test_anchors_sit_on_the_nearest_beat_at_their_distance():
    tm, clock, beats = _steady()
    anchors = [Anchor(d, "distance_anchor", f"{d:.0f}") for d in (100.0, 500.0, 1000.0)]
    placed, dropped = place_anchors(anchors, clock, beats, [], [], _lengths(anchors), SR, LIB)
    assert dropped == [] and [c.fill for c in placed] == ["100", "500", "1000"]
    beat_s = 60.0 / 180.0
    for a, c in zip(anchors, placed):
        assert c.start_sample in set(beats.tolist())
        assert abs(c.start_sample - clock(a.distance_m)) <= beat_s / 2 * SR + 1  # the nearest beat
        assert c.cue_id == "distance_mark" and c.clip_name == f"distance_mark-1@{a.fill}"
        assert c.end_sample - c.start_sample == int(1.2 * SR)


def test_an_anchor_moves_off_a_cue_within_its_tolerance_else_it_is_dropped():
    tm, clock, beats = _steady()
    guard = PlannerRules().min_silence_s
    # A technique cue right on the 300 m mark (100 s): the anchor moves past it (cue + guard), < 15 m away.
    cue = PlannedCue(int(100.0 * SR), int(102.0 * SR), "quick_steps", 0, "Short, quick steps.", "descent_start", 60)
    a = [Anchor(300.0, "distance_anchor", "300")]
    (c,), dropped = place_anchors(a, clock, beats, [], [cue], _lengths(a), SR, LIB)
    assert not dropped
    assert c.start_sample >= cue.end_sample + guard * SR or c.end_sample + guard * SR <= cue.start_sample
    assert abs(c.start_sample / SR * 3.0 - 300.0) <= RULES.tolerance_m
    # Cues over the whole +-15 m window (95-105 s): no beat is free, so the anchor is dropped (never played late).
    wall = [PlannedCue(int(s * SR), int((s + 2.4) * SR), "relax_upper", 0, "x", "long_descent", 40)
            for s in np.arange(93.0, 107.0, 2.6)]
    placed, dropped = place_anchors(a, clock, beats, [], wall, _lengths(a), SR, LIB)
    assert placed == [] and dropped == a
    # A tempo ramp over the window works the same way.
    placed, dropped = place_anchors(a, clock, beats, [(int(94 * SR), int(106 * SR))], [], _lengths(a), SR, LIB)
    assert placed == [] and dropped == a


def test_anchors_do_not_overlap_each_other_distance_marks_first():
    tm, clock, beats = _steady()
    a = [Anchor(1000.0, "descent_anchor", "300"), Anchor(1000.0, "distance_anchor", "1000")]
    placed, dropped = place_anchors(a, clock, beats, [], [], _lengths(a), SR, LIB)
    assert not dropped and len(placed) == 2
    by = {c.cue_id: c for c in placed}
    assert abs(by["distance_mark"].start_sample - clock(1000.0)) <= SR / 3  # placed first, on its beat
    assert abs(by["descent_in"].start_sample - clock(1000.0)) > SR  # moved off it
    x, y = sorted(placed, key=lambda c: c.start_sample)
    assert x.end_sample + PlannerRules().min_silence_s * SR <= y.start_sample


@pytest.mark.parametrize("spec, every", [("demo-descent", 1000), ("demo-descent", 100), ("mojstrovka", 250)])
def test_anchors_around_a_real_plan_keep_every_rule(spec, every):
    p = load_profile(spec)
    ts = tempo_settings_for(p)
    tm = plan_session(p, ts, cues=False).tempo_map
    planned = plan_profile_cues_unvoiced(p, tm, SR)
    anchors = course_anchors(p, every)
    lengths = _lengths(anchors, 1.6)
    placed, dropped = place_anchors(anchors, sample_clock(p, SR), tm.beat_samples(), tm.ramps(), planned,
                                    lengths, SR, LIB)
    assert len(placed) + len(dropped) == len(anchors)
    assert len(dropped) <= len(anchors) // 4  # a crowded 100 m plan still keeps most of its anchors
    beats = set(tm.beat_samples().tolist())
    guard = int(PlannerRules().min_silence_s * SR)
    everything = sorted(list(planned) + placed, key=lambda c: c.start_sample)
    for a_, b_ in zip(everything, everything[1:]):
        assert a_.end_sample + guard <= b_.start_sample, (a_, b_)  # no overlap, the silence kept
    at_m = distance_at_sample(p, SR)
    for c in placed:
        assert c.start_sample in beats
        assert not any(rs < c.end_sample and c.start_sample < re for rs, re in tm.ramps())
        assert abs(at_m(c.start_sample) - at_m(c.event_sample)) <= RULES.tolerance_m + 0.5
    marks = sorted(int(c.fill) for c in placed if c.trigger == "distance_anchor")
    want = [k * every for k in range(1, int(p.total_distance_m // every) + 1) if k * every < p.total_distance_m]
    assert set(marks) <= set(want) and len(marks) >= len(want) - len(dropped)


def test_the_cue_plan_is_not_changed_by_the_anchors():
    p = load_profile("demo-descent")
    plain = plan_session(p, tempo_settings_for(p))
    anchored = plan_session(p, tempo_settings_for(p), anchor_every_m=200)
    others = [c for c in anchored.planned_cues if not c.trigger.endswith("_anchor")]
    assert others == list(plain.planned_cues)  # a safety or technique cue always wins
    assert len(anchored.planned_cues) > len(plain.planned_cues)
    assert all(c.clip_name in anchored.bank.names for c in anchored.planned_cues)  # every anchor has its clip


def test_interval_and_profile_errors_name_the_field():
    p = load_profile("demo-descent")
    for bad in (0, 99, "x", float("nan")):
        with pytest.raises(InputError, match="interval_m"):
            course_anchors(p, bad)
    flat = dataclasses.replace(p, distance_m=np.zeros_like(p.distance_m))
    assert course_anchors(flat, 1000) == []
    with pytest.raises(InputError, match="no course distance"):
        plan_profile_anchors(flat, plan_session(flat, cues=False).tempo_map, SR, [], 1000)
    with pytest.raises(InputError, match="tolerance_m"):
        AnchorRules(tolerance_m=-1)
