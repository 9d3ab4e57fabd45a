"""GPX reader: tracks (all segments), routes; waypoint-only files are rejected.

Two readers produce the same :class:`~profiles.track.RawTrack`:

* :func:`read_gpx_fast`: ``xml.etree`` straight to arrays.  About 5x faster than gpxpy on a 100 km track
  (see ``benchmarks/bench_import.py``) because it builds no object per point.  It handles the common case (GPX
  1.0/1.1, ``lat``/``lon``/``ele``/``time``) and raises :class:`_Unusual` on anything else;
* :func:`read_gpx_gpxpy`: gpxpy, the reference parser, used whenever the fast reader declines (odd time
  formats, unusual structure) so unusual-but-valid files still load.

Empty segments are skipped; points of different segments (and tracks) are marked by ``RawTrack.segment`` so the
distance and time between them are not counted (see :mod:`profiles.track`).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import xml.etree.ElementTree as ET

import numpy as np

from metronome.errors import ProfileError

from . import track as _track
from .track import RawTrack, refuse_too_many_points

#: Most points the gpxpy fallback reads: gpxpy builds several Python objects per point, ~70 us each on the
#: benchmark machine (1M points: 77 s and 2.4 GB, issue 12), so 60,000 points (~4.5 s; a 1 Hz recording of 16 h)
#: stay under the 5 s budget.  Files over it that the fast reader declines are refused, with the reason.
GPXPY_MAX_POINTS = 60_000
#: Most points the fast reader takes: it builds the whole ``xml.etree`` tree (~1.1 kB per point: 1M points took
#: 7 s and 1.1 GB, benchmarks/bench_huge_tracks.py; 400k took 2.9-5.4 s and 470 MB depending on the machine's
#: load), so 250,000 points (a 1 Hz recording of 69 h, beyond any single run) keep a load under 5 s and 500 MB.
GPX_MAX_POINTS = 250_000
_POINT_TAG = re.compile(rb"<(?:[\w.-]+:)?(?:trk|rte)pt[\s>/]")

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class _Unusual(Exception):
    """The fast reader met something it does not handle; fall back to gpxpy."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _coord(value, what: str, limit: float, display: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ProfileError(f"{display}: {what}: {value!r} is not a number") from None
    if not (math.isfinite(x) and -limit <= x <= limit):
        raise ProfileError(f"{display}: {what}: {value!r} is outside -{limit:g}..{limit:g}")
    return x


def _number(value, what: str, display: str) -> float:
    if value is None:
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ProfileError(f"{display}: {what}: {value.strip()[:40]!r} is not a number") from None
    if not math.isfinite(x):
        raise ProfileError(f"{display}: {what}: {value.strip()!r} is not a finite number")
    return x


def _epoch_s(dt: _dt.datetime) -> float:
    if dt.tzinfo is None:  # GPX times are UTC; some writers omit the Z
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return (dt - _EPOCH).total_seconds()


def _parse_time(text: str) -> float:
    try:
        return _epoch_s(_dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise _Unusual(f"time {text!r}") from None


def _check_root(root_tag: str, display: str) -> None:
    if _local(root_tag) != "gpx":
        raise ProfileError(f"{display}: not a GPX file (root element <{_local(root_tag)}>, expected <gpx>)")


def _assemble(points, display: str, is_route: bool, n_waypoints: int, labels: dict) -> RawTrack:
    """``points``: list of (segment, lat, lon, ele, time_s) tuples in order; ``labels``: segment -> name."""
    if not points:
        if n_waypoints:
            raise ProfileError(f"{display}: only waypoints ({n_waypoints} <wpt>), no track or route: "
                               f"a profile needs a <trk> or <rte>")
        raise ProfileError(f"{display}: no track or route points (no <trkpt> or <rtept>)")
    arr = np.array(points, dtype=np.float64)
    return RawTrack(segment=arr[:, 0].astype(np.int64), lat_deg=arr[:, 1], lon_deg=arr[:, 2],
                    elevation_m=arr[:, 3], time_s=arr[:, 4], ele_field="<ele>",
                    point_name="rtept" if is_route else "trkpt", is_route=is_route, segment_labels=labels)


def read_gpx_fast(data: bytes, display: str) -> RawTrack:
    """Read GPX bytes with ``xml.etree``; raise :class:`_Unusual` to ask for the gpxpy reader."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ProfileError(f"{display}: not well-formed XML ({exc})") from None
    _check_root(root.tag, display)
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    ele_tag, time_tag = ns + "ele", ns + "time"
    points = []

    def add(seg, i_pt, pt, where):
        lat = _coord(pt.get("lat"), f"{where}[{i_pt}].lat", 90.0, display)
        lon = _coord(pt.get("lon"), f"{where}[{i_pt}].lon", 180.0, display)
        ele = _number(pt.findtext(ele_tag), f"{where}[{i_pt}].ele", display)
        t = pt.findtext(time_tag)
        points.append((seg, lat, lon, ele, _parse_time(t) if t is not None else math.nan))

    seg = 0
    labels = {}
    for i_trk, trk in enumerate(root.iterfind(ns + "trk")):
        for i_seg, trkseg in enumerate(trk.iterfind(ns + "trkseg")):
            pts = trkseg.findall(ns + "trkpt")
            if not pts:
                continue  # an empty segment (watches write them on pause/resume)
            labels[seg] = f"trk[{i_trk}].trkseg[{i_seg}].trkpt"
            for i_pt, pt in enumerate(pts):
                add(seg, i_pt, pt, labels[seg])
            seg += 1
    is_route = False
    if not points:
        for i_rte, rte in enumerate(root.iterfind(ns + "rte")):
            labels[seg] = f"rte[{i_rte}].rtept"
            for i_pt, pt in enumerate(rte.iterfind(ns + "rtept")):
                add(seg, i_pt, pt, labels[seg])
            seg += 1
        is_route = bool(points)
    if not points and (root.find(".//trkpt") is not None or root.find(".//{*}trkpt") is not None):
        raise _Unusual("track points outside the usual trk/trkseg structure")
    return _assemble(points, display, is_route, len(root.findall(ns + "wpt")), labels)


def read_gpx_gpxpy(data: bytes, display: str) -> RawTrack:
    """Read GPX bytes with gpxpy (the reference parser)."""
    import gpxpy
    import gpxpy.gpx

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{display}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") \
            from None
    try:
        gpx = gpxpy.parse(text)
    except gpxpy.gpx.GPXException as exc:
        msg = " ".join(str(exc).split())[:200]
        raise ProfileError(f"{display}: not a valid GPX file ({msg})") from None
    except Exception as exc:  # gpxpy lets ValueError/TypeError/XML errors escape on odd input
        msg = " ".join(str(exc).split())[:200]
        raise ProfileError(f"{display}: not a valid GPX file ({type(exc).__name__}: {msg})") from None
    points = []
    seg = 0
    labels = {}

    def add(seg, i_pt, p, where):
        lat = _coord(p.latitude, f"{where}[{i_pt}].lat", 90.0, display)
        lon = _coord(p.longitude, f"{where}[{i_pt}].lon", 180.0, display)
        ele = math.nan if p.elevation is None else _number(str(p.elevation), f"{where}[{i_pt}].ele", display)
        points.append((seg, lat, lon, ele, math.nan if p.time is None else _epoch_s(p.time)))

    for i_trk, trk in enumerate(gpx.tracks):
        for i_seg, trkseg in enumerate(trk.segments):
            if not trkseg.points:
                continue
            labels[seg] = f"trk[{i_trk}].trkseg[{i_seg}].trkpt"
            for i_pt, p in enumerate(trkseg.points):
                add(seg, i_pt, p, labels[seg])
            seg += 1
    is_route = False
    if not points:
        for i_rte, rte in enumerate(gpx.routes):
            labels[seg] = f"rte[{i_rte}].rtept"
            for i_pt, p in enumerate(rte.points):
                add(seg, i_pt, p, labels[seg])
            seg += 1
        is_route = bool(points)
    return _assemble(points, display, is_route, len(gpx.waypoints), labels)


def read_gpx(data: bytes, display: str) -> RawTrack:
    """Fast reader, or gpxpy when the fast reader declines; files over the points limits are refused first."""
    n_points = sum(1 for _ in _POINT_TAG.finditer(data))  # a byte scan (~0.2 s for 1M points), before parsing
    if n_points > min(_track.MAX_POINTS, GPX_MAX_POINTS):
        refuse_too_many_points(display, "trkpt points", min(_track.MAX_POINTS, GPX_MAX_POINTS),
                               " for GPX" if GPX_MAX_POINTS < _track.MAX_POINTS else "")
    try:
        return read_gpx_fast(data, display)
    except _Unusual as why:
        if n_points > GPXPY_MAX_POINTS:
            raise ProfileError(f"{display}: {n_points} track/route points need the gpxpy reader (unusual layout or "
                               f"time format: {str(why)[:80]}), which is limited to {GPXPY_MAX_POINTS} points "
                               f"(~5 s); convert the file to plain GPX 1.1 with ISO 8601 times") from None
        return read_gpx_gpxpy(data, display)
