"""The feed thread with real I/O: UDP on 127.0.0.1 (ephemeral port), stdin pipes, replayed files.

Timing is never asserted tightly: every wait polls a condition with a generous deadline, and the only wall-clock
bound is that ``stop()`` returns well within its timeout.
"""

from __future__ import annotations

import collections
import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from metronome import _kernels as K
from metronome.errors import SensorError
from metronome.sensors import (S_ACCEPTED, S_RATE_LIMITED, S_RECEIVED, S_REORDERED, S_SOURCE_ERRORS, Reading,
                               ReplaySource, RejectReason, SensorFeed, StreamSource, load_replay, parse_message,
                               parse_sensor_url)
from metronome.tempo import TempoSettings, target_cadence

TS = TempoSettings()
REPO = Path(__file__).resolve().parents[1]


def msg(**kw) -> bytes:
    return json.dumps(kw).encode()


def new_ctl() -> np.ndarray:
    ctl = np.zeros(K.CT_N, dtype=np.float64)
    ctl[K.CT_TARGET_BPM] = -1.0  # sentinel: the feed must write it on start()
    return ctl


def wait_until(pred, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return bool(pred())


def stop_quickly(feed: SensorFeed) -> float:
    t0 = time.monotonic()
    assert feed.stop(timeout_s=5.0), "sensor thread did not stop"
    return time.monotonic() - t0


def conserved(c) -> bool:
    return int(c[S_RECEIVED]) == int(c[S_ACCEPTED] + c[S_REORDERED] + c[S_RATE_LIMITED]
                                     + c[K_REJECT_SLICE].sum())


from metronome.sensors import S_REJECT_BASE  # noqa: E402

K_REJECT_SLICE = slice(S_REJECT_BASE, None)


# ---------------------------------------------------------------------------------------------------------------
# UDP
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def udp_feed():
    ctl = new_ctl()
    feed = SensorFeed("udp://127.0.0.1:0", ctl, TS)
    feed.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield feed, ctl, sender, feed.address
    sender.close()
    feed.stop()


def test_udp_round_trip_drives_the_control_slot(udp_feed):
    feed, ctl, sender, addr = udp_feed
    assert addr[0] == "127.0.0.1" and addr[1] > 0
    assert ctl[K.CT_TARGET_BPM] == TS.base_cadence_spm  # written by start(), before any packet
    sender.sendto(msg(t=1.0, grade_pct=-8.0, speed_mps=3.2, cadence_spm=174), addr)
    want = float(target_cadence(-8.0, TS))
    assert wait_until(lambda: ctl[K.CT_TARGET_BPM] == want)
    st = feed.state()
    assert st.mode == "live" and st.grade_pct == -8.0 and st.cadence_spm == 174 and st.speed_mps == 3.2
    assert st.address == f"127.0.0.1:{addr[1]}"
    assert feed.stats[S_ACCEPTED] == 1 and feed.stats_dict()["received"] == 1
    assert stop_quickly(feed) < 1.0


def test_udp_bad_datagrams_are_counted_not_fatal(udp_feed):
    feed, ctl, sender, addr = udp_feed
    for data in (b'{"grade_pct": NaN}', b"\xff\xfe", b"[1]", b"x" * 5000, b'{"grade_pct": 60}',
                 b'{"grade_pct": true}', msg(grade_pct=-3.0)):
        sender.sendto(data, addr)
    assert wait_until(lambda: feed.stats[S_RECEIVED] == 7)
    d = feed.stats_dict()
    assert d["accepted"] == 1
    for name in ("not_finite", "not_utf8", "not_object", "oversize", "grade_range", "not_number"):
        assert d[f"rejected_{name}"] == 1, name
    assert feed.running and feed.state().grade_pct == -3.0


def test_udp_flood_is_counted_and_the_feed_stays_responsive(udp_feed):
    feed, ctl, sender, addr = udp_feed
    good = [msg(t=i * 1e-3, grade_pct=-4.0) for i in range(10_000)]
    t0 = time.monotonic()
    for i in range(100):  # 10 000 datagrams paced over ~1 s
        for j in range(100):
            sender.sendto(good[i * 100 + j] if j % 10 else b"\x00garbage", addr)
        time.sleep(0.01)
    flood_s = time.monotonic() - t0
    # Wait until the thread has drained its socket (the count stops moving).
    last = -1
    while True:
        time.sleep(0.2)
        now = int(feed.stats[S_RECEIVED])
        if now == last:
            break
        last = now
    c = feed.stats.copy()
    assert conserved(c)
    # The kernel may drop datagrams before we see them; what we saw was all counted, most of it refused unparsed.
    assert 1000 <= c[S_RECEIVED] <= 10_000
    parsed = int(c[S_ACCEPTED] + c[K_REJECT_SLICE].sum())
    assert parsed <= 50 + 50 * (flood_s + 1.0) + 5  # burst + 50/s
    assert c[S_RATE_LIMITED] >= c[S_RECEIVED] - parsed - 1
    assert c[S_RATE_LIMITED] > 0 and c[S_ACCEPTED] > 0
    # Still responsive: a fresh packet shows up in the state right away (tokens have refilled by now).
    sender.sendto(msg(t=100.0, grade_pct=-9.5, cadence_spm=181), addr)
    assert wait_until(lambda: feed.state().grade_pct == -9.5 and feed.state().cadence_spm == 181)
    assert feed.state().since_last_good_s < 5.0


def test_stop_is_prompt_even_during_a_flood(udp_feed):
    feed, ctl, sender, addr = udp_feed
    stop = threading.Event()

    def flood():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            while not stop.is_set():
                for _ in range(200):
                    s.sendto(b'{"grade_pct": -1}', addr)
                time.sleep(0)
        except OSError:  # ECONNREFUSED once the feed has closed its socket: the flood is over
            pass
        finally:
            s.close()

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        assert wait_until(lambda: feed.stats[S_RATE_LIMITED] > 100)
        assert stop_quickly(feed) < 2.0
        assert not feed.running
    finally:
        stop.set()
        t.join(5.0)


def test_non_loopback_bind_is_refused_without_listen_any():
    with pytest.raises(SensorError, match="refusing to listen on '0.0.0.0'"):
        SensorFeed("udp://0.0.0.0:0", new_ctl(), TS)
    with pytest.raises(SensorError, match="not a loopback address"):
        SensorFeed(parse_sensor_url("udp://10.1.2.3:47800"), new_ctl(), TS)


def test_port_in_use_is_a_sensor_error_at_start():
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    try:
        feed = SensorFeed(f"udp://127.0.0.1:{port}", new_ctl(), TS)
        with pytest.raises(SensorError, match=f"udp://127.0.0.1:{port}: cannot bind"):
            feed.start()
    finally:
        blocker.close()


def test_bad_ctl_is_refused():
    with pytest.raises(SensorError, match="float64"):
        SensorFeed("udp://127.0.0.1:0", np.zeros(K.CT_N, dtype=np.float32), TS)


# ---------------------------------------------------------------------------------------------------------------
# Fake source + fake clock through the real thread: dropout, source errors
# ---------------------------------------------------------------------------------------------------------------
class ScriptedSource:
    """Items pushed by the test; ``read`` blocks (really) for at most the timeout."""

    done = False

    def __init__(self):
        self.q = collections.deque()
        self.fail_next = 0
        self.opened = self.closed = False

    def open(self):
        self.opened = True

    def read(self, timeout_s):
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("device went away")
        if not self.q:
            time.sleep(min(timeout_s, 0.01))
        out = list(self.q)
        self.q.clear()
        return out

    def close(self):
        self.closed = True


class FakeClock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def test_dropout_through_the_thread_holds_30_s_then_uses_the_profile():
    clock = FakeClock(1000.0)
    src = ScriptedSource()
    ctl = new_ctl()
    t0 = clock()
    feed = SensorFeed("-", ctl, TS, fallback=lambda now_s: 165.0 + (now_s - t0) * 0.0, clock=clock, source=src)
    feed.start()
    try:
        assert src.opened and ctl[K.CT_TARGET_BPM] == 165.0  # profile tempo before any data
        src.q.append(msg(grade_pct=-10.0))
        live = float(target_cadence(-10.0, TS))
        assert wait_until(lambda: ctl[K.CT_TARGET_BPM] == live)
        clock.t = 1029.0
        assert wait_until(lambda: feed.state().mode == "hold")
        assert ctl[K.CT_TARGET_BPM] == live and feed.state().since_last_good_s == pytest.approx(29.0)
        clock.t = 1031.0
        assert wait_until(lambda: ctl[K.CT_TARGET_BPM] == 165.0)
        assert feed.state().mode == "fallback" and "fallback: no grade for 31 s" in feed.state().status
        src.q.append(msg(grade_pct=-2.0))  # back online: followed at once
        assert wait_until(lambda: ctl[K.CT_TARGET_BPM] == float(target_cadence(-2.0, TS)))
    finally:
        feed.stop()
    assert src.closed


def test_source_errors_are_counted_and_survived():
    src = ScriptedSource()
    src.fail_next = 3
    ctl = new_ctl()
    feed = SensorFeed("-", ctl, TS, source=src, poll_s=0.01)
    feed.start()
    try:
        assert wait_until(lambda: feed.stats[S_SOURCE_ERRORS] == 3)
        assert "device went away" in (feed.state().error or "")
        src.q.append(msg(grade_pct=-6.0))
        assert wait_until(lambda: feed.state().grade_pct == -6.0)
        assert feed.running
    finally:
        assert stop_quickly(feed) < 1.0


def test_start_twice_is_refused():
    feed = SensorFeed("-", new_ctl(), TS, source=ScriptedSource())
    feed.start()
    try:
        with pytest.raises(SensorError, match="already started"):
            feed.start()
    finally:
        feed.stop()


# ---------------------------------------------------------------------------------------------------------------
# stdin
# ---------------------------------------------------------------------------------------------------------------
def test_stdin_lines_through_a_pipe():
    r, w = os.pipe()
    ctl = new_ctl()
    stream = os.fdopen(r, "rb", buffering=0)
    feed = SensorFeed("-", ctl, TS, source=StreamSource(stream))
    feed.start()
    try:
        os.write(w, msg(t=1, grade_pct=-1.0) + b"\n\n" + b"not json\r\n")
        os.write(w, b'{"grade_pct": -' + b"7" * 3000)  # an oversize line streaming in, in pieces
        os.write(w, b"7" * 3000 + b"}\n")
        os.write(w, msg(t=2, grade_pct=-5.0)[:7])  # a line split across writes
        time.sleep(0.05)
        os.write(w, msg(t=2, grade_pct=-5.0)[7:] + b"\n" + msg(t=3, grade_pct=-5.5))  # last line: no newline
        os.close(w)
        assert wait_until(lambda: feed.state().source_done)
        assert wait_until(lambda: feed.stats[S_ACCEPTED] == 3)
        d = feed.stats_dict()
        assert d["received"] == 5 and d["rejected_not_json"] == 1 and d["rejected_oversize"] == 1
        assert feed.state().grade_pct == -5.5 and "[source ended]" in feed.state().status
    finally:
        assert stop_quickly(feed) < 1.0
        stream.close()


def test_stream_source_without_fileno():
    src = StreamSource(io.BytesIO(msg(grade_pct=1.0) + b"\n" + b"x" * 2000 + b"\n" + msg(grade_pct=2.0) + b"\n"))
    src.open()
    items = []
    while not src.done:
        items += src.read(0.01)
    assert items[0] == msg(grade_pct=1.0) and items[2] == msg(grade_pct=2.0)
    assert items[1].reason is RejectReason.OVERSIZE and len(items) == 3


def test_make_source_stdin_defaults_to_sys_stdin(monkeypatch):
    r, w = os.pipe()
    fake = io.TextIOWrapper(os.fdopen(r, "rb"))
    monkeypatch.setattr("sys.stdin", fake)
    feed = SensorFeed("-", new_ctl(), TS)
    feed.start()
    try:
        os.write(w, msg(grade_pct=-4.0) + b"\n")
        assert wait_until(lambda: feed.state().grade_pct == -4.0)
    finally:
        os.close(w)
        feed.stop()
        fake.close()


# ---------------------------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------------------------
def write_csv(path: Path, rows, header="t,grade_pct,speed_mps,cadence_spm"):
    text = (header + "\n" if header else "") + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n"
    path.write_text(text)
    return path


def test_load_replay_csv_schedule(tmp_path):
    f = write_csv(tmp_path / "r.csv", [(10, -2, 3.0, 170), (11, -3, 3.1, ""), (12.5, -4, "", "")])
    sched = load_replay(f, speed=2.0)
    assert [w for w, _ in sched] == [0.0, 0.5, 1.25]  # wall offsets at 2x, from the first row
    assert [parse_message(m) for _, m in sched] == [
        Reading(grade_pct=-2.0, t_s=10.0, speed_mps=3.0, cadence_spm=170.0, distance_m=0.0),
        Reading(grade_pct=-3.0, t_s=11.0, speed_mps=3.1, distance_m=3.05),  # course distance, trapezoid
        Reading(grade_pct=-4.0, t_s=12.5, distance_m=3.05)]  # no speed: distance carried, not invented


def test_headerless_csv_with_comments(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("# treadmill session\n0,-1\n1,-2  # steeper\n")
    assert [parse_message(m).grade_pct for _, m in load_replay(f)] == [-1.0, -2.0]


def test_replay_thins_dense_points_to_20_hz_of_wall_time(tmp_path):
    f = write_csv(tmp_path / "dense.csv", [(i * 0.01, -1) for i in range(1001)], header="t,grade_pct")
    sched = load_replay(f, speed=1.0)
    gaps = np.diff([w for w, _ in sched])
    assert len(sched) == 201 and gaps.min() >= 0.05 - 1e-9


@pytest.mark.parametrize("body, fragment", [
    ("t,grade_pct\n0,1\n0,2\n", "r.csv:3: t: 0.0 is not after the previous row"),
    ("t,grade_pct\n0,steep\n", "r.csv:2: grade_pct: 'steep' is not a number"),
    ("t,grade_pct\n0,nan\n", "r.csv:2: grade_pct: 'nan' is not finite"),
    ("time,grade\n0,1\n", "r.csv:1: header has no 't' column"),
    ("t,grade_pct\n0,1,2\n", "r.csv:2: 3 columns, header has 2"),
    ("0\n", "r.csv:1: expected t,grade_pct"),
    ("# nothing\n", "r.csv: no data rows"),
])
def test_replay_csv_errors_name_line_and_field(tmp_path, body, fragment):
    f = tmp_path / "r.csv"
    f.write_text(body)
    with pytest.raises(SensorError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_replay(f)


def test_replay_source_against_a_fake_clock(tmp_path):
    f = write_csv(tmp_path / "r.csv", [(t, -t) for t in range(0, 9)], header="t,grade_pct")
    clock = FakeClock(50.0)
    src = ReplaySource(f, speed=4.0, clock=clock, sleep=lambda s: None)
    src.open()
    assert [parse_message(m).grade_pct for m in src.due(50.0)] == [0.0]
    assert [parse_message(m).grade_pct for m in src.due(51.0)] == [-1.0, -2.0, -3.0, -4.0]  # 1 s wall = 4 s
    assert src.read(0.1) == [] and not src.done
    clock.t = 52.0
    assert [parse_message(m).grade_pct for m in src.read(0.1)] == [-5.0, -6.0, -7.0, -8.0]
    assert src.done


def test_replay_csv_end_to_end_through_the_feed(tmp_path):
    # 40 s of course at 20x (2 s of wall time): a -6 % descent after 10 s of flat at 3 m/s.  The 15 s hold runs on
    # wall time and cannot pass, but the replay carries course distance, so the 60 m hold adopts the descent.
    rows = [(t, 0.0 if t < 10 else -6.0, 3.0, 170) for t in range(41)]
    f = write_csv(tmp_path / "run.csv", rows)
    ctl = new_ctl()
    feed = SensorFeed(f"replay:{f}@20x", ctl, TS)
    feed.start()
    try:
        assert wait_until(lambda: feed.state().source_done and feed.stats[S_ACCEPTED] == 41)
        st = feed.state()
        assert st.level_grade_pct == -6.0 and st.grade_pct == -6.0 and st.cadence_spm == 170
        assert ctl[K.CT_TARGET_BPM] == pytest.approx(float(target_cadence(-6.0, TS)))
    finally:
        assert stop_quickly(feed) < 1.0


def test_replay_of_a_gpx_course():
    from profiles import load_profile

    gpx = REPO / "profiles" / "bundled" / "mojstrovka.gpx"
    prof = load_profile(str(gpx))
    sched = load_replay(gpx, speed=30.0)
    readings = [parse_message(m) for _, m in sched]
    assert all(isinstance(r, Reading) for r in readings), [r for r in readings if not isinstance(r, Reading)][:3]
    assert len(sched) > 10 and np.all(np.diff([w for w, _ in sched]) >= 1 / 20 - 1e-9)
    ts = np.array([r.t_s for r in readings])
    assert np.all(np.diff(ts) > 0)
    # The replayed grades are the profile's, at the replayed times.
    np.testing.assert_allclose([r.grade_pct for r in readings], prof.grade_at_time(ts), atol=1e-5)
    assert readings[-1].distance_m == pytest.approx(prof.total_distance_m, rel=1e-6)


def test_replay_of_a_gpx_through_parse_sensor_url():
    gpx = REPO / "profiles" / "bundled" / "mojstrovka.gpx"
    spec = parse_sensor_url(f"replay:{gpx}@1000x")
    ctl = new_ctl()
    feed = SensorFeed(spec, ctl, TS)
    feed.start()
    try:
        assert wait_until(lambda: feed.state().mode == "live")
        assert TS.min_bpm <= ctl[K.CT_TARGET_BPM] <= TS.max_bpm
    finally:
        assert stop_quickly(feed) < 1.0
