"""Raw samples of a recorded activity: time, distance and cadence per recorded point, for learn/review/progress.

:func:`profiles.load_profile` gives the course (grade on a 5 m grid, moving time) but not what the runner's legs
did: its GPX reader drops cadence altogether and its grid interpolates cadence across pauses.  Cadence is a per-
sample figure, so it is read here, one value per recorded point, and never interpolated or invented:

* FIT ``record.cadence`` (+ ``fractional_cadence``), TCX ``RunCadence`` (or ``Cadence``), GPX ``gpxtpx:cad`` (Garmin
  TrackPointExtension) and ``gpxdata:cadence`` (Cluetrust, written by Suunto Movescount) count strides (one foot)
  per minute for running (FIT profile: ``cadence`` in rpm, "strides/min" for running; Garmin TCX/GPX extension
  schemas likewise), so steps per minute are twice that;
* cadence is used only for running activities (FIT ``session/sport.sport`` running/walking/hiking/training, TCX
  ``Activity Sport="Running"``, GPX ``trk/type`` absent or a running type): a cycling ``cad`` is pedal rpm, not
  steps, and is reported as "no cadence data";
* a cadence of 0 is "no steps recorded" (standing, or the sensor had nothing) and stays in the data as 0; callers
  average over samples with cadence > 0, as the issue specifies.

Distances are those :mod:`profiles.track` uses for the course, so a stretch ``start_m..end_m`` of the profile is
the same stretch here: the device's own cumulative distance where the file has one for at least half the points
(FIT ``distance``, TCX ``DistanceMeters``), else the haversine distance between fixes with segment joins not
counted.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metronome.errors import ProfileError

#: FIT sports whose cadence counts strides (doubled to steps); the loader in profiles/fit.py uses the same list.
FIT_STEP_SPORTS = ("running", "walking", "hiking", "training")
#: GPX <trk><type> values meaning a run: Garmin/Strava words, and Strava's numeric activity type 9 (Run).
GPX_RUN_TYPES = ("running", "run", "trail_running", "trail running", "trailrunning", "hiking", "walking", "9")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_SEMICIRCLE_TO_DEG = 180.0 / 2 ** 31
#: Same bound as profiles.loader: larger than any real activity.
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Samples:
    """Per-recorded-point data of one activity, in recording order.

    Attributes
    ----------
    time_s : ndarray
        Seconds since the epoch (NaN where a point has no time).
    distance_m : ndarray
        Cumulative distance from the first point, non-decreasing (as in :mod:`profiles.track`).
    cadence_spm : ndarray or None
        Steps per minute at each point (0 = none recorded, NaN = field absent); ``None`` when the file has no step
        cadence at all.
    sport : str or None
        What the file says the activity is, if it says.
    cadence_note : str
        Why there is no cadence, when there is none.
    """

    time_s: np.ndarray
    distance_m: np.ndarray
    cadence_spm: np.ndarray | None
    sport: str | None = None
    cadence_note: str = ""

    @property
    def start_time(self) -> _dt.datetime | None:
        ok = np.isfinite(self.time_s)
        if not ok.any():
            return None
        return _EPOCH + _dt.timedelta(seconds=float(self.time_s[ok][0]))

    def cadence_in(self, start_m: float, end_m: float) -> np.ndarray:
        """Cadences (> 0) of the samples whose distance lies in ``[start_m, end_m]``."""
        if self.cadence_spm is None:
            return np.empty(0)
        m = (self.distance_m >= start_m) & (self.distance_m <= end_m) & (self.cadence_spm > 0)
        return self.cadence_spm[m]


def _f(value) -> float:
    if value is None or isinstance(value, (bool, str, bytes, tuple)):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _text_f(text) -> float:
    if text is None:
        return math.nan
    try:
        x = float(text)
    except ValueError:
        return math.nan
    return x if math.isfinite(x) else math.nan


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _iso_s(text) -> float:
    if text is None:
        return math.nan
    try:
        dt = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return math.nan
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return (dt - _EPOCH).total_seconds()


def _haversine_m(lat, lon):
    from profiles.track import haversine_m

    return haversine_m(lat, lon)


def _distance(device_m, lat, lon, segment) -> np.ndarray:
    """Cumulative distance exactly as profiles.track._cumulative_distance derives it."""
    n = len(segment)
    if device_m is not None and np.isfinite(device_m).sum() >= max(2, 0.5 * n):
        d = np.asarray(device_m, dtype=np.float64)
        ok = np.isfinite(d)
        idx = np.arange(n)
        d = np.interp(idx, idx[ok], d[ok])
        return np.maximum.accumulate(d - d[0])
    if lat is None or n < 2:
        return np.zeros(n)
    step = _haversine_m(lat, lon)
    step[np.diff(segment) != 0] = 0.0
    step[~np.isfinite(step)] = 0.0
    return np.concatenate([[0.0], np.cumsum(step)])


def _read_fit(data: bytes, display: str) -> Samples:
    import fitdecode

    rows, sport = [], None
    try:
        with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE,
                                 error_handling=fitdecode.ErrorHandling.RAISE, keep_raw_chunks=False) as reader:
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage):
                    continue
                if frame.name in ("session", "sport") and sport is None:
                    sport = frame.get_value("sport", fallback=None)
                elif frame.name == "record":
                    def get(name):
                        return frame.get_value(name, fallback=None) if frame.has_field(name) else None
                    ts = get("timestamp")
                    t = (ts - _EPOCH).total_seconds() if isinstance(ts, _dt.datetime) and ts.tzinfo else math.nan
                    cad, frac = _f(get("cadence")), _f(get("fractional_cadence"))
                    if math.isfinite(cad) and math.isfinite(frac):
                        cad += frac
                    rows.append((t, _f(get("distance")), _f(get("position_lat")) * _SEMICIRCLE_TO_DEG,
                                 _f(get("position_long")) * _SEMICIRCLE_TO_DEG, cad))
    except Exception as exc:  # fitdecode raises many kinds on garbage (as in profiles/fit.py)
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ProfileError(f"{display}: truncated or corrupt FIT file ({msg})") from None
    if not rows:
        raise ProfileError(f"{display}: no record messages: only activity files can be used")
    a = np.array(rows, dtype=np.float64)
    has_pos = np.isfinite(a[:, 2]).any()
    if has_pos and np.isfinite(a[:, 1]).sum() < 2:
        a = a[np.isfinite(a[:, 2]) & np.isfinite(a[:, 3])]   # haversine needs both ends (as profiles/fit.py)
    seg = np.zeros(a.shape[0], dtype=np.int64)
    d = _distance(a[:, 1], a[:, 2] if has_pos else None, a[:, 3] if has_pos else None, seg)
    sport_s = sport if isinstance(sport, str) else None
    cad, note = None, ""
    if not np.isfinite(a[:, 4]).any():
        note = "no cadence field in the records"
    elif sport_s is None or sport_s.lower() not in FIT_STEP_SPORTS:
        note = f"sport {sport_s or 'unknown'!r} is not a run: its cadence is not steps"
    else:
        cad = a[:, 4] * 2.0
    return Samples(a[:, 0], d, cad, sport_s, note)


def _read_tcx(root, ns: str, display: str) -> Samples:
    sports = [a.get("Sport", "") for a in root.iter(ns + "Activity")]
    running = any(s.lower() == "running" for s in sports)
    rows = []
    for i_track, track in enumerate(root.iter(ns + "Track")):
        for tp in track.iterfind(ns + "Trackpoint"):
            pos = tp.find(ns + "Position")
            lat = _text_f(pos.findtext(ns + "LatitudeDegrees")) if pos is not None else math.nan
            lon = _text_f(pos.findtext(ns + "LongitudeDegrees")) if pos is not None else math.nan
            cad = tp.findtext(ns + "Cadence")
            if cad is None:
                cad = next((e.text for e in tp.iter() if _local(e.tag) == "RunCadence"), None)
            rows.append((i_track, _iso_s(tp.findtext(ns + "Time")), _text_f(tp.findtext(ns + "DistanceMeters")),
                         lat, lon, _text_f(cad)))
    if not rows:
        raise ProfileError(f"{display}: no Trackpoint elements")
    a = np.array(rows, dtype=np.float64)
    has_pos = np.isfinite(a[:, 3]).any()
    seg = a[:, 0].astype(np.int64)
    d = _distance(a[:, 2], a[:, 3] if has_pos else None, a[:, 4] if has_pos else None, seg)
    cad, note = None, ""
    if not np.isfinite(a[:, 5]).any():
        note = "no Cadence or RunCadence in the trackpoints"
    elif not running:
        note = f"Sport {(sports[0] if sports else 'unknown')!r} is not Running: its cadence is not steps"
    else:
        cad = a[:, 5] * 2.0
    return Samples(a[:, 1], d, cad, sports[0] if sports else None, note)


def _read_gpx(root, ns: str, display: str) -> Samples:
    rows, seg, types = [], 0, []
    for trk in root.iterfind(ns + "trk"):
        t = trk.findtext(ns + "type")
        if t:
            types.append(t.strip())
        for trkseg in trk.iterfind(ns + "trkseg"):
            pts = trkseg.findall(ns + "trkpt")
            if not pts:
                continue
            for pt in pts:
                cad = math.nan
                ext = pt.find(ns + "extensions")
                if ext is not None:
                    for e in ext.iter():
                        if _local(e.tag) in ("cad", "cadence"):
                            cad = _text_f(e.text)
                            break
                rows.append((seg, _iso_s(pt.findtext(ns + "time")), _text_f(pt.get("lat")), _text_f(pt.get("lon")),
                             cad))
            seg += 1
    if not rows:
        raise ProfileError(f"{display}: no track points (<trkpt>)")
    a = np.array(rows, dtype=np.float64)
    keep = np.isfinite(a[:, 2]) & np.isfinite(a[:, 3])
    a = a[keep]
    d = _distance(None, a[:, 2], a[:, 3], a[:, 0].astype(np.int64))
    sport = types[0] if types else None
    cad, note = None, ""
    if not np.isfinite(a[:, 4]).any():
        note = "no gpxtpx:cad or gpxdata:cadence in the track points"
    elif sport is not None and sport.lower() not in GPX_RUN_TYPES:
        note = f"track type {sport!r} is not a run: its cadence is not steps"
    else:
        cad = a[:, 4] * 2.0
    return Samples(a[:, 1], d, cad, sport, note)


def read_samples(path, display: str | None = None) -> Samples:
    """Read the per-point time, distance and step cadence of a ``.fit``, ``.gpx`` or ``.tcx`` activity.

    Raises
    ------
    ProfileError
        One line naming the file for anything unreadable.
    """
    p = Path(os.fspath(path))
    display = display or str(path)
    ext = p.suffix.lower()
    if ext not in (".fit", ".gpx", ".tcx"):
        raise ProfileError(f"{display}: not an activity file (expected .fit, .gpx or .tcx)")
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ProfileError(f"{display}: larger than the {MAX_FILE_BYTES >> 20} MiB limit")
        data = p.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise ProfileError(f"{display}: is a directory, not an activity file") from None
    except OSError as exc:
        raise ProfileError(f"{display}: cannot read ({exc.strerror or exc})") from None
    if ext == ".fit":
        return _read_fit(data, display)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ProfileError(f"{display}: not well-formed XML ({exc})") from None
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if ext == ".tcx":
        if _local(root.tag) != "TrainingCenterDatabase":
            raise ProfileError(f"{display}: not a TCX file (root element <{_local(root.tag)}>)")
        return _read_tcx(root, ns, display)
    if _local(root.tag) != "gpx":
        raise ProfileError(f"{display}: not a GPX file (root element <{_local(root.tag)}>)")
    return _read_gpx(root, ns, display)
