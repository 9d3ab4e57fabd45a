"""HTTP push position source (issue 14): Sensor Logger and GPSLogger requests over a real loopback socket."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from metronome import _kernels as K
from metronome.errors import SensorError
from metronome.follower import CourseFollower
from metronome.sensors import Fix, Reject, RejectReason, SensorFeed, make_source, parse_sensor_url
from metronome.sensors.http import BURST, MAX_BODY_BYTES, HttpPushSource
from metronome.sensors.http_protocol import parse_push
from metronome.tempo import TempoSettings
from profiles import load_profile
from profiles.gpx import read_gpx

DATA = Path(__file__).parent / "data"


def _track(name="Mojstrovka.gpx"):
    """A real track's points with times: its own when they increase (cerknicko-jezero), else (Mojstrovka's
    timestamps are all one placeholder) a run at 2.5 m/s from 2024-06-01, one fix per point."""
    from profiles.track import haversine_m
    raw = read_gpx((DATA / name).read_bytes(), name)
    t = raw.time_s
    if not np.all(np.diff(t) > 0):
        d = np.concatenate([[0.0], np.cumsum(haversine_m(raw.lat_deg, raw.lon_deg))])
        t = 1717236000.0 + d / 2.5
        keep = np.concatenate([[True], np.diff(t) > 0])
    else:
        keep = np.ones(t.size, bool)
    return t[keep], raw.lat_deg[keep], raw.lon_deg[keep], raw.elevation_m[keep]


def _sensor_logger_batch(i0, i1, t, lat, lon, ele, message_id=1):
    """A Sensor Logger HTTP push body: locations of points i0..i1, each with a barometer sample and some
    accelerometer noise the app streams too (shape from the app's documented JSON export)."""
    payload = []
    for i in range(i0, i1):
        t_ns = int(round(t[i] * 1e9))
        payload.append({"name": "accelerometer", "time": t_ns, "values": {"x": 0.1, "y": -0.2, "z": 9.8}})
        payload.append({"name": "location", "time": t_ns, "accuracy": 0,
                        "values": {"latitude": float(lat[i]), "longitude": float(lon[i]), "altitude": float(ele[i]),
                                   "speed": 1.5, "bearing": 90.0, "horizontalAccuracy": 6.5,
                                   "verticalAccuracy": 3.0}})
        payload.append({"name": "barometer", "time": t_ns, "values": {"relativeAltitude": float(ele[i] - ele[0]),
                                                                        "pressure": 850.25}})
    return {"messageId": message_id, "sessionId": "5a1e3b2c-0000-4000-8000-000000000001",
            "deviceId": "3f1a7b2c-0000-4000-8000-000000000002", "payload": payload}


@pytest.fixture
def src():
    s = HttpPushSource("127.0.0.1", 0)
    s.open()
    yield s
    s.close()


def _url(s, path="/"):
    host, port = s.address
    return f"http://{host}:{port}{path}"


def _req(url, data=None, ctype=None, method=None):
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _drain(s, n_min=0, timeout_s=3.0):
    out = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out += s.read(0.05)
        if len(out) >= n_min and not s._q:
            break
    return out


# --------------------------------------------------------------------------------------------------------------
def test_sensor_logger_batches_from_a_real_track(src):
    t, lat, lon, ele = _track()
    n = 60
    got = []
    for k, i0 in enumerate(range(0, n, 10)):
        body = json.dumps(_sensor_logger_batch(i0, i0 + 10, t, lat, lon, ele, k)).encode()
        code, text = _req(_url(src, "/data"), body, "application/json")
        assert code == 200, text
        got += _drain(src, 10)
    fixes = [g for g in got if isinstance(g, Fix)]
    assert len(fixes) == n and not [g for g in got if isinstance(g, Reject)]
    for i, f in enumerate(fixes):
        assert f.source == "sensorlogger"
        assert f.t_s == pytest.approx(t[i], abs=1e-6)
        assert (f.lat_deg, f.lon_deg, f.elevation_m) == (lat[i], lon[i], ele[i])
        assert (f.speed_mps, f.accuracy_m) == (1.5, 6.5)
    c = src.counts_snapshot()
    assert (c["requests"], c["ok"], c["fixes"], c["barometers"], c["ignored_entries"]) == (6, 6, n, n, n)
    assert src.last_barometer.pressure_hpa == 850.25


def test_gpslogger_get_query_and_post_form_from_a_real_track(src):
    t, lat, lon, ele = _track("cerknicko-jezero.gpx")
    for i in range(20):
        q = {"lat": f"{lat[i]:.7f}", "lon": f"{lon[i]:.7f}", "alt": f"{ele[i]:.1f}", "spd": "2.5", "acc": "8",
             "timestamp": f"{t[i]:.0f}"}
        if i % 2:  # GPSLogger custom URL, GET with a query string
            code, _ = _req(_url(src, "/log?" + urllib.parse.urlencode(q)))
        else:  # the same fields as a form body (GPSLogger's POST option, OsmAnd-style names)
            q = {"lat": q["lat"], "lon": q["lon"], "altitude": q["alt"], "speed": "2.5", "accuracy": "8",
                 "timestamp": f"{t[i] * 1000:.0f}"}  # OsmAnd sends milliseconds
            code, _ = _req(_url(src, "/"), urllib.parse.urlencode(q).encode(), "application/x-www-form-urlencoded")
        assert code == 200
    fixes = [f for f in _drain(src, 20) if isinstance(f, Fix)]
    assert len(fixes) == 20
    for i, f in enumerate(fixes):
        assert f.lat_deg == pytest.approx(lat[i], abs=1e-7) and f.lon_deg == pytest.approx(lon[i], abs=1e-7)
        assert f.elevation_m == pytest.approx(ele[i], abs=0.05)
        assert f.t_s == pytest.approx(round(t[i]), abs=1e-6)
        assert (f.speed_mps, f.accuracy_m) == (2.5, 8.0)


@pytest.mark.parametrize("body, ctype, reason", [
    (b"{not json", "application/json", RejectReason.NOT_JSON),
    (b"[1, 2]", "application/json", RejectReason.NOT_OBJECT),
    (b'{"payload": 5}', "application/json", RejectReason.BAD_BODY),
    (b'{"payload": [{"name": "location", "time": 1, "values": {"latitude": 95, "longitude": 1}}]}',
     "application/json", RejectReason.POSITION_RANGE),
    (b'{"payload": [{"name": "location", "time": 1, "values": {"latitude": NaN, "longitude": 1}}]}',
     "application/json", RejectReason.NOT_FINITE),
    (b'{"payload": [{"name": "location", "time": "x", "values": {"latitude": 1, "longitude": 1}}]}',
     "application/json", RejectReason.BAD_BODY),
    (b"lat=46.1", "application/x-www-form-urlencoded", RejectReason.BAD_BODY),
    (b"lat=46.1&lon=abc", "application/x-www-form-urlencoded", RejectReason.BAD_BODY),
    (b"lat=46.1&lon=14&spd=99", "application/x-www-form-urlencoded", RejectReason.SPEED_RANGE),
    (b"lat=46.1&lon=14&timestamp=someday", "application/x-www-form-urlencoded", RejectReason.BAD_BODY),
    (b"\xff\xfe{", "application/json", RejectReason.NOT_UTF8),
    (b"hello", "text/plain", RejectReason.BAD_BODY),
])
def test_malformed_bodies_are_400_counted_and_dropped(src, body, ctype, reason):
    code, text = _req(_url(src), body, ctype)
    assert code == 400 and "\n" not in text.strip()
    items = _drain(src, 1)
    assert [type(i) for i in items] == [Reject] and items[0].reason == reason, items
    assert src.counts_snapshot()["bad_body"] == 1
    # the listener keeps serving
    code, _ = _req(_url(src, "/?lat=1&lon=2"))
    assert code == 200 and isinstance(_drain(src, 1)[0], Fix)


def test_a_batch_keeps_its_good_entries():
    body = json.dumps({"payload": [
        {"name": "location", "time": 2_000_000_000, "values": {"latitude": 1.0, "longitude": 2.0}},
        {"name": "location", "time": 1_000_000_000, "values": {"latitude": 100.0, "longitude": 2.0}},
        {"name": "location", "time": 1_000_000_000, "values": {"latitude": 1.5, "longitude": 2.5}},
        "junk"]}).encode()
    res = parse_push("POST", "", "application/json", body)
    assert res.ok and [f.t_s for f in res.fixes] == [1.0, 2.0]  # sorted by time
    assert sorted(r.reason for r in res.rejects) == [RejectReason.POSITION_RANGE, RejectReason.BAD_BODY]


def _raw_request(s, data: bytes) -> bytes:
    with socket.create_connection(s.address, timeout=5) as c:
        c.sendall(data)
        out = b""
        while True:
            try:
                chunk = c.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
    return out


def test_oversize_and_chunked_bodies_are_refused_unread(src):
    resp = _raw_request(src, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n{" % (MAX_BODY_BYTES + 1))
    assert resp.startswith(b"HTTP/1.0 413")
    resp = _raw_request(src, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert resp.startswith(b"HTTP/1.0 411")
    # a real oversize body sent in full is refused too (the client may see the connection close early)
    big = json.dumps({"payload": [{"name": "x", "values": {"v": "a" * 100}}] * 1000}).encode()
    assert len(big) > MAX_BODY_BYTES
    try:
        code, _ = _req(_url(src), big, "application/json")
        assert code == 413
    except (urllib.error.URLError, ConnectionError):
        pass
    items = _drain(src, 2)
    assert [i.reason for i in items if isinstance(i, Reject)][:1] == [RejectReason.OVERSIZE]
    c = src.counts_snapshot()
    assert c["oversize"] >= 1 and c["length_required"] == 1 and c["fixes"] == 0
    code, _ = _req(_url(src, "/?lat=1&lon=2"))
    assert code == 200


def test_flood_is_rate_limited_and_the_listener_recovers():
    now = [100.0]
    s = HttpPushSource("127.0.0.1", 0, clock=lambda: now[0])
    s.open()
    try:
        n = 150  # bounded: ~150 loopback requests, well under a few seconds
        codes = [_req(_url(s, f"/?lat=1&lon=2&timestamp={i}"))[0] for i in range(n)]
        assert codes.count(200) == int(BURST) and codes.count(429) == n - int(BURST)
        c = s.counts_snapshot()
        assert c["requests"] == n and c["rate_limited"] == n - int(BURST) and c["fixes"] == int(BURST)
        assert len([f for f in _drain(s, int(BURST)) if isinstance(f, Fix)]) == int(BURST)
        now[0] += 1.0  # a second later the bucket has refilled (20/s)
        assert _req(_url(s, "/?lat=1&lon=2"))[0] == 200
    finally:
        s.close()


def test_stalled_client_does_not_stop_the_listener(src):
    with socket.create_connection(src.address, timeout=5) as stalled:
        stalled.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # then nothing
        code, _ = _req(_url(src, "/?lat=1&lon=2"))  # served once the stalled request times out (2 s)
        assert code == 200
    items = _drain(src, 2)
    assert any(isinstance(i, Fix) for i in items)
    assert any(isinstance(i, Reject) and i.reason == RejectReason.BAD_BODY for i in items)


def test_other_methods_and_garbage_never_kill_the_server(src):
    assert _req(_url(src), method="DELETE")[0] == 405
    _raw_request(src, b"\x00\x01garbage\r\n\r\n")
    _raw_request(src, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert _req(_url(src, "/?lat=1&lon=2"))[0] == 200
    assert src._thread.is_alive() and src.counts_snapshot()["server_errors"] == 0


def test_non_loopback_bind_refused():
    with pytest.raises(SensorError, match="non-loopback"):
        HttpPushSource("0.0.0.0", 0).open()
    with pytest.raises(SensorError, match="not a loopback address"):
        parse_sensor_url("http://0.0.0.0:8000")
    spec = parse_sensor_url("http://0.0.0.0:8000", listen_any=True)
    assert spec.listen_any and spec.kind == "http"


def test_http_urls():
    s = parse_sensor_url("http://localhost")
    assert (s.kind, s.host, s.port) == ("http", "127.0.0.1", 47801)
    assert isinstance(make_source(parse_sensor_url("http://127.0.0.1:0")), HttpPushSource)
    for bad, words in [("http://127.0.0.1:70000", "'70000'"), ("http://127.0.0.1:8000/push", "only HOST:PORT"),
                       ("https://127.0.0.1:8000", "https is not supported"), ("http:127.0.0.1", "http://HOST:PORT"),
                       ("http://example.com:80", "not a loopback")]:
        with pytest.raises(SensorError) as e:
            parse_sensor_url(bad)
        assert words in str(e.value) and repr(bad) in str(e.value) and "\n" not in str(e.value)


def test_bind_conflict_is_a_one_line_error(src):
    with pytest.raises(SensorError, match="cannot bind"):
        HttpPushSource("127.0.0.1", src.address[1]).open()


def test_feed_to_follower_end_to_end():
    """SensorFeed(http://) -> FeedCore -> on_position -> CourseFollower: distance follows the pushed track."""
    course = load_profile(DATA / "Mojstrovka.gpx")
    follower = CourseFollower(course)
    t, lat, lon, ele = _track()
    ctl = np.zeros(K.CT_N, dtype=np.float64)
    feed = SensorFeed("http://127.0.0.1:0", ctl, TempoSettings(), on_position=follower.push, poll_s=0.02)
    feed.start()
    try:
        n = 80
        for i0 in range(0, n, 20):
            body = json.dumps(_sensor_logger_batch(i0, i0 + 20, t, lat, lon, ele)).encode()
            host, port = feed.address
            assert _req(f"http://{host}:{port}/", body, "application/json")[0] == 200
            time.sleep(0.5)  # 20 s of fixes per batch; the feed's item bucket (50/s) refills between batches
        deadline = time.monotonic() + 5.0
        while follower.n_fixes < n and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        feed.stop()
    assert follower.n_fixes == n, (feed.stats_dict(), follower.ignored, feed.core.last_reject)
    st = follower.state
    # the course distance of point n-1 is the track's own cumulative distance there (same file)
    from profiles.track import haversine_m
    d_true = float(np.sum(haversine_m(lat[:n], lon[:n])))
    assert st.state == "on_course" and abs(st.distance_m - d_true) < 25.0, (st, d_true)
    assert feed.stats_dict()["accepted"] == n
