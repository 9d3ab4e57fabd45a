"""`downbeat play` on a real, paced audio server: the JACK dummy backend, recorded through a JACK connection.

Every period the recorder saw must be the offline render of the same profile at that period's place on the
server's clock (same kernel, same bits), which also proves the player lost no block except where it said so.
The recorder stamps each cycle with the server's frame time (see tests/support/jackutil.py), so the periods it missed on a
loaded machine are known exactly and left out; they are not guessed from click intervals.
"""

import json
import subprocess
import sys

import pytest
import soundfile as sf

from tests.support.jackutil import (play_and_record, assert_underflows_explained, jack_log_since, jack_log_size, match_render, require_jack, xruns_logged)

SR = 48000


@pytest.mark.jack
def test_play_10s_on_jack_records_the_rendered_click_pattern(tmp_path):
    require_jack()
    course = tmp_path / "course.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 300, grade_pct: -12}]")
    ref_path = tmp_path / "ref.wav"
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", str(course), "-o", str(ref_path),
                        "--subtype", "FLOAT", "--no-cues", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = sf.read(ref_path, dtype="float32")[0]

    log_offset = jack_log_size()
    rec, code, out, err = play_and_record([course, "--no-cues", "--json", "--duration", "14", "--device", "JACK"],
                                          10, tmp_path / "rec.npz")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["played_s"] >= 13.9
    # Our callback's own time stays far inside the period (128 frames = 2.67 ms).
    assert summary["callback_p99_ms"] < 0.1 * 128 / SR * 1e3, summary  # p99: max includes preemption
    # PortAudio's underflow flag also fires for the server's own late cycles on a loaded VM (see tests/support/jackutil.py).
    if log_offset is not None:
        assert_underflows_explained(summary["underflows"], jack_log_since(log_offset))
    elif summary["underflows"]:
        pytest.fail(f"{summary['underflows']} underflows (no server log to attribute them)")
    assert rec.samplerate == SR and rec.period == summary["blocksize"]
    assert rec.span_frames >= 10 * SR - 128
    # The recorder ran for most of the 10 s (the periods it missed are known, but enough must be left to judge).
    assert rec.missed_cycles <= 0.1 * rec.span_frames / rec.period, rec.missed_cycles
    # Every recorded period is the render, exactly, at its place on server time.  The player may fall behind
    # the server's clock by a whole period only in a cycle the server did not run it: PortAudio reports each such
    # cycle as an underflow (the player's own count) and the server logs it as an xrun.
    allowed = summary["underflows"]
    logged = xruns_logged(log_offset)
    if logged is not None:
        allowed = min(allowed, logged)
    m = match_render(rec, ref[:, 0], max_shift_periods=allowed)
    assert m["clicks"] >= 25, m
    assert m["sounding"] >= 25, m
