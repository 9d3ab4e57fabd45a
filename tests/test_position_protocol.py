"""UDP JSON protocol positions (issue 14): lat/lon/accuracy_m, range checks, and FeedCore's on_position hook."""

from __future__ import annotations

import pytest

from metronome.sensors import FeedCore, Fix, Reading, RejectReason, parse_message
from metronome.tempo import TempoSettings


def test_position_message_needs_no_grade():
    r = parse_message(b'{"t": 3, "lat": 46.43, "lon": 13.75, "accuracy_m": 6, "speed_mps": 2.5}')
    assert r == Reading(grade_pct=None, t_s=3.0, speed_mps=2.5, lat_deg=46.43, lon_deg=13.75, accuracy_m=6.0)
    assert parse_message(b'{"grade_pct": -4, "lat": -33.9, "lon": 151.2}').has_position


@pytest.mark.parametrize("msg, reason", [
    (b'{"lat": 46.4}', RejectReason.MISSING_GRADE),  # no grade and no full position: still a missing grade
    (b'{"grade_pct": 1, "lat": 46.4}', RejectReason.POSITION_RANGE),
    (b'{"grade_pct": 1, "lon": 13.7}', RejectReason.POSITION_RANGE),
    (b'{"lat": 90.5, "lon": 13.7}', RejectReason.POSITION_RANGE),
    (b'{"lat": 46, "lon": -181}', RejectReason.POSITION_RANGE),
    (b'{"lat": 46, "lon": 13, "accuracy_m": -1}', RejectReason.POSITION_RANGE),
    (b'{"lat": 46, "lon": 13, "accuracy_m": 1e5}', RejectReason.POSITION_RANGE),
    (b'{"lat": true, "lon": 13}', RejectReason.NOT_NUMBER),
    (b'{"lat": NaN, "lon": 13}', RejectReason.NOT_FINITE),
    (b'{"lat": "46", "lon": 13}', RejectReason.NOT_NUMBER),
])
def test_position_rejects(msg, reason):
    r = parse_message(msg)
    assert r.reason == reason, r


def test_feedcore_hands_positions_and_distances_to_on_position():
    seen = []
    core = FeedCore(TempoSettings(), on_position=lambda item, now_s: seen.append((item, now_s)))
    core.handle(b'{"t": 1, "lat": 46.0, "lon": 14.0, "speed_mps": 3}', 10.0)
    core.handle(Fix(2.0, 46.001, 14.0, speed_mps=3.0, source="gpsd"), 11.0)
    core.handle(Reading(grade_pct=-2.0, distance_m=120.0), 12.0)  # a treadmill's Total Distance
    core.handle(b'{"grade_pct": -3}', 13.0)  # no position, no distance: not handed on
    assert [type(i).__name__ for i, _ in seen] == ["Fix", "Fix", "Reading"]
    assert seen[0][0].lat_deg == 46.0 and seen[0][0].source == "udp" and core.last_fix.source == "gpsd"
    assert core.filter.speed_mps == 3.0  # a fix's speed reaches the grade filter too
    assert core.stats.as_dict()["accepted"] == 4
