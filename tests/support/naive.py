"""Slow, obviously-correct reference versions of the numba kernels (stumpy style: tests compare against these).

They share no code with :mod:`metronome._kernels`: beat times come from bisection on the tempo integral instead
of the closed-form root, and mixing is a plain per-sample Python loop over a list of voices.
"""

from __future__ import annotations

import math

import numpy as np


def phase_beats(t, sample, bpm, samplerate):
    """Integral of bpm/60 from 0 to sample time t, piecewise linear tempo, constant after the last breakpoint."""
    total = 0.0
    for i in range(len(sample)):
        s0 = sample[i]
        if t <= s0:
            break
        b0 = bpm[i]
        if i + 1 < len(sample):
            s1 = min(sample[i + 1], t)
            slope = (bpm[i + 1] - b0) / (sample[i + 1] - s0)
        else:
            s1, slope = t, 0.0
        dx = s1 - s0
        total += (b0 * dx + 0.5 * slope * dx * dx) / (60.0 * samplerate)
    return total


def beat_times(sample, bpm, samplerate, end_sample):
    """Beat k at the time the phase reaches k, found by bisection to 1e-7 samples."""
    out = []
    k = 0
    lo = 0.0
    while True:
        hi = lo + 1.0
        while phase_beats(hi, sample, bpm, samplerate) < k:
            hi = lo + 2 * (hi - lo)
        a, b = lo, hi
        while b - a > 1e-7:
            m = 0.5 * (a + b)
            if phase_beats(m, sample, bpm, samplerate) < k:
                a = m
            else:
                b = m
        t = 0.5 * (a + b) if k else 0.0
        if t >= end_sample:
            return np.array(out)
        out.append(t)
        lo = t
        k += 1


def render(beat_samples, frames, bank_clips, accent_every, ceiling, cue_requests=(), duck=0.5, gain=1.0,
           duck_tau_s=0.010, release_tau_s=0.050, samplerate=48000):
    """Per-sample reference mixer: clicks at the given samples, cues on the first beat at/after their request,
    clicks ducked while speech plays, instant-attack limiter with one-pole release, hard ceiling."""
    duck_coef = 1.0 - math.exp(-1.0 / (duck_tau_s * samplerate))
    rel_coef = 1.0 - math.exp(-1.0 / (release_tau_s * samplerate))
    beats = {int(s): k for k, s in enumerate(beat_samples)}
    pending = sorted(cue_requests, key=lambda r: r[1])
    voices = []  # [clip_index, position, is_cue]
    out = np.zeros(frames)
    d, lim = 1.0, 1.0
    for n in range(frames):
        if n in beats:
            k = beats[n]
            clip = 0 if (accent_every and k % accent_every == 0) else 1
            voices.append([clip, 0, False])
            while pending and pending[0][1] <= n:
                voices.append([pending.pop(0)[0], 0, True])
                d = duck  # ducking engages at once when speech starts (on a beat)
        clicks = sum(bank_clips[c][p] for c, p, cue in voices if not cue)
        speech = sum(bank_clips[c][p] for c, p, cue in voices if cue)
        speaking = any(cue for _, _, cue in voices)
        for v in voices:
            v[1] += 1
        voices = [v for v in voices if v[1] < len(bank_clips[v[0]])]
        target = duck if speaking else 1.0
        d = d + (target - d) * duck_coef
        if abs(target - d) < 1e-12:
            d = target
        y = (clicks * d + speech) * gain
        lim = lim + (1.0 - lim) * rel_coef
        if abs(1.0 - lim) < 1e-12:
            lim = 1.0
        if abs(y) * lim > ceiling:
            lim = ceiling / abs(y)
        y = min(max(y * lim, -ceiling), ceiling)
        out[n] = y
    return out


def onsets(x, threshold=0.0):
    """Samples where sound starts after exact silence (clips start non-zero and end in exact zeros)."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, 0]
    nz = np.flatnonzero(np.abs(x) > threshold)
    if nz.size == 0:
        return nz
    return nz[np.concatenate([[True], np.diff(nz) > 1])]


def assert_rounded(samples, exact_times, tie_tol=1e-6):
    """Every sample is its exact time rounded to the nearest sample; at a half-sample tie (within ``tie_tol``,
    below what bisection or the closed form can resolve) either neighbour is the correct rounding."""
    samples = np.asarray(samples, dtype=np.int64)
    exact_times = np.asarray(exact_times, dtype=np.float64)
    assert samples.shape == exact_times.shape, (samples.shape, exact_times.shape)
    err = np.abs(samples - exact_times)
    bad = np.flatnonzero(err > 0.5 + tie_tol)
    assert bad.size == 0, f"beats {bad[:5]} off: samples {samples[bad[:5]]}, exact {exact_times[bad[:5]]}"
    return True


def grade_plateaus(position, grade_pct, hold, hysteresis_pct=1.0):
    """The batch hysteresis as first written (index-based, whole-slice means): the reference for
    :mod:`metronome.levels`, which replaced it with one streaming tracker for renders and live feeds."""
    position = np.asarray(position, dtype=np.float64)
    grade_pct = np.asarray(grade_pct, dtype=np.float64)
    first = position <= position[0] + hold
    level = float(grade_pct[first].mean())
    out = [(float(position[0]), level)]
    run_start = None
    run_sign = 0.0
    for i in range(1, len(position)):
        g = grade_pct[i]
        if abs(g - level) >= hysteresis_pct and (run_start is None or np.sign(g - level) == run_sign):
            if run_start is None:
                run_start = i
                run_sign = np.sign(g - level)
            if position[i] - position[run_start] >= hold:
                level = float(grade_pct[run_start:i + 1].mean())
                out.append((float(position[run_start]), level))
                run_start = None
        else:
            run_start = None
    return out
