"""Cues in the rendered audio: speech exactly in the planned windows, clicks on their samples under speech,
the mix under the ceiling without the limiter, and clicks-only sessions when espeak-ng is missing."""

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from metronome import _kernels as K
from metronome.engine import Engine
from metronome.mix import ClipBank, EngineSettings, mix_levels
from metronome.render import render
from metronome.session import load_profile, plan_session

from tests.support import naive

SR = 48000


@pytest.fixture(scope="module")
def demo_plan():
    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is required for the cue tests (tests/run.sh installs it)")
    return plan_session(load_profile("demo-descent"), engine_settings=EngineSettings(channels=1))


def run(plan, bank, frames):
    eng = Engine(plan.tempo_map, plan.engine_settings, bank, stop_beats_at=plan.tempo_map.end_sample)
    out = np.zeros((frames, 1), np.float32)
    requests = sorted(plan.cue_requests, key=lambda r: r[1])
    ri = 0
    for a in range(0, frames, 4096):
        b = min(frames, a + 4096)
        while ri < len(requests) and requests[ri][1] < b:
            assert eng.request_cue(*requests[ri])
            ri += 1
        eng.process(out[a:b])
    return out[:, 0], eng


def with_silent_clicks(bank):
    """The same bank with the click clips zeroed (same lengths, so the kernel's voice use is unchanged)."""
    clips = [(n, bank.data[o:o + ln].copy()) for n, o, ln in zip(bank.names, bank.offsets, bank.lengths)]
    clips[0] = (clips[0][0], np.zeros_like(clips[0][1]))
    clips[1] = (clips[1][0], np.zeros_like(clips[1][1]))
    return ClipBank.build(clips)


def test_demo_plans_cues_on_beats(demo_plan):
    beats = set(demo_plan.tempo_map.beat_samples().tolist())
    assert len(demo_plan.planned_cues) >= 8
    for cue in demo_plan.planned_cues:
        assert cue.start_sample in beats
        assert cue.end_sample - cue.start_sample <= 2.5 * SR


def test_speech_energy_exactly_in_planned_windows_and_clicks_on_their_samples(demo_plan):
    plan = demo_plan
    frames = plan.tempo_map.end_sample + SR
    full, eng = run(plan, plan.bank, frames)
    speech, _ = run(plan, with_silent_clicks(plan.bank), frames)
    # 1. Speech only where the plan put it: sound exactly inside [start, start + clip length) of each cue.
    windows = np.zeros(frames, bool)
    for cue in plan.planned_cues:
        i = plan.bank.index(cue.clip_name)
        o, n = int(plan.bank.offsets[i]), int(plan.bank.lengths[i])
        windows[cue.start_sample:cue.start_sample + n] = True
        # The window holds exactly the clip, sample for sample, from the planned beat on.
        assert np.array_equal(speech[cue.start_sample:cue.start_sample + n], plan.bank.data[o:o + n])
    assert not speech[~windows].any(), "speech outside the planned windows"
    # 2. The mix never needed the limiter: the ceiling holds by level design.
    assert eng.st[K.ST_LIMITED] == 0
    assert np.abs(full).max() <= np.float32(mix_levels(plan.engine_settings)["ceiling"])
    # 3. Clicks under speech: full - speech is exactly the (ducked) click track, so its onsets are the beats.
    clicks = full - speech
    beats = plan.tempo_map.beat_samples()
    assert np.array_equal(naive.onsets(clicks), beats)
    under_speech = [b for b in beats if windows[b]]
    assert len(under_speech) > 50
    # ... and they are ducked by 6 dB there (the accent/normal peak ratio is known, compare like with like).
    accent_peak = mix_levels(plan.engine_settings)["accent"]
    ks = {int(b): k for k, b in enumerate(beats)}
    ducked = [np.abs(clicks[b:b + 600]).max() for b in under_speech if ks[b] % 4 == 0]
    assert ducked and np.allclose(ducked, accent_peak * 10 ** (-6 / 20), rtol=0.02)


def test_events_csv_lists_cues_at_their_planned_samples(demo_plan, tmp_path):
    out, ev = tmp_path / "demo.flac", tmp_path / "ev.csv"
    res = render(demo_plan.tempo_map, str(out), demo_plan.engine_settings, bank=demo_plan.bank,
                 cue_requests=demo_plan.cue_requests, events_path=str(ev))
    with open(ev, newline="") as f:
        rows = list(csv.DictReader(f))
    cues = [(int(r["sample"]), r["clip"]) for r in rows if r["kind"] == "cue"]
    assert cues == [(c.start_sample, c.clip_name) for c in demo_plan.planned_cues]
    assert res.cues == len(cues) and res.cues_dropped == 0


def test_missing_espeak_gives_clear_message_and_clicks_still_play(tmp_path):
    """PATH without espeak-ng and an empty voice cache: a one-line warning, exit 0, a click track."""
    # An empty PATH hides espeak-ng. The interpreter is started by its own path, never through a link in that
    # folder: a linked python looks for pyvenv.cfg beside the link, misses the venv and runs the base interpreter,
    # which has none of the project's packages on a fresh machine.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = dict(os.environ, PATH=str(bindir), XDG_CACHE_HOME=str(tmp_path / "cache"))
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 300, grade_pct: 0}, {distance_m: 600, grade_pct: -10}]")
    out, ev = tmp_path / "o.wav", tmp_path / "ev.csv"
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", str(course), "-o", str(out),
                        "--events", str(ev), "--quiet"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "espeak-ng" in lines[0] and "apt-get install espeak-ng" in lines[0], r.stderr
    with open(ev, newline="") as f:
        kinds = [row["kind"] for row in csv.DictReader(f)]
    assert "cue" not in kinds and kinds.count("beat") > 100
    assert np.abs(sf.read(out)[0]).max() > 0.1


def test_bad_voice_pack_is_bad_input_not_a_silent_fallback(tmp_path):
    """Only a missing speech engine degrades to clicks only; a broken voice pack is the user's input: exit 2."""
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "manifest.yaml").write_text("cues: {lean_forward: ../../etc/passwd.wav}\n")
    out = tmp_path / "o.wav"
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", "demo-descent", "-o", str(out),
                        "--voice-pack", str(pack), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "manifest.yaml" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


#: Two cues a short descent always gets: the announcement before it and a core cue at its start.
TINY_LIBRARY = """version: 1
cues:
  - id: descent_ahead
    trigger: announce_descent
    priority: 90
    safety: true
    cooldown_s: 30
    phrasings: ["Descent ahead."]
  - id: lean_forward
    trigger: descent_start
    priority: 60
    core: true
    cooldown_s: 120
    phrasings: ["Lean slightly forward from the ankles."]
"""


@pytest.mark.parametrize("engine", ["festival", "flite", "espeak-ng"])
def test_a_cue_spoken_by_each_engine_is_exactly_its_clip_in_its_planned_window(engine, tmp_path):
    """Per engine, FLOAT renders: a render with silenced clicks holds, in each planned window, exactly the engine's
    clip times its gain (bit for bit) and nothing elsewhere; the cue render is that speech plus the ducked
    clicks-only render inside the windows, and no louder than the clicks-only render outside them."""
    from cues import tts
    from cues.library import load_library
    from cues.session import plan_profile_cues
    from cues.voice import VoiceBank
    from metronome.mix import click_bank, db_to_gain
    from metronome.session import tempo_settings_for
    from metronome.tempo import tempo_map_from_profile

    if not tts.installed(engine):
        pytest.fail(f"{engine} is required for this test (tests/run.sh installs {tts.APT_PACKAGES[engine]})")
    (tmp_path / "lib.yaml").write_text(TINY_LIBRARY)
    lib = load_library(str(tmp_path / "lib.yaml"))
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 300, grade_pct: -10}]")
    profile = load_profile(str(course))
    es = EngineSettings(channels=1)
    tm = tempo_map_from_profile(profile, tempo_settings_for(profile), SR)
    cache = tmp_path / "cache"
    clips, planned = plan_profile_cues(profile, tm, SR, library=lib, voice=engine, cache_dir=cache)
    assert {c.cue_id for c in planned} == {"descent_ahead", "lean_forward"}
    bank = click_bank(SR, clips, es)
    requests = [(bank.index(c.clip_name), c.start_sample) for c in planned]

    def rendered(name, b, reqs):
        render(tm, str(tmp_path / name), es, bank=b, cue_requests=reqs, subtype="FLOAT")
        return sf.read(str(tmp_path / name), dtype="float32")[0]

    full = rendered("full.wav", bank, requests)
    clicks = rendered("clicks.wav", bank, [])
    speech = rendered("speech.wav", with_silent_clicks(bank), requests)
    lv = mix_levels(es)
    voice_bank = VoiceBank(lib, SR, voice=engine, cache_dir=cache)  # the engine's clips, from its cache
    windows = np.zeros(full.size, bool)
    for cue in planned:
        clip = voice_bank.clip(cue.cue_id, cue.phrasing_index)
        expected = clip * np.float32(lv["speech"] / float(np.max(np.abs(clip))))  # its gain, as click_bank sets it
        w = slice(cue.start_sample, cue.start_sample + clip.size)
        windows[w] = True
        assert np.array_equal(speech[w], expected), f"{engine}: {cue.cue_id} is not its clip sample for sample"
        np.testing.assert_allclose(full[w], speech[w] + clicks[w] * np.float32(db_to_gain(es.duck_db)), atol=1e-6)
    # Outside the windows only clicks sound (the duck's release lowers the first few after a cue): no speech.
    out_full, out_clicks = full[~windows], clicks[~windows]
    assert not out_full[out_clicks == 0].any(), f"{engine}: speech outside the planned windows"
    assert np.all(np.abs(out_full) <= np.abs(out_clicks)) and not speech[~windows].any()
    if engine != "espeak-ng":  # really this engine's voice, not espeak-ng's under another name
        other = VoiceBank(lib, SR, voice="espeak-ng", cache_dir=cache).clip("descent_ahead", 0)
        mine = voice_bank.clip("descent_ahead", 0)
        assert mine.size != other.size or not np.array_equal(mine, other)
