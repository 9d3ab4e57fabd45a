"""NMEA 0183 sentences from a track, for feeding gpsd through ``gpsfake`` (test support, not a test module).

GGA (fix, altitude) + RMC (date, speed, course) per point, checksums per NMEA 0183: XOR of every byte between
``$`` and ``*``, two upper-case hex digits.  Written here rather than taken from ``pynmeagps`` to keep the test
dependencies at pytest + hypothesis; gpsd itself is the check that the sentences are valid (the end-to-end test
compares what gpsd reports with the track).
"""

from __future__ import annotations

import datetime as _dt
import math

KNOTS_PER_MPS = 3600.0 / 1852.0  # 1 knot = 1852 m/h (international nautical mile)


def checksum(body: str) -> str:
    c = 0
    for b in body.encode("ascii"):
        c ^= b
    return f"{c:02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}\r\n"


def _lat(lat_deg: float) -> tuple[str, str]:
    a = abs(lat_deg)
    d = int(a)
    m = (a - d) * 60.0
    return f"{d:02d}{m:09.6f}", "N" if lat_deg >= 0 else "S"


def _lon(lon_deg: float) -> tuple[str, str]:
    a = abs(lon_deg)
    d = int(a)
    m = (a - d) * 60.0
    return f"{d:03d}{m:09.6f}", "E" if lon_deg >= 0 else "W"


def gga(t_s: float, lat_deg: float, lon_deg: float, ele_m: float, hdop: float = 0.9, n_sat: int = 9) -> str:
    t = _dt.datetime.fromtimestamp(t_s, _dt.timezone.utc)
    la, ns = _lat(lat_deg)
    lo, ew = _lon(lon_deg)
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    # Geoid separation 0 keeps altMSL == altHAE == ele (gpsd uses the field as given).
    return sentence(f"GPGGA,{hms},{la},{ns},{lo},{ew},1,{n_sat:02d},{hdop:.1f},{ele_m:.1f},M,0.0,M,,")


def rmc(t_s: float, lat_deg: float, lon_deg: float, speed_mps: float, course_deg: float) -> str:
    t = _dt.datetime.fromtimestamp(t_s, _dt.timezone.utc)
    la, ns = _lat(lat_deg)
    lo, ew = _lon(lon_deg)
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    return sentence(f"GPRMC,{hms},A,{la},{ns},{lo},{ew},{speed_mps * KNOTS_PER_MPS:.2f},{course_deg:.1f},"
                    f"{t.strftime('%d%m%y')},,,A")


def _bearing_deg(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def _dist_m(lat1, lon1, lat2, lon2) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(min(1.0, a)))


def track_to_nmea(points) -> str:
    """``points``: iterable of ``(t_s, lat_deg, lon_deg, ele_m)`` in order -> the NMEA log (GGA then RMC each)."""
    pts = list(points)
    out = []
    for i, (t, la, lo, el) in enumerate(pts):
        j = min(i + 1, len(pts) - 1)
        k = j - 1 if j == i else i
        t2, la2, lo2, _ = pts[j]
        t1, la1, lo1, _ = pts[k]
        dt = t2 - t1
        d = _dist_m(la1, lo1, la2, lo2)
        v = d / dt if dt > 0 else 0.0
        crs = _bearing_deg(la1, lon1 := lo1, la2, lo2) if d > 0 else 0.0
        out.append(gga(t, la, lo, el))
        out.append(rmc(t, la, lo, v, crs))
    return "".join(out)
