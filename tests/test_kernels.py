"""Tempo map and audio kernel against the naive references; block-size invariance; ceiling."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from metronome import _kernels as K
from metronome.engine import Engine
from metronome.mix import ClipBank, EngineSettings, click_bank, default_clicks
from metronome.errors import InputError
from metronome.tempo import TempoMap, TempoSettings, cadence_factor, target_cadence

from tests.support import naive

SR = 48000
BLOCK_SIZES = [1, 64, 65, 128, 8192, 8193]


def run_engine(engine, frames, blocksize, cue_requests=()):
    out = np.zeros((frames, engine.settings.channels), dtype=np.float32)
    requests = sorted(cue_requests, key=lambda r: r[1])
    done = 0
    ri = 0
    while done < frames:
        n = min(blocksize, frames - done)
        while ri < len(requests) and requests[ri][1] < done + n:
            assert engine.request_cue(*requests[ri])
            ri += 1
        engine.process(out[done:done + n])
        done += n
    return out


tempo_maps = st.lists(
    st.tuples(st.floats(0.05, 4.0), st.floats(40.0, 240.0)), min_size=1, max_size=6
).map(lambda segs: (np.concatenate([[0.0], np.cumsum([round(d * SR) for d, _ in segs])]),
                    np.array([segs[0][1]] + [b for _, b in segs])))


# ---------------------------------------------------------------------------------------------------------------
# Tempo model
# ---------------------------------------------------------------------------------------------------------------
def test_default_model_matches_design_formula():
    s = TempoSettings()
    assert cadence_factor(0.0) == 1.0
    assert cadence_factor(-2.0) == 1.0  # dead zone
    assert cadence_factor(-10.0) == pytest.approx(1.04)  # 1 + 0.005 * 8
    assert cadence_factor(-40.0) == pytest.approx(1.08)  # capped
    assert cadence_factor(12.0) == pytest.approx(0.98)  # 1 - 0.005 * 4
    assert cadence_factor(40.0) == pytest.approx(0.94)
    assert target_cadence(-10.0, s) == pytest.approx(176.8)
    assert cadence_factor(-40.0, TempoSettings(upper_cap=1.10)) == pytest.approx(1.10)
    with pytest.raises(InputError, match="^upper_cap: "):
        TempoSettings(upper_cap=1.2)


def test_tempo_map_is_immutable():
    tm = TempoMap([0, SR], [170, 180], SR)
    with pytest.raises(AttributeError):
        tm.samplerate = 44100
    with pytest.raises(ValueError):
        tm.bpm[0] = 1.0


@pytest.mark.parametrize("sample,bpm,msg", [
    ([0, 0], [170, 170], "strictly increasing"),
    ([1, 2], [170, 170], "sample 0"),
    ([0, 10], [170, float("nan")], "bpm"),
    ([0, 10], [170, -3], "bpm"),
])
def test_tempo_map_rejects_bad_breakpoints(sample, bpm, msg):
    with pytest.raises(InputError, match=msg):
        TempoMap(sample, bpm, SR)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tempo_maps)
def test_beat_times_equal_naive_integral(tm_data):
    sample, bpm = tm_data
    tm = TempoMap(sample, bpm, SR)
    fast = tm.beat_times()
    ref = naive.beat_times(sample, bpm, SR, tm.end_sample)
    # A beat exactly on the end boundary is excluded by the kernel; bisection may land 1e-8 before it.
    edge = tm.end_sample - 1e-6
    fast, ref = fast[fast < edge], ref[ref < edge]
    assert len(fast) == len(ref)
    np.testing.assert_allclose(fast, ref, atol=1e-4)
    # Clicks start at the analytic time rounded to a sample.
    naive.assert_rounded(np.floor(fast + 0.5).astype(np.int64), ref)


# ---------------------------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tempo_maps, st.integers(0, 5))
def test_click_onsets_at_analytic_beat_samples(tm_data, accent_every):
    sample, bpm = tm_data
    tm = TempoMap(sample, bpm, SR)
    eng = Engine(tm, EngineSettings(channels=1, accent_every=accent_every), stop_beats_at=tm.end_sample)
    out = run_engine(eng, tm.end_sample + SR // 10, 4096)
    expected = tm.beat_samples()
    assert np.array_equal(naive.onsets(out), expected)
    events = eng.drain_events()
    assert [e.sample for e in events if e.kind == "beat"] == expected.tolist()
    accents = [e.sample for e in events if e.clip == "accent"]
    want = expected[::accent_every].tolist() if accent_every else []
    assert accents == want


def test_kernel_matches_naive_mixer_with_cues_and_limiter():
    """Dense clicks + a loud cue overlapping them: the per-sample reference and the kernel agree."""
    tm = TempoMap([0, SR, 2 * SR], [170, 200, 150], SR)
    accent, normal = default_clicks(SR)
    t = np.arange(int(0.6 * SR)) / SR
    cue = (0.49 * np.sin(2 * np.pi * 300 * t) * np.hanning(t.size)).astype(np.float32)
    bank = ClipBank.build([("accent", accent), ("normal", normal), ("cue", cue)])
    es = EngineSettings(channels=1)
    eng = Engine(tm, es, bank, stop_beats_at=tm.end_sample)
    frames = tm.end_sample + SR // 2
    requests = [(2, 20000), (2, 60000)]
    out = run_engine(eng, frames, 777, requests)[:, 0]
    ref = naive.render(tm.beat_samples(), frames, [bank.data[o:o + n] for o, n in zip(bank.offsets, bank.lengths)],
                       4, eng.ctl[K.CT_CEILING], requests, duck=eng.ctl[K.CT_DUCK])
    np.testing.assert_allclose(out, ref, atol=2e-7)
    assert eng.st[K.ST_LIMITED] > 0, "the loud cue must have engaged the limiter"
    assert np.max(np.abs(out)) <= np.float32(eng.ctl[K.CT_CEILING])


@pytest.mark.parametrize("live", [False, True])
def test_bit_identical_for_any_block_size(live):
    tm = TempoMap([0, SR * 2, SR * 4, SR * 6], [170, 185, 185, 160], SR)
    bank = click_bank(SR, [("cue", (0.3 * np.sin(np.arange(20000) / 9.0)).astype(np.float32))])
    outs = []
    for bs in BLOCK_SIZES:
        eng = Engine(tm, EngineSettings(channels=2), bank, live=live, stop_beats_at=tm.end_sample)
        eng.set_target_bpm(190.0)
        outs.append(run_engine(eng, tm.end_sample, bs, [(2, 30000), (2, 150000)]))
    for bs, o in zip(BLOCK_SIZES[1:], outs[1:]):
        assert np.array_equal(outs[0], o), f"blocksize {bs} differs from blocksize 1"
    assert np.count_nonzero(outs[0]) > 0


def test_live_mode_slews_at_most_limit_per_beat_and_stays_in_bounds():
    tm = TempoMap.constant(170, SR, 60)
    eng = Engine(tm, EngineSettings(channels=1), live=True, max_change_per_beat=0.004, min_bpm=160, max_bpm=183.6)
    eng.set_target_bpm(400.0)  # absurd target: clamped to max_bpm
    out = run_engine(eng, 30 * SR, 128)
    beats = np.array([e.sample for e in eng.drain_events() if e.kind == "beat"])
    assert np.array_equal(naive.onsets(out), beats)
    bpm = 60.0 * SR / np.diff(beats)
    rel = np.abs(np.diff(bpm)) / bpm[:-1]
    assert rel.max() <= 0.004 * 1.02 + 1 / 16000  # rounding of beats to samples adds < 1/interval
    assert bpm.max() <= 183.6 * 1.0005
    assert bpm[-1] == pytest.approx(183.6, rel=1e-3)


def test_cue_starts_on_first_beat_at_or_after_request():
    tm = TempoMap.constant(120, SR, 10)  # a beat every 24000 samples
    bank = click_bank(SR, [("cue", np.full(1000, 0.1, np.float32))])
    eng = Engine(tm, EngineSettings(channels=1), bank)
    run_engine(eng, 5 * SR, 512, [(2, 24001), (2, 96000)])
    cues = [e.sample for e in eng.drain_events() if e.kind == "cue"]
    assert cues == [48000, 96000]


def test_ducking_lowers_clicks_during_speech_by_6db():
    tm = TempoMap.constant(120, SR, 10)
    bank = ClipBank.build([*zip(("accent", "normal"), default_clicks(SR)),
                           ("cue", np.zeros(3 * SR, np.float32) + np.float32(1e-9))])
    eng = Engine(tm, EngineSettings(channels=1), bank)
    out = run_engine(eng, 4 * SR, 1024, [(2, SR)])[:, 0]
    clean_peak = np.abs(out[0:1000]).max()  # accent at 0, no speech
    ducked_peak = np.abs(out[2 * SR:2 * SR + 1000]).max()  # accent at beat 4 (sample 96000) under speech
    assert 20 * math.log10(ducked_peak / clean_peak) == pytest.approx(-6.0, abs=0.1)


def test_volume_never_above_unity_and_gain_changes_are_smooth():
    tm = TempoMap.constant(170, SR, 5)
    eng = Engine(tm, EngineSettings(channels=1))
    eng.set_gain(4.0)  # clamped to 1
    assert eng.ctl[K.CT_GAIN] == 1.0
    a = run_engine(eng, SR, 256)
    eng.set_gain(0.0)
    b = run_engine(eng, SR, 256)[:, 0]
    # Fading to zero takes several ms (no step), then silence.
    assert np.abs(b[-SR // 2:]).max() == 0.0
    assert np.abs(a).max() <= 0.9 * 10 ** (-6 / 20) + 1e-6  # the accent, just under the -6 dBFS ceiling
    with pytest.raises(InputError, match="^volume_db: "):
        EngineSettings(volume_db=3.0)


def test_cue_ring_full_reports_false_and_bad_clip_is_dropped_not_crashing():
    tm = TempoMap.constant(170, SR, 5)
    eng = Engine(tm, EngineSettings(channels=1))
    for i in range(eng.cue_q.shape[0]):
        assert eng.request_cue(1, 0)
    assert not eng.request_cue(1, 0)
    eng2 = Engine(tm, EngineSettings(channels=1))
    eng2.request_cue(99, 0)  # out-of-range clip id
    run_engine(eng2, SR, 64)
    kinds = [e.kind for e in eng2.drain_events()]
    assert "cue_dropped" in kinds and "beat" in kinds


def test_seek_resumes_exactly_where_an_uninterrupted_session_would_be():
    tm = TempoMap([0, SR * 3, SR * 6], [170, 180, 165], SR)
    whole = run_engine(Engine(tm, EngineSettings(channels=1)), 8 * SR, 1000)
    beats = tm.beat_samples(8 * SR)
    for p in [0, 12345, SR * 3 + 7, int(beats[20]), SR * 7]:
        eng = Engine(tm, EngineSettings(channels=1))
        eng.seek(p)
        part = run_engine(eng, 8 * SR - p, 999)
        # Identical from the first beat at or after the seek point (a click in flight at p is not replayed).
        first = int(beats[np.searchsorted(beats, p)])
        assert np.array_equal(part[first - p:], whole[first:])
        assert not part[:first - p].any()


def test_pcm16_conversion_is_byte_identical_to_libsndfile(tmp_path):
    """The renderer converts to PCM_16 itself; the file must be exactly what libsndfile writes from floats."""
    import soundfile as sf

    rng = np.random.default_rng(7)
    edges = np.array([0.0, -0.0, 1e-9, -1e-9, 0.5 / 32768, -0.5 / 32768, 1.5 / 32768, -1.5 / 32768, 0.999969,
                      -1.0, 1.0, 0.5011872, -0.5011872, 2.0, -2.0], dtype=np.float32)
    x = np.concatenate([edges, rng.uniform(-1.05, 1.05, 20000).astype(np.float32),
                        (rng.integers(-32768, 32767, 5000) / 32768.0).astype(np.float32)])
    x = np.stack([x, x[::-1]], axis=1).copy()
    ours = np.zeros(x.shape, np.int16)
    K.to_pcm16(x, ours)
    sf.write(tmp_path / "lib.wav", x, SR, subtype="PCM_16")
    sf.write(tmp_path / "ours.wav", ours, SR, subtype="PCM_16")
    assert (tmp_path / "lib.wav").read_bytes() == (tmp_path / "ours.wav").read_bytes()


def test_block_args_declaration_matches_process_block_signature():
    """The kernel's argument layout is declared once (K.BLOCK_ARGS); the render tuple and the callback's pointer
    table are built from it, so it must name process_block's parameters in order."""
    import inspect

    params = list(inspect.signature(K.process_block.py_func).parameters)
    assert params[0] == "out"
    assert [name for name, _, _ in K.BLOCK_ARGS] == params[1:]
    slots = sorted(K.BLOCK_SLOTS.values())
    assert len(set(slots)) == len(slots) and max(slots) < K.P_PARAMS < K.P_N
