"""The runner's music under the coach (issue 17): playlists, decoding, loudness, the ring and the kernel's mix.

Real music: two freely licensed excerpts from Debian game packages (tests/data/LICENSES.md), an Ogg Vorbis at
44.1 kHz stereo and a FLAC at 22.05 kHz mono, so resampling and channel handling are exercised on real signals.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from metronome import _kernels as K
from metronome.engine import Engine
from metronome.errors import InputError
from metronome.mix import EngineSettings, click_bank, db_to_gain
from metronome.music.decode import decode_track
from metronome.music.loudness import integrated_lufs
from metronome.music.plan import plan_music, resolve_music
from metronome.music.playlist import resolve
from metronome.music.ring import MusicRing
from metronome.music.source import MusicSource
from metronome.render import render
from metronome.settings import MusicSettings
from metronome.tempo import TempoMap

DATA = Path(__file__).resolve().parent / "data" / "music"
OGG = DATA / "race1-jt-excerpt.ogg"
FLAC = DATA / "chromium-bsu-music-game.flac"
SR = 48000
BLOCK_SIZES = [1, 64, 65, 128, 8192, 8193]


def _cue_clip(seconds=1.5, sr=SR):
    """A speech-like cue: noise shaped by a syllable-rate envelope (no speech engine needed)."""
    rng = np.random.default_rng(7)
    n = int(seconds * sr)
    env = 0.5 * (1 - np.cos(2 * np.pi * np.arange(n) / (0.25 * sr))) * np.hanning(n)
    return (rng.standard_normal(n) * env * 0.3).astype(np.float32)


def _session(seconds=40.0, cue_every_s=10.0, bpm=170.0):
    tm = TempoMap.constant(bpm, SR, seconds)
    es = EngineSettings(samplerate=SR)
    bank = click_bank(SR, [("cue", _cue_clip())], es)
    requests = [(bank.index("cue"), int(t * SR)) for t in np.arange(3.0, seconds - 3.0, cue_every_s)]
    return tm, es, bank, requests


def _run(tm, es, bank, requests, mplan=None, blocksize=None, frames=None, silent_music=None):
    """Engine.process over the session with the ring filled as the renderer fills it (chunk by chunk).

    ``silent_music``: music settings with a ring that is over before it starts (the mix with music, minus the
    music)."""
    frames = frames or tm.end_sample
    chunk = 65536
    ms = mplan.settings if mplan else silent_music
    eng = Engine(tm, es, bank, stop_beats_at=tm.end_sample, music=ms,
                 music_frames=mplan.ring_frames(SR, chunk) if mplan else 0)
    if silent_music is not None:
        eng.music_idx[K.MI_ENDED] = 1
    ring = MusicRing(eng, mplan.source(SR)) if mplan else None
    out = np.zeros((frames, es.channels), np.float32)
    ri, done = 0, 0
    while done < frames:
        n = min(chunk, frames - done)
        ri = eng.queue_cues(requests, ri, done + n)
        if ring is not None:
            ring.fill(until_written=done + n)
        eng.process(out[done:done + n], blocksize)
        done += n
    return out, eng


# ------------------------------------------------------------------------------------------------------------------
# Playlists
# ------------------------------------------------------------------------------------------------------------------
def test_folder_and_playlists_resolve_in_order(tmp_path):
    for name in ("track10.flac", "track2.flac", "notes.txt"):
        (tmp_path / "album").mkdir(exist_ok=True)
        if name.endswith(".flac"):
            (tmp_path / "album" / name).write_bytes(FLAC.read_bytes())
        else:
            (tmp_path / "album" / name).write_text("not music")
    got = [Path(t.path).name for t in resolve([tmp_path / "album"])]
    assert got == ["track2.flac", "track10.flac"]  # natural order, non-audio files left out
    m3u = tmp_path / "run.m3u"
    m3u.write_text(f"#EXTM3U\n#EXTINF:8,Race\n{OGG}\n\nalbum/track10.flac\n")
    assert [Path(t.path).name for t in resolve([m3u])] == ["race1-jt-excerpt.ogg", "track10.flac"]
    pls = tmp_path / "run.pls"
    pls.write_text(f"[playlist]\nFile2=album/track2.flac\nFile1={OGG}\nNumberOfEntries=2\n")
    tracks = resolve([pls, FLAC])
    assert [Path(t.path).name for t in tracks] == ["race1-jt-excerpt.ogg", "track2.flac", FLAC.name]
    assert tracks[0].samplerate == 44100 and tracks[0].channels == 2 and abs(tracks[0].duration_s - 8.0) < 1e-6


@pytest.mark.parametrize("make, expect", [
    (lambda d: d / "missing.ogg", "missing.ogg: no such file or folder"),
    (lambda d: d / "empty", "no audio files"),
    (lambda d: (d / "bad.m3u").write_text("# header\nhttp://radio.example/stream\n") and d / "bad.m3u",
     "bad.m3u:2: 'http://radio.example/stream' is a URL"),
    (lambda d: (d / "gone.m3u").write_text("nothere.flac\n") and d / "gone.m3u", "gone.m3u:1: "),
    (lambda d: (d / "fake.ogg").write_text("hello") and d / "fake.ogg", "fake.ogg: not an audio file"),
    (lambda d: (d / "x.pls").write_text("[playlist]\n") and d / "x.pls", "x.pls: no FileN= entries"),
])
def test_bad_music_paths_are_one_line_naming_them(tmp_path, make, expect):
    (tmp_path / "empty").mkdir()
    path = make(tmp_path)
    with pytest.raises(InputError) as e:
        resolve_music([path])
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and msg.startswith("music: ") and e.value.field == "music"


# ------------------------------------------------------------------------------------------------------------------
# Decoding, resampling, loudness
# ------------------------------------------------------------------------------------------------------------------
def test_decode_resamples_and_normalises_loudness(tmp_path):
    for path in (OGG, FLAC):
        t = resolve([path])[0]
        d = decode_track(t, SR, -30.0, 20.0)
        assert d.frames.dtype == np.float32 and d.frames.shape[1] == 2 and not d.frames.flags.writeable
        assert abs(d.frames.shape[0] - t.frames * SR / t.samplerate) <= 1
        # BS.1770 loudness of what the ring will hold is the target (measured again at the output rate).
        assert abs(integrated_lufs(d.frames, SR) - (-30.0)) < 0.3, path
    mono = decode_track(resolve([FLAC])[0], SR, -30.0, 20.0).frames
    assert np.array_equal(mono[:, 0], mono[:, 1])


def test_mp3_decodes(tmp_path):
    x, sr = sf.read(OGG, dtype="float32")
    mp3 = tmp_path / "t.mp3"
    sf.write(mp3, x[: 3 * sr], sr, format="MP3", subtype="MPEG_LAYER_III")
    d = decode_track(resolve([mp3])[0], SR, -30.0, 20.0)
    assert d.frames.shape[0] > 2.9 * SR and abs(integrated_lufs(d.frames, SR) + 30.0) < 0.5


def test_stream_is_gapless_in_order_repeats_and_independent_of_chunking():
    tracks = resolve([FLAC, OGG])
    a = decode_track(tracks[0], SR, -30.0, 20.0).frames
    b = decode_track(tracks[1], SR, -30.0, 20.0).frames
    expect = np.concatenate([a, b, a, b])
    for step in (1000, 7777, 300000):
        src = MusicSource(tracks, SR, -30.0)
        got = np.zeros_like(expect)
        i = 0
        while i < len(got):
            i += src.read_into(got[i:i + step])
        assert np.array_equal(got, expect), step  # end to end, no gap, same samples however it is read
    once = MusicSource(tracks, SR, -30.0, MusicSettings(once=True))
    buf = np.zeros((len(a) + len(b) + 1000, 2), np.float32)
    assert once.read_into(buf) == len(a) + len(b) and once.ended


# ------------------------------------------------------------------------------------------------------------------
# The mix
# ------------------------------------------------------------------------------------------------------------------
def _plan(bank, **kw):
    return plan_music([OGG, FLAC], bank, 170.0, 4, SR, MusicSettings(**kw))


def test_music_under_clicks_and_cues_real_music():
    """Issue 17's must-show: music audible between the clicks for the whole session, ducked by the set amount
    under every cue, clicks on their exact samples (the render without music has the same onsets), peak under
    the ceiling."""
    tm, es, bank, requests = _session(40.0)
    mplan = _plan(bank)
    with_music, eng = _run(tm, es, bank, requests, mplan)
    without, eng0 = _run(tm, es, bank, requests)
    ev, ev0 = eng.drain_events(), eng0.drain_events()
    assert [(e.kind, e.sample) for e in ev] == [(e.kind, e.sample) for e in ev0]  # same beats, same cues
    cues = [e.sample for e in ev if e.kind == "cue"]
    assert len(cues) == len(requests)
    ceiling = np.float32(db_to_gain(es.ceiling_dbfs))
    assert float(np.max(np.abs(with_music))) <= ceiling and eng.peak <= db_to_gain(es.ceiling_dbfs)

    # What the ring held: the same stream, read straight from the source.
    stream = np.zeros((tm.end_sample, 2), np.float32)
    mplan.source(SR).read_into(stream)
    coach = db_to_gain(mplan.settings.coach_gain_db)
    music = with_music.astype(np.float64) - without.astype(np.float64) * coach  # the music's share
    clean = eng.st[K.ST_LIMITED] == 0  # no limiter action: the share is exactly music x duck gain
    assert clean, eng.st[K.ST_LIMITED]

    # Audible between the clicks, everywhere (the 14.5 s playlist repeats to the end of the 40 s session).
    beats = [e.sample for e in ev if e.kind == "beat"]
    for b0, b1 in zip(beats[:-1], beats[1:]):
        gap = music[b0 + int(0.03 * SR):b1, 0]
        assert np.sqrt(np.mean(gap ** 2)) > db_to_gain(-60.0), b0  # music playing in every inter-click gap

    def gain_db(a, b):
        seg, ref = music[a:b], stream[a:b].astype(np.float64)
        return 10 * math.log10(np.sum(seg ** 2) / np.sum(ref ** 2))

    cue_len = bank.lengths[bank.index("cue")]
    for c in cues:
        # Ducked: from 7 attack time constants after the cue's start to its end.
        assert abs(gain_db(c + int(7 * 0.020 * SR), c + cue_len) - (-10.0)) < 0.1, c
        # Smooth ramps: the gain falls within the first 100 ms, monotonically, no step.
        g = music[c:c + int(0.1 * SR), 0] / np.where(np.abs(stream[c:c + int(0.1 * SR), 0]) > 1e-4,
                                                     stream[c:c + int(0.1 * SR), 0], np.nan)
        g = g[np.isfinite(g)]
        assert g[0] > 0.9 and g[-1] < 0.33 and np.all(np.diff(g) <= 1e-4)
        # Back to full level 7 release time constants after the cue.
        assert abs(gain_db(c + cue_len + int(7 * 0.25 * SR), c + cue_len + int(8 * 0.25 * SR))) < 0.1, c
    # Clicks on their exact samples: around every beat away from the cues, the output is best explained as
    # (music stream x a gain) + (the beat's click clip starting exactly on the beat sample) - shifted by one
    # sample either way, the fit is far worse.
    checked = 0
    for e in [e for e in ev if e.kind == "beat"][1:-1]:
        if any(c - 0.1 * SR < e.sample < c + cue_len + 2.0 * SR for c in cues):
            continue
        c = bank.index(e.clip)
        click = bank.data[bank.offsets[c]:bank.offsets[c] + bank.lengths[c]].astype(np.float64)
        a, b = e.sample - 16, e.sample + len(click) + 16
        y = with_music[a:b, 0].astype(np.float64)
        err = {}
        for lag in (-1, 0, 1):
            shifted = np.zeros(b - a)
            shifted[16 + lag:16 + lag + len(click)] = click
            A = np.stack([stream[a:b, 0].astype(np.float64), shifted], axis=1)
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            err[lag] = float(np.sum((A @ coef - y) ** 2))
        assert err[0] < 1e-9 and err[0] * 100 < min(err[-1], err[1]), (e.sample, err)
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("blocksize", BLOCK_SIZES)
def test_bit_identical_for_any_block_size_with_music(blocksize):
    tm, es, bank, requests = _session(6.0, cue_every_s=2.0)
    mplan = _plan(bank)
    ref, _ = _run(tm, es, bank, requests, mplan, None)
    got, eng = _run(tm, es, bank, requests, mplan, blocksize)
    assert np.array_equal(got, ref)
    assert eng.music_underruns == 0


def test_render_with_music_is_bit_identical_for_any_block_size(tmp_path):
    tm, es, bank, requests = _session(4.0, cue_every_s=1.5)
    mplan = _plan(bank)
    ref = None
    for bs in BLOCK_SIZES:
        out = tmp_path / f"r{bs}.wav"
        res = render(tm, str(out), es, bank=bank, cue_requests=requests, music=mplan, blocksize=bs,
                     subtype="FLOAT")
        x = sf.read(out, dtype="float32")[0]
        if ref is None:
            ref = x
            direct, _ = _run(tm, es, bank, requests, mplan, frames=len(x))
            assert np.array_equal(x, direct)  # the renderer is the engine path, ring filled per chunk
        assert np.array_equal(x, ref), bs
        assert res.music["underruns"] == 0 and res.music["tracks"][0]["path"].endswith(OGG.name)


def test_underrun_plays_silence_for_the_music_and_counts_it_clicks_untouched():
    tm, es, bank, requests = _session(5.0, cue_every_s=2.0)
    mplan = _plan(bank)
    eng = Engine(tm, es, bank, stop_beats_at=tm.end_sample, music=mplan.settings, music_frames=SR)
    ring = MusicRing(eng, mplan.source(SR))
    ring.fill(until_written=SR)  # one second of music, then the writer "stalls"
    eng.queue_cues(requests, 0, tm.end_sample)
    out = np.zeros((tm.end_sample, 2), np.float32)
    eng.process(out, 128)
    ref, _ = _run(tm, es, bank, requests, silent_music=mplan.settings)
    assert eng.music_underruns == tm.end_sample - SR
    # After the ring ran dry the output is exactly the render without music: the clicks and cues never glitch.
    assert np.array_equal(out[SR:], ref[SR:])
    assert not np.array_equal(out[:SR], ref[:SR])


def test_music_once_ends_without_underruns():
    tm, es, bank, requests = _session(20.0, cue_every_s=5.0)
    mplan = _plan(bank, once=True)
    out, eng = _run(tm, es, bank, requests, mplan)
    ref, _ = _run(tm, es, bank, requests, silent_music=mplan.settings)
    n = sum(t.frames * SR // t.samplerate for t in mplan.tracks)
    assert eng.music_underruns == 0
    assert np.array_equal(out[n + 10:], ref[n + 10:])  # silence for the music after the playlist's end


def test_click_level_sets_the_music_loudness_under_the_clicks():
    bank = click_bank(SR)
    p0, p6 = _plan(bank), _plan(bank, click_level_db=6.0)
    assert abs(p0.target_lufs - p0.click_lufs) < 1e-9 and abs(p6.click_lufs - p6.target_lufs - 6.0) < 1e-9
    a = decode_track(p6.tracks[0], SR, p6.target_lufs, 20.0, p6.max_peak).frames
    assert abs(integrated_lufs(a, SR) - (p0.click_lufs - 6.0)) < 0.3


def test_cli_render_with_music_and_bad_music_path(tmp_path):
    import json
    import subprocess
    import sys

    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 100, grade_pct: -10}]")
    out = tmp_path / "o.wav"
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", str(course), "-o", str(out), "--no-cues",
                        "--json", "--music", str(OGG), "--music", str(FLAC), "--click-level", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["music"]["underruns"] == 0 and len(s["music"]["tracks"]) == 2
    assert abs(s["music"]["click_lufs"] - s["music"]["target_lufs"] - 3.0) < 0.02
    bad = tmp_path / "list.m3u"
    bad.write_text("missing.flac\n")
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", str(course), "-o", str(tmp_path / "b.wav"),
                        "--music", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "list.m3u:1" in r.stderr
    assert r.stderr.startswith("downbeat: error: --music: ") and not (tmp_path / "b.wav").exists()


def test_a_missing_extra_is_one_line_naming_the_field_and_the_extra():
    from metronome.errors import InputError, require_modules

    require_modules(("os", "json"), "music", "music")  # all there: nothing raised
    with pytest.raises(InputError) as exc:
        require_modules(("os", "no_such_module_x"), "musicsync", "music_sync")
    assert str(exc.value) == ("music_sync: no-such-module-x not installed; install Downbeat with its musicsync extra: "
                              "pip install 'downbeat[musicsync]'")
    assert exc.value.field == "music_sync"
