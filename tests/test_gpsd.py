"""gpsd position source (issue 14): TPV meaning, and end to end through the real gpsd started by ``gpsfake``."""

from __future__ import annotations

import datetime as _dt
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from metronome.errors import SensorError
from metronome.sensors import Fix, Reject, RejectReason, make_source, parse_sensor_url, parse_tpv
from metronome.sensors.gpsd import GpsdSource
from metronome.sensors.position import MAX_GPSD_LINE_BYTES
from profiles.gpx import read_gpx

from tests.support import gpsfake, nmea

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------------------------------------------
# TPV meaning (pure)
# --------------------------------------------------------------------------------------------------------------
def test_tpv_3d_fix_fields():
    line = (b'{"class":"TPV","device":"/dev/pts/3","mode":3,"time":"2024-06-01T10:00:05.000Z","ept":0.005,'
            b'"lat":45.771366183,"lon":14.357201933,"altHAE":560.5,"altMSL":552.9,"track":202.3,'
            b'"speed":0.957,"eph":17.1}')
    f = parse_tpv(line)
    assert f == Fix(t_s=_dt.datetime(2024, 6, 1, 10, 0, 5, tzinfo=_dt.timezone.utc).timestamp(),
                    lat_deg=45.771366183, lon_deg=14.357201933, elevation_m=552.9, speed_mps=0.957,
                    accuracy_m=17.1, source="gpsd")


def test_tpv_missing_keys_are_omitted_and_2d_has_no_altitude():
    f = parse_tpv(b'{"class":"TPV","mode":2,"lat":1.5,"lon":-2.5,"altHAE":99}')
    assert f == Fix(t_s=None, lat_deg=1.5, lon_deg=-2.5, source="gpsd")
    f = parse_tpv(b'{"class":"TPV","mode":3,"lat":1.5,"lon":-2.5,"altHAE":99,"epx":4,"epy":6}')
    assert f.elevation_m == 99.0 and f.accuracy_m == 6.0


@pytest.mark.parametrize("line, reason", [
    (b'{"class":"TPV","mode":1,"time":"2024-06-01T10:00:00.000Z"}', RejectReason.NO_FIX),
    (b'{"class":"TPV","mode":0}', RejectReason.NO_FIX),
    (b'{"class":"TPV"}', RejectReason.NO_FIX),
    (b'{"class":"TPV","mode":3}', RejectReason.NO_FIX),
    (b'{"class":"TPV","mode":true,"lat":1,"lon":2}', RejectReason.NO_FIX),
    (b'{"class":"TPV","mode":3,"lat":91,"lon":2}', RejectReason.POSITION_RANGE),
    (b'{"class":"TPV","mode":3,"lat":1,"lon":-180.5}', RejectReason.POSITION_RANGE),
    (b'{"class":"TPV","mode":3,"lat":"x","lon":2}', RejectReason.NOT_NUMBER),
    (b'{"class":"TPV","mode":3,"lat":1,"lon":2,"time":"yesterday"}', RejectReason.NOT_NUMBER),
    (b'{"class":"TPV","mode":3,"lat":1,"lon":2,"speed":-1}', RejectReason.SPEED_RANGE),
    (b'{"class":"TPV", garbage', RejectReason.NOT_JSON),
    (b'{"class":"TPV","x":"' + b"a" * MAX_GPSD_LINE_BYTES + b'"}', RejectReason.OVERSIZE),
])
def test_tpv_rejects(line, reason):
    r = parse_tpv(line)
    assert isinstance(r, Reject) and r.reason == reason, r


@pytest.mark.parametrize("line", [
    b'{"class":"VERSION","release":"3.22","rev":"3.22","proto_major":3,"proto_minor":14}',
    b'{"class":"SKY","device":"/dev/pts/3","satellites":[]}',
    b'{"class":"WATCH","enable":true,"json":true}',
    b'["TPV"]',
])
def test_non_tpv_lines_are_not_positions(line):
    assert parse_tpv(line) is None


def test_source_splits_lines_and_caps_them():
    src = GpsdSource()
    tpv = b'{"class":"TPV","mode":2,"lat":1,"lon":2}\n'
    # a TPV cut across two reads, then one line longer than the cap (streamed in pieces), then a good one
    assert src._split(tpv[:10]) == []
    assert src._split(tpv[10:]) == [Fix(None, 1.0, 2.0, source="gpsd")]
    out = src._split(b"x" * (MAX_GPSD_LINE_BYTES + 5))
    assert len(out) == 1 and out[0].reason == RejectReason.OVERSIZE
    assert src._split(b"y" * 100000) == []  # still inside the long line: dropped, not buffered
    assert src._split(b"\n" + tpv) == [Fix(None, 1.0, 2.0, source="gpsd")]
    assert len(src._lines._buf) == 0


def test_gpsd_urls():
    s = parse_sensor_url("gpsd://")
    assert (s.kind, s.host, s.port) == ("gpsd", "127.0.0.1", 2947)
    s = parse_sensor_url("gpsd://localhost:3000")
    assert (s.host, s.port) == ("127.0.0.1", 3000)
    assert parse_sensor_url("gpsd://gps.example:2947").host == "gps.example"
    assert isinstance(make_source(parse_sensor_url("gpsd://127.0.0.1:2947")), GpsdSource)
    for bad, words in [("gpsd://127.0.0.1:99999", "'99999'"), ("gpsd://127.0.0.1:x", "'x'"),
                       ("gpsd://127.0.0.1:0", "port 0"), ("gpsd:/127.0.0.1", "gpsd://HOST:PORT"),
                       ("gpsd://h_st:2947", "'h_st'"), ("gpsd://127.0.0.1:2947/x", "only HOST:PORT")]:
        with pytest.raises(SensorError) as e:
            parse_sensor_url(bad)
        msg = str(e.value)
        assert words in msg and repr(bad) in msg and "\n" not in msg


def test_gpsd_not_running_is_a_one_line_error():
    src = GpsdSource("127.0.0.1", gpsfake.free_port(), connect_timeout_s=1.0)
    with pytest.raises(SensorError, match=r"cannot connect to gpsd"):
        src.open()


# --------------------------------------------------------------------------------------------------------------
# End to end: NMEA from a real track -> gpsfake -> gpsd -> GpsdSource
# --------------------------------------------------------------------------------------------------------------
def _track_points(path: Path, n: int):
    """The first ``n`` points of a real track, its times moved to 2024 (gpsd reads NMEA's two-digit year against
    its build date, so a 2010 date can come back as 2030) keeping every interval."""
    raw = read_gpx(path.read_bytes(), path.name)
    t0 = _dt.datetime(2024, 6, 1, 10, 0, 0, tzinfo=_dt.timezone.utc).timestamp()
    t = raw.time_s - raw.time_s[0] + t0
    keep = np.concatenate([[True], np.diff(t) > 0])  # one fix per time stamp
    idx = np.flatnonzero(keep)[:n]
    return [(float(t[i]), float(raw.lat_deg[i]), float(raw.lon_deg[i]), float(raw.elevation_m[i])) for i in idx]


@pytest.mark.skipif(shutil.which("gpsfake") is None, reason="gpsfake not installed (Debian gpsd-clients)")
def test_gpsd_end_to_end_with_gpsfake(tmp_path):
    pts = _track_points(DATA / "cerknicko-jezero.gpx", 80)
    log = tmp_path / "run.nmea"
    # Lead-in: the runner standing at the start for 15 s.  gpsd spends the first sentences probing the device
    # type (and needs an RMC date before a GGA time means anything); the track's own points all come after it.
    t0, lat0, lon0, ele0 = pts[0]
    lead = [(t0 - 15.0 + k, lat0, lon0, ele0) for k in range(15)]
    log.write_text(nmea.track_to_nmea(lead + pts))
    port = gpsfake.free_port()
    errlog = open(tmp_path / "gpsfake.err", "wb")
    # -1: play the log once; -c: seconds between sentences; -q: quiet.  gpsfake starts its own gpsd on -P PORT.
    proc = gpsfake.start(log, port, errlog, 0.03)
    src = GpsdSource("127.0.0.1", port, connect_timeout_s=1.0, reconnect_s=60.0)
    fixes, rejects = [], []
    try:
        deadline = time.monotonic() + 20.0
        while True:
            try:
                src.open()
                break
            except SensorError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            for it in src.read(0.1):
                (fixes if isinstance(it, Fix) else rejects).append(it)
            if fixes and fixes[-1].t_s == pts[-1][0]:
                break
            if src.sock is None:  # gpsfake finished and gpsd closed the connection
                break
    finally:
        src.close()
        gpsfake.stop(proc)
        errlog.close()
    by_t = {p[0]: p for p in pts}
    fixes = [f for f in fixes if f.t_s is not None and f.t_s >= t0]
    assert len(fixes) >= len(pts) - 2, (len(fixes), (tmp_path / "gpsfake.err").read_text()[-500:])
    assert not [r for r in rejects if r.reason != RejectReason.NO_FIX], rejects
    times = [f.t_s for f in fixes]
    assert times == sorted(times) and times[-1] == pts[-1][0]
    n3d = 0
    for f in fixes:
        t, lat, lon, ele = by_t[f.t_s]  # every fix is one of the track's points, at its own time
        assert f.source == "gpsd"
        assert abs(f.lat_deg - lat) < 1e-7 and abs(f.lon_deg - lon) < 1e-7, (f, lat, lon)
        if f.elevation_m is not None:
            n3d += 1
            assert abs(f.elevation_m - ele) <= 0.051
        assert f.speed_mps is not None and 0.0 <= f.speed_mps < 15.0
    assert n3d >= len(fixes) - 2  # gpsd's first report may be 2-D until it has seen a GGA
