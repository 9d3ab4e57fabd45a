"""Loudness (ITU-R BS.1770-4 integrated loudness with EBU R128 gating, by pyloudnorm) and the gains it implies.

Why loudness and not peak: two tracks with the same peak can differ by 10 dB in how loud they sound (a mastered
pop song versus an acoustic recording); BS.1770's K-weighted, gated mean power is what the ear follows, so every
track is brought to the same loudness and the clicks keep one distance above all of them.
"""

from __future__ import annotations

import math

import numpy as np

#: BS.1770 measures in 400 ms blocks: a shorter signal is measured on a repetition of itself.
MIN_MEASURE_S = 0.5
SILENCE_LUFS = -70.0  # the absolute gate of EBU R128: anything quieter counts as silence


def integrated_lufs(frames: np.ndarray, samplerate: int) -> float:
    """Integrated loudness (LUFS) of ``frames`` (float [n, channels]); -inf for silence."""
    import pyloudnorm

    x = np.asarray(frames, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    need = int(math.ceil(MIN_MEASURE_S * samplerate))
    if x.shape[0] < need:
        x = np.tile(x, (need // max(1, x.shape[0]) + 1, 1))
    with np.errstate(divide="ignore"):
        value = float(pyloudnorm.Meter(samplerate).integrated_loudness(x))
    return value if math.isfinite(value) and value > SILENCE_LUFS else -math.inf


def normalising_gain(lufs: float, target_lufs: float, max_gain_db: float) -> float:
    """Linear gain that brings a track from ``lufs`` to ``target_lufs``, at most ``max_gain_db`` up."""
    if not math.isfinite(lufs):
        return 1.0  # silence stays silence
    return 10.0 ** (min(target_lufs - lufs, max_gain_db) / 20.0)


def click_train_lufs(accent: np.ndarray, normal: np.ndarray, bpm: float, accent_every: int, samplerate: int,
                     seconds: float = 10.0) -> float:
    """Loudness of the clicks as the runner hears them: the click train at ``bpm`` on both ears.

    The music is measured the same way (stereo, BS.1770's channel sum), so "clicks N dB above the music" compares
    like with like.
    """
    n = int(seconds * samplerate)
    x = np.zeros(n, dtype=np.float64)
    period = 60.0 * samplerate / bpm
    k = 0
    while True:
        start = int(round(k * period))
        if start >= n:
            break
        clip = accent if (accent_every > 0 and k % accent_every == 0) else normal
        m = min(len(clip), n - start)
        x[start:start + m] += clip[:m]
        k += 1
    return integrated_lufs(np.stack([x, x], axis=1), samplerate)
