"""``--music-sync`` (beats on the steps, stretch within its limit, same stream however it is read) and ``--clicks``
(issue 17).  The 20-minute figure is benchmarks/bench_music_sync.py; here 90 s of a ramping tempo map."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("librosa")
pytest.importorskip("python_stretch")

from metronome.errors import InputError  # noqa: E402
from metronome.mix import EngineSettings, click_bank, click_gain  # noqa: E402
from metronome.music.beats import Beats, alignment_ms, analyse  # noqa: E402
from metronome.music.plan import plan_music, resolve_music  # noqa: E402
from metronome.music.sync import best_meter, plan_sync, plan_track  # noqa: E402
from metronome.render import render  # noqa: E402
from metronome.settings import SOFT_CLICK_DB, MusicSettings  # noqa: E402
from metronome.tempo import TempoMap  # noqa: E402

from tests.support.cli import run_main  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "music"
OGG = DATA / "race1-jt-excerpt.ogg"  # ~125 bpm
FLAC = DATA / "chromium-bsu-music-game.flac"  # ~147 bpm
SR = 48000


@pytest.fixture(autouse=True)
def _beat_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _ramp_map(seconds=90.0):
    """134 -> 140 -> 136 spm (a descent and back), the range the two test tracks can both follow."""
    s = seconds * SR
    return TempoMap([0, 0.3 * s, 0.5 * s, 0.8 * s, s], [134.0, 134.0, 140.0, 136.0, 136.0], SR, end_sample=int(s))


def _sync_plan(tm, es, paths=(FLAC, OGG), **kw):
    ms = MusicSettings(sync=True, **kw)
    bank = click_bank(SR, settings=es)
    mp = plan_music(resolve_music(paths, ms), bank, float(tm.bpm[0]), es.accent_every, SR, ms, es.ceiling_dbfs,
                    click_gain(es))
    return mp.with_sync(tm), bank


def test_synced_music_beats_fall_on_the_clicks_and_no_track_is_stretched_beyond_its_limit(tmp_path):
    tm = _ramp_map()
    es = EngineSettings(samplerate=SR, clicks="off")
    mp, bank = _sync_plan(tm, es)
    # Least stretching first: chromium (147 bpm) needs ~+7 % at ~137 spm, race1 (125 bpm) ~-9 %.
    assert [Path(mp.tracks[t.index].path).name for t in mp.sync.tracks] == \
        [FLAC.name, OGG.name]
    res = render(tm, str(tmp_path / "s.wav"), es, bank=bank, music=mp, keep_events=True)
    rows = res.music["tracks"]
    assert len(rows) == 2 and res.music["underruns"] == 0
    for r in rows:
        assert 0.9 - 1e-9 <= r["stretch_min"] <= r["stretch_max"] <= 1.1 + 1e-9, r
        assert r["meter"] == "same"
    clicks = np.array([e.sample for e in res.events if e.kind == "beat"])
    audio, _ = sf.read(tmp_path / "s.wav", dtype="float32", always_2d=True)
    d = alignment_ms(audio[:tm.end_sample], SR, clicks)
    assert d.size > 0.9 * clicks.size
    assert np.median(np.abs(d)) < 20.0, np.median(np.abs(d))
    # The music is there between the (silent) clicks: no gap longer than one step but the ends of tracks.
    rms = np.sqrt(np.mean(audio[:tm.end_sample, 0].reshape(-1, SR // 2) ** 2, axis=1))
    assert np.mean(rms > 1e-4) > 0.95


def test_unsynced_music_is_not_on_the_clicks():
    """The check can fail: the same tracks unstretched drift off the clicks."""
    from metronome.music.source import MusicSource

    tm = _ramp_map(40.0)
    es = EngineSettings(samplerate=SR)
    mp, _ = _sync_plan(tm, es, paths=(OGG,))
    src = MusicSource(mp.tracks, SR, mp.target_lufs, mp.settings, max_peak=mp.max_peak)
    x = np.zeros((tm.end_sample, 2), np.float32)
    src.read_into(x)
    d = alignment_ms(x, SR, tm.beat_samples())
    assert np.median(np.abs(d)) > 20.0


def test_synced_stream_is_the_same_however_it_is_read():
    tm = _ramp_map(30.0)
    es = EngineSettings(samplerate=SR)
    mp, _ = _sync_plan(tm, es)
    n = 30 * SR
    whole = np.zeros((n, 2), np.float32)
    assert mp.source(SR).read_into(whole) == n
    for chunk in (1000, 4097, 65536):
        src = mp.source(SR)
        parts = np.zeros((n, 2), np.float32)
        done = 0
        while done < n:
            done += src.read_into(parts[done:min(n, done + chunk)])
        assert np.array_equal(whole, parts), chunk
    assert np.max(np.abs(whole)) <= mp.max_peak


def test_render_with_sync_is_bit_identical_for_any_block_size(tmp_path):
    tm = _ramp_map(12.0)
    es = EngineSettings(samplerate=SR)
    mp, bank = _sync_plan(tm, es)
    outs = []
    for bs in (64, 8193):
        p = tmp_path / f"b{bs}.wav"
        render(tm, str(p), es, bank=bank, music=mp, blocksize=bs)
        outs.append(sf.read(p, dtype="int16")[0])
    assert np.array_equal(outs[0], outs[1])


def test_beats_are_cached_by_content_and_identical_from_the_cache(tmp_path):
    a = analyse(str(FLAC))
    cached = list((tmp_path / "cache" / "downbeat" / "beats").glob("*.json"))
    assert len(cached) == 1
    b = analyse(str(FLAC))
    assert np.array_equal(a.times_s, b.times_s) and a.tempo_bpm == b.tempo_bpm
    assert 140 < a.tempo_bpm < 150


def test_meters_and_tracks_left_out():
    assert best_meter(170.0, 170.0)[:2] == (1, 1)
    assert best_meter(88.0, 172.0)[:2] == (2, 1)  # half time: one beat every two steps
    assert best_meter(340.0, 168.0)[:2] == (1, 2)  # double time
    tm = TempoMap.constant(170.0, SR, 20.0)

    class T:
        def __init__(self, path):
            self.path = path

    tempos = {"a": 168.0, "b": 125.0, "c": 176.0, "d": 0.0}

    def fake(path):
        return Beats(np.arange(0.0, 10.0, 60.0 / max(tempos[path], 1.0)), tempos[path])

    warnings = []
    sp = plan_sync([T("a"), T("b"), T("c"), T("d")], tm, MusicSettings(sync=True), analyse=fake,
                   warn=warnings.append)
    assert [t.index for t in sp.tracks] == [0, 2]  # a (-1 %) before c (+3.5 %); b and d left out
    assert len(warnings) == 2 and "125.0 bpm" in warnings[0] and "no steady beat" in warnings[1]
    with pytest.raises(InputError) as e:
        plan_sync([T("b")], tm, MusicSettings(sync=True), analyse=fake)
    assert e.value.field == "music_sync"


def test_a_missed_beat_is_absorbed_and_every_piece_stays_within_the_limit():
    clicks = np.arange(0, 200) * 16000.0  # 180 spm at 48 kHz
    beats = np.arange(0, 150) * 16500.0  # a bit slower: needs ~-3 %
    beats = np.delete(beats, 40)  # the tracker missed one
    pieces = plan_track(beats, int(beats[-1]) + 20000, 1, 1, clicks, 1000.0, 0.10, 16000 / 16500, 3 * SR)
    assert all(0.9 - 1e-9 <= p.ratio <= 1.1 + 1e-9 for p in pieces)
    assert pieces[0].y0 >= 1000.0 and not pieces[0].fade_in and not pieces[-1].fade_out
    assert all(abs(a.y1 - b.y0) < 1e-6 and abs(a.x1 - b.x0) < 1e-6 for a, b in zip(pieces, pieces[1:]))
    # Every piece boundary but the track's own start and end is a beat on a click.
    inner = [p.y0 for p in pieces[1:]]
    on_click = [min(abs(clicks - y)) < 1e-6 for y in inner]
    assert np.mean(on_click) > 0.9


def _click_windows(tm, bank, kind_len=0.03):
    return [(int(b), int(b) + int(kind_len * SR)) for b in tm.beat_samples()]


@pytest.mark.parametrize("mode", ["soft", "off"])
def test_clicks_soft_is_12_db_down_and_off_is_silent_with_cues_still_spoken(tmp_path, mode):
    tm = TempoMap.constant(170.0, SR, 12.0)
    rng = np.random.default_rng(3)
    cue = (rng.standard_normal(int(1.0 * SR)) * 0.2 * np.hanning(int(1.0 * SR))).astype(np.float32)
    outs = {}
    for m in ("on", mode):
        es = EngineSettings(samplerate=SR, clicks=m)
        bank = click_bank(SR, [("cue", cue)], es)
        p = tmp_path / f"{m}.wav"
        res = render(tm, str(p), es, bank=bank, cue_requests=[(bank.index("cue"), 4 * SR)], subtype="FLOAT",
                     keep_events=True)
        outs[m] = (sf.read(p, dtype="float32", always_2d=True)[0][:, 0], res)
    on, res_on = outs["on"]
    x, res = outs[mode]
    assert res.beats == res_on.beats and res.cues == res_on.cues == 1
    cue_at = next(e.sample for e in res.events if e.kind == "cue")
    quiet = [(a, b) for a, b in _click_windows(tm, None) if b < cue_at or a > cue_at + SR]
    peak_on = max(np.max(np.abs(on[a:b])) for a, b in quiet)
    peak = max(np.max(np.abs(x[a:b])) for a, b in quiet)
    if mode == "off":
        assert peak == 0.0
    else:
        assert abs(20 * math.log10(peak / peak_on) - SOFT_CLICK_DB) < 0.01
    assert np.max(np.abs(x[cue_at:cue_at + SR])) > 0.05  # the cue still plays


def test_cli_music_sync_and_clicks_flags(tmp_path, capsys):
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 100, grade_pct: -10}]")
    code, _, err = run_main(["render", course, "-o", tmp_path / "a.wav", "--music-sync"], capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "--music-sync" in err and "--music" in err
    code, _, err = run_main(["render", course, "-o", tmp_path / "a.wav", "--clicks", "loud"], capsys)
    assert code == 2 and "--clicks" in err
    code, out, err = run_main(["render", course, "-o", tmp_path / "a.wav", "--no-cues", "--json", "--music", FLAC,
                               "--music-sync", "--base-cadence", "145", "--clicks", "soft", "--quiet"], capsys)
    assert code == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    (row,) = s["music"]["tracks"]
    assert row["meter"] == "same" and 0.9 <= row["stretch_min"] <= row["stretch_max"] <= 1.1


def test_a_resumed_session_starts_the_synced_music_on_the_clicks_there():
    tm = _ramp_map(60.0)
    es = EngineSettings(samplerate=SR)
    start = 37 * SR + 1234  # mid-course, between two clicks
    mp, _ = _sync_plan(tm, es, paths=(FLAC,))
    mp = mp.with_sync(tm, start_sample=start)
    n = 20 * SR
    x = np.zeros((n, 2), np.float32)
    mp.source(SR).read_into(x)
    clicks = tm.beat_samples()
    d = alignment_ms(x, SR, clicks[clicks >= start] - start)
    assert d.size > 20 and np.median(np.abs(d)) < 20.0


def test_music_sync_needs_a_tempo_known_ahead():
    from types import SimpleNamespace

    from metronome.cli.music_options import music_plan, music_tracks

    tm = TempoMap.constant(145.0, SR, 20.0)
    es = EngineSettings(samplerate=SR)
    checked = music_tracks((str(FLAC),), False, 0.0, -10.0, True)
    live = SimpleNamespace(engine_settings=es, bank=click_bank(SR, settings=es), tempo_map=tm, live=True)
    with pytest.raises(InputError, match="--music-sync: the tempo follows a live feed"):
        music_plan(checked, live)
    course = SimpleNamespace(engine_settings=es, bank=click_bank(SR, settings=es), tempo_map=tm, live=False)
    assert music_plan(checked, course).sync is not None


def test_render_follow_refuses_clicks_and_music_instead_of_ignoring_them(tmp_path, capsys):
    code, _, err = run_main(["render", "demo-descent", "-o", tmp_path / "f.wav", "--follow", "replay:x.gpx",
                             "--clicks", "off"], capsys)
    assert code == 2 and "--follow" in err and "--clicks" in err and err.strip().count("\n") == 0
