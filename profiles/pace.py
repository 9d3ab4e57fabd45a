"""Pace model: how fast a runner goes on a grade, used to turn a distance profile into a timed one.

The model is a public polynomial fit of a grade-adjusted-pace (GAP) curve, as given in DESIGN.md::

    F(g) = -5.2944e-7 g^4 - 3.9896e-6 g^3 + 2.05357e-3 g^2 + 3.265674e-2 g + 1      (g: grade in percent)
    v(g) = v_flat / F(g)

``F`` is the relative cost (time per metre) of running at grade ``g`` compared with the flat: below 1 on gentle
descents (gravity helps, minimum near -8 %), above 1 uphill and again on steep descents where braking costs.  The
fit is only meaningful over the range it was fitted on, so ``F`` is clamped to ``[0.7, 1.3]`` (+-30 %): outside it the
quartic term runs away (F(+-45 %) would be about 4 and 1.9) and a metronome session should not assume walking.

The default flat pace is 5:30 min/km (330 s/km), an easy pace for a recreational trail runner.
"""

from __future__ import annotations

import numpy as np

from metronome.errors import InputError

#: Polynomial coefficients of F(g), highest power first (for :func:`numpy.polyval`).
GAP_COEFFS = (-5.2944e-7, -3.9896e-6, 2.05357e-3, 3.265674e-2, 1.0)
#: Clamp of F: the model changes the flat pace by at most +-30 %.
FACTOR_MIN, FACTOR_MAX = 0.7, 1.3
DEFAULT_FLAT_PACE_S_PER_KM = 330.0
#: Plausible flat paces: 2:00 min/km (faster than any world record) .. 20:00 min/km (slow walk).
FLAT_PACE_RANGE_S_PER_KM = (120.0, 1200.0)


def check_flat_pace(flat_pace_s_per_km, where: str = "flat_pace_s_per_km") -> float:
    """Validate a flat pace (seconds per km) and return it as a float; raise :class:`InputError` naming ``where``."""
    try:
        pace = float(flat_pace_s_per_km)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {flat_pace_s_per_km!r} is not a number") from None
    lo, hi = FLAT_PACE_RANGE_S_PER_KM
    if isinstance(flat_pace_s_per_km, bool) or not (lo <= pace <= hi):
        raise InputError(f"{where}: {flat_pace_s_per_km!r} is outside {lo:g}..{hi:g} s/km (2:00..20:00 min/km)")
    return pace


def parse_pace(text: str, where: str = "--flat-pace") -> float:
    """Parse ``MM:SS`` (minutes per km) or plain seconds per km into seconds per km."""
    s = str(text).strip()
    try:
        if ":" in s:
            mm, ss = s.split(":")
            if not (mm.isdigit() and ss.isdigit() and len(ss) == 2 and int(ss) < 60):
                raise ValueError
            pace = int(mm) * 60.0 + int(ss)
        else:
            pace = float(s)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a pace in MM:SS per km (e.g. 5:30)") from None
    return check_flat_pace(pace, where)


def format_pace(pace_s_per_km: float) -> str:
    """``330.0`` -> ``'5:30'``."""
    total = int(round(pace_s_per_km))
    return f"{total // 60}:{total % 60:02d}"


def grade_factor(grade_pct):
    """Relative time-per-metre ``F(g)`` for grade(s) in percent, clamped to ``[0.7, 1.3]``."""
    g = np.asarray(grade_pct, dtype=np.float64)
    return np.clip(np.polyval(GAP_COEFFS, g), FACTOR_MIN, FACTOR_MAX)


def speed_mps(grade_pct, flat_pace_s_per_km: float = DEFAULT_FLAT_PACE_S_PER_KM):
    """Running speed (m/s) on grade(s) ``grade_pct`` for a runner whose flat pace is ``flat_pace_s_per_km``."""
    v_flat_mps = 1000.0 / flat_pace_s_per_km
    return v_flat_mps / grade_factor(grade_pct)


def elapsed_time_s(distance_m, grade_pct, flat_pace_s_per_km: float = DEFAULT_FLAT_PACE_S_PER_KM) -> np.ndarray:
    """Elapsed time at each point of a distance grid, by the pace model.

    Each interval is run at the speed for the mean grade of its two end points (trapezoid on the grade, which is
    what a runner meets between two grid points).  Strictly increasing wherever ``distance_m`` is.
    """
    d = np.asarray(distance_m, dtype=np.float64)
    g = np.asarray(grade_pct, dtype=np.float64)
    g_mid = 0.5 * (g[1:] + g[:-1])
    dt = np.diff(d) / speed_mps(g_mid, flat_pace_s_per_km)
    return np.concatenate([[0.0], np.cumsum(dt)])
