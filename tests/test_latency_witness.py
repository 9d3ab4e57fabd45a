"""metronome.latency.witness: the live session's sensor-to-sound and footfall-phase figures use the stored output
offset; the C callback stamps both clocks; footfall messages in the sensor protocol; end to end on JACK."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metronome import _kernels as K
from metronome.latency.witness import TimingWitness
from metronome.sensors.core import FOOTFALL_RING, FeedCore
from metronome.sensors.protocol import Reading, Reject, RejectReason, parse_message
from metronome.tempo import TempoSettings

from tests.support.jackutil import require_jack

SR = 48000
REPO = Path(__file__).resolve().parents[1]


def _stats(anchor_s=100.0, anchor_pos=480000):
    st = np.zeros(K.S_N, dtype=np.int64)
    st[K.S_CALLBACKS] = 10
    st[K.S_ANCHOR_NS] = int(anchor_s * 1e9)
    st[K.S_ANCHOR_POS] = anchor_pos
    return st


def test_sensor_to_sound_is_the_callback_delay_plus_the_effective_output_latency():
    st = _stats()
    w = TimingWitness(st, SR, output_latency_s=0.180)
    w.poll()
    assert "sensor_to_sound_ms" not in w.summary()  # no reading seen yet
    for k, (arrive_s, seen_s) in enumerate([(99.000, 99.0021), (99.500, 99.5013), (99.900, 99.9027)]):
        st[K.S_SEEN_CB_NS] = int(seen_s * 1e9)
        st[K.S_SEEN_POS] = 1000 * k
        st[K.S_SEEN_READING_NS] = int(arrive_s * 1e9)
        w.poll()
        w.poll()  # the same reading twice is counted once
    s = w.summary()["sensor_to_sound_ms"]
    assert s["n"] == 3
    assert s["p50"] == pytest.approx(180.0 + 2.1, abs=1e-3)
    # Without the stored offset the figure would be the bare callback delay: the offset is what the runner hears.
    w0 = TimingWitness(st, SR, output_latency_s=0.0)
    w0.poll()
    assert w0.summary()["sensor_to_sound_ms"]["p50"] == pytest.approx(2.7, abs=1e-3)


def test_heard_time_maps_samples_through_the_callback_anchor_and_the_offset():
    w = TimingWitness(_stats(anchor_s=50.0, anchor_pos=SR * 10), SR, output_latency_s=0.25)
    assert w.heard_s(SR * 10) == pytest.approx(50.25)
    assert w.heard_s(SR * 11 + SR // 2) == pytest.approx(51.75)
    assert TimingWitness(np.zeros(K.S_N, dtype=np.int64), SR, 0.1).heard_s(0) is None  # before any callback


@pytest.mark.parametrize("offset_s", [0.0, 0.040, 0.180])
@pytest.mark.parametrize("phase_s", [-0.060, 0.0, 0.035])
def test_footfall_phase_recovers_a_known_phase_to_the_heard_clicks_within_2_ms(offset_s, phase_s):
    rng = np.random.default_rng(7)
    anchor_s, anchor_pos = 200.0, SR * 30
    st = _stats(anchor_s, anchor_pos)
    w = TimingWitness(st, SR, output_latency_s=offset_s)
    interval = 60.0 / 180.0
    beats = anchor_pos + np.round(np.arange(120) * interval * SR).astype(np.int64)
    heard = anchor_s + (beats - anchor_pos) / SR + offset_s
    ring = np.zeros(FOOTFALL_RING)
    n = 0
    for i in range(0, 120, 6):  # polls every 6 beats, like a 10 Hz main thread at 180 spm (close enough)
        w.poll(beats[i:i + 6], ring, n, now_s=heard[i])
        for t in heard[i:i + 6] + phase_s + rng.normal(0, 0.004, 6):
            ring[n % FOOTFALL_RING] = t
            n += 1
    w.poll([], ring, n, now_s=heard[-1] + 5.0)
    f = w.summary()["footfall_phase_ms"]
    assert f["n"] >= 110
    assert f["median"] == pytest.approx(phase_s * 1e3, abs=2.0)


def test_footfall_far_from_every_click_is_unmatched_not_a_phase():
    st = _stats()
    w = TimingWitness(st, SR, output_latency_s=0.0)
    ring = np.zeros(FOOTFALL_RING)
    ring[0] = 100.0 + 3.0  # 3 s after the only click
    w.poll([st[K.S_ANCHOR_POS]], ring, 1, now_s=110.0)
    s = w.summary()
    assert "footfall_phase_ms" not in s and w.footfalls_unmatched == 1


def test_footfall_messages_parse_and_reach_the_feed_ring_without_moving_the_grade():
    r = parse_message(b'{"footfall": true}')
    assert isinstance(r, Reading) and r.footfall and r.grade_pct is None
    assert parse_message(b'{"grade_pct": -4, "footfall": true}').footfall
    bad = parse_message(b'{"grade_pct": -4, "footfall": 1}')
    assert isinstance(bad, Reject) and bad.reason == RejectReason.NOT_NUMBER and "footfall" in bad.detail
    missing = parse_message(b'{"footfall": false}')
    assert isinstance(missing, Reject) and missing.reason == RejectReason.MISSING_GRADE
    core = FeedCore(TempoSettings(), rate_hz=1e6, burst=1e6)  # the rate limit is not what this tests
    core.handle(b'{"grade_pct": -8}', 1.0)
    for i in range(FOOTFALL_RING + 3):
        core.handle(b'{"footfall": true}', 2.0 + i * 0.01)
    assert core.footfalls == FOOTFALL_RING + 3
    assert core.footfall_s[(FOOTFALL_RING + 2) % FOOTFALL_RING] == pytest.approx(2.0 + (FOOTFALL_RING + 2) * 0.01)
    assert core.last_reading_s == 1.0  # bare footfalls are not readings that move the tempo
    assert core.filter.last_grade_pct == -8


def _free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.jack
def test_play_on_jack_reports_sensor_to_sound_and_footfall_phase_with_the_stored_offset(tmp_path):
    """A stored tap offset of 150 ms for the JACK device: the session's sensor-to-sound figure contains it (the
    dummy server's own delay is a few ms), and footfalls sent between the clicks get a phase."""
    require_jack()
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), JACK_NO_START_SERVER="1")
    label = subprocess.run([sys.executable, "-c", "from metronome.devices import list_devices, find_device; "
                            "print(list_devices()[find_device('JACK')].label)"], capture_output=True, text=True,
                           env=env, cwd=REPO, check=True).stdout.strip()
    subprocess.run([sys.executable, "-c", "import sys; from metronome.latency import offsets as O; "
                    "O.store(sys.argv[1], 'tap', {'offset_s': 0.150, 'taps_used': 30})", label],
                   env=env, cwd=REPO, check=True)
    port = _free_udp_port()
    play = subprocess.Popen([sys.executable, "-m", "metronome.cli", "play", "--no-cues", "--json", "--duration", "12",
                             "--device", "JACK", "--sensor", f"udp://127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t_end = time.monotonic() + 30
        sent = 0
        while play.poll() is None and time.monotonic() < t_end:
            # ~3 readings and ~3 footfalls per second (a step detector at 180 spm would send 3/s)
            sock.sendto(json.dumps({"grade_pct": -6.0 - (sent % 5)}).encode(), ("127.0.0.1", port))
            sock.sendto(b'{"footfall": true}', ("127.0.0.1", port))
            sent += 1
            time.sleep(0.33)
        out, err = play.communicate(timeout=60)
    finally:
        sock.close()
        if play.poll() is None:
            play.kill()
    assert play.returncode == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["output_latency_ms"] == pytest.approx(150.0)
    sts = s["sensor_to_sound_ms"]
    assert sts["n"] >= 10, s
    # 150 ms stored + the wait for the next callback (one 2.7 ms period on the dummy server, more when loaded)
    assert 150.0 <= sts["p50"] <= 150.0 + 60.0, sts
    ff = s["footfall_phase_ms"]
    assert ff["n"] >= 10, s
    assert abs(ff["median"]) <= 0.5 * 60000.0 / 150.0  # within half a beat of the nearest heard click
