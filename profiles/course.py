"""YAML profiles: authored courses (distance + grade per segment) and treadmill workouts (time + incline).

Course::

    name: Demo descent
    kind: course                 # default
    base_cadence_spm: 170        # optional
    flat_pace_s_per_km: 330      # optional (5:30 min/km)
    start_elevation_m: 1200      # optional (0)
    segments:
      - {distance_m: 400, grade_pct: 0}
      - {distance_m: 1500, grade_pct: -10, surface: gravel}
      - {distance_m: 300, grade_pct: -12, technical: true}

Workout (treadmill; a "decline" is a negative incline)::

    name: Treadmill decline
    kind: workout
    segments:
      - {duration_s: 600, incline_pct: 0, speed_kmh: 10}
      - {duration_s: 180, incline_pct: -6, speed_kmh: 11}

Loaded with ``yaml.safe_load`` only.  Unknown keys are errors (a typo such as ``grade:`` would otherwise be a
silently flat course).  Authored grades are exact, so courses are not smoothed unless ``smoothing_m`` is given.
"""

from __future__ import annotations

import math

import numpy as np

from metronome import safeyaml
from metronome.errors import ProfileError
from metronome.limits import MAX_GRADE_PCT

from . import grade as G
from . import pace
from .schema import Profile, Tag

MAX_ABS_GRADE_PCT = MAX_GRADE_PCT
SEGMENT_DISTANCE_RANGE_M = (1.0, 200_000.0)
SEGMENT_DURATION_RANGE_S = (1.0, 6 * 3600.0)
SPEED_RANGE_KMH = (0.5, 30.0)   # treadmill belts: walking .. the fastest treadmills
BASE_CADENCE_RANGE_SPM = (60.0, 240.0)
MAX_SEGMENTS = 10_000
#: Workouts are gridded in time: one point per second is plenty for a metronome.
WORKOUT_STEP_S = 1.0

COURSE_KEYS = {"name", "kind", "base_cadence_spm", "flat_pace_s_per_km", "start_elevation_m", "segments",
               "description"}
COURSE_SEGMENT_KEYS = {"distance_m", "grade_pct", "surface", "technical", "note"}
WORKOUT_KEYS = {"name", "kind", "base_cadence_spm", "segments", "description"}
WORKOUT_SEGMENT_KEYS = {"duration_s", "incline_pct", "speed_kmh", "note"}


_short = safeyaml.short


class _Ctx:
    """Error messages of the form ``file: field: problem``."""

    def __init__(self, display: str):
        self.display = display

    def fail(self, field: str, problem: str):
        raise ProfileError(f"{self.display}: {field}: {problem}" if field else f"{self.display}: {problem}")

    def number(self, value, field: str, lo: float, hi: float, unit: str = "") -> float:
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            self.fail(field, f"{_short(value)} is not a number")
        if isinstance(value, str):
            # PyYAML reads 1e3 (no dot) as a string; accept numeric strings, reject words.
            try:
                x = float(value)
            except ValueError:
                self.fail(field, f"{_short(value)} is not a number")
        else:
            try:
                x = float(value)
            except (TypeError, ValueError, OverflowError):
                self.fail(field, f"{_short(value)} is not a number")
        if not math.isfinite(x):
            self.fail(field, f"{_short(value)} is not a finite number")
        if not (lo <= x <= hi):
            self.fail(field, f"{_short(value)} is outside {lo:g}..{hi:g}{(' ' + unit) if unit else ''}")
        return x

    def check_keys(self, mapping: dict, allowed: set, where: str):
        for key in mapping:
            if key not in allowed:
                # A key is user data: control characters (\r, \n) must not break the one-line message.
                name = key if isinstance(key, str) and key.isprintable() and key.strip() else _short(key)
                self.fail(f"{where}{name}" if where else str(name),
                          f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def parse_yaml(data: bytes, display: str):
    """``yaml.safe_load`` of bytes with every failure as a one-line :class:`ProfileError`."""
    return safeyaml.load(data, display, ProfileError)


def profile_from_yaml(doc, *, name: str, source: str, display: str, flat_pace_s_per_km=None, smoothing_m=None,
                      use_recorded_time=None) -> Profile:
    """Build a course or workout :class:`Profile` from a parsed YAML document."""
    ctx = _Ctx(display)
    if doc is None:
        ctx.fail("", "empty file")
    if not isinstance(doc, dict):
        ctx.fail("", f"expected a mapping with name, kind and segments, got {type(doc).__name__}")
    kind = doc.get("kind", "course")
    if kind not in ("course", "workout"):
        ctx.fail("kind", f"{_short(kind)} is not 'course' or 'workout'")
    ctx.check_keys(doc, COURSE_KEYS if kind == "course" else WORKOUT_KEYS, "")
    title = doc.get("name", name)
    if not isinstance(title, str) or not title.strip():
        ctx.fail("name", f"{_short(title)} is not a non-empty string")
    base = doc.get("base_cadence_spm")
    if base is not None:
        base = ctx.number(base, "base_cadence_spm", *BASE_CADENCE_RANGE_SPM, unit="steps/min")
    segs = doc.get("segments")
    if segs is None:
        ctx.fail("segments", "missing (a list of segments is required)")
    if not isinstance(segs, list) or not segs:
        ctx.fail("segments", f"{_short(segs)} is not a non-empty list")
    if len(segs) > MAX_SEGMENTS:
        ctx.fail("segments", f"{len(segs)} segments is more than {MAX_SEGMENTS}")
    if smoothing_m is not None:
        smoothing_m = ctx.number(smoothing_m, "smoothing_m", 0.0, 2000.0, "m")
    if kind == "workout":
        # A workout's timing *is* its definition: flat pace and use_recorded_time do not apply.
        return _workout(ctx, segs, title.strip(), source, base)
    pace_s = doc.get("flat_pace_s_per_km")
    if flat_pace_s_per_km is not None:
        pace_s = pace.check_flat_pace(flat_pace_s_per_km, "flat_pace_s_per_km")
    elif pace_s is not None:
        lo, hi = pace.FLAT_PACE_RANGE_S_PER_KM
        pace_s = ctx.number(pace_s, "flat_pace_s_per_km", lo, hi, "s/km")
    else:
        pace_s = pace.DEFAULT_FLAT_PACE_S_PER_KM
    start_m = ctx.number(doc.get("start_elevation_m", 0.0), "start_elevation_m", -500.0, 9000.0, "m")
    return _course(ctx, segs, title.strip(), source, base, pace_s, smoothing_m or 0.0, start_m)


def _segment_dict(ctx, seg, i, allowed, required):
    where = f"segments[{i}]"
    if not isinstance(seg, dict):
        ctx.fail(where, f"{_short(seg)} is not a mapping")
    ctx.check_keys(seg, allowed, where + ".")
    for key in required:
        if key not in seg:
            ctx.fail(f"{where}.{key}", "missing")
    return where


def _merge_grid(regular: np.ndarray, bounds: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Union of a regular grid and the segment bounds, dropping regular points within ``tol`` of a bound.

    The bound itself must survive (not a regular point a rounding error below it), or the stretch that starts
    there would be assigned to the previous segment.
    """
    pos = np.clip(np.searchsorted(bounds, regular), 1, len(bounds) - 1)
    near = np.minimum(np.abs(regular - bounds[pos - 1]), np.abs(regular - bounds[pos])) <= tol
    # np.union1d, without its import of numpy.ma (6 ms of a 0.35 s render, issue 19): sort, drop repeats.
    merged = np.sort(np.concatenate([regular[~near], bounds]))
    return merged[np.concatenate(([True], merged[1:] != merged[:-1]))] if merged.size else merged


def _course(ctx, segs, title, source, base, pace_s, smoothing_m, start_elevation_m=0.0) -> Profile:
    lengths, grades, tags = [], [], []
    start = 0.0
    for i, seg in enumerate(segs):
        where = _segment_dict(ctx, seg, i, COURSE_SEGMENT_KEYS, ("distance_m", "grade_pct"))
        length = ctx.number(seg["distance_m"], f"{where}.distance_m", *SEGMENT_DISTANCE_RANGE_M, unit="m")
        g = ctx.number(seg["grade_pct"], f"{where}.grade_pct", -MAX_ABS_GRADE_PCT, MAX_ABS_GRADE_PCT, unit="%")
        technical = seg.get("technical", False)
        if not isinstance(technical, bool):
            ctx.fail(f"{where}.technical", f"{_short(technical)} is not true or false")
        surface = seg.get("surface")
        if surface is not None and (not isinstance(surface, str) or not surface.strip() or len(surface) > 40):
            ctx.fail(f"{where}.surface", f"{_short(surface)} is not a short label")
        if technical:
            tags.append(Tag(start, start + length, "technical"))
        if surface:
            tags.append(Tag(start, start + length, f"surface={surface.strip()}"))
        lengths.append(length)
        grades.append(g)
        start += length
    bounds = np.concatenate([[0.0], np.cumsum(lengths)])
    total = float(bounds[-1])
    if total > 1_000_000.0:
        ctx.fail("segments", f"total distance {total:.0f} m is longer than 1000 km")
    # Grid: every GRID_STEP_M plus every segment boundary, so a grade change sits exactly on a point.
    grid = _merge_grid(G.regular_grid(total), bounds)
    seg_of_interval = np.clip(np.searchsorted(bounds, grid[:-1], side="right") - 1, 0, len(grades) - 1)
    g_int = np.asarray(grades)[seg_of_interval]                       # exact grade of each grid interval
    elevation = start_elevation_m + np.concatenate([[0.0], np.cumsum(g_int / 100.0 * np.diff(grid))])
    if smoothing_m > 0:
        _, grade_pct = G.smooth_grade(grid, elevation, smoothing_m)
    else:
        # Point i carries the grade of the stretch that starts there (the last point: the last stretch).
        grade_pct = np.concatenate([g_int, g_int[-1:]])
    time_s = pace.elapsed_time_s(grid, grade_pct, pace_s)
    speed = pace.speed_mps(grade_pct, pace_s)
    notes = [f"pace model, flat {pace.format_pace(pace_s)} min/km"]
    if smoothing_m:
        notes.insert(0, f"smoothing {smoothing_m:g} m")
    return _build(ctx, title, source, "course", grid, elevation, grade_pct, time_s, speed, tags, base, notes)


def _workout(ctx, segs, title, source, base) -> Profile:
    durations, inclines, speeds = [], [], []
    for i, seg in enumerate(segs):
        where = _segment_dict(ctx, seg, i, WORKOUT_SEGMENT_KEYS, ("duration_s", "incline_pct", "speed_kmh"))
        durations.append(ctx.number(seg["duration_s"], f"{where}.duration_s", *SEGMENT_DURATION_RANGE_S, unit="s"))
        inclines.append(ctx.number(seg["incline_pct"], f"{where}.incline_pct", -MAX_ABS_GRADE_PCT,
                                   MAX_ABS_GRADE_PCT, unit="%"))
        speeds.append(ctx.number(seg["speed_kmh"], f"{where}.speed_kmh", *SPEED_RANGE_KMH, unit="km/h"))
    bounds = np.concatenate([[0.0], np.cumsum(durations)])
    total = float(bounds[-1])
    if total > 24 * 3600.0:
        ctx.fail("segments", f"total duration {total:.0f} s is longer than 24 h")
    t = _merge_grid(np.arange(0.0, total, WORKOUT_STEP_S), bounds)
    seg_of_interval = np.clip(np.searchsorted(bounds, t[:-1], side="right") - 1, 0, len(segs) - 1)
    v_int = np.asarray(speeds)[seg_of_interval] / 3.6
    g_int = np.asarray(inclines)[seg_of_interval]
    distance = np.concatenate([[0.0], np.cumsum(v_int * np.diff(t))])
    elevation = np.concatenate([[0.0], np.cumsum(g_int / 100.0 * np.diff(distance))])
    grade_pct = np.concatenate([g_int, g_int[-1:]])
    speed = np.concatenate([v_int, v_int[-1:]])
    return _build(ctx, title, source, "workout", distance, elevation, grade_pct, t, speed, [], base,
                  ["treadmill workout: timing and speed as written"])


def _build(ctx, title, source, kind, d, e, g, t, v, tags, base, notes) -> Profile:
    try:
        return Profile(name=title, source=source, kind=kind, distance_m=d, elevation_m=e, grade_pct=g, time_s=t,
                       speed_mps=v, tags=tuple(tags), base_cadence_spm=base, notes=tuple(notes))
    except ValueError as exc:
        ctx.fail("", str(exc))
