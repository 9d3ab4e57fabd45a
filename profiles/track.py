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
#: Most points (GPX trkpt/rtept, TCX Trackpoint, FIT record) one file may hold: refused above it, before the slow
#: work.  A 1 Hz recording of 278 h (11.6 days) is 1M points, longer than any single effort a runner records (the
#: Tor des Geants' cutoff is 150 h), and 1M FIT records load in under 5 s and 500 MB; the XML readers have lower
#: limits of their own (profiles.gpx.GPX_MAX_POINTS, profiles.tcx.TCX_MAX_POINTS)
#: (benchmarks/bench_huge_tracks.py).
MAX_POINTS = 1_000_000
#: Fewer out-of-range elevations than this fraction of the points (and at least one) are isolated outliers (a
#: logger's -672 m glitch among 14,263 good fixes), dropped with a warning; more means the elevation is not metres
#: above sea level at all and the file is refused.
OUTLIER_MAX_FRACTION = 0.01
#: Running speeds: a median moving speed above this is not a run (the marathon world record is 5.9 m/s; fast
#: downhill running stays under ~6 m/s on average), so a car or bike log gets a warning.
RUNNING_MAX_MEDIAN_SPEED_MPS = 6.5
#: A spike that departs this far from the track around it is reported (smaller ones are routine GPS jitter and
#: are dropped silently).
REPORTED_SPIKE_M = 10.0


def refuse_too_many_points(display: str, what: str, limit: int | None = None, why: str = "") -> None:
    """Raise the one-line refusal for files over ``limit`` points (default :data:`MAX_POINTS`; ``what``: the
    format's name for points, ``why``: what sets a lower limit)."""
    limit = MAX_POINTS if limit is None else limit
    raise ProfileError(f"{display}: more than {limit} {what}, the limit per file{why} (a 1 Hz recording of "
                       f"{limit / 3600:.0f} h); split the file or resample it to fewer points")


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
    #: Problems the reader found and worked around, one line each, already prefixed with the file's name.
    warnings: tuple = ()
    #: How to name the points of each segment in messages (``{segment: "trk[1].trkseg[0].trkpt"}``); points of a
    #: segment without an entry are named ``point_name[i]`` by their index in the whole file.
    segment_labels: dict | None = None

    def label(self, i: int) -> str:
        """Name of point ``i`` for messages, e.g. ``trk[1].trkseg[0].trkpt[42]``."""
        s = int(self.segment[i])
        if self.segment_labels and s in self.segment_labels:
            first = int(np.argmax(self.segment == s))
            return f"{self.segment_labels[s]}[{i - first}]"
        return f"{self.point_name}[{i}]"

    def label_range(self, a: int, b: int) -> str:
        """Name of points ``a..b`` (inclusive), e.g. ``trk[0].trkseg[0].trkpt[0..29]``."""
        first, last = self.label(a), self.label(b)
        if a == b:
            return first
        head, _, idx = last.rpartition("[")
        return f"{first[:-1]}..{idx}" if first.rpartition("[")[0] == head else f"{first}..{last}"


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


def _fmt_kmh(v_mps: float) -> str:
    return f"{v_mps * 3.6:.0f} km/h"


def _recorded_moving_time(d_m: np.ndarray, t_s: np.ndarray, segment: np.ndarray, flat_v_mps: float, raw=None):
    """Recorded elapsed time with pauses squeezed out, or ``None`` when the timestamps are unusable.

    Unusable: any missing or decreasing timestamp, or a mean speed that is not a run/hike/ride (e.g. every
    timestamp equal, as in files re-saved by some converters).

    Returns
    -------
    (time_s or None, reason or None, median moving speed in m/s or None)
        ``reason`` says in a few words why the timestamps cannot be used (for the warning).
    """
    n = t_s.size
    if n < 2:
        return None, None, None
    ok = np.isfinite(t_s)
    if not ok.all():
        return None, f"{int(ok.sum())} of {n} points have a time", None
    dt = np.diff(t_s)
    if np.any(dt < 0):
        i = int(np.argmax(dt < 0)) + 1
        where = raw.label(i) if raw is not None else f"point {i}"
        return None, f"timestamps go backwards at {where} ({-float(dt[i - 1]):g} s before the point ahead of it)", \
            None
    dd = np.diff(d_m)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dt > 0, dd / np.where(dt > 0, dt, 1.0), np.inf)
    # A pause: a long interval spent (nearly) standing still, or any join between two recorded segments.  Its
    # few metres are charged at flat pace instead of the minutes the watch spent waiting.
    pause = ((v < PAUSE_SPEED_MPS) & (dt > PAUSE_MIN_S)) | (np.diff(segment) != 0)
    moving_v = v[~pause & (dt > 0) & (v >= PAUSE_SPEED_MPS)]
    median_v = float(np.median(moving_v)) if moving_v.size else None
    dt_eff = np.where(pause, dd / flat_v_mps, dt)
    moving = float(dt_eff.sum())
    if not np.any(dt > 0):
        return None, "every timestamp is the same", None
    if moving <= 0:
        return None, "no time passes between the points", median_v
    mean_v = float(d_m[-1] - d_m[0]) / moving
    if not (PLAUSIBLE_SPEED_MPS[0] <= mean_v <= PLAUSIBLE_SPEED_MPS[1]):
        return None, (f"the mean moving speed {mean_v * 3.6:.3g} km/h is outside "
                      f"{PLAUSIBLE_SPEED_MPS[0] * 3.6:g}..{PLAUSIBLE_SPEED_MPS[1] * 3.6:g} km/h"), median_v
    return np.concatenate([[0.0], np.cumsum(dt_eff)]), None, median_v


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) indices (end exclusive) of the runs of True in ``mask``."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(m)
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _jump_limit_m(distance_m) -> np.ndarray:
    """Largest elevation change a runner can meet over ``distance_m`` (the spike filter's allowance)."""
    return G.SPIKE_ALLOWANCE_M + G.MAX_PLAUSIBLE_GRADE * np.abs(distance_m)


def _clean_elevation(raw: RawTrack, ele: np.ndarray, d_raw: np.ndarray, display: str) -> tuple[np.ndarray, list]:
    """Out-of-range outliers, 0 m placeholders and jumps across pauses, before the spike filter.

    Returns the elevation (NaN where a value was dropped) and the warnings.
    """
    warnings = []
    field = raw.ele_field.strip("<>")
    fin = np.isfinite(ele)
    n_ele = int(fin.sum())
    if not np.any(ele[fin] != 0.0):
        warnings.append(f"{display}: {raw.ele_field} is 0 m at every point: the file has no real elevation, "
                        f"the course is coached as flat")
        return ele, warnings

    # 1. Elevations not on Earth's land surface: isolated ones are glitches, many mean the file is not in metres.
    lo, hi = ELEVATION_RANGE_M
    bad = fin & ((ele < lo) | (ele > hi))
    if bad.any():
        i = int(np.argmax(bad))
        where = f"{raw.label(i)}.{field}"
        n_bad = int(bad.sum())
        if n_bad > max(1.0, OUTLIER_MAX_FRACTION * n_ele) or n_ele - n_bad < 2:
            raise ProfileError(f"{display}: {where}: {float(ele[i])!r} is outside {lo:g}..{hi:g} m"
                               + (f" (and {n_bad - 1} more points)" if n_bad > 1 else ""))
        more = f" and {n_bad - 1} more point{'s' if n_bad > 2 else ''}" if n_bad > 1 else ""
        warnings.append(f"{display}: {where}: {float(ele[i]):g} m is outside {lo:g}..{hi:g} m: dropped as a "
                        f"spike{more}")
        ele = ele.copy()
        ele[bad] = np.nan
        fin = np.isfinite(ele)

    # 2. Runs of exactly 0 m that start or end with an impossible jump (or at either end of the track): phones
    #    write <ele>0.0</ele> until the GPS has a fix.  A coastal track at sea level has no such jump.
    idx_fin = np.flatnonzero(fin)
    e_fin = ele[idx_fin]
    starts, ends = _runs(e_fin == 0.0)
    if starts.size:
        d_fin = d_raw[idx_fin]
        left_ok = starts == 0
        s_in = np.maximum(starts - 1, 0)
        left_jump = np.abs(e_fin[s_in]) > _jump_limit_m(d_fin[np.minimum(starts, e_fin.size - 1)] - d_fin[s_in])
        right_ok = ends == e_fin.size
        e_in = np.minimum(ends, e_fin.size - 1)
        right_jump = np.abs(e_fin[e_in]) > _jump_limit_m(d_fin[e_in] - d_fin[ends - 1])
        placeholder = (left_ok | left_jump) & (right_ok | right_jump) & ~(left_ok & right_ok)
        if placeholder.any():
            drop = np.zeros(e_fin.size, dtype=bool)
            for a, b in zip(starts[placeholder], ends[placeholder]):
                drop[a:b] = True
            ele = ele.copy()
            ele[idx_fin[drop]] = np.nan
            a0, b0 = int(idx_fin[starts[placeholder][0]]), int(idx_fin[ends[placeholder][0] - 1])
            n_runs = int(placeholder.sum())
            warnings.append(f"{display}: {raw.label_range(a0, b0)}.{field}: "
                            f"{int(drop.sum())} placeholder elevations of 0 m "
                            f"({n_runs} run{'s' if n_runs > 1 else ''}, e.g. before the GPS fix) dropped")
            fin = np.isfinite(ele)
    if fin.sum() < 2:
        raise ProfileError(f"{display}: too few points with elevation ({int(fin.sum())} of {ele.size} have a "
                           f"usable {raw.ele_field}; need 2)")

    # 3. Jumps across pauses: a barometric altimeter drifts with the weather while the watch waits (+33.8 m over
    #    0 m after a 21-minute stop), and GPS altitude re-converges after a restart.  Not terrain: the rest of the
    #    track is re-based so elevation is continuous across the pause.
    t = np.asarray(raw.time_s, dtype=np.float64)
    if t.size == ele.size and np.isfinite(t).all() and ele.size >= 2:
        e_f = _fill_by_index(ele)
        dt = np.diff(t)
        dd = np.diff(d_raw)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(dt > 0, dd / np.where(dt > 0, dt, 1.0), np.inf)
        same_seg = np.diff(raw.segment) == 0
        pause = same_seg & (dt > PAUSE_MIN_S) & (v < PAUSE_SPEED_MPS)
        cand = np.flatnonzero(pause & (np.abs(np.diff(e_f)) > _jump_limit_m(dd)))
        if cand.size:
            shift = np.zeros(ele.size)
            biggest = None
            for i in cand.tolist():
                # Medians of the few fixes either side: a single bad first fix after the pause must not set the
                # new reference (the spike filter deals with it).
                before = float(np.median(e_f[max(0, i - 4):i + 1]))
                after = float(np.median(e_f[i + 1:i + 6]))
                jump = after - before
                if abs(jump) <= _jump_limit_m(dd[i]):
                    continue
                shift[i + 1:] -= jump
                if biggest is None or abs(jump) > abs(biggest[1]):
                    biggest = (i + 1, jump, float(dt[i]))
            if biggest is not None:
                ele = ele + shift
                i, jump, pause_s = biggest
                n_p = int(np.count_nonzero(np.diff(shift)))
                warnings.append(f"{display}: {raw.label(i)}.{field}: elevation jumps {jump:+.1f} m across a "
                                f"{pause_s / 60:.0f} min pause with no distance: re-based the rest of the track"
                                + (f" ({n_p} pauses)" if n_p > 1 else ""))
    return ele, warnings


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
    """Build a :class:`Profile` from raw points; every problem raises :class:`ProfileError` prefixed ``display``.

    Problems that are worked around (a dropped outlier, placeholder elevations, a re-based pause, timestamps that
    cannot be used, speeds that are not running) are returned in ``Profile.warnings``.
    """
    flat_pace_s = pace.DEFAULT_FLAT_PACE_S_PER_KM if flat_pace_s_per_km is None else \
        pace.check_flat_pace(flat_pace_s_per_km, f"{display}: flat_pace_s_per_km")
    warnings = list(raw.warnings)
    ele = np.asarray(raw.elevation_m, dtype=np.float64)
    n = ele.size
    n_ele = int(np.isfinite(ele).sum())
    if n == 0:
        raise ProfileError(f"{display}: no {raw.point_name} points")
    if n > MAX_POINTS:
        refuse_too_many_points(display, f"{raw.point_name} points")
    if n_ele == 0:
        raise ProfileError(f"{display}: no elevation data (0 of {n} points have {raw.ele_field})")
    if n_ele < 2:
        raise ProfileError(f"{display}: too few points with elevation ({n_ele} of {n} have {raw.ele_field}; need 2)")

    d_raw = _cumulative_distance(raw, display)
    total = float(d_raw[-1])
    if not np.isfinite(total) or total > MAX_DISTANCE_M:
        raise ProfileError(f"{display}: distance: {total:.0f} m is longer than {MAX_DISTANCE_M / 1000:g} km")
    if total < MIN_DISTANCE_M:
        raise ProfileError(f"{display}: too short: {total:.1f} m over {n} points (need at least {MIN_DISTANCE_M:g} m)")

    # Elevation: outliers, placeholders and pause jumps (above), then fill gaps and reject spikes (on raw points,
    # see grade.py).  Segments are not shifted to meet: GPS and barometric elevations are absolute, and the first
    # fix of a new segment, which is often tens of metres off, would otherwise offset the whole rest of the
    # track.  The spike filter removes such fixes.
    ele, ele_warnings = _clean_elevation(raw, ele, d_raw, display)
    warnings += ele_warnings
    ele = _fill_by_index(ele)
    spikes = G.reject_spikes(d_raw, ele)
    if spikes.any() and (~spikes).sum() >= 2:
        cleaned = ele.copy()
        cleaned[spikes] = np.nan
        cleaned = _fill_by_index(cleaned)
        dev = np.abs(ele - cleaned)
        if dev.max() > REPORTED_SPIKE_M:
            i = int(np.argmax(dev))
            big = int((dev > REPORTED_SPIKE_M).sum())
            warnings.append(f"{display}: {raw.label(i)}.{raw.ele_field.strip('<>')}: {float(ele[i]):.1f} m is "
                            f"{float(dev[i]):.0f} m off the track around it: dropped as a spike"
                            + (f" ({big} points over {REPORTED_SPIKE_M:g} m)" if big > 1 else ""))
        ele = cleaned

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
    t_raw = np.asarray(raw.time_s, dtype=np.float64)
    if use_recorded_time is not False and not raw.is_route:
        t_rec, why, median_v = _recorded_moving_time(d_raw, t_raw, raw.segment, 1000.0 / flat_pace_s, raw)
        if t_rec is None and use_recorded_time:
            n_t = int(np.isfinite(raw.time_s).sum())
            raise ProfileError(f"{display}: time: recorded timestamps are unusable ({n_t} of {n} points have a "
                               f"time; they must all be present, increasing and plausible for a run)"
                               + (f": {why}" if why else ""))
        if t_rec is None and why and np.isfinite(t_raw).any():
            warnings.append(f"{display}: time: {why}: using the pace model (flat "
                            f"{pace.format_pace(flat_pace_s)} min/km) instead of the recorded time")
        if median_v is not None and median_v > RUNNING_MAX_MEDIAN_SPEED_MPS:
            warnings.append(f"{display}: median moving speed {_fmt_kmh(median_v)} is not running (over "
                            f"{_fmt_kmh(RUNNING_MAX_MEDIAN_SPEED_MPS)}): is this a car or bike log? Coached as "
                            f"a run anyway")
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
                       warnings=tuple(warnings), lat_deg=lat_grid, lon_deg=lon_grid)
    except ValueError as exc:  # the contract's own checks: report them like any other input problem
        raise ProfileError(f"{display}: {exc}") from None


def track_distance_m(raw: RawTrack, display: str = "track") -> np.ndarray:
    """Cumulative distance of each raw point, as :func:`profile_from_track` measures it (the profile's
    ``distance_m`` axis): the device's own distance when it recorded one, else haversine between the points."""
    return _cumulative_distance(raw, display)
