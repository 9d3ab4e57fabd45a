"""Recorded or drawn tracks (GPX, FIT, TCX) -> :class:`~profiles.schema.Profile`.

Every file reader produces a :class:`RawTrack` (plain arrays, NaN where a value is missing) and
:func:`profile_from_track` does the rest, identically for every format:

1. distance: the file's own cumulative distance where it has one (FIT ``distance``, TCX ``DistanceMeters``: the
   device's wheel/footpod/GPS fusion is better than ours), else the 2-D haversine distance between fixes;
   segments are joined end to end *without* the gap between them (the recording was off; we do not know the
   path; gpxpy's ``length_2d`` does the same);
2. elevation: spikes rejected on the raw points, missing values interpolated, resampled onto a 5 m grid,
   smoothed (50 m, or 100 m for noisy GPS-only elevation) and differentiated into ``grade_pct``;
3. time: the recording's own moving time (pauses removed) when asked and usable, else the pace model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metronome.errors import ProfileError

from . import grade as G
from . import pace
from .schema import Profile

EARTH_RADIUS_M = 6371008.8  # mean Earth radius (IUGG), as used by most haversine implementations
#: Elevations outside this range are not on Earth's land surface (Dead Sea -430 m, Everest 8849 m).
ELEVATION_RANGE_M = (-500.0, 9000.0)
#: Moving slower than this over a recorded interval longer than PAUSE_MIN_S counts as stopped.
PAUSE_SPEED_MPS = 0.2
PAUSE_MIN_S = 3.0
#: Recorded timing is used only if its mean moving speed is in this range (a run, a hike or a bike ride).
PLAUSIBLE_SPEED_MPS = (0.2, 30.0)
MAX_SPEED_MPS = 30.0
MIN_DISTANCE_M = 20.0
MAX_DISTANCE_M = 1_000_000.0


@dataclass
class RawTrack:
    """Points as read from a file, in recording order; NaN marks a missing value.

    Attributes
    ----------
    lat_deg, lon_deg : ndarray or None
    elevation_m : ndarray
    time_s : ndarray
        Seconds since the epoch (any fixed origin works).
    distance_m : ndarray or None
        Cumulative distance recorded by the device, if the format has one.
    segment : ndarray of int
        Segment (GPX ``trkseg``/``trk``) index of each point; joins between segments are not counted as distance.
    cadence_spm : ndarray or None
        Recorded cadence (steps per minute), if any.
    ele_field : str
        How the format names elevation, for messages (``<ele>``, ``AltitudeMeters``, ``altitude``).
    point_name : str
        How the format names a point, for messages (``trkpt``, ``Trackpoint``, ``record``).
    """

    elevation_m: np.ndarray
    time_s: np.ndarray
    segment: np.ndarray
    lat_deg: np.ndarray | None = None
    lon_deg: np.ndarray | None = None
    distance_m: np.ndarray | None = None
    cadence_spm: np.ndarray | None = None
    ele_field: str = "elevation"
    point_name: str = "point"
    is_route: bool = False


def haversine_m(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Great-circle distance (m) between consecutive points (length n - 1)."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    dlat = np.diff(lat)
    dlon = np.diff(lon)
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _fill_by_index(values: np.ndarray) -> np.ndarray:
    """Linear interpolation of NaNs by point index; NaNs before the first/after the last value take the nearest."""
    ok = np.isfinite(values)
    if ok.all():
        return values
    idx = np.arange(values.size)
    return np.interp(idx, idx[ok], values[ok])


def _cumulative_distance(raw: RawTrack, display: str) -> np.ndarray:
    n = raw.elevation_m.size
    if raw.distance_m is not None and np.isfinite(raw.distance_m).sum() >= max(2, 0.5 * n):
        d = _fill_by_index(np.asarray(raw.distance_m, dtype=np.float64))
        if np.any(d < 0):
            bad = d[d < 0][0]
            raise ProfileError(f"{display}: distance: {float(bad)!r} is negative")
        # Devices occasionally step back by a few centimetres (GPS/footpod fusion); distance never decreases.
        return np.maximum.accumulate(d - d[0])
    if raw.lat_deg is None or raw.lon_deg is None:
        raise ProfileError(f"{display}: no distance and no positions in any {raw.point_name}")
    step = haversine_m(raw.lat_deg, raw.lon_deg)
    step[np.diff(raw.segment) != 0] = 0.0          # gap between segments: not part of the course
    step[~np.isfinite(step)] = 0.0
    return np.concatenate([[0.0], np.cumsum(step)])


def _recorded_moving_time(d_m: np.ndarray, t_s: np.ndarray, segment: np.ndarray, flat_v_mps: float):
    """Recorded elapsed time with pauses squeezed out, or ``None`` when the timestamps are unusable.

    Unusable: any missing or decreasing timestamp, or a mean speed that is not a run/hike/ride (e.g. every
    timestamp equal, as in files re-saved by some converters).
    """
    if t_s.size < 2 or not np.all(np.isfinite(t_s)):
        return None
    dt = np.diff(t_s)
    if np.any(dt < 0):
        return None
    dd = np.diff(d_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dt > 0, dd / np.where(dt > 0, dt, 1.0), np.inf)
    # A pause: a long interval spent (nearly) standing still, or any join between two recorded segments.  Its
    # few metres are charged at flat pace instead of the minutes the watch spent waiting.
    pause = ((v < PAUSE_SPEED_MPS) & (dt > PAUSE_MIN_S)) | (np.diff(segment) != 0)
    dt_eff = np.where(pause, dd / flat_v_mps, dt)
    moving = float(dt_eff.sum())
    if moving <= 0:
        return None
    mean_v = float(d_m[-1] - d_m[0]) / moving
    if not (PLAUSIBLE_SPEED_MPS[0] <= mean_v <= PLAUSIBLE_SPEED_MPS[1]):
        return None
    return np.concatenate([[0.0], np.cumsum(dt_eff)])


def _positions_on_grid(raw: RawTrack, d_raw: np.ndarray, grid: np.ndarray):
    """Latitude/longitude at each grid distance (linear by distance between the file's points with a position),
    or ``(None, None)`` when fewer than 2 points have one.  For the course follower (issue 14)."""
    if raw.lat_deg is None or raw.lon_deg is None:
        return None, None
    lat = np.asarray(raw.lat_deg, dtype=np.float64)
    lon = np.asarray(raw.lon_deg, dtype=np.float64)
    ok = np.isfinite(lat) & np.isfinite(lon)
    if ok.sum() < 2:
        return None, None
    d_ok, first = np.unique(d_raw[ok], return_index=True)
    if d_ok.size < 2:
        return None, None
    # Linear in degrees is linear in metres at the 5 m grid's scale; the antimeridian is not a running course.
    return np.interp(grid, d_ok, lat[ok][first]), np.interp(grid, d_ok, lon[ok][first])


def profile_from_track(raw: RawTrack, *, name: str, source: str, display: str, flat_pace_s_per_km=None,
                       smoothing_m=None, use_recorded_time=None, base_cadence_spm=None) -> Profile:
    """Build a :class:`Profile` from raw points; every problem raises :class:`ProfileError` prefixed ``display``."""
    flat_pace_s = pace.DEFAULT_FLAT_PACE_S_PER_KM if flat_pace_s_per_km is None else \
        pace.check_flat_pace(flat_pace_s_per_km, f"{display}: flat_pace_s_per_km")
    ele = np.asarray(raw.elevation_m, dtype=np.float64)
    n = ele.size
    n_ele = int(np.isfinite(ele).sum())
    if n == 0:
        raise ProfileError(f"{display}: no {raw.point_name} points")
    if n_ele == 0:
        raise ProfileError(f"{display}: no elevation data (0 of {n} points have {raw.ele_field})")
    if n_ele < 2:
        raise ProfileError(f"{display}: too few points with elevation ({n_ele} of {n} have {raw.ele_field}; need 2)")
    lo, hi = ELEVATION_RANGE_M
    bad = np.isfinite(ele) & ((ele < lo) | (ele > hi))
    if bad.any():
        i = int(np.argmax(bad))
        field = f"{raw.point_name}[{i}].{raw.ele_field.strip('<>')}"
        raise ProfileError(f"{display}: {field}: {float(ele[i])!r} is outside {lo:g}..{hi:g} m")

    d_raw = _cumulative_distance(raw, display)
    total = float(d_raw[-1])
    if not np.isfinite(total) or total > MAX_DISTANCE_M:
        raise ProfileError(f"{display}: distance: {total:.0f} m is longer than {MAX_DISTANCE_M / 1000:g} km")
    if total < MIN_DISTANCE_M:
        raise ProfileError(f"{display}: too short: {total:.1f} m over {n} points (need at least {MIN_DISTANCE_M:g} m)")

    # Elevation: fill gaps and reject spikes (on raw points, see grade.py).  Segments are not shifted to meet:
    # GPS and barometric elevations are absolute, and the first fix of a new segment, which is often tens of
    # metres off, would otherwise offset the whole rest of the track.  The spike filter removes such fixes.
    ele = _fill_by_index(ele)
    spikes = G.reject_spikes(d_raw, ele)
    if spikes.any() and (~spikes).sum() >= 2:
        ele = ele.copy()
        ele[spikes] = np.nan
        ele = _fill_by_index(ele)

    # Resample by distance.  Repeated distances (standing still) keep their first point, as np.interp needs
    # strictly increasing x.
    d_u, first = np.unique(d_raw, return_index=True)
    grid = G.regular_grid(total)
    ele_grid = np.interp(grid, d_u, ele[first])

    noise_m = G.elevation_noise_m(ele[first])
    if smoothing_m is None:
        noisy = noise_m > G.NOISY_ELEVATION_M
        smoothing_m = G.SMOOTHING_NOISY_M if noisy else G.SMOOTHING_DEFAULT_M
    elif not (np.isfinite(smoothing_m) and 0 <= smoothing_m <= 2000):
        raise ProfileError(f"{display}: smoothing_m: {smoothing_m!r} is outside 0..2000 m")
    _, grade_pct = G.smooth_grade(grid, ele_grid, smoothing_m)
    # Stored elevation: lightly smoothed only (display, totals); the grade uses the stronger window above.
    ele_grid = G.smooth(grid, ele_grid, min(G.ELEVATION_SMOOTHING_M, smoothing_m))

    notes = [f"smoothing {smoothing_m:g} m"]
    t_rec = None
    if use_recorded_time is not False and not raw.is_route:
        t_rec = _recorded_moving_time(d_raw, np.asarray(raw.time_s, dtype=np.float64), raw.segment,
                                      1000.0 / flat_pace_s)
        if t_rec is None and use_recorded_time:
            n_t = int(np.isfinite(raw.time_s).sum())
            raise ProfileError(f"{display}: time: recorded timestamps are unusable ({n_t} of {n} points have a "
                               f"time; they must all be present, increasing and plausible for a run)")
    if t_rec is not None:
        t_grid = np.interp(grid, d_u, t_rec[first])
        # Timestamps have 1 s resolution (or worse): never let a grid step go faster than MAX_SPEED_MPS.
        dt = np.maximum(np.diff(t_grid), np.diff(grid) / MAX_SPEED_MPS)
        time_s = np.concatenate([[0.0], np.cumsum(dt)])
        kind = "activity"
        notes.append("recorded moving time")
    else:
        time_s = pace.elapsed_time_s(grid, grade_pct, flat_pace_s)
        kind = "course"
        notes.append(f"pace model, flat {pace.format_pace(flat_pace_s)} min/km")
    speed = np.gradient(grid, time_s)

    cadence = None
    if raw.cadence_spm is not None and np.isfinite(raw.cadence_spm).sum() >= 2:
        cad = np.asarray(raw.cadence_spm, dtype=np.float64)
        ok = np.isfinite(cad)[first]
        if ok.sum() >= 2:
            cadence = np.interp(grid, d_u[ok], cad[first][ok])
    lat_grid, lon_grid = _positions_on_grid(raw, d_raw, grid)
    try:
        return Profile(name=name, source=source, kind=kind, distance_m=grid, elevation_m=ele_grid,
                       grade_pct=grade_pct, time_s=time_s, speed_mps=speed, base_cadence_spm=base_cadence_spm,
                       recorded_cadence_spm=cadence, notes=tuple(notes), elevation_noise_m=noise_m,
                       lat_deg=lat_grid, lon_deg=lon_grid)
    except ValueError as exc:  # the contract's own checks: report them like any other input problem
        raise ProfileError(f"{display}: {exc}") from None
