"""TCX (Garmin Training Center XML) reader: every ``Trackpoint`` of every lap of activities and courses.

Fields used: ``Time``, ``Position/LatitudeDegrees``, ``Position/LongitudeDegrees``, ``AltitudeMeters``,
``DistanceMeters`` and cadence (``Cadence`` or the ``TPX/RunCadence`` extension; running cadence in TCX counts
one foot, so it is doubled to steps per minute).  Laps/tracks are segments: the time between them is a pause.
"""

from __future__ import annotations

import datetime as _dt
import math
import xml.etree.ElementTree as ET

import numpy as np

from metronome.errors import ProfileError

from .gpx import _coord, _epoch_s, _local, _number
from .track import RawTrack


def _time(text, where: str, display: str) -> float:
    if text is None:
        return math.nan
    try:
        return _epoch_s(_dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ProfileError(f"{display}: {where}: {text.strip()[:40]!r} is not an ISO 8601 time") from None


def read_tcx(data: bytes, display: str) -> RawTrack:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ProfileError(f"{display}: not well-formed XML ({exc})") from None
    if _local(root.tag) != "TrainingCenterDatabase":
        raise ProfileError(f"{display}: not a TCX file (root element <{_local(root.tag)}>, "
                           f"expected <TrainingCenterDatabase>)")
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    is_running = any(a.get("Sport", "").lower() == "running" for a in root.iter(ns + "Activity"))
    rows = []
    for i_track, track in enumerate(root.iter(ns + "Track")):
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
                run_cad = next((e.text for e in tp.iter() if _local(e.tag) == "RunCadence"), None)
                cad = run_cad
            cad_v = _number(cad, f"{where}.Cadence", display)
            rows.append((i_track, lat, lon, ele, _time(tp.findtext(ns + "Time"), f"{where}.Time", display), dist,
                         cad_v * 2.0 if is_running else math.nan))
    if not rows:
        raise ProfileError(f"{display}: no Trackpoint elements (no activity or course track)")
    a = np.array(rows, dtype=np.float64)
    has_pos = np.isfinite(a[:, 1]).any()
    return RawTrack(segment=a[:, 0].astype(np.int64), lat_deg=a[:, 1] if has_pos else None,
                    lon_deg=a[:, 2] if has_pos else None, elevation_m=a[:, 3], time_s=a[:, 4], distance_m=a[:, 5],
                    cadence_spm=a[:, 6] if is_running else None, ele_field="AltitudeMeters",
                    point_name="Trackpoint")
