"""metronome.levels: one level tracker for renders (over arrays) and live feeds (one reading at a time)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from metronome.levels import LevelTracker, plateaus
from metronome.sensors import FilterParams, GradeFilter, Reading
from metronome.tempo import TempoSettings, grade_plateaus

from tests.support import naive


def _course(seed, n, noise):
    rng = np.random.default_rng(seed)
    steps = np.repeat(rng.uniform(-15, 10, size=n // 40 + 1), 40)[:n]
    pos = np.cumsum(rng.uniform(2.0, 8.0, size=n))
    return pos, steps + rng.normal(0, noise, size=n)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(2, 600), noise=st.floats(0.0, 3.0),
       hold=st.floats(5.0, 120.0), hyst=st.floats(0.2, 3.0))
def test_batch_plateaus_equal_the_reference_bit_for_bit(seed, n, noise, hold, hyst):
    pos, g = _course(seed, n, noise)
    assert grade_plateaus(pos, g, hold, hyst) == naive.grade_plateaus(pos, g, hold, hyst)


def test_tracker_needs_the_full_hold_and_the_full_hysteresis():
    t = LevelTracker(hysteresis=1.0, hold=10.0)
    t.reset(0.0)
    assert not any(t.push(-0.99, float(x)) for x in range(0, 50))  # under the hysteresis: never
    assert t.level == 0.0
    assert not any(t.push(-2.0, float(x)) for x in range(100, 110))  # held 9 units: not yet
    assert t.push(-2.0, 110.0) and t.level == -2.0 and t.change_position == 100.0


def test_tracker_alternate_hold_whichever_first():
    t = LevelTracker(hysteresis=1.0, hold=15.0, hold_alt=60.0)
    t.reset(0.0)
    assert not t.push(-5.0, 0.0, position_alt=0.0)
    assert t.push(-5.0, 5.0, position_alt=61.0)  # 5 s but 61 m: the distance leg wins
    t.reset(0.0)
    assert not t.push(-5.0, 0.0, position_alt=None)
    assert t.push(-5.0, 15.0, position_alt=None)  # no distance: time alone


def test_sign_flip_ends_the_run_in_both_forms():
    values = [0.0, -3.0, -3.0, 3.0, 3.0, 3.0, 3.0]
    pos = np.arange(len(values), dtype=float)
    got = plateaus(pos, values, hold=2.0, hysteresis=1.0, first_level=0.0)
    # -3 for 2 units (positions 1-2) is not held 2 units; +3 starts at 4, not 3 (the flip ends the run only).
    assert got == [(0.0, 0.0), (4.0, 3.0)]


def test_live_filter_adopts_the_same_levels_as_the_render():
    """A course's grade fed to the live GradeFilter at 1 Hz (no smoothing) reaches the levels grade_plateaus finds
    over the same series, at the same course times: offline equals online."""
    pos, g = _course(7, 900, 0.8)
    time_s = np.arange(len(g), dtype=float)
    ts = TempoSettings()
    f = GradeFilter(ts, params=FilterParams(smoothing_s=1e-6, hold_last_s=30.0))
    live_levels = []
    for t, x in zip(time_s, g):
        before = f.level_grade_pct
        f.push(Reading(grade_pct=float(x)), float(t))
        if before is not None and f.level_grade_pct != before:
            live_levels.append(f.level_grade_pct)
    batch = plateaus(time_s, g, ts.hold_s, ts.hysteresis_pct, float(g[0]))
    assert len(batch) > 5
    assert live_levels == [lv for _, lv in batch[1:]]


def test_schmitt_trigger_batch_and_streaming_find_the_same_descents():
    """cues.terrain.hysteresis_runs (render) and the live planner run the same SchmittTrigger."""
    from cues.terrain import hysteresis_runs
    from metronome.levels import SchmittTrigger

    pos, g = _course(11, 2000, 1.5)
    runs = hysteresis_runs(pos, g, -4.0, -2.0, 100.0, 50.0)
    assert len(runs) >= 3
    t = SchmittTrigger(-4.0, -2.0, 100.0, 50.0)
    enters, exits = [], []
    for i, (p, x) in enumerate(zip(pos, g)):
        flip = t.feed(float(x), float(p), i)
        if flip == "enter":
            enters.append(t.since)
        elif flip == "exit":
            exits.append(t.since)
    assert [a for a, _ in runs] == enters
    assert [b for _, b in runs][:len(exits)] == exits
