"""``downbeat latency``: test signal and onset, the duplex C callback, loopback on JACK dummy servers (checked
against jack_iodelay in the same run), tap calibration, stored offsets, and the real-time checks for doctor."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.jackutil import named_jack_server
from metronome.errors import InputError
from metronome.latency import _kernel as KD
from metronome.latency import offsets as O
from metronome.latency import rtchecks as R
from metronome.cli.latency import latency, parse_blocksizes
from metronome.latency.loopback import DuplexMeasurement, analyse
from metronome.latency.signal import cross_correlate, make_signal, mls, onset
from metronome.latency.tap import tap_offset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_COMMAND = [sys.executable, "-m", "metronome.cli", "latency"]


# ------------------------------------------------------------------------------------------------------------------
# Signal and onset
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [8, 10, 12])
def test_mls_is_maximal_length(order):
    x = mls(order)
    n = (1 << order) - 1
    assert x.shape == (n,)
    # Circular autocorrelation of an MLS: n at lag 0, -1 at every other lag (Rife & Vanderkooy 1989).
    c = np.real(np.fft.ifft(np.fft.fft(x) * np.conj(np.fft.fft(x))))
    assert round(c[0]) == n
    assert np.allclose(c[1:], -1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["mls", "chirp"])
@pytest.mark.parametrize("delay", [0, 1, 77, 128, 5000])
def test_onset_finds_the_delay_to_the_frame_through_noise_and_gain(kind, delay):
    s = make_signal(kind, 48000)
    rng = np.random.default_rng(delay)
    rec = rng.normal(0.0, 0.02, 16384)  # noise at -34 dBFS, the signal peaks at -20 dBFS before the gain
    rec[delay:delay + s.size] += -0.3 * s  # a quieter, polarity-inverted return still counts
    k, fine, ratio = onset(rec, s)
    assert k == delay
    assert abs(fine - delay) < 0.5
    assert ratio > 20


def test_onset_says_none_when_the_signal_did_not_come_back():
    s = make_signal("mls")
    rng = np.random.default_rng(1)
    assert onset(rng.normal(0, 0.1, 16384), s) is None
    assert onset(np.zeros(16384), s) is None


def test_cross_correlate_matches_the_definition():
    rng = np.random.default_rng(2)
    r, s = rng.normal(size=300), rng.normal(size=40)
    ref = np.array([np.dot(s, r[lag:lag + 40]) for lag in range(261)])
    assert np.allclose(cross_correlate(r, s), ref)


# ------------------------------------------------------------------------------------------------------------------
# The C callback, driven as PortAudio drives it, with a simulated loop of D frames
# ------------------------------------------------------------------------------------------------------------------
def _cfunc():
    cb = KD.duplex_callback()
    return ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                            ctypes.c_ulong, ctypes.c_void_p)(cb.address)


@pytest.mark.parametrize("delay", [37, 256, 1000])
def test_callback_plays_records_and_the_lag_is_the_loop_delay_for_any_block_sizes(delay):
    fn = _cfunc()
    m = DuplexMeasurement(48000)
    rng = np.random.default_rng(delay)
    total = m.burst * 5
    played = np.zeros(total + 4096, dtype=np.float32)
    pos = 0
    while pos < total:
        n = int(rng.integers(1, 700))  # odd sizes too: the absolute-frame arithmetic must not care
        inp = np.zeros((n, 1), dtype=np.float32)
        idx = np.arange(pos, pos + n) - delay
        inp[idx >= 0, 0] = played[idx[idx >= 0]]
        out = np.zeros((n, 1), dtype=np.float32)
        # One callback flagged the way PortAudio's JACK host API flags a server xrun (both flags at once).
        flags = (KD.PA_OUTPUT_UNDERFLOW | KD.PA_INPUT_OVERFLOW) if pos == 0 else 0
        fn(inp.ctypes.data, out.ctypes.data, n, None, flags, m.table.ctypes.data)
        played[pos:pos + n] = out[:, 0]
        pos += n
    assert m.pos == pos and m.stats[KD.S_CALLBACKS] > 0
    assert m.xruns() == 1  # the one flagged callback, counted once
    assert m.stats[KD.S_OUT_UNDERFLOW] == 1 and m.stats[KD.S_IN_OVERFLOW] == 1
    # What was played is the periodic burst (kernel against a plain numpy construction).
    ph = np.arange(total) % m.burst
    expect = np.where(ph < m.sig.size, m.sig[np.minimum(ph, m.sig.size - 1)], 0.0).astype(np.float32)
    assert np.array_equal(played[:total], expect)
    lags = []
    for k in range(1, 5):
        rec = m.read_burst(k)
        if rec is None:
            continue
        lags.append(onset(rec, m.sig)[0])
    assert lags and all(v == delay for v in lags)


def test_callback_without_input_records_silence_and_counts_it():
    fn = _cfunc()
    m = DuplexMeasurement(48000)
    m.ring[:] = 1.0
    out = np.zeros((64, 1), dtype=np.float32)
    fn(None, out.ctypes.data, 64, None, 0, m.table.ctypes.data)
    assert m.stats[KD.S_NULL_INPUT] == 1 and m.pos == 64
    assert np.all(m.ring[:64] == 0.0) and np.all(m.ring[64:] == 1.0)


def test_a_burst_overwritten_by_the_ring_is_reported_not_misread():
    m = DuplexMeasurement(48000)
    m.stats[KD.S_POS] = m.burst * 20
    with pytest.raises(LookupError):
        m.read_burst(2)
    assert m.read_burst(25) is None  # not recorded yet


# ------------------------------------------------------------------------------------------------------------------
# Analysis
# ------------------------------------------------------------------------------------------------------------------
def test_analyse_constant_lag_is_exact_with_zero_drift_and_jitter():
    a = analyse([128.0] * 20, np.arange(20) * 16384, 48000)
    assert a == {"round_trip_frames": 128, "round_trip_ms": 2.6667, "jitter_p50_ms": 0.0, "jitter_p99_ms": 0.0,
                 "drift_ppm": 0.0}


def test_analyse_reports_clock_drift_and_one_disturbed_burst_does_not_tilt_it():
    x = np.arange(40) * 16384.0
    lags = 300.0 + 50e-6 * x  # 50 ppm: two crystals, one cable
    assert analyse(lags, x, 48000)["drift_ppm"] == pytest.approx(50.0, abs=0.01)
    lags[-1] += 128.0  # an xrun in the last burst
    a = analyse(lags, x, 48000)
    assert a["drift_ppm"] == pytest.approx(50.0, abs=0.01)
    assert a["jitter_p50_ms"] < 0.001
    assert a["jitter_p99_ms"] > 0.5  # the disturbed burst shows up as jitter


# ------------------------------------------------------------------------------------------------------------------
# Loopback on JACK dummy servers: nothing wired by hand; checked against jack_iodelay in the same run
# ------------------------------------------------------------------------------------------------------------------
def _require_jack_tools():
    missing = [t for t in ("jackd", "jack_wait", "jack_iodelay", "jack_connect", "jack_lsp", "stdbuf")
               if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have {missing} (tests/run.sh installs jackd2)")
        pytest.skip(f"not installed: {missing}")


def _wait_ports(env, names, proc, timeout_s=20.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        have = set(subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env).stdout.split())
        if set(names) <= have:
            return
        assert proc.poll() is None, "jack_iodelay exited"
        time.sleep(0.05)
    raise AssertionError(f"ports {names} never appeared")


def _iodelay_frames(text):
    """jack_iodelay's figures ("   128.000 frames      2.667 ms total roundtrip latency"), in order."""
    return [float(m) for m in re.findall(r"([\d.]+) frames\s+[\d.]+ ms total roundtrip latency", text)]


@pytest.mark.jack
@pytest.mark.parametrize("period,blocksizes", [(64, "0"), (128, "0,64"), (256, "0")])
def test_loopback_on_jack_dummy_equals_the_period_and_jack_iodelay(tmp_path, period, blocksizes):
    _require_jack_tools()
    with named_jack_server(period) as (name, env):
        env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
        iod_out = tmp_path / "iodelay.txt"
        with open(iod_out, "w") as f:
            iod = subprocess.Popen(["stdbuf", "-o0", "jack_iodelay"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL)
        try:
            _wait_ports(env, ["jack_delay:out", "jack_delay:in"], iod)
            subprocess.run(["jack_connect", "jack_delay:out", "jack_delay:in"], check=True, env=env)
            r = subprocess.run(RUN_COMMAND + ["--loopback", "--device", "JACK", "--blocksize", blocksizes,
                                              "--minutes", "0.05", "--json"],
                               capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
        finally:
            iod.terminate()
            iod.wait(timeout=10)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    # Nothing was wired by hand: the command connected its own ports, and said so on stderr.
    assert "connected PortAudio:out_" in r.stderr and "(JACK)" in r.stderr
    assert rep["jack_connected"] and rep["hostapi"].startswith("JACK")
    assert rep["server_period_frames"] == period and rep["period_frames"] == period
    # A client's output fed back to its own input arrives exactly one period later.
    assert rep["round_trip_frames"] == period
    assert rep["round_trip_ms"] == pytest.approx(1000.0 * period / 48000, abs=1e-4)
    assert rep["drift_ppm"] == 0.0
    assert rep["bursts"] >= 6
    if rep["xruns"] == 0:  # judged by what the stream itself reported
        assert rep["jitter_p99_ms"] == 0.0 and rep["bursts_missing"] == 0
    # The independent measurement in the same run.
    iod_frames = _iodelay_frames(iod_out.read_text(errors="replace").replace("\r", "\n"))
    assert iod_frames, iod_out.read_text()[-500:]
    assert round(float(np.median(iod_frames))) == rep["round_trip_frames"]
    # Several blocksizes: one entry each, the first's keys at the top.
    sizes = [int(b) for b in blocksizes.split(",")]
    assert [run["blocksize"] for run in rep["runs"]] == sizes
    assert {k: rep[k] for k in rep["runs"][0]} == rep["runs"][0]
    for run in rep["runs"][1:]:
        assert run["period_frames"] == run["blocksize"]
        # PortAudio's JACK host API buffers one user block when a fixed blocksize is asked (measured here).
        assert run["round_trip_frames"] == period + run["blocksize"]
        assert run["drift_ppm"] == 0.0
    # Stored for the device; a new process reads it.
    assert rep["stored"] and os.path.exists(rep["stored"])
    code = ("from metronome.latency import output_offset_s; "
            f"print(output_offset_s({rep['device']!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert float(out.stdout) == pytest.approx(period / 48000 / 2)


# ------------------------------------------------------------------------------------------------------------------
# Tap calibration (pure logic)
# ------------------------------------------------------------------------------------------------------------------
def _clicks(n=60, bpm=100.0, t0=12.3):
    return t0 + np.arange(n) * 60.0 / bpm


@pytest.mark.parametrize("true_offset_s", [-0.045, 0.0, 0.035, 0.18, 0.25])
def test_tap_offset_recovers_known_offsets_within_2_ms_median(true_offset_s):
    # 100 sessions: the median of a ~50-tap session with 10 ms jitter is ~1.8 ms uncertain (1.25 sigma / sqrt(n)),
    # so "within 2 ms median" is judged over many sessions, not one lucky or unlucky seed.
    errors = []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        clicks = _clicks()
        taps = clicks + true_offset_s + rng.normal(0.0, 0.010, clicks.size)  # 10 ms human jitter
        taps[:4] = clicks[:4] + rng.uniform(-0.25, 0.25, 4)  # locking on: anything goes
        taps[[10, 20, 30]] += [0.12, -0.11, 0.15]  # distracted taps
        taps = np.delete(taps, [40, 41])  # missed clicks
        taps = np.append(taps, clicks[50] + true_offset_s + 0.004)  # a double press
        res = tap_offset(clicks, rng.permutation(taps))
        errors.append(abs(res.offset_s - true_offset_s))
        assert res.taps_dropped >= 4 + 1  # warm-up and the double press at least
    assert float(np.median(errors)) < 0.002
    assert max(errors) < 0.008


@settings(max_examples=60, deadline=None)
@given(off_ms=st.floats(-120, 200), jitter=st.lists(st.floats(-2.0, 2.0), min_size=40, max_size=40),
       outliers=st.lists(st.tuples(st.integers(5, 39), st.floats(30, 150), st.booleans()), max_size=6))
def test_tap_offset_bounded_jitter_with_outliers_stays_within_2_ms(off_ms, jitter, outliers):
    clicks = _clicks(44, bpm=90.0)
    taps = clicks[4:] + off_ms / 1000.0 + np.asarray(jitter) / 1000.0
    for i, size, neg in outliers:
        taps[i - 4] += (-size if neg else size) / 1000.0
    res = tap_offset(clicks, taps)
    assert abs(res.offset_s - off_ms / 1000.0) <= 0.002


def test_tap_offset_refuses_too_few_taps_and_says_how_many():
    clicks = _clicks(20)
    with pytest.raises(InputError, match=r"taps: 5 usable taps"):
        tap_offset(clicks, clicks[4:9] + 0.05)
    with pytest.raises(InputError, match="click_times_s"):
        tap_offset([1.0], [1.0])


def test_tap_offset_warns_when_the_offset_is_near_half_an_interval():
    clicks = _clicks(40, bpm=200.0)  # 300 ms interval
    res = tap_offset(clicks, clicks + 0.13)
    assert res.offset_s == pytest.approx(0.13) and any("half the click interval" in w for w in res.warnings)


# ------------------------------------------------------------------------------------------------------------------
# Stored offsets
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return tmp_path / "cfg" / "downbeat" / "latency.json"


def test_offsets_survive_a_restart(cfg):
    O.store("USB Audio (ALSA)", "loopback", {"round_trip_s": 0.0123, "round_trip_frames": 590})
    O.store("Buds (pulse)", "tap", {"offset_s": 0.183, "taps_used": 30})
    assert cfg.exists() and not [p for p in cfg.parent.iterdir() if p.name.startswith(".latency-")]
    code = ("from metronome.latency import output_offset_s as f; "
            "print(f('USB Audio (ALSA)'), f('buds (PULSE)'), f('Buds'), f('nothing'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                       cwd=REPO)
    assert r.stdout.split() == ["0.00615", "0.183", "0.183", "None"], r.stderr


def test_tap_offset_wins_over_the_loopback_estimate_and_devices_lines_show_both(cfg):
    O.store("X (JACK)", "loopback", {"round_trip_s": 0.004, "round_trip_frames": 192})
    assert O.output_offset_s("X (JACK)") == pytest.approx(0.002)
    O.store("X (JACK)", "tap", {"offset_s": 0.031})
    assert O.output_offset_s("X (JACK)") == pytest.approx(0.031)
    lines = O.format_offsets()
    assert lines[0].startswith("stored output offsets (") and str(cfg) in lines[0]
    assert lines[1] == "    X (JACK): output offset 31.0 ms  [round trip 4.00 ms = 192 frames (loopback); " \
                       "tap offset +31.0 ms]"


def test_a_corrupt_offsets_file_is_ignored_for_reading_and_never_overwritten(cfg):
    cfg.parent.mkdir(parents=True)
    cfg.write_text("{not json")
    devices, warnings = O.load()
    assert devices == {} and len(warnings) == 1 and str(cfg) in warnings[0]
    assert O.output_offset_s("X") is None and O.format_offsets() == []
    with pytest.raises(InputError, match=re.escape(str(cfg))):
        O.store("X", "tap", {"offset_s": 0.01})
    assert cfg.read_text() == "{not json"


def test_nonsense_values_in_the_file_give_no_offset(cfg):
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"version": 1, "devices": {"A": {"tap": {"offset_s": "fast"}},
                                                         "B": {"tap": {"offset_s": 1e9}},
                                                         "C": {"loopback": {"round_trip_s": True}}}}))
    assert [O.output_offset_s(n) for n in "ABC"] == [None, None, None]


def test_relative_xdg_config_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert O.offsets_path() == tmp_path / ".config" / "downbeat" / "latency.json"


# ------------------------------------------------------------------------------------------------------------------
# The command's input errors (exit 2, one line, no traceback)
# ------------------------------------------------------------------------------------------------------------------
def test_blocksize_list_parses_and_bad_entries_name_the_flag():
    assert parse_blocksizes("64,128, 256") == [64, 128, 256]
    with pytest.raises(InputError, match=r"--blocksize: 'abc'"):
        parse_blocksizes("64,abc")


@pytest.mark.parametrize("args,msg", [
    (["--loopback", "--tap"], "choose one of --loopback or --tap"),
    ([], "choose one of --loopback or --tap"),
    (["--loopback", "--blocksize", "64,-1"], "--blocksize: '-1'"),
    (["--loopback", "--minutes", "0"], "--minutes: 0.0"),
    (["--loopback", "--png", "plot.jpg"], "--png: 'plot.jpg'"),
    (["--tap", "--png", "x.png"], "--png: only with --loopback"),
])
def test_bad_flags_fail_before_any_audio(args, msg):
    r = CliRunner().invoke(latency, args)
    assert isinstance(r.exception, InputError) and msg in str(r.exception)
    p = subprocess.run(RUN_COMMAND + args, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and msg in p.stderr and "Traceback" not in p.stderr


def test_tap_needs_a_terminal(tmp_path):
    p = subprocess.run(RUN_COMMAND + ["--tap"], capture_output=True, text=True, cwd=REPO, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "stdin is not a terminal" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------------------------------------------------------
# Real-time checks against fake /sys and /proc trees
# ------------------------------------------------------------------------------------------------------------------
def _tree(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(root)


def test_governor(tmp_path):
    gov = "sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor"
    perf = _tree(tmp_path / "a", {gov.format(0): "performance\n", gov.format(1): "performance\n"})
    assert R.check_governor(perf)[0].status == "ok"
    mixed = _tree(tmp_path / "b", {gov.format(0): "performance\n", gov.format(1): "powersave\n"})
    c = R.check_governor(mixed)[0]
    assert c.status == "warn" and "powersave on 1 of 2 CPUs" in c.detail and "cpupower" in c.fix
    assert R.check_governor(str(tmp_path / "none"))[0].status == "info"


def test_rtprio_and_memlock_limits():
    import resource

    assert R.check_rtprio(limit=0, euid=1000)[0].status == "warn"
    assert "rtprio 95" in R.check_rtprio(limit=0, euid=1000)[0].fix
    assert R.check_rtprio(limit=95, euid=1000)[0].status == "ok"
    assert R.check_rtprio(limit=0, euid=0)[0].status == "ok"
    assert R.check_memlock(limit=8 << 20, euid=1000)[0].status == "warn"
    assert R.check_memlock(limit=resource.RLIM_INFINITY, euid=1000)[0].detail == "unlimited"


def test_audio_group(tmp_path):
    root = _tree(tmp_path, {"etc/group": "root:x:0:\naudio:x:29:ann,bob\nusers:x:100:\n"})
    assert R.check_audio_group(root, user="ann", gids=[29, 100], euid=1000)[0].status == "ok"
    c = R.check_audio_group(root, user="bob", gids=[100], euid=1000)[0]
    assert c.status == "warn" and "log out and in again" in c.fix
    c = R.check_audio_group(root, user="cat", gids=[100], euid=1000)[0]
    assert c.status == "warn" and "usermod -aG audio cat" in c.fix
    assert R.check_audio_group(str(tmp_path / "x"), user="cat", gids=[], euid=1000)[0].status == "info"


def test_rt_kernel(tmp_path):
    stock = _tree(tmp_path / "a", {"proc/cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n"})
    c = R.check_kernel(stock, uname_version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1")[0]
    assert c.status == "warn" and "threadirqs" in c.fix
    thr = _tree(tmp_path / "b", {"proc/cmdline": "root=/dev/sda1 threadirqs quiet\n"})
    assert R.check_kernel(thr, uname_version="#1 SMP")[0].detail == "threadirqs"
    rt = _tree(tmp_path / "c", {"sys/kernel/realtime": "1\n", "proc/cmdline": "quiet\n"})
    assert R.check_kernel(rt, uname_version="#1 SMP")[0].detail == "PREEMPT_RT"
    assert R.check_kernel(stock, uname_version="#1 SMP PREEMPT_RT Debian 6.1.90-1")[0].detail == "PREEMPT_RT"


def test_quantum_too_small_for_the_machine():
    c = R.check_quantum("jack", 128, 48000, cpus=2, rt_kernel=False, rt_priority=True)[0]
    assert c.status == "warn" and c.fix.endswith("-p 256") and "2.67 ms" in c.detail
    assert R.check_quantum("jack", 256, 48000, cpus=2, rt_kernel=False, rt_priority=False)[0].status == "ok"
    assert R.check_quantum("jack", 128, 48000, cpus=8, rt_kernel=True, rt_priority=True)[0].status == "ok"
    c = R.check_quantum("pipewire", 64, 48000, cpus=8, rt_kernel=True, rt_priority=True)[0]
    assert c.status == "warn" and c.fix == "pw-metadata -n settings 0 clock.force-quantum 128"


def test_pipewire_quantum_parsing():
    text = ("Found \"settings\" metadata 31\n"
            "update: id:0 key:'log.level' value:'2' type:''\n"
            "update: id:0 key:'clock.rate' value:'48000' type:''\n"
            "update: id:0 key:'clock.quantum' value:'1024' type:''\n"
            "update: id:0 key:'clock.force-quantum' value:'64' type:''\n")
    assert R.pipewire_quantum(text) == (64, 48000)
    assert R.pipewire_quantum(text.replace("'64'", "'0'")) == (1024, 48000)


def test_every_rt_check_is_a_play_warning_at_most_with_a_fix():
    for c in R.run_rt_checks("/"):
        assert c.needed_for == "play" and c.status in ("ok", "info", "warn")
        if c.status == "warn":
            assert c.fix
