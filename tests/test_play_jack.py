"""`downbeat play` on a real, paced audio server: the JACK dummy backend, recorded through a JACK connection.

The recording must be an exact slice of the offline render of the same profile (same kernel, same bits), which
also proves there was no underflow (a dropped or late block would break the match).
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from tests.support import naive
from tests.support.jack import assert_underflows_explained, clicks_equal, match_intervals

SR = 48000


def jack_running():
    if not shutil.which("jack_lsp"):
        return False
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    return subprocess.run(["jack_lsp"], capture_output=True, env=env).returncode == 0


def require_jack():
    if not jack_running():
        if os.environ.get("CI"):
            pytest.fail("CI must run a JACK server (tests/run.sh starts jackd -d dummy)")
        pytest.skip("no JACK server running (start one: jackd -d dummy -r 48000 -p 128 &)")


def jack_ports():
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    return set(subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env).stdout.split())


def wait_new_port(before, suffix, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = sorted(p for p in jack_ports() - before if p.endswith(suffix))
        if new:
            return new[0]
        if proc.poll() is not None:
            raise AssertionError(f"downbeat exited early: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("downbeat's JACK port never appeared")


def jack_log_size():
    path = os.environ.get("DOWNBEAT_JACKD_LOG")
    return os.path.getsize(path) if path and os.path.exists(path) else None


def jack_log_since(offset):
    with open(os.environ["DOWNBEAT_JACKD_LOG"], errors="replace") as f:
        f.seek(offset)
        return f.read().splitlines()


def find_alignment(rec, ref):
    """Offset P with rec[i] == ref[P + i] (to PCM_32 precision), found from the first full click."""
    rec_on = [o for o in naive.onsets(rec) if o > 0]
    assert rec_on, "recording is silent"
    for o in naive.onsets(ref):
        p = o - rec_on[0]
        if p < 0 or p + len(rec) > len(ref):
            continue
        if np.allclose(rec, ref[p:p + len(rec)], atol=2e-6, rtol=0):
            return p
    return None


@pytest.mark.jack
def test_play_10s_on_jack_records_the_rendered_click_pattern(tmp_path):
    require_jack()
    course = tmp_path / "course.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 300, grade_pct: -12}]")
    ref_path = tmp_path / "ref.wav"
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", str(course), "-o", str(ref_path),
                        "--subtype", "FLOAT", "--no-cues", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = sf.read(ref_path, dtype="float64")[0]

    log_offset = jack_log_size()
    before = jack_ports()
    play = subprocess.Popen([sys.executable, "-m", "metronome.cli", "play", str(course), "--no-cues", "--json",
                             "--duration", "14", "--device", "JACK"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, JACK_NO_START_SERVER="1"))
    try:
        port = wait_new_port(before, ":out_0", play)
        rec_path = tmp_path / "rec.wav"
        rec = subprocess.run(["jack_rec", "-f", str(rec_path), "-d", "10", "-b", "32", port],
                             capture_output=True, text=True, timeout=60)
        assert rec.returncode == 0, rec.stderr
        out, err = play.communicate(timeout=60)
    finally:
        if play.poll() is None:
            play.kill()
    assert play.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["played_s"] >= 13.9
    # Our callback's own time stays far inside the period (128 frames = 2.67 ms).
    assert summary["callback_p99_ms"] < 0.1 * 128 / SR * 1e3, summary  # p99: max includes preemption
    # PortAudio's underflow flag also fires for the server's own late cycles on a loaded VM (see tests/support/jack.py).
    if log_offset is not None:
        assert_underflows_explained(summary["underflows"], jack_log_since(log_offset))
    elif summary["underflows"]:
        pytest.fail(f"{summary['underflows']} underflows (no server log to attribute them)")
    x, sr = sf.read(rec_path, dtype="float64")
    assert sr == SR
    x = x if x.ndim == 1 else x[:, 0]
    assert len(x) >= 10 * SR - 128
    # Best case (the recorder lost nothing): the recording is an exact slice of the offline render.  Otherwise the
    # recorder missed whole periods (see tests/support/jack.py): every click must still be the rendered one, at the
    # rendered interval, except for those whole-period gaps.
    rec_on = [o for o in naive.onsets(x) if o > 0]
    ref_on = naive.onsets(ref[:, 0])
    assert len(rec_on) >= 25
    if find_alignment(x, ref[:, 0]) is None:
        lines = jack_log_since(log_offset) if log_offset is not None else []
        shift, exact, off = match_intervals(rec_on, ref_on, summary["blocksize"], allow_longer=log_offset is not None)
        assert exact >= 0.5 * (len(rec_on) - 1), (exact, off)
        assert off <= sum("XRun" in ln for ln in lines) or log_offset is None, off
        assert clicks_equal(x, rec_on, ref[:, 0], ref_on[shift:])
