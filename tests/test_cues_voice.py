"""Voice: resampler accuracy, clip finishing, espeak-ng synthesis, the on-disk cache, voice packs."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

import cues.voice as V
from cues.library import load_library
from metronome.errors import CueError

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed (apt-get install espeak-ng)")


# ----------------------------------------------------------------------------------------------------------------
# Resampler
# ----------------------------------------------------------------------------------------------------------------
def _sine(freq, sr, seconds, phase=0.3):
    return np.sin(2 * np.pi * freq * np.arange(int(round(seconds * sr))) / sr + phase)


@pytest.mark.parametrize("sr_in, sr_out, freq", [
    (22050, 48000, 1000.0),
    (22050, 44100, 3150.0),
    (48000, 22050, 3000.0),
    (44100, 48000, 9000.0),
    (16000, 8000, 1234.5),
])
def test_resampled_sine_matches_the_ideal_sine(sr_in, sr_out, freq):
    """Frequency, phase and amplitude are kept: the output equals the sine evaluated at the output times."""
    x = _sine(freq, sr_in, 1.0)
    y = V.resample(x, sr_in, sr_out)
    assert y.size == -(-x.size * sr_out // sr_in)
    ideal = _sine(freq, sr_out, y.size / sr_out)
    mid = slice(int(0.1 * sr_out), int(0.9 * sr_out))  # away from the zero-padded edges
    assert np.max(np.abs(y[mid] - ideal[mid])) < 2e-3


def test_resampled_sine_frequency_by_spectrum():
    sr_in, sr_out, freq = 22050, 48000, 1000.0
    y = V.resample(_sine(freq, sr_in, 2.0), sr_in, sr_out)
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    k = int(np.argmax(spec))
    # Parabolic interpolation of the peak bin.
    a, b, c = np.log(spec[k - 1:k + 2])
    f_est = (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr_out / y.size
    assert abs(f_est - freq) < 0.2


@pytest.mark.parametrize("sr_in, sr_out, freq", [(48000, 22050, 15000.0), (44100, 16000, 9000.0),
                                                 (48000, 22050, 11500.0)])
def test_downsampling_removes_content_above_the_new_nyquist(sr_in, sr_out, freq):
    """A tone above the output Nyquist must vanish, not fold back as an alias."""
    y = V.resample(_sine(freq, sr_in, 1.0), sr_in, sr_out)
    mid = y[int(0.1 * sr_out):int(0.9 * sr_out)]
    assert np.sqrt(np.mean(mid ** 2)) < 1e-3  # < -57 dB relative to the 0.707 RMS input
    # ... while a tone inside the pass band is kept at full level.
    keep = V.resample(_sine(2000.0, sr_in, 1.0), sr_in, sr_out)[int(0.1 * sr_out):int(0.9 * sr_out)]
    assert abs(np.sqrt(np.mean(keep ** 2)) - np.sqrt(0.5)) < 5e-3


def test_resample_identity_and_errors():
    x = np.random.default_rng(0).standard_normal(100)
    assert np.array_equal(V.resample(x, 48000, 48000), x)
    with pytest.raises(ValueError):
        V.resample(np.zeros((2, 2)), 8000, 16000)


# ----------------------------------------------------------------------------------------------------------------
# Trimming and finishing
# ----------------------------------------------------------------------------------------------------------------
def test_trim_silence_keeps_pad_only():
    sr = 10000
    x = np.concatenate([np.zeros(5000), 0.5 * np.ones(1000), np.zeros(3000)])
    y = V.trim_silence(x, sr, pad_s=0.01)
    assert y.size == 1000 + 2 * 100
    assert V.trim_silence(np.zeros(10), sr).size == 0


def test_finish_clip_peak_and_fades():
    sr = 48000
    clip = V.finish_clip(0.9 * np.ones(sr // 2), sr)
    assert clip.dtype == np.float32
    assert np.max(np.abs(clip)) == pytest.approx(V.PEAK_LEVEL, abs=1e-6)
    nf = int(V.FADE_S * sr)
    # Fades start and end near zero and are monotonic: no step, so no click.
    assert abs(clip[0]) < 0.01 and abs(clip[-1]) < 0.01
    assert np.all(np.diff(clip[:nf]) > 0) and np.all(np.diff(clip[-nf:]) < 0)


# ----------------------------------------------------------------------------------------------------------------
# Synthesis (real espeak-ng) and the cache
# ----------------------------------------------------------------------------------------------------------------
@needs_espeak
@pytest.mark.parametrize("samplerate", [48000, 44100, 22050])
def test_synthesized_clip_contract(tmp_path, samplerate):
    clip = V.synthesize("Short, quick steps.", samplerate, cache_dir=tmp_path)
    assert clip.dtype == np.float32 and clip.ndim == 1
    assert clip.size > 0.3 * samplerate  # real speech, not an empty or click-sized clip
    assert clip.size <= V.MAX_CLIP_S * samplerate
    assert np.max(np.abs(clip)) == pytest.approx(0.35, abs=1e-6)
    assert abs(clip[0]) < 0.02 and abs(clip[-1]) < 0.02


@needs_espeak
def test_synthesized_clip_is_at_the_requested_samplerate(tmp_path):
    """The same phrase at two rates: the lengths scale with the rate (the clip is not just relabelled)."""
    a = V.synthesize("Eyes a few metres ahead.", 24000, cache_dir=tmp_path)
    b = V.synthesize("Eyes a few metres ahead.", 48000, cache_dir=tmp_path)
    assert b.size / a.size == pytest.approx(2.0, rel=0.01)
    # And the spectrum of the 48 kHz clip has (almost) nothing above the 11.025 kHz espeak Nyquist.
    spec = np.abs(np.fft.rfft(b)) ** 2
    f = np.fft.rfftfreq(b.size, 1 / 48000)
    assert spec[f > 11500].sum() < 1e-4 * spec.sum()


@needs_espeak
def test_cache_hit_returns_identical_array_without_espeak(tmp_path, monkeypatch):
    real_espeak_wav = V.espeak_wav
    first = V.synthesize("Soft knees.", 48000, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # atomic write left no temp file behind

    def boom(*a, **k):
        raise AssertionError("espeak-ng must not run on a cache hit")

    monkeypatch.setattr(V, "espeak_wav", boom)
    monkeypatch.setattr(V.subprocess, "run", boom)
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    second = V.synthesize("Soft knees.", 48000, cache_dir=tmp_path)
    assert second.dtype == np.float32 and np.array_equal(first, second)
    # A different key (rate) is a miss, and without espeak-ng that is the clear error.
    monkeypatch.setattr(V, "espeak_wav", real_espeak_wav)
    with pytest.raises(V.VoiceUnavailableError):
        V.synthesize("Soft knees.", 44100, cache_dir=tmp_path)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert V.default_cache_dir() == tmp_path / "downbeat" / "voice"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the spec: ignored
    assert V.default_cache_dir().parts[-3:] == (".cache", "downbeat", "voice")


def test_cache_key_covers_every_input():
    base = V.cache_key("Hi.", "espeak-ng:en-us", 175, 48000)
    others = {V.cache_key("Hi!", "espeak-ng:en-us", 175, 48000), V.cache_key("Hi.", "espeak-ng:en-gb", 175, 48000),
              V.cache_key("Hi.", "espeak-ng:en-us", 180, 48000), V.cache_key("Hi.", "espeak-ng:en-us", 175, 44100),
              V.cache_key("Hi.", "flite:slt", 175, 48000), V.cache_key("Hi.", "festival", 175, 48000)}
    assert base not in others and len(others) == 6


def test_corrupt_cache_entry_is_resynthesized(tmp_path, monkeypatch):
    sr = 16000
    key = V.cache_key("Hello.", "espeak-ng:en-us", 175, sr)
    (tmp_path / f"{key}.npy").write_bytes(b"not a numpy file")
    monkeypatch.setattr(V, "espeak_wav", lambda text, voice, rate: (0.5 * _sine(300.0, 22050, 1.0), 22050))
    clip = V.synthesize("Hello.", sr, cache_dir=tmp_path)
    assert clip.size > 0.9 * sr
    assert np.array_equal(np.load(tmp_path / f"{key}.npy"), clip)


def test_missing_espeak_is_a_clear_cue_error(tmp_path, monkeypatch):
    monkeypatch.setattr(V.shutil, "which", lambda name: None)
    with pytest.raises(V.VoiceUnavailableError) as info:
        V.synthesize("Quicker steps.", 48000, cache_dir=tmp_path)
    assert isinstance(info.value, CueError)
    assert str(info.value) == ("no speech engine found (festival, flite, espeak-ng): install one with 'apt-get "
                               "install festival festvox-us-slt-hts' (most natural) or 'apt-get install espeak-ng'")
    bank = V.VoiceBank(load_library(), 48000, cache_dir=tmp_path)
    with pytest.raises(V.VoiceUnavailableError, match="apt-get install espeak-ng"):
        bank.durations_samples()


def test_long_phrasing_is_spoken_faster(tmp_path, monkeypatch):
    """Fake engine whose speech time is inversely proportional to the rate: 3.2 s at 175 wpm."""
    rates = []

    def fake(text, voice, rate):
        rates.append(rate)
        sr = 22050
        return 0.5 * _sine(200.0, sr, 3.2 * 175 / rate), sr

    monkeypatch.setattr(V, "espeak_wav", fake)
    clip = V.synthesize("A long phrasing.", 48000, cache_dir=tmp_path)
    assert rates[0] == 175 and rates[-1] > 175 and rates == sorted(rates)
    assert clip.size <= 2.5 * 48000
    assert rates[-1] <= V.MAX_RATE_WPM


def test_too_long_even_at_max_rate_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "espeak_wav", lambda text, voice, rate: (0.5 * _sine(200.0, 22050, 4.0), 22050))
    with pytest.raises(CueError, match=r"cue 'x' phrasing 1: 'Way too long.' takes 4.0\d s even at 260 words "
                                       r"per minute; cues must be at most 2.5 s: shorten it"):
        V.synthesize("Way too long.", 48000, cache_dir=tmp_path, what="cue 'x' phrasing 1")
    assert not list(tmp_path.glob("*.npy"))  # nothing cached for a failure


def test_bad_voice_and_rate_are_rejected(tmp_path):
    with pytest.raises(CueError, match="--voice: 'en us; rm -rf' is not an espeak-ng voice name"):
        V.synthesize("Hi.", 48000, voice="espeak-ng:en us; rm -rf", cache_dir=tmp_path)
    with pytest.raises(CueError, match="--rate"):
        V.synthesize("Hi.", 48000, rate_wpm=20, cache_dir=tmp_path)


@needs_espeak
def test_text_starting_with_dash_is_spoken_not_parsed_as_option(tmp_path):
    clip = V.synthesize("-v is not an option here", 16000, cache_dir=tmp_path)
    assert clip.size > 0.5 * 16000


@needs_espeak
def test_espeak_failure_names_the_voice(tmp_path):
    with pytest.raises(CueError, match=r"espeak-ng failed \(voice 'xx-nosuchvoice'\)"):
        V.synthesize("Hello.", 16000, voice="espeak-ng:xx-nosuchvoice", cache_dir=tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# VoiceBank
# ----------------------------------------------------------------------------------------------------------------
@needs_espeak
def test_bank_every_phrasing_of_the_bundled_library_fits(tmp_path):
    lib = load_library()
    bank = V.VoiceBank(lib, 48000, cache_dir=tmp_path)
    d = bank.durations_samples()
    assert set(d) == {(c.id, i) for c in lib for i in range(len(c.phrasings))}
    assert all(0.3 * 48000 < n <= 2.5 * 48000 for n in d.values())
    clip = bank.clip("pick_line", 0)
    assert not clip.flags.writeable  # shared with the kernel bank: must not be edited in place
    assert bank.clip("pick_line", 0) is clip  # memoised


def test_bank_uses_voice_pack_without_espeak(tmp_path, monkeypatch):
    pack = tmp_path / "pack"
    pack.mkdir()
    sr_rec = 44100
    rec = np.concatenate([np.zeros(4410), 0.8 * _sine(440.0, sr_rec, 1.0), np.zeros(8820)])
    sf.write(str(pack / "pick_line.wav"), np.stack([rec, rec], axis=1), sr_rec)  # stereo: mixed to mono
    monkeypatch.setattr(V, "espeak_wav", lambda *a: (_ for _ in ()).throw(AssertionError("no espeak")))
    bank = V.VoiceBank(load_library(), 48000, pack_dir=pack, cache_dir=tmp_path / "cache")
    clip = bank.clip("pick_line", 1)
    assert clip.ndim == 1 and clip.dtype == np.float32
    assert clip.size == pytest.approx(48000 * 1.02, rel=0.01)  # silence trimmed (10 ms pad each side)
    assert np.max(np.abs(clip)) == pytest.approx(0.35, abs=1e-6)
    # The tone survives: its frequency is still 440 Hz.
    spec = np.abs(np.fft.rfft(clip))
    assert np.fft.rfftfreq(clip.size, 1 / 48000)[np.argmax(spec)] == pytest.approx(440.0, abs=2.0)


def test_bank_rejects_overlong_pack_recording(tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    sf.write(str(pack / "ease_off.wav"), 0.5 * _sine(300.0, 16000, 3.0), 16000)
    bank = V.VoiceBank(load_library(), 48000, pack_dir=pack, cache_dir=tmp_path)
    with pytest.raises(CueError, match=r"ease_off.wav: cue 'ease_off' phrasing 1: 3.00 s after trimming"):
        bank.clip("ease_off", 0)


def test_bank_argument_errors(tmp_path):
    lib = load_library()
    with pytest.raises(CueError, match="--samplerate"):
        V.VoiceBank(lib, 1000)
    bank = V.VoiceBank(lib, 48000, cache_dir=tmp_path)
    with pytest.raises(CueError, match="phrasing 9 does not exist"):
        bank.clip("pick_line", 8)
    with pytest.raises(CueError, match="'nope' is not in"):
        bank.clip("nope", 0)


def _patch_wav_sizes(path, data_bytes):
    """Rewrite a PCM WAV's RIFF and data chunk sizes to claim ``data_bytes`` of samples."""
    import struct

    raw = bytearray(path.read_bytes())
    i = raw.index(b"data")
    struct.pack_into("<I", raw, i + 4, data_bytes)
    struct.pack_into("<I", raw, 4, i + 8 + data_bytes - 8)
    path.write_bytes(bytes(raw))


def _no_read(monkeypatch):
    """Reading samples is what costs memory: the checks must refuse before it."""
    def boom(*a, **k):
        raise AssertionError("soundfile.read was called on an oversized recording")
    monkeypatch.setattr(sf, "read", boom)


def test_huge_sparse_pack_wav_is_refused_before_reading(tmp_path, monkeypatch):
    """Issue 12.10: a 400 MB WAV (sparse here: no disk, no memory) is refused in one line naming the file."""
    pack = tmp_path / "pack"
    pack.mkdir()
    wav = pack / "ease_off.wav"
    sf.write(str(wav), 0.5 * _sine(300.0, 48000, 0.5), 48000, subtype="PCM_16")
    size = 400 * 1024 * 1024
    _patch_wav_sizes(wav, size - 44)
    os.truncate(wav, size)  # sparse: the header and the file size agree, ~4400 s of 16-bit 48 kHz mono
    assert wav.stat().st_size == size
    _no_read(monkeypatch)
    bank = V.VoiceBank(load_library(), 48000, pack_dir=pack, cache_dir=tmp_path / "cache")
    with pytest.raises(CueError) as info:
        bank.clip("ease_off", 0)
    msg = str(info.value)
    assert msg.startswith(str(wav)) and "400 MiB is too big" in msg and "\n" not in msg


def test_long_pack_wav_is_refused_by_its_header_length(tmp_path, monkeypatch):
    """Small on disk but 12 s long (8 kHz, 8-bit): refused from the header, before reading."""
    pack = tmp_path / "pack"
    pack.mkdir()
    wav = pack / "ease_off.wav"
    sf.write(str(wav), 0.2 * _sine(300.0, 8000, 12.0), 8000, subtype="PCM_U8")
    assert wav.stat().st_size < V.MAX_RECORDING_BYTES
    _no_read(monkeypatch)
    with pytest.raises(CueError, match=r"ease_off.wav: 12.0 s long; a cue recording must be at most 10 s"):
        V.load_recording(wav, 48000, "cue 'ease_off' phrasing 1")


def test_pack_wav_with_a_lying_header_is_still_bounded(tmp_path):
    """A header claiming 400 MB on a small file: libsndfile counts only the frames present; it reads fine."""
    pack = tmp_path / "pack"
    pack.mkdir()
    wav = pack / "ease_off.wav"
    sf.write(str(wav), 0.5 * _sine(300.0, 16000, 1.0), 16000, subtype="PCM_16")
    _patch_wav_sizes(wav, 400 * 1024 * 1024)
    clip = V.load_recording(wav, 48000, "cue 'ease_off' phrasing 1")
    assert 0.9 * 48000 < clip.size <= 1.05 * 48000


def test_huge_pack_wav_in_a_fresh_process_is_refused_with_small_rss(tmp_path):
    """In a fresh process (its own peak RSS): refused with one line, and the process stays small."""
    import subprocess
    import sys

    pack = tmp_path / "pack"
    pack.mkdir()
    wav = pack / "ease_off.wav"
    sf.write(str(wav), 0.5 * _sine(300.0, 48000, 0.5), 48000, subtype="PCM_16")
    _patch_wav_sizes(wav, 400 * 1024 * 1024 - 44)
    os.truncate(wav, 400 * 1024 * 1024)
    code = ("import resource, sys\n"
            "from cues.voice import VoiceBank\nfrom cues.library import load_library\n"
            "from metronome.errors import CueError\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    VoiceBank(load_library(), 48000, pack_dir=sys.argv[1], cache_dir=sys.argv[2]).clip('ease_off', 0)\n"
            "except CueError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    r = subprocess.run([sys.executable, "-c", code, str(pack), str(tmp_path / "cache")], capture_output=True,
                       text=True, timeout=120)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and "too big for a cue recording" in lines[0], r.stdout + r.stderr
    # Peak RSS grew by less than 32 MiB (KiB here) past the imports: the 400 MB file was never read (before the
    # fix this was 3.4 GB).
    assert int(lines[1]) < 32 * 1024
