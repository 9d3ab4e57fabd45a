"""TCX (Garmin Training Center XML) reader: every ``Trackpoint`` of every lap of activities and courses.

Fields used: ``Time``, ``Position/LatitudeDegrees``, ``Position/LongitudeDegrees``, ``AltitudeMeters``,
``DistanceMeters`` and cadence (``Cadence`` or the ``TPX/RunCadence`` extension; running cadence in TCX counts
one foot, so it is doubled to steps per minute).  Laps/tracks are segments: the time between them is a pause.

A ``<Course>`` (under ``<Courses>``) is a route to follow, not a recording: its ``Time`` values are a virtual
partner's schedule (often a bike's 33 km/h), so a course is timed by the pace model like a GPX route.  When a file
has both, the ``<Activities>`` are used.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import xml.etree.ElementTree as ET

import numpy as np

from metronome.errors import ProfileError

from .gpx import _coord, _epoch_s, _local, _number
from . import track as _track
from .track import RawTrack, refuse_too_many_points

_POINT_TAG = re.compile(rb"<(?:[\w.-]+:)?Trackpoint[\s>/]")
#: Most Trackpoints per file: TCX builds the whole ``xml.etree`` tree with five to eight elements per point
#: (~1.6 kB: 1M points took 22 s and 1.6 GB, benchmarks/bench_huge_tracks.py; 200k took 3.0-5.9 s and 344 MB
#: depending on the machine's load), so 150,000 points (a 1 Hz recording of 42 h) keep a load under 5 s and
#: 500 MB.  Longer recordings come as FIT, whose reader takes 1M points.
TCX_MAX_POINTS = 150_000


def _time(text, where: str, display: str) -> float:
    if text is None:
        return math.nan
    try:
        return _epoch_s(_dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ProfileError(f"{display}: {where}: {text.strip()[:40]!r} is not an ISO 8601 time") from None


def read_tcx(data: bytes, display: str) -> RawTrack:
    limit = min(_track.MAX_POINTS, TCX_MAX_POINTS)
    if sum(1 for _ in _POINT_TAG.finditer(data)) > limit:   # a byte scan, before the tree is built
        refuse_too_many_points(display, "Trackpoint points", limit,
                               " for TCX" if TCX_MAX_POINTS < _track.MAX_POINTS else "")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ProfileError(f"{display}: not well-formed XML ({exc})") from None
    if _local(root.tag) != "TrainingCenterDatabase":
        raise ProfileError(f"{display}: not a TCX file (root element <{_local(root.tag)}>, "
                           f"expected <TrainingCenterDatabase>)")
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    is_running = any(a.get("Sport", "").lower() == "running" for a in root.iter(ns + "Activity"))
    in_course = set()
    for course in root.iter(ns + "Course"):
        in_course.update(id(t) for t in course.iter(ns + "Track"))
    tracks = list(root.iter(ns + "Track"))
    has_activity = any(id(t) not in in_course and t.find(ns + "Trackpoint") is not None for t in tracks)
    is_course = not has_activity and bool(in_course)
    rows = []
    labels = {}
    for i_track, track in enumerate(tracks):
        if (id(track) in in_course) != is_course:
            continue
        labels[i_track] = f"Track[{i_track}].Trackpoint"
        for i_pt, tp in enumerate(track.iterfind(ns + "Trackpoint")):
            where = f"Track[{i_track}].Trackpoint[{i_pt}]"
            pos = tp.find(ns + "Position")
            lat = lon = math.nan
            if pos is not None:
                lat = _coord(pos.findtext(ns + "LatitudeDegrees"), f"{where}.LatitudeDegrees", 90.0, display)
                lon = _coord(pos.findtext(ns + "LongitudeDegrees"), f"{where}.LongitudeDegrees", 180.0, display)
            ele = _number(tp.findtext(ns + "AltitudeMeters"), f"{where}.AltitudeMeters", display)
            dist = _number(tp.findtext(ns + "DistanceMeters"), f"{where}.DistanceMeters", display)
            cad = tp.findtext(ns + "Cadence")
            if cad is None:
                ext = tp.find(ns + "Extensions")   # RunCadence sits in an extension namespace, under Extensions
                cad = None if ext is None else next((e.text for e in ext.iter() if _local(e.tag) == "RunCadence"),
                                                    None)
            cad_v = _number(cad, f"{where}.Cadence", display)
            rows.append((i_track, lat, lon, ele, _time(tp.findtext(ns + "Time"), f"{where}.Time", display), dist,
                         cad_v * 2.0 if is_running else math.nan))
    if not rows:
        raise ProfileError(f"{display}: no Trackpoint elements (no activity or course track)")
    a = np.array(rows, dtype=np.float64)
    has_pos = np.isfinite(a[:, 1]).any()
    return RawTrack(segment=a[:, 0].astype(np.int64), lat_deg=a[:, 1] if has_pos else None,
                    lon_deg=a[:, 2] if has_pos else None, elevation_m=a[:, 3], time_s=a[:, 4], distance_m=a[:, 5],
                    cadence_spm=a[:, 6] if is_running and not is_course else None, ele_field="AltitudeMeters",
                    point_name="Trackpoint", is_route=is_course, segment_labels=labels)
