"""`downbeat play` exit codes and validation (metronome/cli.py; issue 12, items 2, 9 and 13).

Device failures are exit 1, bad input exit 2, one line each.  "No device" is made real: JACK pointed at a server
that does not exist and not allowed to start one; "a device that refuses the stream" is a private JACK dummy server
asked for a sample rate it does not run at.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tests.support.jackutil import start_server

COURSE = "segments: [{distance_m: 200, grade_pct: 0}, {distance_m: 300, grade_pct: -10}]\n"


def no_jack_env():
    return dict(os.environ, JACK_NO_START_SERVER="1", JACK_DEFAULT_SERVER=f"no-such-{uuid.uuid4().hex[:8]}")


def downbeat(*args, env, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "metronome.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def _has_output_device(env):
    code = "from metronome.devices import find_device; find_device(None)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60).returncode == 0


@pytest.fixture()
def course(tmp_path):
    p = tmp_path / "course.yaml"
    p.write_text(COURSE)
    return p


@pytest.fixture()
def no_device(tmp_path):
    env = no_jack_env()
    if _has_output_device(env):
        pytest.skip("this machine has an audio output besides JACK (ALSA/PulseAudio)")
    return env


def one_line(res, code, *needles):
    assert res.returncode == code, (res.returncode, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def test_play_without_any_device_is_exit_1(course, tmp_path, no_device):
    res = downbeat("play", course, "--no-cues", "--duration", "1", env=no_device, cwd=tmp_path)
    one_line(res, 1, "downbeat render")


@pytest.mark.jack
def test_play_on_a_device_refusing_the_stream_is_exit_1(course, tmp_path):
    if not shutil.which("jackd"):
        pytest.skip("jackd not installed")
    name = f"downbeat-{uuid.uuid4().hex[:8]}"
    server = start_server(name)
    try:
        env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        res = downbeat("play", course, "--no-cues", "--quiet", "--duration", "1", "--device", "JACK",
                       "--samplerate", "12345", env=env, cwd=tmp_path)
        assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("downbeat: error:")]
        assert len(errors) == 1 and "cannot open audio output" in errors[0], res.stderr
        assert "Traceback" not in res.stderr
        # A resume position past the end of this session is bad input, found once the session is planned.
        res = downbeat("play", course, "--no-cues", "--quiet", "--device", "JACK", "--resume-at", "99999999999",
                       env=env, cwd=tmp_path)
        one_line(res, 2, "--resume-at", "past the end")
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("extra,needles", [
    (["--sensor", "bogus://x"], ["--sensor", "bogus"]),
    (["--sensor", "udp://0.0.0.0:47800"], ["--sensor", "loopback"]),
    (["--duration", "-5"], ["--duration", "-5"]),
    (["--blocksize", "-1"], ["--blocksize", "-1"]),
    (["--resume-at", "-3"], ["--resume-at", "-3"]),
])
def test_fallback_render_validates_every_flag_first(course, tmp_path, no_device, extra, needles):
    out = tmp_path / "fallback.wav"
    res = downbeat("play", course, "--no-cues", "--fallback-render", out, *extra, env=no_device, cwd=tmp_path)
    one_line(res, 2, *needles)
    assert not out.exists()


def test_fallback_render_still_renders_with_good_flags(course, tmp_path, no_device):
    out = tmp_path / "fallback.wav"
    res = downbeat("play", course, "--no-cues", "--quiet", "--fallback-render", out, "--duration", "5",
                   "--sensor", "udp://127.0.0.1:47800", env=no_device, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 44


@pytest.mark.parametrize("resume_at,env_json,needles", [
    ("10" * 8, None, ["--resume-at"]),  # 1e15 samples: would allocate a beat grid of ~45 GiB
    ("0", "{not json", ["DOWNBEAT_RESUME", "JSON"]),
    ("0", "[1, 2]", ["DOWNBEAT_RESUME", "object"]),
    ("0", json.dumps({"counters": {"beats": "many"}}), ["counters.beats", "many"]),
    ("0", json.dumps({"counters": {"beats": -1}}), ["counters.beats", "-1"]),
    ("0", json.dumps({"counters": {"cheese": 1}}), ["counters", "cheese"]),
    ("0", json.dumps({"bpm": "fast"}), ["bpm", "fast"]),
    ("0", json.dumps({"bpm": 1e308}), ["bpm"]),
    ("0", json.dumps({"counters": [], "bpm": 170}), ["counters"]),
    ("0", json.dumps({"surprise": 1}), ["surprise"]),
])
def test_the_resume_hand_over_is_validated_before_any_device_work(course, tmp_path, resume_at, env_json, needles):
    env = no_jack_env()  # exit 2 must come before "no device" (exit 1)
    if env_json is not None:
        env["DOWNBEAT_RESUME"] = env_json
    res = downbeat("play", course, "--no-cues", "--resume-at", resume_at, env=env, cwd=tmp_path)
    one_line(res, 2, *needles)
