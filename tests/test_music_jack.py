"""`downbeat play --music` on the JACK dummy server: what the server recorded is the offline render with the same
music, bit for bit (render and play share the ring and the kernel), the callback stays inside its budget and the
music ring never runs dry."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.support.jackutil import (play_and_record, assert_underflows_explained, jack_log_since, jack_log_size, require_jack)

SR = 48000
MUSIC = str(Path(__file__).resolve().parent / "data" / "music")


@pytest.mark.jack
@pytest.mark.parametrize("extra", [[], ["--music-sync", "--base-cadence", "145"]], ids=["music", "music-sync"])
def test_play_with_music_on_jack_is_the_render_with_music(tmp_path, extra):
    require_jack()
    if extra:
        pytest.importorskip("librosa")
        pytest.importorskip("python_stretch")
    course = tmp_path / "course.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 300, grade_pct: -12}]")
    ref_path = tmp_path / "ref.wav"
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", str(course), "-o", str(ref_path),
                        "--subtype", "FLOAT", "--no-cues", "--quiet", "--music", MUSIC, *extra], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    ref = sf.read(ref_path, dtype="float32")[0]
    log_offset = jack_log_size()
    rec, code, out, err = play_and_record([course, "--no-cues", "--json", "--duration", "12", "--device", "JACK",
                                           "--music", MUSIC, *extra], 8, tmp_path / "rec.npz")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["music"]["underruns"] == 0 and summary["music"]["tracks_started"] >= 1
    assert summary["callback_p99_ms"] < 0.1 * 128 / SR * 1e3, summary
    if log_offset is not None:
        assert_underflows_explained(summary["underflows"], jack_log_since(log_offset))
    # Music never leaves silence, so click onsets cannot anchor the match: anchor on the samples themselves.
    # Every recorded period must be the render's samples at one offset (a whole period more per underflow).
    import numpy as np

    x, present = rec.timeline()
    ref0 = ref[:, 0]
    starts = np.flatnonzero(present[::rec.period]) * rec.period
    k0 = int(starts[len(starts) // 2])
    probe = x[k0:k0 + rec.period]
    cand = np.flatnonzero(ref0[:len(ref0) - rec.period] == probe[0])
    offsets = [int(c) - k0 for c in cand if np.array_equal(ref0[c:c + rec.period], probe)]
    # The render holds this period sample for sample (the 14.5 s playlist repeats, so later repeats of a
    # click-free period match too: the play started with the render, so the first place is the one).
    assert offsets, "no recorded period equals the render"
    off = min(offsets, key=abs)
    matched = 0
    for k in starts:
        j = k + off
        if 0 <= j and j + rec.period <= len(ref0) and np.array_equal(x[k:k + rec.period], ref0[j:j + rec.period]):
            matched += 1
    if summary["underflows"] == 0:
        assert matched == len(starts), (matched, len(starts))
    else:  # a skipped cycle shifts the rest by a period (tests/support/jackutil.py); most still match
        assert matched >= 0.5 * len(starts), (matched, len(starts), summary["underflows"])
