"""Sensor protocol parser, flood control, reordering, grade filter and URL parsing: pure code, fake clocks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from metronome.errors import InputError, SensorError
from metronome.sensors import (MAX_MESSAGE_BYTES, S_ACCEPTED, S_CLOCK_RESETS, S_N, S_RATE_LIMITED, S_RECEIVED,
                               S_REORDERED, STAT_NAMES, FeedCore, FeedState, FilterParams,
                               GradeFilter, Reading, Reject, RejectReason, SensorSpec, SensorStats, TokenBucket,
                               make_reading, parse_message, parse_sensor_url, stats_dict)
from metronome.tempo import TempoSettings, target_cadence

TS = TempoSettings()


def msg(**kw) -> bytes:
    return json.dumps(kw).encode()


# ---------------------------------------------------------------------------------------------------------------
# parse_message
# ---------------------------------------------------------------------------------------------------------------
def test_full_message_parses_to_si_reading():
    r = parse_message(b'{"t": 12.5, "grade_pct": -7.25, "speed_mps": 3.1, "cadence_spm": 176, '
                      b'"distance_m": 1234.5, "elevation_m": 812, "hr": 150, "extra": {"x": [1]}}')
    assert r == Reading(grade_pct=-7.25, t_s=12.5, speed_mps=3.1, cadence_spm=176.0, distance_m=1234.5,
                        elevation_m=812.0)


def test_minimal_message_and_nulls_mean_absent():
    assert parse_message(b'{"grade_pct": 0}') == Reading(grade_pct=0.0)
    assert parse_message(b'{"grade_pct": 3, "speed_mps": null, "t": null}') == Reading(grade_pct=3.0)
    assert parse_message(b'  {"grade_pct": 3}\r\n') == Reading(grade_pct=3.0)


@pytest.mark.parametrize("data, reason", [
    (b'{"grade_pct": NaN}', RejectReason.NOT_FINITE),
    (b'{"grade_pct": Infinity}', RejectReason.NOT_FINITE),
    (b'{"grade_pct": -Infinity}', RejectReason.NOT_FINITE),
    (b'{"grade_pct": 1, "speed_mps": NaN}', RejectReason.NOT_FINITE),
    (b'{"grade_pct": 1e999}', RejectReason.NOT_FINITE),
    (b'{"grade_pct": 1' + b'0' * 400 + b'}', RejectReason.NOT_FINITE),
    (b'{"grade_pct": 45.0001}', RejectReason.GRADE_RANGE),
    (b'{"grade_pct": -46}', RejectReason.GRADE_RANGE),
    (b'{"grade_pct": 1, "speed_mps": -0.1}', RejectReason.SPEED_RANGE),
    (b'{"grade_pct": 1, "speed_mps": 15.5}', RejectReason.SPEED_RANGE),
    (b'{"grade_pct": 1, "cadence_spm": -1}', RejectReason.CADENCE_RANGE),
    (b'{"grade_pct": 1, "cadence_spm": 301}', RejectReason.CADENCE_RANGE),
    (b'{"grade_pct": 1, "distance_m": -5}', RejectReason.DISTANCE_RANGE),
    (b'{"grade_pct": 1, "elevation_m": 12000}', RejectReason.ELEVATION_RANGE),
    (b'{"grade_pct": true}', RejectReason.NOT_NUMBER),
    (b'{"grade_pct": false}', RejectReason.NOT_NUMBER),
    (b'{"grade_pct": 1, "cadence_spm": true}', RejectReason.NOT_NUMBER),
    (b'{"grade_pct": "5"}', RejectReason.NOT_NUMBER),
    (b'{"grade_pct": [5]}', RejectReason.NOT_NUMBER),
    (b'{"grade_pct": 1, "t": "now"}', RejectReason.NOT_NUMBER),
    (b'{"speed_mps": 3}', RejectReason.MISSING_GRADE),
    (b'{"grade_pct": null}', RejectReason.MISSING_GRADE),
    (b'{}', RejectReason.MISSING_GRADE),
    (b'[1, 2]', RejectReason.NOT_OBJECT),
    (b'"grade_pct"', RejectReason.NOT_OBJECT),
    (b'5', RejectReason.NOT_OBJECT),
    (b'null', RejectReason.NOT_OBJECT),
    (b'{"grade_pct": 1', RejectReason.NOT_JSON),
    (b'grade_pct=1', RejectReason.NOT_JSON),
    (b'', RejectReason.NOT_JSON),
    (b'{"grade_pct": 1}{"grade_pct": 2}', RejectReason.NOT_JSON),
    (b'[' * 1000, RejectReason.NOT_JSON),  # deeper than the C scanner's recursion limit
    (b'\xff\xfe{"grade_pct": 1}', RejectReason.NOT_UTF8),
    (b'{"grade_pct": 1, "name": "\xc3"}', RejectReason.NOT_UTF8),
    ('{"grade_pct": 1}'.encode("utf-16"), RejectReason.NOT_UTF8),  # json.loads(bytes) would accept UTF-16
    (b'{"grade_pct": 1, "pad": "' + b'x' * MAX_MESSAGE_BYTES + b'"}', RejectReason.OVERSIZE),
])
def test_every_fault_is_a_counted_reject_not_an_exception(data, reason):
    r = parse_message(data)
    assert isinstance(r, Reject), r
    assert r.reason is reason
    assert "\n" not in r.detail


def test_reject_detail_names_the_field_and_value():
    assert parse_message(b'{"grade_pct": 1, "speed_mps": 20}').detail == "speed_mps: 20.0 is outside 0..15 m/s"
    assert parse_message(b'{"grade_pct": -50}').detail == "grade_pct: -50.0 is outside -45..45"


def test_oversize_boundary_is_1024_bytes():
    base = b'{"grade_pct": -3}'
    exact = base + b" " * (MAX_MESSAGE_BYTES - len(base))
    assert len(exact) == 1024 and parse_message(exact) == Reading(grade_pct=-3.0)
    assert parse_message(exact + b" ").reason is RejectReason.OVERSIZE


def test_range_limits_are_inclusive():
    assert parse_message(msg(grade_pct=-45, speed_mps=15, cadence_spm=300)) == \
        Reading(grade_pct=-45.0, speed_mps=15.0, cadence_spm=300.0)
    assert parse_message(msg(grade_pct=45, speed_mps=0, cadence_spm=0)).grade_pct == 45.0


def test_make_reading_accepts_missing_grade_for_devices():
    assert make_reading(grade_pct=None, speed_mps=2.0) == Reading(grade_pct=None, speed_mps=2.0)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=10))
_json = st.recursive(_json_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                              max_size=4),
                     max_leaves=20)
_keys = st.sampled_from(["t", "grade_pct", "speed_mps", "cadence_spm", "distance_m", "elevation_m", "x"])


def _check_result(r):
    assert isinstance(r, (Reading, Reject))
    if isinstance(r, Reading):
        assert r.grade_pct is not None and math.isfinite(r.grade_pct) and abs(r.grade_pct) <= 45
        assert r.speed_mps is None or 0 <= r.speed_mps <= 15
        assert r.cadence_spm is None or 0 <= r.cadence_spm <= 300
        for v in (r.t_s, r.distance_m, r.elevation_m):
            assert v is None or math.isfinite(v)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1100))
def test_fuzz_random_bytes_never_raise(data):
    _check_result(parse_message(data))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=7))
def test_fuzz_protocol_shaped_json_never_raises(obj):
    data = json.dumps(obj).encode()  # allow_nan=True: NaN/Infinity literals get through to the parser
    r = parse_message(data)
    _check_result(r)
    if isinstance(r, Reading):
        assert r.grade_pct == float(obj["grade_pct"])


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fuzz_any_json_never_raises(obj):
    _check_result(parse_message(json.dumps(obj).encode()))


@settings(max_examples=200, deadline=None)
@given(st.floats(-45, 45), st.floats(0, 15), st.floats(0, 300))
def test_valid_messages_round_trip(g, v, c):
    assert parse_message(msg(grade_pct=g, speed_mps=v, cadence_spm=c)) == Reading(grade_pct=g, speed_mps=v,
                                                                                  cadence_spm=c)


# ---------------------------------------------------------------------------------------------------------------
# Counters, token bucket, reordering
# ---------------------------------------------------------------------------------------------------------------
def test_stats_are_a_preallocated_int64_array_with_names():
    s = SensorStats()
    assert s.counts.dtype == np.int64 and s.counts.shape == (S_N,) and len(STAT_NAMES) == S_N
    s.reject(RejectReason.NOT_FINITE)
    assert s.as_dict()["rejected_not_finite"] == 1 and s.rejected == 1
    assert not any(k.startswith("reserved") for k in stats_dict(s.counts))


def test_token_bucket_burst_then_rate():
    b = TokenBucket(rate_hz=50, burst=50)
    assert sum(b.take(0.0) for _ in range(100)) == 50
    assert sum(b.take(0.5) for _ in range(100)) == 25  # half a second refills 25
    assert sum(b.take(10.0) for _ in range(100)) == 50  # never more than the burst
    assert not b.take(9.0)  # a clock going backwards does not mint tokens


def test_flood_is_rate_limited_before_parsing_and_counted():
    core = FeedCore(TS)
    good = msg(grade_pct=-4.0)
    for i in range(10_000):  # 10k packets within one second of fake time
        core.handle(good if i % 2 else b"\xff garbage", i * 1e-4)
    c = core.stats.counts
    assert c[S_RECEIVED] == 10_000
    assert 50 <= c[S_ACCEPTED] + core.stats.rejected <= 50 + 50 + 1  # burst + 1 s of refill
    assert c[S_RATE_LIMITED] == 10_000 - c[S_ACCEPTED] - core.stats.rejected
    assert c[S_ACCEPTED] + c[S_REORDERED] + c[S_RATE_LIMITED] + core.stats.rejected == c[S_RECEIVED]


def test_reordered_timestamps_are_counted_and_dropped():
    core = FeedCore(TS)
    for now, t, g in [(0.0, 1.0, -1.0), (0.1, 2.0, -2.0), (0.2, 1.5, -9.0), (0.3, 3.0, -3.0), (0.4, 2.9, -9.0)]:
        core.handle(msg(t=t, grade_pct=g), now)
    c = core.stats.counts
    assert c[S_ACCEPTED] == 3 and c[S_REORDERED] == 2
    assert core.filter.last_grade_pct == -3.0  # the late -9 packets never reached the filter
    core.handle(msg(t=3.0, grade_pct=-3.5), 0.5)  # equal timestamp: a duplicate, not older: accepted
    assert c[S_ACCEPTED] == 4


def test_sender_restart_is_a_clock_reset_not_eternal_reordering():
    core = FeedCore(TS)
    core.handle(msg(t=5000.0, grade_pct=1.0), 0.0)
    core.handle(msg(t=0.5, grade_pct=2.0), 1.0)  # sender restarted its clock
    core.handle(msg(t=1.5, grade_pct=2.0), 2.0)
    c = core.stats.counts
    assert c[S_ACCEPTED] == 3 and c[S_CLOCK_RESETS] == 1 and c[S_REORDERED] == 0


def test_messages_without_t_are_never_reordered():
    core = FeedCore(TS)
    core.handle(msg(t=10.0, grade_pct=1.0), 0.0)
    core.handle(msg(grade_pct=2.0), 0.1)
    assert core.stats.counts[S_ACCEPTED] == 2


def test_core_counts_rejects_per_reason_and_remembers_the_last():
    core = FeedCore(TS)
    core.handle(b'{"grade_pct": NaN}', 0.0)
    core.handle(b'{"grade_pct": 99}', 0.1)
    core.handle(b"[]", 0.2)
    d = core.stats.as_dict()
    assert d["rejected_not_finite"] == 1 and d["rejected_grade_range"] == 1 and d["rejected_not_object"] == 1
    assert core.snapshot(0.3).last_reject.startswith("not_object:")
    assert core.filter.last_good_s is None  # nothing bad reached the filter


# ---------------------------------------------------------------------------------------------------------------
# GradeFilter (deterministic with a fake clock)
# ---------------------------------------------------------------------------------------------------------------
def feed_series(f: GradeFilter, start_s, end_s, grade, *, dt=1.0, **kw):
    t = start_s
    while t < end_s - 1e-9:
        f.push(Reading(grade_pct=grade, **kw), t)
        t += dt
    return t


def test_first_reading_sets_the_tempo_immediately():
    f = GradeFilter(TS)
    assert f.mode(0.0) == "waiting" and f.target_bpm(0.0) == TS.base_cadence_spm
    f.push(Reading(grade_pct=-8.0), 0.0)
    assert f.mode(0.0) == "live"
    assert f.target_bpm(0.0) == pytest.approx(float(target_cadence(-8.0, TS)))


def test_step_change_is_adopted_only_after_15_s_held():
    f = GradeFilter(TS)
    feed_series(f, 0.0, 100.0, 0.0)
    flat = f.target_bpm(99.0)
    assert flat == TS.base_cadence_spm
    t = 100.0
    f.push(Reading(grade_pct=-6.0), t)  # smoothed = mean(0, 0, -6) = -2: deviation starts now
    while t < 114.0:
        t += 1.0
        f.push(Reading(grade_pct=-6.0), t)
        assert f.target_bpm(t) == flat, t  # held < 15 s: no reaction
    f.push(Reading(grade_pct=-6.0), 115.0)
    assert f.level_grade_pct == -6.0  # mean of the raw grades over the stretch: the transition is not dragged in
    assert f.target_bpm(115.0) == pytest.approx(170.0 * (1 + 0.005 * 4))


def test_exact_one_point_step_is_seen():
    f = GradeFilter(TS)
    feed_series(f, 0.0, 20.0, -3.0)
    feed_series(f, 20.0, 40.0, -4.0)  # exactly the hysteresis: a boxcar reaches it in full
    assert f.level_grade_pct == -4.0


def test_noise_below_hysteresis_never_moves_the_tempo():
    rng = np.random.default_rng(7)
    f = GradeFilter(TS)
    f.push(Reading(grade_pct=-5.0), 0.0)
    first = f.target_bpm(0.0)
    for i in range(1, 600):
        f.push(Reading(grade_pct=float(-5.0 + rng.uniform(-0.9, 0.9))), i * 0.5)
        assert f.target_bpm(i * 0.5) == first


def test_short_excursions_are_ignored_and_a_sign_flip_restarts_the_hold():
    f = GradeFilter(TS)
    feed_series(f, 0.0, 30.0, 0.0)
    feed_series(f, 30.0, 40.0, -5.0)  # 10 s down
    feed_series(f, 40.0, 50.0, 5.0)  # 10 s up: the downhill run is abandoned
    assert f.level_grade_pct == 0.0
    feed_series(f, 50.0, 60.0, 0.0)
    assert f.level_grade_pct == 0.0


def test_distance_hold_reacts_after_60_m_before_15_s():
    f = GradeFilter(TS)
    feed_series(f, 0.0, 20.0, 0.0, speed_mps=5.0)
    t = feed_series(f, 20.0, 31.0, -8.0, speed_mps=5.0)  # 11 s at 5 m/s = 55 m: not yet
    assert f.level_grade_pct == 0.0
    feed_series(f, t, t + 2.0, -8.0, speed_mps=5.0)  # passes 60 m (about 12 s)
    assert f.level_grade_pct == -8.0


def test_sender_distance_is_used_when_present():
    f = GradeFilter(TS)
    for i in range(20):
        f.push(Reading(grade_pct=0.0, distance_m=100.0 + i * 2.0), float(i))
    for i in range(20, 40):
        f.push(Reading(grade_pct=-6.0, distance_m=100.0 + i * 10.0), float(i))  # 10 m/s downhill sprint
        if f.level_grade_pct == -6.0:
            break
    assert f.level_grade_pct == -6.0 and i < 20 + 15  # 60 m in ~6 s


def test_dropout_holds_30_s_then_falls_back_to_the_profile():
    seen = []

    def profile_target(now_s, distance_m):
        seen.append((now_s, distance_m))
        return 174.0

    f = GradeFilter(TS, fallback=profile_target)
    assert f.target_bpm(0.0) == 174.0  # before any data: the profile
    feed_series(f, 0.0, 21.0, -10.0, speed_mps=3.0)  # last good packet at t = 20
    live = float(target_cadence(-10.0, TS))
    assert f.target_bpm(21.0) == pytest.approx(live) and f.mode(21.0) == "live"
    assert f.target_bpm(35.0) == pytest.approx(live) and f.mode(35.0) == "hold"
    assert f.target_bpm(50.0) == pytest.approx(live)  # exactly 30 s: still held
    assert f.target_bpm(50.001) == 174.0 and f.mode(50.001) == "fallback"
    assert seen[-1][0] == 50.001 and seen[-1][1] == pytest.approx(3.0 * 20)  # integrated distance
    # Data comes back: the new grade is taken at once (no stale hysteresis from before the gap).
    f.push(Reading(grade_pct=-2.0), 80.0)
    assert f.mode(80.0) == "live" and f.level_grade_pct == -2.0


def test_one_argument_fallbacks_are_supported():
    f = GradeFilter(TS, fallback=lambda now_s: 160.0 + now_s)
    assert f.target_bpm(5.0) == 165.0


def test_without_fallback_dropout_returns_to_base_cadence():
    f = GradeFilter(TS)
    f.push(Reading(grade_pct=-12.0), 0.0)
    assert f.target_bpm(31.0) == TS.base_cadence_spm


@pytest.mark.parametrize("bad", [1000.0, -5.0, float("nan"), float("inf")])
def test_tempo_is_always_inside_bounds(bad):
    f = GradeFilter(TS, fallback=lambda now_s, d: bad)
    bpm = f.target_bpm(0.0)
    assert TS.min_bpm <= bpm <= TS.max_bpm
    if not math.isfinite(bad):
        assert bpm == TS.base_cadence_spm


def test_broken_fallback_does_not_silence_the_feed():
    def boom(now_s, d):
        raise RuntimeError("profile gone")

    assert GradeFilter(TS, fallback=boom).target_bpm(0.0) == TS.base_cadence_spm


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 40.0), st.floats(-45, 45)), min_size=1, max_size=60))
def test_filter_target_always_within_settings_bounds(steps):
    f = GradeFilter(TS)
    t = 0.0
    for dt, g in steps:
        t += dt
        f.push(Reading(grade_pct=g, speed_mps=3.0), t)
        assert TS.min_bpm <= f.target_bpm(t) <= TS.max_bpm


def test_filter_params_are_validated():
    with pytest.raises(SensorError, match="hold_last_s"):
        FilterParams(hold_last_s=0)


def test_snapshot_is_immutable_and_mapping_friendly():
    core = FeedCore(TS)
    core.handle(msg(grade_pct=-6.0, speed_mps=3.0, cadence_spm=172), 1.0)
    s = core.snapshot(3.5)
    assert isinstance(s, FeedState) and s.mode == "hold" and s.since_last_good_s == 2.5
    assert s.get("grade_pct") == -6.0 and s.get("nope", 1) == 1
    assert s.status.startswith("hold -6.0% (level -6.0%)") and "172 spm" in s.status
    assert s.as_dict()["target_bpm"] == s.target_bpm
    with pytest.raises(Exception):
        s.mode = "live"


# ---------------------------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url, expect", [
    ("udp://127.0.0.1:47800", dict(kind="udp", host="127.0.0.1", port=47800)),
    ("udp://", dict(kind="udp", host="127.0.0.1", port=47800)),
    ("udp://localhost:5000", dict(kind="udp", host="127.0.0.1", port=5000)),
    ("udp://127.0.0.1:0", dict(kind="udp", port=0)),
    ("udp://[::1]:47801", dict(kind="udp", host="::1", port=47801)),
    ("-", dict(kind="stdin")),
    ("ftms:aa:bb:cc:dd:ee:ff", dict(kind="ftms", address="AA:BB:CC:DD:EE:FF", cadence_factor=1.0)),
    ("rsc:AA:BB:CC:DD:EE:FF?cadence=strides", dict(kind="rsc", cadence_factor=2.0)),
    ("rsc:12345678-1234-1234-1234-1234567890AB", dict(kind="rsc")),
])
def test_good_urls(url, expect):
    spec = parse_sensor_url(url)
    assert isinstance(spec, SensorSpec) and spec.url == url
    for k, v in expect.items():
        assert getattr(spec, k) == v


@pytest.mark.parametrize("url, fragment", [
    ("", "empty"),
    ("tcp://127.0.0.1:1", "unknown scheme 'tcp'"),
    ("127.0.0.1:47800", "unknown scheme '127.0.0.1'"),
    ("udp://127.0.0.1:99999", "port '99999'"),
    ("udp://127.0.0.1:abc", "port 'abc'"),
    ("udp://127.0.0.1:", "port ''"),
    ("udp://127.0.0.1:47800/path", "only HOST:PORT"),
    ("udp:127.0.0.1:47800", "udp://HOST:PORT"),
    ("udp://0.0.0.0:47800", "refusing to listen on '0.0.0.0'"),
    ("udp://192.168.1.10:47800", "not a loopback address"),
    ("udp://example.com:47800", "not a loopback address"),
    ("ftms:", "BLE address ''"),
    ("ftms:AA:BB:CC", "BLE address 'AA:BB:CC'"),
    ("ftms:AA:BB:CC:DD:EE:FF?cadence=strides", "ftms: takes no options"),
    ("rsc:AA:BB:CC:DD:EE:FF?cadence=legs", "cadence='legs'"),
    ("rsc:AA:BB:CC:DD:EE:FF?speed=2", "unknown option 'speed'"),
    ("replay:", "replay needs a file"),
    ("replay:/no/such/file.csv", "'/no/such/file.csv' does not exist"),
])
def test_bad_urls_raise_one_line_sensor_errors(url, fragment):
    with pytest.raises(SensorError) as exc:
        parse_sensor_url(url)
    text = str(exc.value)
    assert fragment in text and "\n" not in text
    assert isinstance(exc.value, InputError)  # the CLI maps it to exit 2


def test_non_loopback_needs_listen_any():
    spec = parse_sensor_url("udp://0.0.0.0:47800", listen_any=True)
    assert spec.host == "0.0.0.0" and spec.listen_any
    with pytest.raises(SensorError, match="not an IP address"):
        parse_sensor_url("udp://example.com:1", listen_any=True)


@pytest.mark.parametrize("suffix, speed", [("", 1.0), ("@4x", 4.0), ("@0.5x", 0.5), ("@10", 10.0)])
def test_replay_urls(tmp_path, suffix, speed):
    f = tmp_path / "run.csv"
    f.write_text("t,grade_pct\n0,1\n")
    spec = parse_sensor_url(f"replay:{f}{suffix}")
    assert spec.kind == "replay" and spec.path == f and spec.speed == speed


@pytest.mark.parametrize("suffix", ["@0x", "@-2x", "@fastx", "@nanx", "@2000x", "@infx"])
def test_bad_replay_speeds_name_the_value(tmp_path, suffix):
    f = tmp_path / "run.csv"
    f.write_text("t,grade_pct\n0,1\n")
    with pytest.raises(SensorError, match=f"replay speed '{suffix[1:]}'"):
        parse_sensor_url(f"replay:{f}{suffix}")


def test_replay_path_containing_at_sign(tmp_path):
    f = tmp_path / "me@home.csv"
    f.write_text("t,grade_pct\n0,1\n")
    assert parse_sensor_url(f"replay:{f}").path == f
    assert parse_sensor_url(f"replay:{f}@2x").speed == 2.0
