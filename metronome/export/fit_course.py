"""FIT course export: the course track plus a course point at every planned cue, for a watch that navigates it.

File layout (FIT course file, ``file_id.type = course``), in the order coursepointer writes and has checked on a
Fenix 7 (github.com/mshroyer/coursepointer, ``src/fit.rs``; Garmin's own description of course files is
developer.garmin.com/fit/file-types/course/): ``file_id``, ``course`` (name, sport = running), ``lap`` (start and
end position, total distance and time), ``event`` timer start, ``record`` x N (position in semicircles, distance,
altitude, timestamp), ``course_point`` x M, ``event`` timer stop.  Garmin's FIT SDK forum answer on course files
(forums.garmin.com/developer/fit-sdk, "Course FIT file questions", 2026) says the course point ``timestamp`` is
required and ``message_index`` optional; both are written.

Timing: the record timestamps are the plan's own timing (``profile.time_s``: recorded moving time or the pace
model), so a watch's virtual partner runs the plan the audio track follows.  FIT timestamps are whole seconds, so
records closer than one second to the previous one are skipped (the last point is always kept).

Course points: one per planned cue, at the course distance where the plan *starts* the cue (``start_sample`` ->
time -> distance along ``profile.time_s``/``distance_m``), so the watch alerts where the audio would speak.  The
name is a short label of at most :data:`~._fit.COURSE_POINT_NAME_BYTES` bytes (``"Steep -12% next"``,
``"-12% arms wide"``); the type is one of the four that a Fenix 7 shows with its own icon in "Up Ahead"
(coursepointer ``docs/point_types.md``): ``summit`` before a descent (the announcement), ``danger`` for steep and
technical ground, ``valley`` where a descent ends, ``generic`` for technique reminders.

Positions: a :class:`~profiles.schema.Profile` keeps distance, not latitude/longitude, so the track is read again
from the profile's GPX/TCX/FIT file and mapped by the same cumulative distance the profile was built on.  A profile
with no positions (YAML courses, treadmill workouts) is exported without positions and with a warning: a watch
can show its distance, altitude and cue points, but cannot navigate it.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from dataclasses import dataclass

import numpy as np

from . import _fit

#: Course point types used, FIT profile ``course_point`` enum values (fit-tool's ``CoursePoint``).
POINT_TYPES = {"generic": 0, "summit": 1, "valley": 2, "danger": 5}
#: Point type per cue trigger (cues/library.py TRIGGERS); anything else is ``generic``.
TRIGGER_POINT_TYPE = {"announce_descent": "summit", "steep_descent": "danger", "technical": "danger",
                      "descent_end": "valley", "descent_start": "generic", "long_descent": "generic"}
#: Short labels for the bundled cues (cues/library.yaml); other cues use their first words.
CUE_LABELS = {
    "steep_ahead": "Steep {g} next", "descent_ahead": "Descent {g}",
    "pick_line": "Tech: pick line",
    "lean_forward": "{g} lean fwd", "quick_steps": "{g} quick feet", "eyes_ahead": "{g} eyes ahead",
    "steep_shorten": "{g} shorten", "arms_wide": "{g} arms wide",
    "relax_upper": "{g} relax", "soft_knees": "{g} soft knees", "soft_landing": "{g} land soft",
    "back_to_rhythm": "End: rhythm",
}


@dataclass(frozen=True)
class CuePoint:
    """One planned cue placed on the course.

    Attributes
    ----------
    time_s : float
        Session time at which the cue starts (``start_sample / samplerate``).
    distance_m : float
        Course distance at that time.
    name : str
        Course point name (at most :data:`~._fit.COURSE_POINT_NAME_BYTES` bytes of UTF-8).
    point_type : str
        A key of :data:`POINT_TYPES`.
    cue_id, text : str
        The planned cue and the phrasing the audio speaks.
    grade_pct : float
        Mean grade of the stretch the cue is about.
    """

    time_s: float
    distance_m: float
    name: str
    point_type: str
    cue_id: str
    text: str
    grade_pct: float


@dataclass(frozen=True)
class Track:
    """The points written as FIT records: distance along the course, position (``None`` without positions, NaN
    at points without a fix), altitude (NaN where the source has none), plan time."""

    distance_m: np.ndarray
    lat_deg: np.ndarray | None
    lon_deg: np.ndarray | None
    altitude_m: np.ndarray
    time_s: np.ndarray

    def position_at(self, distance_m):
        """(lat, lon) in degrees at course distance(s) ``distance_m``, linear between fixes; NaN outside the stretch
        that has fixes; ``None`` without positions."""
        if self.lat_deg is None:
            return None
        fix = np.isfinite(self.lat_deg) & np.isfinite(self.lon_deg)
        d = self.distance_m[fix]
        x = np.asarray(distance_m, dtype=np.float64)
        inside = (x >= d[0]) & (x <= d[-1])
        lat = np.where(inside, np.interp(x, d, self.lat_deg[fix]), np.nan)
        lon = np.where(inside, np.interp(x, d, self.lon_deg[fix]), np.nan)
        return lat, lon


# ------------------------------------------------------------------------------------------------------------------
# Cues -> course points
# ------------------------------------------------------------------------------------------------------------------
def _grade_label(grade_pct: float) -> str:
    return f"{grade_pct:.0f}%" if round(grade_pct) != 0 else "0%"


def cue_label(cue_id: str, text: str, grade_pct: float) -> str:
    """Short course point name for a cue: its label from :data:`CUE_LABELS` with the grade filled in, else the
    phrasing's first words, cut to :data:`~._fit.COURSE_POINT_NAME_BYTES` bytes."""
    template = CUE_LABELS.get(cue_id)
    if template is not None:
        label = template.format(g=_grade_label(grade_pct))
    else:
        label = " ".join(str(text).replace(".", " ").split())
    if len(label.encode("utf-8")) > _fit.COURSE_POINT_NAME_BYTES:
        words, out = label.split(), ""
        for w in words:  # whole words where possible
            trial = f"{out} {w}".strip()
            if len(trial.encode("utf-8")) > _fit.COURSE_POINT_NAME_BYTES:
                break
            out = trial
        label = out or label
    return _fit.fit_name(label, _fit.COURSE_POINT_NAME_BYTES)


def _event_grade(profile, events, trigger: str, t_s: float) -> float:
    """Mean grade of the terrain stretch a cue about time ``t_s`` refers to (steep section, technical tag or the
    descent), else the grade at ``t_s``."""
    kind = {"steep_descent": "steep_descent", "technical": "technical"}.get(trigger, "descent_start")
    eps = 1e-3
    hits = [ev for ev in events if ev.kind == kind and ev.start_s - eps <= t_s <= ev.end_s + eps]
    if hits:
        return float(min(hits, key=lambda ev: abs(ev.start_s - t_s)).grade_pct)
    return float(profile.grade_at_time(t_s))


def cue_points(profile, planned_cues, samplerate: int) -> list:
    """:class:`CuePoint` for every planned cue, in time order.

    Parameters
    ----------
    profile : profiles.schema.Profile
    planned_cues : iterable of cues.planner.PlannedCue
        ``SessionPlan.planned_cues``.
    samplerate : int
        The plan's sample rate (``start_sample`` is in samples of it).
    """
    from cues.terrain import terrain_events

    events = terrain_events(profile)
    out = []
    for cue in sorted(planned_cues, key=lambda c: c.start_sample):
        t = cue.start_sample / samplerate
        t_event = (cue.event_sample if cue.event_sample >= 0 else cue.start_sample) / samplerate
        g = _event_grade(profile, events, cue.trigger, t_event)
        out.append(CuePoint(time_s=t, distance_m=float(profile.distance_at_time(t)),
                            name=cue_label(cue.cue_id, cue.text, g),
                            point_type=TRIGGER_POINT_TYPE.get(cue.trigger, "generic"), cue_id=cue.cue_id,
                            text=cue.text, grade_pct=g))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Profile -> track with positions
# ------------------------------------------------------------------------------------------------------------------
def _raw_track(profile):
    """``(distance_m, lat_deg, lon_deg, elevation_m)`` of the profile's source file (GPX/TCX/FIT), on the profile's
    own distance scale, or ``None`` for an authored YAML profile or a file that cannot be read again.  ``lat_deg``
    and ``lon_deg`` are ``None`` when the file has no positions (a treadmill run); elevation is the file's own
    (NaN where it has none)."""
    from metronome.errors import ProfileError
    from profiles import loader
    from profiles.track import _clean_elevation, _cumulative_distance

    spec = profile.source[len("bundled:"):] if profile.source.startswith("bundled:") else profile.source
    try:
        path, _, _, display = loader.resolve(spec)
    except ProfileError:
        return None
    ext = path.suffix.lower()
    if ext not in (".gpx", ".tcx", ".fit"):
        return None
    try:
        data = loader._read_bytes(path, display)
        if ext == ".gpx":
            from profiles.gpx import read_gpx as read
        elif ext == ".tcx":
            from profiles.tcx import read_tcx as read
        else:
            from profiles.fit import read_fit as read
        raw = read(data, display)
        d = _cumulative_distance(raw, display)  # the same distance the profile was built on
    except ProfileError:
        return None
    # The loader's own clean-up first (placeholders, outliers, jumps across pauses): the exported course has the
    # plan's timing, not the recording's pauses, so a re-import could not re-base those jumps again.
    ele, _ = _clean_elevation(raw, np.asarray(raw.elevation_m, dtype=np.float64), d, display)
    lat = lon = None
    if raw.lat_deg is not None and raw.lon_deg is not None:
        lat = np.asarray(raw.lat_deg, dtype=np.float64).copy()
        lon = np.asarray(raw.lon_deg, dtype=np.float64).copy()
        fix = np.isfinite(lat) & np.isfinite(lon)
        lat[~fix] = np.nan  # points without a fix (GPS not locked yet) stay without one
        lon[~fix] = np.nan
        if fix.sum() < 2:
            lat = lon = None
    if d.size < 2:
        return None
    # The profile's grid ends at the same total; guard against a file changed since it was loaded.
    total = profile.total_distance_m
    d = d - d[0]
    if abs(d[-1] - total) > max(1.0, 0.001 * total):
        return None
    d_u, first = np.unique(d, return_index=True)  # standing still: keep the first fix
    return (d_u, None if lat is None else lat[first], None if lon is None else lon[first], ele[first])


def course_track(profile) -> tuple:
    """``(track, warnings)``: the points to write as FIT records.

    For a profile read from a file, the file's own points are used (no corner is cut by resampling) with its own
    elevation, so that importing the exported course runs the same spike filter, noise estimate and smoothing on
    the same numbers and gives back the same profile; for an authored YAML profile, its grid and elevation.
    Time is the plan's (``profile.time_s``) at each point's distance.  Points closer than one whole second to
    the previous one are dropped (FIT timestamps are whole seconds); the last is always kept.
    """
    warnings = []
    raw = _raw_track(profile)
    if raw is not None:
        d, lat, lon, alt = raw
        d = np.clip(d, 0.0, profile.total_distance_m)
    else:
        d, lat, lon = np.asarray(profile.distance_m, dtype=np.float64), None, None
        alt = np.asarray(profile.elevation_m, dtype=np.float64)
    if lat is None:
        warnings.append(f"{profile.source}: no map positions: the FIT course carries distance, altitude and cue "
                        "points only, so a watch can show it but not navigate it")
    t = np.interp(d, profile.distance_m, profile.time_s)
    sec = np.round(t)
    keep = np.zeros(d.size, dtype=bool)
    last = -1.0
    for i in range(d.size):
        if sec[i] > last:
            keep[i] = True
            last = sec[i]
    if not keep[-1]:
        # The final point carries the total distance: it replaces the kept point of its second.
        j = np.flatnonzero(keep)[-1]
        keep[j] = False
        keep[-1] = True
    track = Track(distance_m=d[keep], lat_deg=None if lat is None else lat[keep],
                  lon_deg=None if lon is None else lon[keep], altitude_m=alt[keep], time_s=t[keep])
    return track, tuple(warnings)


# ------------------------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CourseExport:
    """The encoded course and what went into it."""

    data: bytes
    track: Track
    points: tuple
    warnings: tuple = ()


def _timer_event(message_cls, event_enum, event_type, timestamp_ms):
    """The course's timer start/stop event (the fit-tool classes are passed in: fit-tool is imported lazily)."""
    m = message_cls()
    m.event = event_enum.TIMER
    m.event_type = event_type
    m.event_group = 0
    m.timestamp = timestamp_ms
    return m


def _serial(profile, name: str) -> int:
    """A serial number that differs between courses (a device keys files by type, manufacturer, product and
    serial, FIT file-types guide), stable for the same course."""
    key = f"{name}|{profile.total_distance_m:.1f}|{profile.duration_s:.1f}".encode("utf-8")
    return (zlib.crc32(key) & 0x7FFFFFFF) or 1


def build_course(profile, planned_cues, samplerate: int, *, name: str | None = None,
                 start: _dt.datetime = _fit.DEFAULT_START) -> CourseExport:
    """Encode a FIT course file for ``profile`` with a course point per planned cue.

    Parameters
    ----------
    profile : profiles.schema.Profile
    planned_cues : iterable of PlannedCue
        ``SessionPlan.planned_cues`` (may be empty: a plain course).
    samplerate : int
        The plan's sample rate.
    name : str, optional
        Course name (default: the profile's), cut to :data:`~._fit.NAME_BYTES` bytes.
    start : datetime, optional
        Absolute time of the start (timezone-aware); default a fixed time, so output is reproducible.

    Raises
    ------
    MissingExtraError
        fit-tool is not installed.
    """
    _fit.fit_tool()
    from fit_tool.fit_file_builder import FitFileBuilder
    from fit_tool.profile.messages.course_message import CourseMessage
    from fit_tool.profile.messages.course_point_message import CoursePointMessage
    from fit_tool.profile.messages.event_message import EventMessage
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.lap_message import LapMessage
    from fit_tool.profile.messages.record_message import RecordMessage
    from fit_tool.profile.profile_type import CoursePoint, Event, EventType, FileType, Manufacturer, Sport

    if start.tzinfo is None:
        raise ValueError("start: must be timezone-aware")
    track, warnings = course_track(profile)
    points = cue_points(profile, planned_cues, samplerate)
    title = _fit.fit_name(name if name is not None else profile.name, _fit.NAME_BYTES) or "Downbeat course"
    t0 = _fit.fit_ms(start)
    t_end = _fit.fit_ms(start, float(track.time_s[-1]))
    has_pos = track.lat_deg is not None

    # Strings are padded to one fixed size per message type, so a single definition serves every course point.
    builder = FitFileBuilder(auto_define=True, min_string_size=_fit.COURSE_POINT_NAME_BYTES + 1)

    m = FileIdMessage()
    m.type = FileType.COURSE
    m.manufacturer = Manufacturer.DEVELOPMENT.value
    m.product = 0
    m.time_created = t0
    m.serial_number = _serial(profile, title)
    builder.add(m)

    m = CourseMessage()
    m.course_name = title
    m.sport = Sport.RUNNING
    builder.add(m)

    m = LapMessage()
    m.timestamp = t0  # as coursepointer (device-tested) writes it: the lap message precedes the records
    m.start_time = t0
    m.total_elapsed_time = (t_end - t0) / 1000.0
    m.total_timer_time = (t_end - t0) / 1000.0
    m.total_distance = float(track.distance_m[-1])
    asc, desc = profile.climb_totals_m
    m.total_ascent = int(round(asc))
    m.total_descent = int(round(desc))
    if has_pos:
        fix = np.flatnonzero(np.isfinite(track.lat_deg) & np.isfinite(track.lon_deg))
        m.start_position_lat = float(track.lat_deg[fix[0]])
        m.start_position_long = float(track.lon_deg[fix[0]])
        m.end_position_lat = float(track.lat_deg[fix[-1]])
        m.end_position_long = float(track.lon_deg[fix[-1]])
    builder.add(m)

    builder.add(_timer_event(EventMessage, Event, EventType.START, t0))

    for i in range(track.distance_m.size):
        r = RecordMessage()
        r.timestamp = _fit.fit_ms(start, float(track.time_s[i]))
        if has_pos and np.isfinite(track.lat_deg[i]) and np.isfinite(track.lon_deg[i]):
            r.position_lat = float(track.lat_deg[i])
            r.position_long = float(track.lon_deg[i])
        r.distance = float(track.distance_m[i])
        if np.isfinite(track.altitude_m[i]):
            r.altitude = float(track.altitude_m[i])
        builder.add(r)

    for k, p in enumerate(points):
        c = CoursePointMessage()
        c.message_index = k
        c.timestamp = _fit.fit_ms(start, p.time_s)
        pos = track.position_at(p.distance_m)
        if pos is not None and np.isfinite(pos[0]):
            c.position_lat = float(pos[0])
            c.position_long = float(pos[1])
        c.distance = p.distance_m
        c.type = CoursePoint(POINT_TYPES[p.point_type])
        c.course_point_name = p.name
        builder.add(c)

    builder.add(_timer_event(EventMessage, Event, EventType.STOP_DISABLE_ALL, t_end))

    return CourseExport(data=builder.build().to_bytes(), track=track, points=tuple(points),
                        warnings=tuple(warnings))
