"""What a position message means: the :class:`Fix` type and its validation, and gpsd TPV reports -> :class:`Fix`.

Pure: no sockets, no clocks.  Transport is in :mod:`.gpsd` (the gpsd socket) and :mod:`.http` (phone apps that
push positions); the HTTP bodies' meaning is in :mod:`.http_protocol`.  The ranges are the UDP protocol's
(:func:`~.protocol.make_reading`), so one position is valid or not whichever way it arrived.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass

from .protocol import Reading, Reject, RejectReason, make_reading

#: gpsd's longest JSON response is GPS_JSON_RESPONSE_MAX = 4096 bytes (gpsd.h, gpsd 3.x); a SKY report with
#: many satellites comes near it.  Four times that is the transport's line cap: anything longer is not gpsd.
MAX_GPSD_LINE_BYTES = 16384


@dataclass(frozen=True, slots=True)
class Fix:
    """One position fix, SI units and WGS84 degrees.

    Attributes
    ----------
    t_s : float or None
        The sender's time of the fix (seconds; epoch seconds for gpsd and phone apps).  Used for the time between
        fixes (a batch of fixes arrives at once over HTTP) and for the reorder check, never as the session clock.
    lat_deg, lon_deg : float
    elevation_m : float or None
        Altitude (MSL where the sender says which), ``None`` when unknown (a 2-D fix).
    speed_mps : float or None
        Ground speed reported by the receiver (Doppler), ``None`` when unknown.
    accuracy_m : float or None
        Horizontal accuracy (gpsd ``eph``, Android/iOS ``horizontalAccuracy``), ``None`` when unknown.
    source : str
        Where it came from: ``gpsd``, ``sensorlogger``, ``gpslogger``, ``udp``, ``replay`` (for logs).
    """

    t_s: float | None
    lat_deg: float
    lon_deg: float
    elevation_m: float | None = None
    speed_mps: float | None = None
    accuracy_m: float | None = None
    source: str = ""

    def as_reading(self) -> Reading:
        """The grade-less :class:`Reading` the grade filter sees (speed and elevation only)."""
        return Reading(grade_pct=None, t_s=self.t_s, speed_mps=self.speed_mps, elevation_m=self.elevation_m,
                       lat_deg=self.lat_deg, lon_deg=self.lon_deg, accuracy_m=self.accuracy_m)


def make_fix(*, lat_deg, lon_deg, t_s=None, elevation_m=None, speed_mps=None, accuracy_m=None,
             source: str = "") -> Fix | Reject:
    """Validate field values into a :class:`Fix` or a :class:`Reject` naming the field (never raises).

    ``lat_deg`` and ``lon_deg`` are required; the ranges are :func:`~.protocol.make_reading`'s.
    """
    if lat_deg is None or lon_deg is None:
        return Reject(RejectReason.POSITION_RANGE, f"{'lat' if lat_deg is None else 'lon'} is missing")
    r = make_reading(grade_pct=None, t_s=t_s, speed_mps=speed_mps, elevation_m=elevation_m, lat_deg=lat_deg,
                     lon_deg=lon_deg, accuracy_m=accuracy_m)
    if isinstance(r, Reject):
        return r
    return Fix(t_s=r.t_s, lat_deg=r.lat_deg, lon_deg=r.lon_deg, elevation_m=r.elevation_m, speed_mps=r.speed_mps,
               accuracy_m=r.accuracy_m, source=source)


def fix_from_reading(r: Reading, source: str = "udp") -> Fix | None:
    """The :class:`Fix` a UDP/replay :class:`Reading` carries, or ``None`` if it has no position."""
    if not r.has_position:
        return None
    return Fix(t_s=r.t_s, lat_deg=r.lat_deg, lon_deg=r.lon_deg, elevation_m=r.elevation_m, speed_mps=r.speed_mps,
               accuracy_m=r.accuracy_m, source=source)


def parse_iso_time_s(text) -> float | None:
    """ISO 8601 UTC time (``2024-05-01T10:00:00.000Z``, gpsd's and the phone apps' form) -> epoch seconds, or
    ``None`` if it is not one.  A time without zone is taken as UTC (GPS time is UTC-based)."""
    if not isinstance(text, str) or not (10 <= len(text) <= 40):
        return None
    t = text.strip()
    if t[-1:] in "zZ":
        t = t[:-1] + "+00:00"
    try:
        d = _dt.datetime.fromisoformat(t)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return d.timestamp()


def parse_tpv(line: bytes) -> Fix | Reject | None:
    """One line from gpsd's JSON watcher stream -> :class:`Fix`, :class:`Reject`, or ``None`` (not a TPV report:
    VERSION, DEVICES, WATCH, SKY... are not positions and are not counted as rejects).

    TPV fields used (gpsd_json(5)): ``mode`` (0/1 = no fix -> ``NO_FIX``; 2 = 2-D; 3 = 3-D), ``lat``, ``lon``,
    ``altMSL`` (else ``altHAE``, else the pre-3.20 ``alt``), ``speed`` (m/s), ``time`` (ISO 8601 UTC), ``eph``
    (else the larger of ``epx``/``epy``) as horizontal accuracy.  gpsd omits keys it does not know; so do we.
    Pure; never raises.
    """
    if len(line) > MAX_GPSD_LINE_BYTES:
        return Reject(RejectReason.OVERSIZE, f"gpsd line of {len(line)} bytes > {MAX_GPSD_LINE_BYTES}")
    if b'"TPV"' not in line:  # cheap filter before any JSON parsing (SKY reports are big and frequent)
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return Reject(RejectReason.NOT_JSON, "gpsd TPV line is not JSON")
    if not isinstance(obj, dict) or obj.get("class") != "TPV":
        return None
    mode = obj.get("mode", 0)
    if isinstance(mode, bool) or not isinstance(mode, int) or mode < 2:
        return Reject(RejectReason.NO_FIX, f"gpsd TPV mode {mode!r:.10}: no fix")
    if obj.get("lat") is None or obj.get("lon") is None:
        return Reject(RejectReason.NO_FIX, "gpsd TPV without lat/lon")
    alt = next((obj[k] for k in ("altMSL", "altHAE", "alt") if obj.get(k) is not None), None) if mode >= 3 else None
    acc = obj.get("eph")
    if acc is None:
        eps = [obj[k] for k in ("epx", "epy") if isinstance(obj.get(k), (int, float)) and not isinstance(obj[k], bool)]
        acc = max(eps) if eps else None
    t = obj.get("time")
    t_s = parse_iso_time_s(t) if isinstance(t, str) else None
    if t is not None and t_s is None and not isinstance(t, (int, float)):
        return Reject(RejectReason.NOT_NUMBER, f"gpsd TPV time {t!r:.40} is not ISO 8601")
    if isinstance(t, (int, float)) and not isinstance(t, bool):  # gpsd < 3.10 sent epoch seconds
        t_s = float(t)
    return make_fix(lat_deg=obj["lat"], lon_deg=obj["lon"], t_s=t_s, elevation_m=alt, speed_mps=obj.get("speed"),
                    accuracy_m=acc, source="gpsd")
