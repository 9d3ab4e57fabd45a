"""Device loss, reconnect and Ctrl-C, on private JACK dummy servers this test starts and kills itself."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.jackutil import start_server

pytestmark = pytest.mark.jack

COURSE = "segments: [{distance_m: 200, grade_pct: 0}, {distance_m: 300, grade_pct: -10}]"


@pytest.fixture()
def server(tmp_path):
    if not shutil.which("jackd"):
        if os.environ.get("CI"):
            pytest.fail("CI must have jackd (tests/run.sh installs jackd2)")
        pytest.skip("jackd not installed")
    name = f"downbeat-{uuid.uuid4().hex[:8]}"
    procs = [start_server(name)]
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    course = tmp_path / "course.yaml"
    course.write_text(COURSE)
    yield name, procs, env, course
    for p in procs:
        if p.poll() is None:
            p.terminate()  # graceful: a SIGKILLed jackd leaves its entry in JACK's shm registry
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def play(env, course, *extra):
    return subprocess.Popen([sys.executable, "-m", "metronome.cli", "play", str(course), "--no-cues", "--json",
                             "--device", "JACK", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def wait_playing(env, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ports = subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env).stdout
        if "PortAudio:out_0" in ports:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("play never connected to the server")


def test_server_killed_mid_session_gives_clear_error_and_exits(server):
    name, procs, env, course = server
    p = play(env, course, "--duration", "60")
    wait_playing(env, p)
    time.sleep(1.0)
    procs[0].terminate()  # the server goes away under the session (SIGTERM: see the fixture)
    t0 = time.time()
    out, err = p.communicate(timeout=30)
    assert time.time() - t0 < 15, "must not hang after the device is gone"
    assert p.returncode == 1
    assert "Traceback" not in err
    assert "audio device stopped" in err and "--reconnect" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "device" and summary["beats"] > 0


def test_reconnect_waits_for_the_server_and_carries_on(server):
    name, procs, env, course = server
    p = play(env, course, "--duration", "12", "--reconnect")
    wait_playing(env, p)
    time.sleep(1.0)
    procs[0].terminate()
    procs[0].wait()
    time.sleep(4.0)  # longer than the stall detector
    procs.append(start_server(name))
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err
    assert "audio device lost" in err and "back" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reconnects"] == 1
    assert summary["stop_reason"] == "end"
    assert summary["played_s"] >= 11.9  # the same engine carried on to the requested duration


def test_ctrl_c_ends_cleanly_with_summary(server):
    name, procs, env, course = server
    p = play(env, course, "--duration", "60")
    wait_playing(env, p)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "interrupted"
    assert summary["beats"] >= 3 and summary["played_s"] > 1.0
