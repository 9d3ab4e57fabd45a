"""metronome/export/split.py: where `render --split` starts each part."""

from __future__ import annotations

import pytest

from metronome.course_plan import distance_at_sample
from metronome.export.split import ANNOUNCE_TRIGGERS, MIN_PART_S, split_cuts
from metronome.session import load_profile, plan_session, tempo_settings_for
from metronome.settings import EngineSettings

SR = 16000


def _plan(spec, anchors=None):
    p = load_profile(spec)
    return plan_session(p, tempo_settings_for(p), EngineSettings(samplerate=SR), anchor_every_m=anchors)


@pytest.mark.parametrize("spec, anchors", [("demo-descent", None), ("demo-descent", 500), ("mojstrovka", None),
                                           ("treadmill-decline", None)])
def test_parts_start_on_quiet_beats_at_announcements_and_distance_marks(spec, anchors):
    plan = _plan(spec, anchors)
    total = plan.tempo_map.end_sample + SR
    cuts = split_cuts(plan, total, anchors)
    samples = [c.sample for c in cuts]
    assert cuts[0].sample == 0 and cuts[0].label == "start"
    assert samples == sorted(set(samples))
    assert all(b - a >= MIN_PART_S * SR for a, b in zip(samples + [total], samples[1:] + [total]))
    beats = set(plan.tempo_map.beat_samples().tolist())
    for c in cuts[1:]:
        assert c.sample in beats
        assert not any(q.start_sample < c.sample < q.end_sample for q in plan.planned_cues)  # no cue cut in two
    # Every announcement (not too near the start or end) starts a part, with its words as the label.
    for q in plan.planned_cues:
        if q.trigger in ANNOUNCE_TRIGGERS and MIN_PART_S * SR <= q.start_sample <= total - MIN_PART_S * SR:
            assert q.start_sample in samples
    assert any(c.label != "start" for c in cuts)
    at_m = distance_at_sample(plan.profile, SR)
    every = anchors or 1000
    for c in cuts:
        if c.label.endswith(" km") or c.label.endswith(" m"):
            mark = float(c.label.split()[0]) * (1000 if c.label.endswith("km") else 1)
            assert mark % every == 0
            assert abs(at_m(c.sample) - mark) <= 15.0  # the mark's beat (or its anchor's)
            if anchors:
                spoken = [q for q in plan.planned_cues if q.trigger == "distance_anchor" and int(q.fill) == mark]
                assert not spoken or spoken[0].start_sample == c.sample  # the part starts with "500 metres"


def test_a_course_of_one_short_stretch_is_one_part():
    plan = _plan("demo-descent")
    assert split_cuts(plan, plan.tempo_map.end_sample + SR, 1e9)[0].label == "start"
    short = split_cuts(plan, 20 * SR, 1e9)  # shorter than a part: only the start
    assert [c.sample for c in short] == [0]
