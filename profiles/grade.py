"""Elevation -> grade: resampling onto a regular distance grid, spike rejection, smoothing.

Recorded elevation is noisy in two different ways and each gets its own tool:

* **spikes** (a GPS fix off by tens of metres for one or two points, a barometer glitch): rejected on the *raw*
  points by comparing each one with the median of its neighbours, allowing only what a runner could climb or drop
  in that distance (:data:`MAX_PLAUSIBLE_GRADE`), then re-interpolated;
* **jitter** (metre-level noise on every point, worst for GPS-only elevation without a barometer): averaged out
  by a centred moving average over ``smoothing_m`` metres before differentiating, because a derivative amplifies
  noise by 1 / step.

All functions are vectorised numpy; nothing here loops over points in Python.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Grid step of every distance profile (m).  5 m resolves a switchback while keeping 100 km at 20 000 points.
GRID_STEP_M = 5.0
#: Smoothing windows (m).  50 m: barometric / device altitude and authored profiles; 100 m: noisy GPS-only
#: elevation (detected with :func:`elevation_noise_m`).  A 50 m window still follows a 100 m ramp closely; the
#: tempo model adds its own hysteresis (1 point held for 60 m) on top.
SMOOTHING_DEFAULT_M = 50.0
SMOOTHING_NOISY_M = 100.0
#: Above this point-to-point jitter (m, RMS about a 5-point running median of the raw points, spikes removed)
#: elevation counts as noisy GPS-only data.  Measured: barometric watches 0.04-0.1 m (fenix 2, Edge), GPS tracks
#: 1.5-3.7 m (gpxpy's Mojstrovka and Cerknica files).
NOISY_ELEVATION_M = 0.5
#: Light smoothing (m) of the stored ``elevation_m``: removes fix-to-fix jitter so plotted elevation and total
#: ascent/descent are close to what gpxpy and devices report (gpxpy smooths 0.3/0.4/0.3 over neighbouring fixes,
#: roughly a 20-30 m window at 10 m spacing), while keeping every real bump of the terrain.
ELEVATION_SMOOTHING_M = 30.0
#: Steepest sustained grade (as a fraction) a runner can plausibly meet; a raw point that departs from its
#: neighbours' median by more than this slope (plus a small allowance) is a spike.
MAX_PLAUSIBLE_GRADE = 0.6
SPIKE_ALLOWANCE_M = 4.0
#: Grades are clipped to the range every consumer accepts (metronome.limits).
from metronome.limits import MAX_GRADE_PCT  # noqa: E402


def _pad_odd(x: np.ndarray, k: int) -> np.ndarray:
    """Pad ``k`` points each side by point reflection (``2 x0 - x[i]``), which keeps a linear trend straight at
    the ends, so filters neither flatten nor bend the first and last metres of a steady slope."""
    if k == 0:
        return x
    k = min(k, x.size - 1) if x.size > 1 else 0
    left = 2 * x[0] - x[k:0:-1]
    right = 2 * x[-1] - x[-2:-k - 2:-1]
    out = np.concatenate([left, x, right])
    return out


def running_median(x: np.ndarray, half: int) -> np.ndarray:
    """Centred running median over ``2 half + 1`` points (odd padding at the ends)."""
    x = np.asarray(x, dtype=np.float64)
    if half <= 0 or x.size < 3:
        return x.copy()
    half = min(half, x.size - 1)
    xp = _pad_odd(x, half)
    return np.median(sliding_window_view(xp, 2 * half + 1), axis=1)


def moving_average(x: np.ndarray, half: int) -> np.ndarray:
    """Centred moving average over ``2 half + 1`` points (cumulative sums, odd padding at the ends)."""
    x = np.asarray(x, dtype=np.float64)
    if half <= 0 or x.size < 3:
        return x.copy()
    half = min(half, x.size - 1)
    xp = _pad_odd(x, half)
    c = np.concatenate([[0.0], np.cumsum(xp)])
    w = 2 * half + 1
    return (c[w:] - c[:-w]) / w


def reject_spikes(distance_m: np.ndarray, elevation_m: np.ndarray, neighbours: int = 5) -> np.ndarray:
    """Boolean mask of raw points whose elevation is a spike (a measurement error, not terrain).

    Two tests, both allowing ``SPIKE_ALLOWANCE_M + MAX_PLAUSIBLE_GRADE * distance`` of real change:

    * single fixes: a point that jumps away from *both* adjacent points in the same direction (or, at either end
      of the track, from its one neighbour while the next two agree: the first fix of a recording is the one most
      often wrong);
    * short bursts (up to ``neighbours`` fixes, e.g. a barometer settling): a point far from the median of the
      ``2 neighbours + 1`` points around it, given the distance to the farthest of them.
    """
    d = np.asarray(distance_m, dtype=np.float64)
    e = np.asarray(elevation_m, dtype=np.float64)
    n = e.size
    spike = np.zeros(n, dtype=bool)
    if n < 3:
        return spike
    step_d = np.diff(d)
    jump = np.diff(e)
    limit = SPIKE_ALLOWANCE_M + MAX_PLAUSIBLE_GRADE * step_d
    big = np.abs(jump) > limit                                     # interval i: between points i and i+1
    # Interior point i: big jumps on both sides, opposite in sign (up then down, or down then up).
    spike[1:-1] = big[:-1] & big[1:] & (np.sign(jump[:-1]) != np.sign(jump[1:]))
    spike[0] = big[0] and not big[1]
    spike[-1] = big[-1] and not big[-2]
    if n >= 2 * neighbours + 1:
        # One-sided windows at the ends (the first/last full window's median), not reflection, for the same reason.
        w = 2 * neighbours + 1
        inner = np.median(sliding_window_view(e, w), axis=1)
        med = np.concatenate([np.full(neighbours, inner[0]), inner, np.full(neighbours, inner[-1])])
        idx = np.arange(n)
        lo = d[np.clip(idx - neighbours, 0, n - 1)]
        hi = d[np.clip(idx + neighbours, 0, n - 1)]
        reach = np.maximum(d - lo, hi - d)
        spike |= np.abs(e - med) > SPIKE_ALLOWANCE_M + MAX_PLAUSIBLE_GRADE * reach
    return spike


def climb_totals_m(elevation_m, hysteresis_m: float = 0.0) -> tuple[float, float]:
    """Total ascent and descent (m) of an elevation series, counting only moves beyond ``hysteresis_m``.

    ``hysteresis_m = 0`` is the plain sum of rises and falls (what :attr:`Profile.total_descent_m` reports).  A
    positive value mimics altimeter watches, which count a change only once the elevation has moved that far from
    the last turning point (a Schmitt trigger), so sub-metre sensor jitter adds nothing.
    """
    e = np.asarray(elevation_m, dtype=np.float64)
    if e.size < 2:
        return 0.0, 0.0
    if hysteresis_m <= 0:
        d = np.diff(e)
        return float(d[d > 0].sum()), float(-d[d < 0].sum()) + 0.0  # + 0.0: no -0.0 for a flat profile
    # The trigger state depends on the path, so this one is a loop; it runs once per summary, not per sample.
    up = down = 0.0
    ref = ext = float(e[0])      # last counted turning point, and the extreme of the move in progress
    direction = 0
    for x in e.tolist():
        if direction == 0:
            if abs(x - ref) >= hysteresis_m:
                direction, ext = (1 if x > ref else -1), x
        elif direction == 1:
            if x > ext:
                ext = x
            elif x <= ext - hysteresis_m:
                up += ext - ref
                ref, ext, direction = ext, x, -1
        else:
            if x < ext:
                ext = x
            elif x >= ext + hysteresis_m:
                down += ref - ext
                ref, ext, direction = ext, x, 1
    if direction == 1:
        up += ext - ref
    elif direction == -1:
        down += ref - ext
    return up, down


def regular_grid(total_m: float, step_m: float = GRID_STEP_M) -> np.ndarray:
    """Points 0 .. ``total_m`` (both included) spaced as close to ``step_m`` as divides the total evenly."""
    n = max(1, int(np.ceil(total_m / step_m - 1e-9)))
    return np.linspace(0.0, total_m, n + 1)


def elevation_noise_m(elevation_m: np.ndarray) -> float:
    """Point-to-point jitter (m) of raw elevation fixes: RMS distance from a 5-point running median.

    Run on the raw points (spikes already removed), not on the grid: interpolation between fixes would hide the
    jitter.  RMS rather than MAD because altimeters quantise (0.2 m steps, 1 m in many GPX files), which makes the
    median deviation 0 even on noisy data.
    """
    e = np.asarray(elevation_m, dtype=np.float64)
    if e.size < 5:
        return 0.0
    r = e - running_median(e, 2)
    return float(np.sqrt(np.mean(r * r)))


def smooth(distance_m: np.ndarray, elevation_m: np.ndarray, smoothing_m: float) -> np.ndarray:
    """Elevation on a regular grid smoothed over ``smoothing_m`` metres (triangular window)."""
    d = np.asarray(distance_m, dtype=np.float64)
    step = float(d[-1] - d[0]) / max(1, d.size - 1)
    half = int(round(smoothing_m / step / 2.0)) if smoothing_m > 0 and step > 0 else 0
    # Two passes of a boxcar = a triangular window: no ringing, and corners are rounded symmetrically.
    half1 = half // 2 if half >= 2 else half
    half2 = half - half1
    return moving_average(moving_average(elevation_m, half1), half2)


def smooth_grade(distance_m: np.ndarray, elevation_m: np.ndarray, smoothing_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed elevation and its gradient (percent) on a regular grid.

    Returns
    -------
    smoothed_elevation_m, grade_pct : ndarray
        ``grade_pct`` is clipped to +-:data:`MAX_GRADE_PCT`.
    """
    d = np.asarray(distance_m, dtype=np.float64)
    smooth_m = smooth(d, elevation_m, smoothing_m)
    grade = np.gradient(smooth_m, d) * 100.0
    return smooth_m, np.clip(grade, -MAX_GRADE_PCT, MAX_GRADE_PCT)
