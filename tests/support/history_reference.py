"""Independent cadence figures for the review tests (issue 15): straight from fitdecode records and XML elements.

Shares no code with metronome.history or profiles: its own record walk, its own distance (the device's cumulative
distance, or its own haversine), its own unit rule (running cadence is strides per minute; steps = 2 x).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET


def fit_points(path):
    """``[(distance_m, steps_per_min or None)]`` from a FIT file's record messages (distance from the first)."""
    import fitdecode

    pts = []
    with fitdecode.FitReader(str(path)) as fr:
        for frame in fr:
            if getattr(frame, "frame_type", None) != fitdecode.FIT_FRAME_DATA or frame.name != "record":
                continue
            dist = frame.get_value("distance", fallback=None)
            cad = frame.get_value("cadence", fallback=None)
            frac = frame.get_value("fractional_cadence", fallback=None)
            if cad is not None:
                cad = 2.0 * (float(cad) + (float(frac) if frac is not None else 0.0))
            pts.append((None if dist is None else float(dist), cad))
    first = next(d for d, _ in pts if d is not None)
    out, last = [], 0.0
    for d, c in pts:
        last = max(last, d - first) if d is not None else last
        out.append((last, c))
    return out


def _strip(tag):
    return tag.split("}")[-1]


def tcx_points(path):
    out, first = [], None
    for el in ET.parse(str(path)).getroot().iter():
        if _strip(el.tag) != "Trackpoint":
            continue
        dist = cad = None
        for child in el.iter():
            name = _strip(child.tag)
            if name == "DistanceMeters":
                dist = float(child.text)
            elif name in ("RunCadence", "Cadence"):
                cad = 2.0 * float(child.text)
        if dist is None:
            continue
        first = dist if first is None else first
        out.append((dist - first, cad))
    return out


def _great_circle_m(lat1, lon1, lat2, lon2):
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


def gpx_points(path):
    """Track points of a single-segment GPX with gpxtpx:cad / gpxdata:cadence (strides per minute)."""
    out, prev, total = [], None, 0.0
    for el in ET.parse(str(path)).getroot().iter():
        if _strip(el.tag) != "trkpt":
            continue
        lat, lon = float(el.get("lat")), float(el.get("lon"))
        if prev is not None:
            total += _great_circle_m(prev[0], prev[1], lat, lon)
        prev = (lat, lon)
        cad = None
        for child in el.iter():
            if _strip(child.tag) in ("cad", "cadence"):
                cad = 2.0 * float(child.text)
        out.append((total, cad))
    return out


def points(path):
    ext = str(path).lower().rsplit(".", 1)[-1]
    return {"fit": fit_points, "tcx": tcx_points, "gpx": gpx_points}[ext](path)


def mean_cadence(pts, start_m=-math.inf, end_m=math.inf):
    """Mean steps/min over points with cadence > 0 and distance in [start_m, end_m]; None if there are none."""
    vals = [c for d, c in pts if c is not None and c > 0 and start_m <= d <= end_m]
    return sum(vals) / len(vals) if vals else None


def fit_to_gpx(fit_path, gpx_path, track_type="running"):
    """Rebuild a FIT run as a Garmin-style GPX with ``gpxtpx:cad`` (strides/min, as Garmin Connect exports it)."""
    import fitdecode

    rows = []
    with fitdecode.FitReader(str(fit_path)) as fr:
        for frame in fr:
            if getattr(frame, "frame_type", None) != fitdecode.FIT_FRAME_DATA or frame.name != "record":
                continue
            lat = frame.get_value("position_lat", fallback=None)
            lon = frame.get_value("position_long", fallback=None)
            if lat is None or lon is None:
                continue
            ele = frame.get_value("enhanced_altitude", fallback=None) or frame.get_value("altitude", fallback=0.0)
            ts = frame.get_value("timestamp")
            cad = frame.get_value("cadence", fallback=None)
            rows.append((lat * 180 / 2 ** 31, lon * 180 / 2 ** 31, ele, ts.strftime("%Y-%m-%dT%H:%M:%SZ"), cad))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1" '
             'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">',
             f"<trk><type>{track_type}</type><trkseg>"]
    for lat, lon, ele, t, cad in rows:
        ext = "" if cad is None else \
            f"<extensions><gpxtpx:TrackPointExtension><gpxtpx:cad>{cad}</gpxtpx:cad></gpxtpx:TrackPointExtension></extensions>"
        lines.append(f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><ele>{ele:.1f}</ele><time>{t}</time>{ext}</trkpt>')
    lines.append("</trkseg></trk></gpx>")
    with open(gpx_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return gpx_path
