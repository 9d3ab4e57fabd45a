"""Pace model: how fast a runner goes on a grade, used to turn a distance profile into a timed one.

``F(g)`` is the relative time per metre at grade ``g`` (percent, negative downhill) compared with the flat, and
``v(g) = v_flat / F(g)``.  The default model is built for trail and mountain running from three published figures,
taking at every grade the *slower* of a running curve and a physiological limit, so it is never faster than either:

* **Running on moderate grades: Strava's grade-adjusted pace (GAP).**  The quartic in :data:`GAP_COEFFS`
  (``F = -5.2944e-7 g^4 - 3.9896e-6 g^3 + 2.05357e-3 g^2 + 3.265674e-2 g + 1``) is the public polynomial fit of
  Strava's GAP curve (DESIGN.md; Strava's 2017 "improved GAP" is fitted to heart rate over millions of runs): 0.87 at
  -8 to -10 % (gravity helps), 1.52 at +10 %.  The fit covers about +-30 %; outside it the quartic bends back, so it
  is continued linearly with its slope at the edge (:data:`GAP_FIT_RANGE_PCT`).
* **Steep climbs are power-hiked: Minetti et al. 2002** (J Appl Physiol 93:1039, energy cost of running on
  gradients -0.45..+0.45, measured on elite mountain runners), ``C(i) = 155.4 i^5 - 30.4 i^4 - 43.3 i^3 + 46.3 i^2
  + 19.5 i + 3.6`` J/kg/m (``i`` = grade as a fraction), taken as ``F = C(i) / C(0)`` (equal metabolic power).  On
  steep grades walking costs 10-15 % less per metre than running (Minetti et al. 2002, their walking curve), which is
  why runners hike there at about the same metabolic power and speed; the ratio is 1.66 at +10 %, 2.5 at +20 %, 3.5 at +30 %
  (about 900-1000 m/h of climbing at 5:30 min/km flat, where recreational trail runners power-hike).  Its slope on
  steep grades (1 m of climb ~ 8-10 m of flat) matches Naismith's rule (1892: 1 h per 5 km plus 1 h per 600 m of ascent,
  i.e. 1 m up = 8.3 m flat) within 30 %.  It is slower than the GAP fit on every climb (its slope at 0 is 5.4 %/% against
  GAP's 3.3 %/%), so on climbs it governs; the GAP fit governs the flat and descents down to -6.5 %.
* **Steep and technical descents: Tobler's hiking function** (Tobler 1993, ``W = 6 exp(-3.5 |s + 0.05|)`` km/h,
  ``s`` = grade as a fraction), taken relative to its own flat speed: ``F = exp(3.5 (|s + 0.05| - 0.05))``: 1.0 at
  -10 %, 1.42 at -20 %, 2.0 at -30 %.  Minetti's energy-cost optimum (F = 0.5 at -20 %) is far faster than anyone
  runs a rough descent: braking, footing and the eccentric load set the speed there, and Tobler's empirical curve
  (fitted to Imhof's walking data) captures that.  It is slower than the GAP fit below about -6.5 %, so it governs
  there.  Langmuir's correction to Naismith (descents steeper than 12 deg / 21 %: add 10 min per 300 m, i.e. slower
  than the flat) agrees in direction: on the model the flat-equivalent crossover is at -10 %.

Checked against real runs (``benchmarks/bench_pace_model.py``, figures in ``benchmarks/README.md``): on a 17.5 km
mountain race with 1,415 m of climbing the old GAP-only model, clamped at +-30 %, predicted 1:48 for 3:19 of moving
time (-46 %); this model predicts within 15 %.  On moderate ground it stays within a few per cent of the old one.

The default flat pace is 5:30 min/km (330 s/km), an easy pace for a recreational trail runner.  A runner's own
curve (``downbeat learn``) replaces :func:`grade_factor` through the ``factor`` argument of :func:`elapsed_time_s`.
"""

from __future__ import annotations

import numpy as np

from metronome.errors import InputError
from metronome.limits import MAX_GRADE_PCT

#: Polynomial coefficients of the GAP fit F(g), highest power first (for :func:`numpy.polyval`), g in percent.
GAP_COEFFS = (-5.2944e-7, -3.9896e-6, 2.05357e-3, 3.265674e-2, 1.0)
#: Range of grades (percent) the GAP quartic is used on; beyond it, the tangent at the edge.
GAP_FIT_RANGE_PCT = (-30.0, 30.0)
#: Minetti et al. 2002, energy cost of running C(i) in J/kg/m, i = grade as a fraction, highest power first.
MINETTI_RUN_COEFFS = (155.4, -30.4, -43.3, 46.3, 19.5, 3.6)
#: Tobler 1993: W = 6 exp(-3.5 |s + 0.05|) km/h; these are its 3.5 and 0.05.
TOBLER_K, TOBLER_OFFSET = 3.5, 0.05
#: Grades beyond +-45 % are outside every figure above (and outside what the profiles accept).
MODEL_GRADE_RANGE_PCT = (-MAX_GRADE_PCT, MAX_GRADE_PCT)
DEFAULT_FLAT_PACE_S_PER_KM = 330.0
#: Plausible flat paces: 2:00 min/km (faster than any world record) .. 20:00 min/km (slow walk).
FLAT_PACE_RANGE_S_PER_KM = (120.0, 1200.0)

_GAP_D = np.polyder(np.asarray(GAP_COEFFS))


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


def gap_factor(grade_pct):
    """The GAP fit (Strava's curve) for grade(s) in percent, continued linearly outside :data:`GAP_FIT_RANGE_PCT`."""
    g = np.asarray(grade_pct, dtype=np.float64)
    lo, hi = GAP_FIT_RANGE_PCT
    f = np.polyval(GAP_COEFFS, np.clip(g, lo, hi))
    f = np.where(g > hi, np.polyval(GAP_COEFFS, hi) + np.polyval(_GAP_D, hi) * (g - hi), f)
    return np.where(g < lo, np.polyval(GAP_COEFFS, lo) + np.polyval(_GAP_D, lo) * (g - lo), f)


def minetti_factor(grade_pct):
    """Minetti et al. (2002) energy cost of running at grade(s) ``grade_pct`` relative to the flat: C(i) / C(0)."""
    i = np.asarray(grade_pct, dtype=np.float64) / 100.0
    return np.polyval(MINETTI_RUN_COEFFS, i) / MINETTI_RUN_COEFFS[-1]


def tobler_factor(grade_pct):
    """Tobler's (1993) hiking time per metre at grade(s) ``grade_pct`` relative to his flat: 1.0 at 0 and -10 %."""
    s = np.asarray(grade_pct, dtype=np.float64) / 100.0
    return np.exp(TOBLER_K * (np.abs(s + TOBLER_OFFSET) - TOBLER_OFFSET))


def grade_factor(grade_pct):
    """Relative time per metre ``F(g)`` of the default trail model for grade(s) in percent (see the module notes).

    Climbs: the slower of the GAP fit and Minetti's energy cost (power-hiking); descents: the slower of the GAP fit
    and Tobler's hiking function (braking on steep ground).  Grades are clipped to +-45 %.  ``F(0) = 1``; ``F`` is
    continuous and at least 0.87 (the GAP optimum near -8 %).
    """
    lo, hi = MODEL_GRADE_RANGE_PCT
    g = np.clip(np.asarray(grade_pct, dtype=np.float64), lo, hi)
    gap = gap_factor(g)
    return np.where(g >= 0.0, np.maximum(gap, minetti_factor(g)), np.maximum(gap, tobler_factor(g)))


def speed_mps(grade_pct, flat_pace_s_per_km: float = DEFAULT_FLAT_PACE_S_PER_KM, factor=None):
    """Running speed (m/s) on grade(s) ``grade_pct`` for a runner whose flat pace is ``flat_pace_s_per_km``.

    ``factor``: a callable grade_pct -> F (e.g. a runner's learned curve); default :func:`grade_factor`.
    """
    v_flat_mps = 1000.0 / flat_pace_s_per_km
    return v_flat_mps / (grade_factor if factor is None else factor)(grade_pct)


def elapsed_time_s(distance_m, grade_pct, flat_pace_s_per_km: float = DEFAULT_FLAT_PACE_S_PER_KM,
                   factor=None) -> np.ndarray:
    """Elapsed time at each point of a distance grid, by the pace model.

    Each interval is run at the speed for the mean grade of its two end points (trapezoid on the grade, which is
    what a runner meets between two grid points).  Strictly increasing wherever ``distance_m`` is.  ``factor`` as
    in :func:`speed_mps`.
    """
    d = np.asarray(distance_m, dtype=np.float64)
    g = np.asarray(grade_pct, dtype=np.float64)
    g_mid = 0.5 * (g[1:] + g[:-1])
    dt = np.diff(d) / speed_mps(g_mid, flat_pace_s_per_km, factor)
    return np.concatenate([[0.0], np.cumsum(dt)])
