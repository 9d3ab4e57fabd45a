"""Following a course live (issue 14): ``play COURSE --sensor gpsd://|http://|replay:RUN``.

* The live driver (:class:`metronome.follow_live.LiveFollow`) decides exactly what the render's schedule decides
  when it sees the same fixes at the same samples (one plan, one follower, one controller for both clocks).
* End to end on the JACK dummy server: NMEA made from a real run -> ``gpsfake`` (its own gpsd) -> ``gpsd://`` ->
  the session: the beats shorten within one beat plus one block of the fix that reaches the ramp start, and the
  announcement is in the recording, at the kernel's own cue sample, 10-15 s before the runner reaches the descent.
* HTTP push end to end: Sensor Logger batches and GPSLogger requests made from a real track, with malformed
  bodies, a flood and an oversize body in between: counted, dropped, and the session keeps playing and following.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse

import numpy as np
import pytest

from metronome.follow_live import FixInbox, LiveFollow
from metronome.follow_session import FollowSchedule, plan_follow
from metronome.mix import EngineSettings
from metronome.sensors.track_replay import load_track_fixes
from metronome.session import load_profile, plan_follow_live, tempo_settings_for
from profiles.loader import read_track

from tests.support import gpsfake, nmea
from tests.support.track_files import DATA

SR = 48000
RUN = DATA / "activity-small-fenix2-run.fit"  # a real 9 km road run (Garmin Fenix 2), one descent of 315 m


def _plan(course=RUN, cues=True):
    prof = load_profile(str(course), runner=None)
    return plan_follow(prof, tempo_settings_for(prof), EngineSettings(), cues=cues)


# -- the ring and the driver ------------------------------------------------------------------------------------
def test_fix_inbox_keeps_order_and_counts_what_a_full_ring_drops():
    box = FixInbox(4)
    assert [box.put(i) for i in range(6)] == [True] * 4 + [False] * 2
    assert box.dropped == 2 and box.take_all() == [0, 1, 2, 3] and box.take_all() == []
    for i in range(10, 13):
        box.put(i)
    assert box.take_all() == [10, 11, 12] and box.dropped == 2


class _RecordingSchedule(FollowSchedule):
    """The render's schedule, noting the engine tempo each step saw (the fake engine below replays it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def step(self, engine, sample):
        self.seen.append((sample, engine.current_bpm, self._sched[self._i][2]))
        super().step(engine, sample)


class _FakeEngine:
    def __init__(self):
        self.position, self.current_bpm, self.target, self.cues = 0, 170.0, None, []

    def set_target_bpm(self, bpm):
        self.target = bpm

    def request_cue(self, clip, sample):
        self.cues.append((clip, sample))
        return True


def test_live_driver_decides_what_the_render_decides_on_a_real_run(tmp_path):
    plan = _plan()
    fixes = load_track_fixes(RUN)
    sched = _RecordingSchedule(plan, fixes)
    from metronome.render import render
    from metronome.tempo import TempoMap

    tm = TempoMap.constant(plan.course.bpm_at(0.0), SR, sched.end_s)
    res = render(tm, str(tmp_path / "r.wav"), plan.engine_settings, bank=plan.bank, control=sched,
                 live_tempo=plan.tempo_settings, keep_events=True)
    live = LiveFollow(plan)
    eng = _FakeEngine()
    targets, cues = [], []
    for (sample, bpm_now, fix), ref in zip(sched.seen, sched.steps):
        eng.position, eng.current_bpm = sample, bpm_now
        if fix is not None:
            live.on_position(fix, 0.0)
        st = live.step(eng)
        assert (st.target_bpm, st.distance_m, st.state) == (ref.target_bpm, ref.distance_m, ref.state)
        targets.append(eng.target)
        cues += [(c.cue_id, c.not_before_sample) for c in st.cues]
    ref_cues = [(c.cue_id, c.not_before_sample) for st in sched.steps for c in st.cues]
    assert cues == ref_cues and len(cues) >= 4, cues
    assert targets == [st.target_bpm for st in sched.steps]
    assert res.cues == len(ref_cues)
    summary = live.summary()
    assert summary["fixes"] == len(fixes) and summary["reached_km"] == pytest.approx(plan.course.total_m / 1e3,
                                                                                       abs=0.05)
    assert [e for e in summary["log"] if e["kind"] == "cue"][0]["text"] == "Descent ahead."


def test_play_refuses_a_course_without_coordinates_and_a_sped_up_run(tmp_path):
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 500, grade_pct: -8}]")
    for args, needle in (([str(course), "--sensor", f"replay:{RUN}"], "coordinates"),
                         ([str(RUN), "--sensor", f"replay:{RUN}@4x"], "own clock"),
                         ([str(RUN), "--sensor", "http://0.0.0.0:8099"], "loopback")):
        r = subprocess.run([sys.executable, "-m", "metronome.cli", "play", *args, "--device", "nosuchdevice"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
            r.stderr


# -- end to end on JACK -----------------------------------------------------------------------------------------
def _run_points(t0_rel_s, t1_rel_s):
    """The run's points between two times (seconds from its first point), resampled to one fix a second and
    moved to 2024 (gpsd reads NMEA's two-digit year against its build date)."""
    raw = read_track(str(RUN))
    ok = np.isfinite(raw.lat_deg) & np.isfinite(raw.lon_deg) & np.isfinite(raw.time_s)
    t = raw.time_s[ok] - raw.time_s[ok][0]
    ts = np.arange(t0_rel_s, t1_rel_s + 0.5, 1.0)
    base = 1717236000.0  # 2024-06-01 10:00 UTC
    cols = [np.interp(ts, t, np.asarray(a, float)[ok]) for a in (raw.lat_deg, raw.lon_deg, raw.elevation_m)]
    return [(base + float(x), float(la), float(lo), float(el)) for x, la, lo, el in zip(ts, *cols)]


def _wait_port(port, proc, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gpsfake exited early"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("gpsd never listened")


def _session(plan, url, duration_s, events):
    from metronome.devices import find_device
    from metronome.live import LiveSession
    from metronome.sensors import parse_sensor_url

    return LiveSession(plan_follow_live(plan, duration_s), feed_spec=parse_sensor_url(url), device=find_device("JACK"),
                       duration_s=duration_s, follow=plan, event_log=events)


def _drive(session, seconds, on_tick=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        st = session.poll()
        if st.finished:
            return st
        if on_tick is not None:
            on_tick(st)
        session.wait(0.1)
    return session.poll()


def _locate(x, clip):
    """Where ``clip`` sits in ``x`` (the peak of their cross-correlation) and the correlation coefficient there."""
    n = len(x) + len(clip)
    size = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(clip, size)), size)[:len(x) - len(clip) + 1]
    p = int(np.argmax(c))
    seg = x[p:p + len(clip)]
    return p, float(np.dot(seg, clip) / (np.linalg.norm(seg) * np.linalg.norm(clip) + 1e-12))


@pytest.mark.jack
@pytest.mark.skipif(shutil.which("gpsfake") is None, reason="gpsfake not installed (Debian gpsd-clients)")
def test_gpsd_run_through_gpsfake_ramps_on_the_beat_and_announces_on_time(tmp_path):
    from tests.support.jackutil import JackRecorder, jack_ports, onsets_seen, own_port, require_jack

    require_jack()
    plan = _plan()
    descent = plan.course.descents[0]
    # The run from 30 s before the ramp toward the descent's tempo (the render puts it 13 s before the descent,
    # at 2632 s) to 15 s into the descent; a 4 s lead-in standing still while gpsd probes the device.
    pts = _run_points(2600.0, 2660.0)
    lead = [(pts[0][0] - 4.0 + k, *pts[0][1:]) for k in range(4)]
    log = tmp_path / "run.nmea"
    log.write_text(nmea.track_to_nmea(lead + pts))
    port = gpsfake.free_port()
    err = open(tmp_path / "gpsfake.err", "wb")
    gps = gpsfake.start(log, port, err, 0.5)  # GGA + RMC per fix 0.5 s apart: one fix a second, as receivers send
    events, recorder = [], None
    try:
        _wait_port(port, gps)
        before = jack_ports()
        session = _session(plan, f"gpsd://127.0.0.1:{port}", 80.0, events)
        session.start()
        try:
            out = own_port(before)
            recorder = JackRecorder(out, len(lead + pts) + 6, tmp_path / "rec.npz")
            _drive(session, len(lead + pts) + 8)
            rec = recorder.result(timeout=60)
        finally:
            summary = session.stop()
    finally:
        if recorder is not None:
            recorder.kill()
        gpsfake.stop(gps)
        err.close()
    fol = summary["follow"]
    assert fol["fixes"] >= len(pts) - 2, (fol, (tmp_path / "gpsfake.err").read_text()[-400:])
    log_entries = fol["log"]
    # The ramp toward the descent's tempo: decided the moment its fix arrived ...
    ramp = [e for e in log_entries if e["kind"] == "target" and e["bpm"] == pytest.approx(descent_bpm(plan))]
    assert ramp, log_entries
    s_ramp = ramp[0]["sample"]
    assert ramp[0]["fix_age_ms"] < 100.0, ramp[0]
    # ... and in the beats within one beat plus one block (the kernel's own beat log).
    beats = [(e.sample, e.bpm) for e in events if e.kind == "beat"]
    samples = np.array([b for b, _ in beats])
    bpms = np.array([b for _, b in beats])
    before_ramp = bpms[samples <= s_ramp][-1]
    first = int(np.flatnonzero((samples > s_ramp) & (bpms > before_ramp + 1e-9))[0])
    block = summary["blocksize"]
    gap = int(samples[first] - s_ramp)
    assert gap <= 60.0 * SR / before_ramp + block + 1, (gap, block, before_ramp)
    # The beat at ``first`` is the first at the new tempo: the intervals from it on are shorter.
    assert np.all(np.diff(samples[first:first + 6]) < 60.0 * SR / before_ramp - 1), "the intervals did not shorten"
    # The announcement: requested 10-15 s before the runner reached the descent (the start cue's request).
    cues = [e for e in log_entries if e["kind"] == "cue"]
    ann = [c for c in cues if c["cue_id"] == "descent_ahead"]
    start = [c for c in cues if c["distance_m"] >= descent.start_m]
    assert ann and start, cues
    lead_s = (start[0]["sample"] - ann[0]["sample"]) / SR
    assert 10.0 - 1.0 <= lead_s <= 15.0 + 1.0, (lead_s, cues)  # +-1 s: fixes come once a second
    # ... played by the kernel on its beat, and in the recording at that very sample.
    played = [e.sample for e in events if e.kind == "cue"]
    c_ann = min(s for s in played if s >= ann[0]["sample"])
    i = plan.bank.index(ann[0]["clip"])
    clip = np.asarray(plan.bank.data[plan.bank.offsets[i]:plan.bank.offsets[i] + plan.bank.lengths[i]], np.float64)
    if clip.ndim > 1:
        clip = clip[:, 0]
    x, present = rec.timeline()
    p, corr = _locate(x.astype(np.float64), clip)
    assert corr > 0.7, corr
    # A cue starts on a beat: the clip must start in the recording exactly where a click starts, and the clicks
    # around it must sit where the kernel's beat log puts them relative to the cue, sample for sample, but for
    # whole periods: a cycle the server did not run the player in shifts what follows by one period (the player
    # reports it as an underflow).  During the clip no click is an onset after silence: the clicks before it, and
    # after it ends, are checked.
    assert c_ann in set(samples.tolist())
    on = onsets_seen(x, present)
    assert p in set(on.tolist()), "the announcement does not start with a click"
    end = c_ann + len(clip)
    near = samples[((samples > c_ann - 3 * SR) & (samples < c_ann)) | ((samples > end) & (samples < end + 2 * SR))]
    pred = [int(b - c_ann + p) for b in near]
    seeable = [f for f in pred if 1 <= f < len(present) and present[f - 1:f + 1].all()]
    off = np.array([int(on[np.argmin(np.abs(on - f))] - f) for f in seeable])
    period, allowed = rec.period, summary["underflows"]
    assert len(seeable) >= 8, seeable
    assert np.all(off % period == 0) and np.all(np.abs(off) <= allowed * period), (off, allowed)
    before, after = off[np.array(seeable) < p], off[np.array(seeable) > p]
    assert np.all(before <= 0) and np.all(np.diff(before) >= 0) and np.all(after >= 0), off


def descent_bpm(plan):
    """The tempo level the plan holds at the descent's start."""
    return plan.course.bpm_at(plan.course.descents[0].start_m + 1.0)




def _post(url, data=None, ctype=None):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _sensor_logger(points, message_id):
    """A Sensor Logger push (its documented JSON shape): location + barometer per point, accelerometer noise."""
    payload = []
    for t, la, lo, el in points:
        t_ns = int(round(t * 1e9))
        payload.append({"name": "accelerometer", "time": t_ns, "values": {"x": 0.1, "y": -0.2, "z": 9.8}})
        payload.append({"name": "location", "time": t_ns, "values": {"latitude": la, "longitude": lo, "altitude": el,
                                                                     "horizontalAccuracy": 5.0}})
        payload.append({"name": "barometer", "time": t_ns, "values": {"relativeAltitude": 0.0, "pressure": 1001.5}})
    return json.dumps({"messageId": message_id, "sessionId": "s-1", "deviceId": "d-1", "payload": payload}).encode()


@pytest.mark.jack
def test_http_push_from_a_real_run_follows_through_bad_bodies_floods_and_oversize(tmp_path):
    from tests.support.jackutil import require_jack

    require_jack()
    from metronome.sensors.http import BURST, MAX_BODY_BYTES

    plan = _plan()
    descent = plan.course.descents[0]
    pts = _run_points(2615.0, 2652.0)
    events = []
    session = _session(plan, "http://127.0.0.1:0", 60.0, events)
    session.start()
    bad = {"bad_body": 0, "oversize": 0, "flood": 0}
    try:
        host, port = session.feed.address
        url = f"http://{host}:{port}/"
        t_next = time.monotonic()
        for k, (t, la, lo, el) in enumerate(pts):
            while time.monotonic() < t_next:  # one fix a second, as the apps send them; the session keeps polling
                session.poll()
                session.wait(min(0.1, max(0.0, t_next - time.monotonic())))
            t_next += 1.0
            if k % 4 == 3:  # Sensor Logger batches the last two fixes
                assert _post(url, _sensor_logger(pts[k - 1:k + 1], k), "application/json") == 200
            elif k % 4 == 2:
                pass  # sent in the next batch
            elif k % 2:  # GPSLogger custom URL: GET with a query
                q = {"lat": f"{la:.7f}", "lon": f"{lo:.7f}", "alt": f"{el:.1f}", "acc": "6", "timestamp": f"{t:.0f}"}
                assert _post(url + "log?" + urllib.parse.urlencode(q)) == 200
            else:  # OsmAnd-style form body, milliseconds
                q = {"lat": f"{la:.7f}", "lon": f"{lo:.7f}", "altitude": f"{el:.1f}", "accuracy": "6",
                     "timestamp": f"{t * 1000:.0f}"}
                assert _post(url, urllib.parse.urlencode(q).encode(), "application/x-www-form-urlencoded") == 200
            if k == 4:
                for body in (b"{not json", b'{"payload": 5}', b"\xff\xfe{"):
                    assert _post(url, body, "application/json") == 400
                    bad["bad_body"] += 1
            if k == 8:
                assert _post(url, b"x" * (MAX_BODY_BYTES + 1), "application/json") in (413, None)
                bad["oversize"] += 1
            if k == 12:  # a flood of malformed requests: rate limited after the burst, nothing reaches the follower
                codes = [_post(url, b"{flood", "application/json") for _ in range(int(BURST) + 60)]
                bad["flood"] = codes.count(429)
                assert bad["flood"] >= 50, codes
        _drive(session, 3.0)
    finally:
        summary = session.stop()
    fol, transport = summary["follow"], summary["sensor"]["transport"]
    assert transport["bad_body"] >= bad["bad_body"] and transport["oversize"] >= bad["oversize"] >= 1, transport
    assert transport["rate_limited"] == bad["flood"], transport
    assert fol["fixes"] == len(pts) and fol["off_course"] == 0 and fol["lost_fix"] == 0, fol
    assert fol["reached_km"] * 1e3 > descent.start_m + 10.0, fol
    # The session kept playing through all of it: a beat at every interval, none missing.
    beats = np.array([e.sample for e in events if e.kind == "beat"])
    bpms = np.array([e.bpm for e in events if e.kind == "beat"])
    assert summary["played_s"] >= len(pts)
    np.testing.assert_allclose(np.diff(beats), 60.0 * SR / bpms[:-1], atol=1.0)
    cues = [e for e in fol["log"] if e["kind"] == "cue"]
    ann = [c for c in cues if c["cue_id"] == "descent_ahead"]
    start = [c for c in cues if c["distance_m"] >= descent.start_m]
    assert ann and start, cues
    # These pushes carry no Doppler speed (the apps' speed field is optional), and the runner slows from 2.3 to
    # 1.2 m/s after the announcement: the window is the coaching window (20 s before .. on arrival).
    assert 9.0 <= (start[0]["sample"] - ann[0]["sample"]) / SR <= 20.0, cues


@pytest.mark.jack
def test_cli_play_course_with_a_replayed_run_follows_it_and_reports_the_course(tmp_path):
    """``downbeat play COURSE --sensor replay:RUN.gpx`` through the CLI: the run's fixes on its own clock, the
    start cue at the descent, the course in the JSON summary, the session ending with the run."""
    from tests.support.jackutil import require_jack
    from tests.support.track_files import write_gpx

    require_jack()
    pts = _run_points(2636.0, 2652.0)
    t, lat, lon, ele = (np.array(c) for c in zip(*pts))
    run = write_gpx(tmp_path / "run.gpx", lat, lon, ele, t)
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "play", str(RUN), "--sensor", f"replay:{run}",
                        "--device", "JACK", "--json", "--duration", "60"], capture_output=True, text=True,
                       timeout=180, env=dict(os.environ, JACK_NO_START_SERVER="1"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    fol = summary["follow"]
    assert fol["fixes"] == len(pts) and fol["course_km"] == pytest.approx(9.007, abs=0.01), fol
    assert summary["stop_reason"] == "end" and summary["played_s"] < 30.0, summary  # ended with the run (+5 s)
    start_m = _plan(cues=False).course.descents[0].start_m
    assert any(e["kind"] == "cue" and e["distance_m"] >= start_m for e in fol["log"]), fol["log"]
    assert summary["cues"] >= 1 and summary["beats"] > 30


def test_status_line_shows_course_km_next_descent_and_off_course():
    from metronome.cli.play import status_line
    from metronome.follow_control import FollowStep
    from metronome.live import LiveStatus

    def line(state, d, to_next):
        course = FollowStep(0, 170.0, state, d, 3.0, to_next).status()
        return status_line(LiveStatus(61.5, -4.0, 172.0, 171.0, None, 0, "ok", None, 0, course))

    assert "course: km 3.42  descent in 180 m" in line("on_course", 3420.0, 180.0)
    assert "course: km 8.70  no more descents" in line("on_course", 8700.0, None)
    assert "OFF COURSE (at km 3.42)" in line("off_course", 3420.0, 180.0)
    assert "lost fix (at km 3.42)" in line("lost_fix", 3420.0, 180.0)
    assert "01:01.5" in line("on_course", 0.0, 10.0) and "grade  -4.0%" in line("on_course", 0.0, 10.0)


def test_distance_feed_follows_a_course_without_coordinates(tmp_path):
    """A treadmill's Total Distance (or UDP ``distance_m``) on a YAML course: ``--follow-course``."""
    from metronome.sensors.protocol import Reading

    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 600, grade_pct: 0}, {distance_m: 400, grade_pct: -10}]")
    prof = load_profile(str(course), runner=None)
    plan = plan_follow(prof, tempo_settings_for(prof), EngineSettings(), by_position=False)
    start_m = plan.course.descents[0].start_m
    live, eng = LiveFollow(plan), _FakeEngine()
    v = 3.0
    cue_at = {}
    for k in range(340):  # one reading a second at 3 m/s, from a treadmill whose counter started at 1234 m
        eng.position = k * SR
        live.on_position(Reading(grade_pct=None, t_s=float(k), distance_m=1234.0 + v * k, speed_mps=v), 0.0)
        st = live.step(eng)
        for c in st.cues:
            cue_at.setdefault(c.trigger, (k, c.distance_m))
    k_ann, d_ann = cue_at["announce_descent"]  # "Steep descent ahead." here (-10 %)
    assert 10.0 <= (start_m - d_ann) / v <= 15.0, (d_ann, start_m)
    assert any(d >= start_m and d - start_m < 2 * v for trig, (k, d) in cue_at.items() if trig != "announce_descent"), \
        cue_at
    assert live.summary()["reached_km"] == pytest.approx(1.0, abs=0.01)
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "play", "--sensor", "udp://127.0.0.1:0",
                        "--follow-course", "--device", "nosuchdevice"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--follow-course" in r.stderr, r.stderr
    # With a course the flag is accepted (the device is what fails here: exit 1, not a course error).
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "play", str(course), "--sensor", "udp://127.0.0.1:0",
                        "--follow-course", "--device", "nosuchdevice"], capture_output=True, text=True, timeout=120)
    assert "--device" in r.stderr and "coordinates" not in r.stderr, r.stderr
