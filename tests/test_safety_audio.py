"""Hearing safety (issue 7): properties of the audio kernel over random sessions.

The promises (DESIGN.md "Cue planner defaults"; README): the output peak never exceeds the configured ceiling,
whatever clicks and cues are mixed; Downbeat never applies positive gain; gain changes (start, stop, volume) and
cue boundaries (ducking) are smooth, so they never add a click or pop of their own.

The clip banks here are built directly with :meth:`ClipBank.build`, bypassing the level planning of
:func:`click_bank`: a voice pack or a future code path may hand the kernel full-scale noise, and the ceiling is
the last line of defence for the runner's ears.  Everything runs at low sample rates to stay fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metronome import _kernels as K
from metronome.engine import Engine
from metronome.mix import ClipBank, EngineSettings, default_clicks
from metronome.render import render
from metronome.errors import InputError
from metronome.tempo import TempoMap

from tests.support.fuzz import budget

SR = 8000
HYP = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def run_engine(engine: Engine, frames: int, blocks=(512,), actions=()) -> np.ndarray:
    """Drive ``engine`` for ``frames`` frames in blocks cycling through ``blocks``; return the mono output.

    Parameters
    ----------
    actions : iterable of (sample, callable(engine))
        Control-thread actions (``set_gain``, ``request_cue``) applied at the start of the block holding
        ``sample``; blocks are split there so an action lands on its exact sample.
    """
    acts = sorted(actions, key=lambda a: a[0])
    out = np.zeros(frames, dtype=np.float32)
    buf = np.zeros((max(blocks), engine.settings.channels), dtype=np.float32)
    pos, k, ai = 0, 0, 0
    while pos < frames:
        while ai < len(acts) and acts[ai][0] <= pos:
            acts[ai][1](engine)
            ai += 1
        n = min(blocks[k % len(blocks)], frames - pos)
        if ai < len(acts):
            n = min(n, acts[ai][0] - pos)
        view = buf[:n]
        engine.process(view)
        assert np.array_equal(view[:, 0], view[:, -1])  # every channel carries the same mix
        out[pos:pos + n] = view[:, 0]
        pos += n
        k += 1
    return out


def make_bank(rng: np.random.Generator, n_cues: int, loudness: float, max_len: int, clicks=None) -> ClipBank:
    """Clicks (default synthesized, else the given pair) plus ``n_cues`` random noise clips up to ``loudness``."""
    accent, normal = clicks if clicks is not None else default_clicks(SR, 0.9, 0.64)
    cues = []
    for i in range(n_cues):
        n = int(rng.integers(1, max_len + 1))
        x = rng.uniform(-1.0, 1.0, n) * loudness
        if n > 2 and rng.random() < 0.3:
            x[rng.integers(0, n)] = math.copysign(loudness, rng.uniform(-1, 1))  # a full-scale spike
        cues.append((f"cue{i}", x.astype(np.float32)))
    return ClipBank.build([("accent", accent), ("normal", normal), *cues])


#: The smoothing the design promises (DESIGN.md: gain ramps, -6 dB ducking): written here, not read from the engine,
#: so that an engine whose smoothers became instant fails these tests instead of loosening their bounds.
GAIN_TAU_S = 0.005
DUCK_TAU_S = 0.010


def one_pole_coef(tau_s: float, samplerate: int) -> float:
    """Per-sample coefficient of a one-pole smoother with time constant ``tau_s``: the largest fraction of the
    remaining distance it may cover in one sample."""
    return 1.0 - math.exp(-1.0 / (tau_s * samplerate))


def ceiling_f32(ceiling_db: float) -> np.float32:
    return np.float32(10 ** (ceiling_db / 20))


# ----------------------------------------------------------------------------------------------------------------
# The ceiling
# ----------------------------------------------------------------------------------------------------------------
tempo_maps = st.lists(st.floats(30.0, 300.0), min_size=1, max_size=5).flatmap(
    lambda bpms: st.tuples(st.just(bpms), st.lists(st.integers(200, 3 * SR), min_size=len(bpms) - 1,
                                                    max_size=len(bpms) - 1)))


def build_map(spec) -> TempoMap:
    bpms, gaps = spec
    samples = np.concatenate([[0], np.cumsum(gaps)]).astype(np.float64) if gaps else np.array([0.0])
    if samples.size == 1:
        return TempoMap.constant(bpms[0], SR, 4.0)
    return TempoMap(samples, np.array(bpms), SR, end_sample=int(samples[-1]) + SR)


@settings(max_examples=budget(60), **HYP)
@given(tm_spec=tempo_maps, seed=st.integers(0, 2 ** 32 - 1), n_cues=st.integers(0, 6),
       loudness=st.sampled_from([0.1, 0.5, 0.99, 1.0]) | st.floats(0.0, 1.0),
       volume_db=st.floats(-60.0, 0.0), ceiling_db=st.floats(-60.0, 0.0), duck_db=st.floats(-40.0, 0.0),
       accent_every=st.integers(0, 64), loud_clicks=st.booleans(),
       blocks=st.lists(st.integers(1, 700), min_size=1, max_size=4),
       cue_times=st.lists(st.integers(0, 6 * SR), max_size=12))
def test_peak_never_exceeds_the_ceiling(tm_spec, seed, n_cues, loudness, volume_db, ceiling_db, duck_db,
                                        accent_every, loud_clicks, blocks, cue_times):
    rng = np.random.default_rng(seed)
    tm = build_map(tm_spec)
    es = EngineSettings(samplerate=SR, channels=2, ceiling_dbfs=ceiling_db, volume_db=volume_db, duck_db=duck_db,
                        accent_every=accent_every)
    clicks = None
    if loud_clicks:  # full-scale clicks with a DC offset: the worst a custom sound set could be
        clicks = (np.clip(rng.uniform(-1, 1, 400) + 0.5, -1, 1).astype(np.float32), np.ones(300, np.float32))
    bank = make_bank(rng, n_cues, loudness, 2 * SR, clicks)
    eng = Engine(tm, es, bank, stop_beats_at=tm.end_sample)
    actions = [(t, (lambda c: lambda e: e.request_cue(c, t))(2 + i % max(1, n_cues)))
               for i, t in enumerate(sorted(cue_times))] if n_cues else []
    frames = tm.end_sample + SR // 2
    out = run_engine(eng, frames, tuple(blocks), [(t, a) for t, a in actions])
    ceiling = ceiling_f32(ceiling_db)
    assert np.all(np.isfinite(out))
    assert np.abs(out).max() <= ceiling, (float(np.abs(out).max()), float(ceiling))
    assert eng.peak <= float(ceiling) * (1 + 1e-7)


@settings(max_examples=budget(15), **HYP)
@given(seed=st.integers(0, 2 ** 32 - 1), ceiling_db=st.floats(-60.0, 0.0), volume_db=st.floats(-60.0, 0.0),
       blocksize=st.integers(1, 5000))
def test_rendered_file_never_exceeds_the_ceiling(tmp_path_factory, seed, ceiling_db, volume_db, blocksize):
    """Through :func:`render` to a FLOAT WAV (bit-exact float32), with full-scale cue noise on many beats."""
    rng = np.random.default_rng(seed)
    tm = TempoMap.constant(float(rng.uniform(120, 200)), SR, 6.0)
    es = EngineSettings(samplerate=SR, ceiling_dbfs=ceiling_db, volume_db=volume_db)
    bank = make_bank(rng, 3, 1.0, SR)
    requests = [(int(rng.integers(2, 5)), int(t)) for t in np.sort(rng.integers(0, 5 * SR, 8))]
    out = tmp_path_factory.mktemp("r") / "out.wav"
    res = render(tm, str(out), es, bank=bank, cue_requests=requests, subtype="FLOAT", blocksize=blocksize)
    x, sr = sf.read(str(out), dtype="float32")
    assert sr == SR and res.cues > 0
    assert np.abs(x).max() <= ceiling_f32(ceiling_db)


# ----------------------------------------------------------------------------------------------------------------
# Never positive gain
# ----------------------------------------------------------------------------------------------------------------
@settings(max_examples=budget(30), **HYP)
@given(seed=st.integers(0, 2 ** 32 - 1), volume_db=st.floats(-60.0, 0.0), ceiling_db=st.floats(-30.0, 0.0),
       n_cues=st.integers(0, 4))
def test_output_is_never_louder_than_the_unity_gain_render(seed, volume_db, ceiling_db, n_cues):
    """Sample by sample, |out(volume)| <= |out(0 dB)|: volume only ever attenuates, limiter included (the
    limiter's gain at a lower volume is at least as high, but never by more than the volume took away)."""
    outs = []
    for vol in (0.0, volume_db):
        rng = np.random.default_rng(seed)
        tm = TempoMap.constant(float(rng.uniform(100, 250)), SR, 4.0)
        bank = make_bank(rng, n_cues, 1.0, SR)
        eng = Engine(tm, EngineSettings(samplerate=SR, ceiling_dbfs=ceiling_db, volume_db=vol), bank,
                     stop_beats_at=tm.end_sample)
        acts = [(int(t), (lambda c, t: lambda e: e.request_cue(c, t))(2 + i % n_cues, int(t)))
                for i, t in enumerate(np.sort(rng.integers(0, 3 * SR, 5)))] if n_cues else []
        outs.append(run_engine(eng, tm.end_sample + SR // 4, (333,), acts))
    unity, quieter = np.abs(outs[0]), np.abs(outs[1])
    assert np.all(quieter <= unity * (1 + 1e-6) + 1e-9), float(np.max(quieter - unity))


def test_set_gain_above_one_is_clamped_to_unity():
    tm = TempoMap.constant(170.0, SR, 2.0)
    ref = run_engine(Engine(tm, EngineSettings(samplerate=SR)), 2 * SR)
    loud = run_engine(Engine(tm, EngineSettings(samplerate=SR)), 2 * SR, actions=[(0, lambda e: e.set_gain(8.0))])
    assert np.array_equal(ref, loud)
    assert np.abs(ref).max() > 0.1  # the clicks are really there


@pytest.mark.parametrize("volume_db", [1e-9, 0.5, 6.0, math.inf, math.nan])
def test_positive_or_non_finite_volume_is_an_input_error(volume_db):
    with pytest.raises(InputError, match="^volume_db: "):
        EngineSettings(volume_db=volume_db)


@pytest.mark.parametrize("ceiling_db", [1e-9, 3.0, math.inf, -math.inf, math.nan])
def test_ceiling_above_full_scale_or_non_finite_is_an_input_error(ceiling_db):
    with pytest.raises(InputError, match="^ceiling_dbfs: "):
        EngineSettings(ceiling_dbfs=ceiling_db)


# ----------------------------------------------------------------------------------------------------------------
# Smooth gain: start, stop, volume changes
# ----------------------------------------------------------------------------------------------------------------
def envelope(out: np.ndarray, ref: np.ndarray, floor: float = 0.02, gap: int = 40):
    """Per-sample gain ``out / ref`` where the reference is loud enough to measure it, grouped into one run per
    click: a gain may jump in the silence between clicks (inaudible), never inside one.

    Samples near the tone's zero crossings are too quiet to measure, so a run bridges gaps shorter than ``gap``
    samples (5 ms at 8 kHz; clicks are >= 200 ms apart at 300 spm) and :func:`max_gain_step` divides each change
    by the distance between the measured samples.
    """
    ok = np.abs(ref) > floor
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap) + 1
    return [(run, out[run] / ref[run]) for run in np.split(idx, breaks)]


def max_gain_step(runs) -> float:
    """Largest per-sample change of the measured gain inside any run (divided by the samples between points)."""
    steps = [np.max(np.abs(np.diff(g)) / np.diff(i)) for i, g in runs if i.size > 1]
    return float(max(steps)) if steps else 0.0


def test_engine_starts_without_a_pop():
    """The first sample is the click's soft attack, not a step: under a tenth of the click's peak."""
    tm = TempoMap.constant(170.0, 48000, 1.0)
    out = run_engine(Engine(tm, EngineSettings()), 4800)
    peak = np.abs(out).max()
    assert peak > 0.1
    assert abs(out[0]) < 0.1 * peak
    # ...and the engine adds no step of its own to the click (unity gain, no limiter): output == clip.
    accent = Engine(tm, EngineSettings()).bank
    clip = accent.data[accent.offsets[0]:accent.offsets[0] + accent.lengths[0]]
    assert np.array_equal(out[:clip.size], clip)


@settings(max_examples=budget(25), **HYP)
@given(bpm=st.floats(60.0, 240.0), at_ms=st.floats(0.0, 20.0), target=st.sampled_from([0.0, 0.25, 0.5]),
       samplerate=st.sampled_from([8000, 44100, 48000]))
def test_set_gain_fades_over_milliseconds(bpm, at_ms, target, samplerate):
    """``set_gain`` (the stop fade, a volume change) moves the gain smoothly: the measured gain changes by at most
    ``gain_coef * |delta|`` per sample (a 5 ms one-pole), takes several ms, and settles within 50 ms."""
    tm = TempoMap.constant(bpm, samplerate, 1.0)
    beat = 0  # the fade starts inside the first (accent) click, where it can be measured
    at = beat + int(at_ms * samplerate / 1000)
    frames = int(0.2 * samplerate)
    ref = run_engine(Engine(tm, EngineSettings(samplerate=samplerate)), frames)
    eng = Engine(tm, EngineSettings(samplerate=samplerate))
    out = run_engine(eng, frames, actions=[(at, lambda e: e.set_gain(target))])
    runs = envelope(out, ref)
    bound = one_pole_coef(GAIN_TAU_S, samplerate) * (1.0 - target) * 1.02 + 2e-4
    assert max_gain_step(runs) <= bound, (max_gain_step(runs), bound)
    # The gain at the first measurable sample >= 1 ms after the change is still well above the target...
    one_ms = at + samplerate // 1000
    samples = np.concatenate([i for i, _ in runs])
    gains = np.concatenate([g for _, g in runs])
    later = np.flatnonzero(samples >= one_ms)
    if later.size:
        i0, g0 = samples[later[0]], gains[later[0]]
        if i0 < one_ms + samplerate // 1000:
            assert g0 > target + 0.5 * (1 - target), (i0, g0)  # not an instant jump
    # ...and the gain is at the target 50 ms later (a click there is exactly the reference times the target).
    settled = np.arange(at + samplerate // 20, frames)
    assert np.allclose(out[settled], ref[settled] * np.float32(target), atol=1e-6)


def test_stop_fade_reaches_silence():
    tm = TempoMap.constant(170.0, SR, 4.0)
    eng = Engine(tm, EngineSettings(samplerate=SR))
    out = run_engine(eng, 4 * SR, actions=[(int(0.5 * SR), lambda e: e.set_gain(0.0))])
    assert np.abs(out[:int(0.5 * SR)]).max() > 0.1
    assert np.abs(out[int(0.6 * SR):]).max() < 1e-6  # the clicks go on, silently


# ----------------------------------------------------------------------------------------------------------------
# Smooth ducking at cue boundaries
# ----------------------------------------------------------------------------------------------------------------
@settings(max_examples=budget(30), **HYP)
@given(bpm=st.floats(80.0, 240.0), duck_db=st.floats(-40.0, 0.0), cue_len_ms=st.integers(5, 2500),
       cue_at=st.integers(0, 3 * SR), blocksize=st.integers(1, 2048), accent_every=st.integers(0, 8),
       end_in_click=st.none() | st.tuples(st.integers(1, 6), st.integers(1, 200)))
def test_click_envelope_under_speech_changes_smoothly(bpm, duck_db, cue_len_ms, cue_at, blocksize, accent_every,
                                                      end_in_click):
    """A *silent* cue clip makes every output sample a click times the ducking gain, so ``out / clicks-only``
    is the ducking envelope itself.  Inside every click it must move smoothly (a 10 ms one-pole), stay within
    [duck, 1], and be exactly ``duck`` for clicks fully under speech.  A jump is allowed only between clicks
    (e.g. the instant duck on the beat that starts the cue, where the click itself starts at ~0)."""
    tm = TempoMap.constant(bpm, SR, 5.0)
    es = EngineSettings(samplerate=SR, ceiling_dbfs=0.0, duck_db=duck_db, accent_every=accent_every)
    accent, normal = default_clicks(SR, 0.9, 0.64)
    n_cue = max(1, cue_len_ms * SR // 1000)
    if end_in_click is not None:
        # The hard case: speech ends k beats after it starts, `offset` samples into a click (the release).
        k, offset = end_in_click
        n_cue = int(round(k * 60.0 * SR / bpm)) + offset
    silent = np.zeros(n_cue, np.float32)
    bank = ClipBank.build([("accent", accent), ("normal", normal), ("cue", silent)])
    frames = 5 * SR
    ref = run_engine(Engine(tm, es, bank), frames, (blocksize,))
    eng = Engine(tm, es, bank)
    out = run_engine(eng, frames, (blocksize,), [(cue_at, lambda e: e.request_cue(2, cue_at))])
    assert eng.st[K.ST_LIMITED] == 0  # the limiter did not touch these levels: the ratio is the duck alone
    runs = envelope(out, ref)
    duck = 10 ** (duck_db / 20)
    gains = np.concatenate([g for _, g in runs])
    assert gains.min() >= duck * (1 - 1e-4) - 1e-5 and gains.max() <= 1 + 1e-4
    bound = one_pole_coef(DUCK_TAU_S, SR) * (1 - duck) * 1.02 + 2e-4
    assert max_gain_step(runs) <= bound, (max_gain_step(runs), bound)
    # The ducking really happened: some click was measured at (or near) the duck gain.
    if duck < 0.9 and eng.st[K.ST_CUES_DROPPED] == 0 and cue_len_ms >= 100:
        assert gains.min() < duck + 0.05 * (1 - duck)


# ----------------------------------------------------------------------------------------------------------------
# Non-finite samples (found by this suite: NaN passed the limiter and the clamp, as every comparison with NaN is
# false; fixed in metronome._kernels.process_block)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_clip_samples_never_reach_the_output(bad):
    tm = TempoMap.constant(170.0, SR, 2.0)
    accent, normal = default_clicks(SR, 0.9, 0.64)
    cue = np.full(400, 0.1, np.float32)
    cue[100] = bad
    try:
        bank = ClipBank.build([("accent", accent), ("normal", normal), ("cue", cue)])
    except InputError:
        return  # refusing the clip outright is the other acceptable fix
    out = run_engine(Engine(tm, EngineSettings(samplerate=SR), bank), 2 * SR,
                     actions=[(0, lambda e: e.request_cue(2, 0))])
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= ceiling_f32(-6.0)
