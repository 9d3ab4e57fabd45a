"""``downbeat cues list`` / ``cues say``: output, WAV export, errors raised (never sys.exit) for the top-level CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import metronome.cli.cues as C
from cues.library import load_library
from metronome.errors import AudioDeviceError, CueError, InputError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture()
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return CliRunner()


def test_list_shows_every_cue(runner):
    res = runner.invoke(C.cues, ["list"])
    assert res.exit_code == 0, res.output
    for c in load_library():
        assert c.id in res.output
        assert c.phrasings[0] in res.output
    assert "announce_descent" in res.output and "100 safety" in res.output


def test_list_with_bad_library_raises_cue_error(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cues:\n  - {id: a, trigger: foo, priority: 1, cooldown_s: 1, phrasings: [x]}\n")
    res = runner.invoke(C.cues, ["list", "--library", str(bad)])
    assert isinstance(res.exception, CueError)
    assert str(res.exception) == (f"{bad}: cues[0].trigger: 'foo' is not one of descent_start, steep_descent, "
                                  "long_descent, technical, descent_end, cadence_low, cadence_high, announce_descent, "
                                  "announce_decline, announce_incline, announce_flat, off_course, on_course, "
                                  "distance_anchor, descent_anchor")


@needs_espeak
def test_say_writes_a_wav(runner, tmp_path):
    out = tmp_path / "cue.wav"
    res = runner.invoke(C.cues, ["say", "quick_steps", "--phrasing", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Quick feet, short steps." in res.output
    data, sr = sf.read(str(out))
    assert sr == 48000 and data.ndim == 1
    assert 0.3 * sr < data.size <= 2.5 * sr
    assert np.max(np.abs(data)) == pytest.approx(0.35, abs=1e-3)  # PCM_16 quantisation


def test_say_plays_on_the_default_device(runner, monkeypatch, tmp_path):
    played = []
    monkeypatch.setattr(C, "_play", lambda clip, sr: played.append((clip.size, sr)))
    pack = tmp_path / "pack"
    pack.mkdir()
    sf.write(str(pack / "ease_off.wav"), 0.5 * np.sin(np.arange(16000) * 0.1), 16000)
    res = runner.invoke(C.cues, ["say", "ease_off", "--voice-pack", str(pack), "--samplerate", "44100"])
    assert res.exit_code == 0, res.output
    assert played and played[0][1] == 44100 and played[0][0] == pytest.approx(44100 * 1.0, rel=0.03)


def test_say_without_audio_device_suggests_out(runner, monkeypatch, tmp_path):
    import sounddevice as sd

    def no_device(**kw):
        raise sd.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sd, "check_output_settings", no_device)
    pack = tmp_path / "pack"
    pack.mkdir()
    sf.write(str(pack / "ease_off.wav"), 0.5 * np.sin(np.arange(16000) * 0.1), 16000)
    res = runner.invoke(C.cues, ["say", "ease_off", "--voice-pack", str(pack)])
    assert isinstance(res.exception, AudioDeviceError)
    assert "no audio output device: use --out FILE.wav" in str(res.exception)


@pytest.mark.parametrize("args, exc, message", [
    (["say", "nope", "--out", "x.wav"], CueError, "cue id 'nope' is not in library.yaml"),
    (["say", "pick_line", "--phrasing", "4", "--out", "x.wav"], InputError, "--phrasing: 4 is outside 1..3"),
    (["say", "pick_line", "--out", "x.mp3"], InputError, "--out: 'x.mp3' must end in .wav"),
    (["say", "pick_line", "--samplerate", "100", "--out", "x.wav"], CueError, "--samplerate: 100"),
])
def test_say_bad_input_raises_for_the_top_level_cli(runner, args, exc, message):
    res = runner.invoke(C.cues, args)
    assert isinstance(res.exception, exc), res.output
    assert message in str(res.exception)
    assert not isinstance(res.exception, SystemExit)


def test_say_without_espeak_is_the_clear_error(runner, monkeypatch):
    import cues.voice as V

    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    res = runner.invoke(C.cues, ["say", "pick_line", "--out", "x.wav"])
    assert isinstance(res.exception, V.VoiceUnavailableError)
    assert str(res.exception).startswith("no speech engine found (festival, flite, espeak-ng): install one with")
    assert "'apt-get install espeak-ng'" in str(res.exception)
