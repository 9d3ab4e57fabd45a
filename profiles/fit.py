"""FIT reader (fitdecode): ``record`` messages with altitude, distance, timestamp and cadence.

``enhanced_altitude`` wins over ``altitude`` (same value, more range).  Running cadence in FIT counts strides
(one foot) per minute, plus ``fractional_cadence``; it is doubled into steps per minute for running sessions.
Any decoding problem (truncated file, bad CRC, corrupt header) is a :class:`ProfileError`: a half-decoded
activity would silently give a wrong course.
"""

from __future__ import annotations

import datetime as _dt
import io
import math

import numpy as np

from metronome.errors import ProfileError

from .track import RawTrack

_SEMICIRCLE_TO_DEG = 180.0 / 2 ** 31
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _f(value) -> float:
    if value is None or isinstance(value, (bool, str, bytes, tuple)):
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def read_fit(data: bytes, display: str) -> RawTrack:
    import fitdecode

    rows = []
    file_type = None
    sport = None
    try:
        with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE,
                                 error_handling=fitdecode.ErrorHandling.RAISE,
                                 keep_raw_chunks=False) as reader:
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage):
                    continue
                if frame.name == "file_id":
                    file_type = frame.get_value("type", fallback=None)
                elif frame.name in ("session", "sport") and sport is None:
                    sport = frame.get_value("sport", fallback=None)
                elif frame.name == "record":
                    def get(name):
                        return frame.get_value(name, fallback=None) if frame.has_field(name) else None
                    alt = get("enhanced_altitude")
                    if alt is None:
                        alt = get("altitude")
                    ts = get("timestamp")
                    t = (ts - _EPOCH).total_seconds() if isinstance(ts, _dt.datetime) and ts.tzinfo else math.nan
                    lat, lon = _f(get("position_lat")), _f(get("position_long"))
                    cad = _f(get("cadence"))
                    frac = _f(get("fractional_cadence"))
                    if math.isfinite(cad) and math.isfinite(frac):
                        cad += frac
                    rows.append((lat * _SEMICIRCLE_TO_DEG, lon * _SEMICIRCLE_TO_DEG, _f(alt), t,
                                 _f(get("distance")), cad))
    except Exception as exc:  # fitdecode raises FitError subclasses, but also struct/Unicode/Key errors on garbage
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ProfileError(f"{display}: truncated or corrupt FIT file ({msg})") from None
    if not rows:
        what = f"file type {file_type!r}" if file_type is not None else "no activity data"
        raise ProfileError(f"{display}: no record messages ({what}): only activity files can be used")
    a = np.array(rows, dtype=np.float64)
    running = isinstance(sport, str) and sport.lower() in ("running", "walking", "hiking", "training")
    # Keep lat/lon only if there are any (treadmill runs have none; distance comes from the footpod then).
    has_pos = np.isfinite(a[:, 0]).any()
    cadence = a[:, 5] * 2.0 if running and np.isfinite(a[:, 5]).any() else None
    if cadence is not None:
        cadence[cadence <= 0] = np.nan  # 0 = standing still, not a cadence to replay
    if has_pos and np.isfinite(a[:, 4]).sum() < 2:
        # No distance field: drop points without a fix, haversine needs both ends.
        keep = np.isfinite(a[:, 0]) & np.isfinite(a[:, 1])
        a = a[keep]
        cadence = cadence[keep] if cadence is not None else None
    return RawTrack(segment=np.zeros(a.shape[0], dtype=np.int64), lat_deg=a[:, 0] if has_pos else None,
                    lon_deg=a[:, 1] if has_pos else None, elevation_m=a[:, 2], time_s=a[:, 3], distance_m=a[:, 4],
                    cadence_spm=cadence, ele_field="altitude", point_name="record")
