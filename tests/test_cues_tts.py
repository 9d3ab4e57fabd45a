"""Speech engines: voice specs, the default engine's choice, each real engine speaking, and ``--voice`` errors."""

from __future__ import annotations


import numpy as np
import pytest

from cues import tts
from cues import voice as V

from tests.support.cli import run_main
from metronome.errors import CueError


@pytest.mark.parametrize("spec, engine, voice", [
    ("festival", "festival", "cmu_us_slt_arctic_hts"), ("flite", "flite", "slt"), ("flite:awb", "flite", "awb"),
    ("espeak-ng", "espeak-ng", "en-us"), ("espeak-ng:en-gb", "espeak-ng", "en-gb"), ("espeak:de", "espeak-ng", "de"),
])
def test_voice_specs(spec, engine, voice):
    vs = tts.parse_voice(spec)
    assert (vs.engine, vs.voice, vs.explicit) == (engine, voice, True)
    assert str(vs) == f"{engine}:{voice}"


@pytest.mark.parametrize("spec, message", [
    ("say", "--voice: 'say' is not a speech engine (one of festival, flite, espeak-ng; ENGINE[:VOICE])"),
    ("en-us", "--voice: 'en-us' is not a speech engine"),
    ("festival:x (system \"rm\")", "--voice: 'x (system \"rm\")' is not a festival voice name"),
    ("festival:a-b", "--voice: 'a-b' is not a festival voice name"),
    ("flite:../../etc/x", "--voice: '../../etc/x' is not a flite voice name"),
    ("espeak-ng:", "--voice: '' is not an espeak-ng voice name"),
])
def test_bad_specs_are_refused_naming_them(spec, message):
    with pytest.raises(CueError) as info:
        tts.parse_voice(spec)
    assert str(info.value).startswith(message)


def test_default_is_the_most_natural_installed_engine(monkeypatch):
    """festival (with its HTS voice) > flite > espeak-ng; a default is never 'explicit' (missing: clicks only)."""
    monkeypatch.delenv(tts.VOICE_ENV)
    for have, want in [({"festival", "flite", "espeak-ng"}, "festival"), ({"flite", "espeak-ng"}, "flite"),
                       ({"espeak-ng"}, "espeak-ng"), (set(), "espeak-ng")]:
        monkeypatch.setattr(tts, "installed", lambda e, have=have: e in have)
        vs = tts.parse_voice(None)
        assert (vs.engine, vs.voice, vs.explicit) == (want, tts.DEFAULT_VOICES[want], False)
        assert tts.parse_voice("auto") == vs
    monkeypatch.setenv(tts.VOICE_ENV, "flite:awb")
    assert tts.parse_voice(None) == tts.VoiceSpec("flite", "awb", explicit=False)


def test_festival_counts_as_installed_only_with_its_voice(monkeypatch):
    monkeypatch.setattr(tts, "festival_voices", lambda: [])
    assert not tts.installed("festival")
    monkeypatch.setattr(tts, "festival_voices", lambda: ["cmu_us_slt_arctic_hts"])
    assert tts.installed("festival") == (tts.shutil.which("text2wave") is not None)


@pytest.mark.parametrize("engine", tts.ENGINES)
def test_each_engine_speaks_and_its_rate_changes_the_length(engine, tmp_path):
    """Real speech from each engine, a finished clip at 48 kHz; faster rates give shorter clips; cache per engine."""
    if not tts.installed(engine):
        pytest.fail(f"{engine} is required (tests/run.sh installs {tts.APT_PACKAGES[engine]})")
    slow = V.synthesize("Short, quick steps.", 48000, voice=engine, rate_wpm=150, cache_dir=tmp_path)
    fast = V.synthesize("Short, quick steps.", 48000, voice=engine, rate_wpm=230, cache_dir=tmp_path)
    for clip in (slow, fast):
        assert clip.dtype == np.float32 and 0.3 * 48000 < clip.size <= V.MAX_CLIP_S * 48000
        assert np.max(np.abs(clip)) == pytest.approx(V.PEAK_LEVEL, abs=1e-6)
    assert fast.size < 0.85 * slow.size
    assert len(list(tmp_path.glob("*.npy"))) == 2
    # Deterministic: the same text again (no cache) is the same clip, sample for sample.
    again = V.synthesize("Short, quick steps.", 48000, voice=engine, rate_wpm=150, cache_dir=tmp_path / "fresh")
    assert np.array_equal(again, slow)


def test_unknown_voices_are_errors_not_a_silent_default_voice(tmp_path):
    """flite and festival both fall back to a default voice on an unknown name: we refuse instead."""
    with pytest.raises(CueError, match=r"--voice: flite has no voice 'nosuch' \(it has: .*slt"):
        tts.check_voice(tts.parse_voice("flite:nosuch"))
    with pytest.raises(CueError, match=r"--voice: festival has no voice 'nosuch' \(installed: cmu_us_slt_arctic_hts"):
        tts.check_voice(tts.parse_voice("festival:nosuch"))
    with pytest.raises(CueError, match=r"festival failed \(voice 'nosuch'\)"):  # past the check: festival's error
        V.synthesize("Hello.", 16000, voice=tts.VoiceSpec("festival", "nosuch"), cache_dir=tmp_path)


def test_an_engine_asked_for_but_missing_is_an_error_and_a_default_one_means_clicks_only(tmp_path, monkeypatch):
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    with pytest.raises(CueError, match=r"^--voice: flite not found: install it with 'apt-get install flite'$") as info:
        V.synthesize("Hello.", 16000, voice="flite", cache_dir=tmp_path)
    assert not isinstance(info.value, tts.VoiceUnavailableError)
    with pytest.raises(tts.VoiceUnavailableError, match="no speech engine found"):
        V.synthesize("Hello.", 16000, cache_dir=tmp_path)


@pytest.mark.parametrize("flag, needle", [
    ("nosuch", "--voice: 'nosuch' is not a speech engine"),
    ("flite:nosuch", "--voice: flite has no voice 'nosuch'"),
    ("festival:nosuch", "--voice: festival has no voice 'nosuch'"),
])
def test_bad_voice_flag_is_one_line_exit_2_before_any_work(flag, needle, tmp_path, capsys):
    for argv in (["render", "demo-descent", "-o", tmp_path / "o.wav", "--voice", flag],
                 ["cues", "say", "pick_line", "--out", tmp_path / "o.wav", "--voice", flag]):
        code, _out, err = run_main(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert needle in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_cues_say_with_each_engine_writes_its_clip(tmp_path, capsys):
    import soundfile as sf

    for engine in ("flite", "festival"):
        out = tmp_path / f"{engine}.wav"
        code, stdout, err = run_main(["cues", "say", "pick_line", "--voice", engine, "--out", out], capsys)
        assert code == 0, err
        data, sr = sf.read(str(out))
        assert sr == 48000 and 0.5 * sr < data.size <= 2.5 * sr
