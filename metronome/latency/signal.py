"""Test signal and onset detection for round-trip measurement (pure numpy, no audio I/O).

The test signal is a maximum-length sequence (MLS): a pseudo-random +-1 sequence whose circular autocorrelation
is ``N`` at lag 0 and ``-1`` everywhere else, so a cross-correlation of the recording with it has one sharp peak
at the round trip, with a processing gain of ``10 log10(N)`` dB over noise (36 dB for N = 4095).  This is the
classic method of acoustic impulse-response measurement (Rife & Vanderkooy, "Transfer-function measurement with
maximum-length sequences", J. Audio Eng. Soc. 37(6), 1989).  A logarithmic chirp is offered as well (Farina,
"Simultaneous measurement of impulse response and distortion with a swept-sine technique", AES 108th convention,
2000); it tolerates band-limited paths (a Bluetooth codec, a phone) better than white noise.

Each measurement burst is the signal followed by silence, repeated every ``burst_frames``: the silence makes the
peak unambiguous for any round trip shorter than ``burst_frames - len(signal)``.
"""

from __future__ import annotations

import numpy as np

#: Feedback taps of maximal-length Fibonacci LFSRs, by order (Xilinx XAPP 052, "Efficient Shift Registers, LFSR
#: Counters, and Long Pseudo-Random Sequence Generators", table 3; taps are 1-based register stages).
MLS_TAPS = {8: (8, 6, 5, 4), 9: (9, 5), 10: (10, 7), 11: (11, 9), 12: (12, 6, 4, 1), 13: (13, 4, 3, 1),
            14: (14, 5, 3, 1), 15: (15, 14), 16: (16, 15, 13, 4)}

#: A peak must stand this many times above the median absolute correlation to count as "the signal came back".
#: White noise through an open input gives peak/median ratios of ~4-6 for N = 4095 (the maximum of ~N Gaussian
#: values is ~4 sigma, the median |x| is ~0.67 sigma); a real loop gives N / sqrt(N) = ~64 or more.
MIN_PEAK_RATIO = 12.0


def mls(order: int = 12) -> np.ndarray:
    """Maximum-length sequence of ``2**order - 1`` samples, values +-1 (float64).

    Parameters
    ----------
    order : int
        Register length, 8..16 (see :data:`MLS_TAPS`).
    """
    if order not in MLS_TAPS:
        raise ValueError(f"order: {order!r} is not one of {sorted(MLS_TAPS)}")
    taps = MLS_TAPS[order]
    n = (1 << order) - 1
    state = 1
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        bit = 0
        for t in taps:
            bit ^= (state >> (order - t)) & 1  # stage t is t-1 shifts from the input end
        out[i] = 1.0 if state & 1 else -1.0
        state = (state >> 1) | (bit << (order - 1))
    return out


def log_chirp(n_frames: int, samplerate: int, f0_hz: float = 100.0, f1_hz: float = 8000.0) -> np.ndarray:
    """Exponential sine sweep from ``f0_hz`` to ``f1_hz`` over ``n_frames``, with 2 ms raised-cosine fades
    (a hard start would click and smear the correlation peak)."""
    if not (0 < f0_hz < f1_hz < samplerate / 2):
        raise ValueError(f"f0_hz, f1_hz: need 0 < {f0_hz} < {f1_hz} < samplerate/2 = {samplerate / 2}")
    t = np.arange(n_frames) / samplerate
    dur = n_frames / samplerate
    k = np.log(f1_hz / f0_hz)
    x = np.sin(2 * np.pi * f0_hz * dur / k * (np.exp(t / dur * k) - 1.0))
    fade = min(n_frames // 2, int(0.002 * samplerate))
    if fade > 0:
        w = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        x[:fade] *= w
        x[-fade:] *= w[::-1]
    return x


def make_signal(kind: str = "mls", samplerate: int = 48000, level_dbfs: float = -20.0) -> np.ndarray:
    """The played signal (float32), scaled to a peak of ``level_dbfs``.

    -20 dBFS by default: loud enough for a 36 dB correlation gain to find it through a cable or a quiet room, and
    well below the -6 dBFS ceiling Downbeat keeps for the runner's ears (MLS is white noise; it sounds harsh).
    """
    if kind == "mls":
        x = mls(12)
    elif kind == "chirp":
        x = log_chirp(4096, samplerate, f1_hz=min(8000.0, 0.4 * samplerate))
    else:
        raise ValueError(f"kind: {kind!r} is not 'mls' or 'chirp'")
    return (x * 10.0 ** (level_dbfs / 20.0)).astype(np.float32)


def cross_correlate(recording: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """``c[lag] = sum_n signal[n] * recording[lag + n]`` for ``lag = 0 .. len(recording) - len(signal)`` (FFT)."""
    r = np.asarray(recording, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    n_lags = r.shape[0] - s.shape[0] + 1
    if n_lags < 1:
        raise ValueError(f"recording: {r.shape[0]} frames is shorter than the signal ({s.shape[0]})")
    size = 1 << int(np.ceil(np.log2(r.shape[0] + s.shape[0])))
    c = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(s, size)), size)
    return c[:n_lags]


def onset(recording: np.ndarray, signal: np.ndarray, min_peak_ratio: float = MIN_PEAK_RATIO):
    """Where ``signal`` starts in ``recording``, to the frame (plus a sub-frame estimate for drift).

    Returns
    -------
    (lag_frames, lag_fine_frames, peak_ratio) : (int, float, float) or None
        ``lag_frames`` is the integer lag of the largest correlation (absolute value: a polarity-inverting path,
        e.g. a balanced cable wired backwards, still counts); ``lag_fine_frames`` refines it by a parabola through
        the peak and its neighbours; ``peak_ratio`` is the peak over the median absolute correlation.  None when
        the peak is not ``min_peak_ratio`` times above that median (the signal did not come back).
    """
    c = np.abs(cross_correlate(recording, signal))
    k = int(np.argmax(c))
    med = float(np.median(c))
    peak = float(c[k])
    if peak <= 0.0:
        return None
    ratio = peak / med if med > 0 else float("inf")
    if ratio < min_peak_ratio:
        return None
    fine = float(k)
    if 0 < k < c.shape[0] - 1:
        a, b, d = c[k - 1], c[k], c[k + 1]
        den = a - 2 * b + d
        if den != 0:
            fine = k + 0.5 * (a - d) / den
    return k, fine, ratio
