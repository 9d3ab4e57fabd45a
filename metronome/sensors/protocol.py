"""The sensor wire protocol's meaning: limits, :class:`Reading`, :class:`Reject` and :func:`parse_message`.

Pure: no sockets, no clocks.  Transport (how bytes arrive) is in :mod:`.sources`, :mod:`.replay` and :mod:`.ble`.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------------------------
# Protocol limits (docs/DESIGN.md "Sensor URLs and protocol")
# --------------------------------------------------------------------------------------------------------------
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 47800
MAX_MESSAGE_BYTES = 1024
from ..limits import MAX_GRADE_PCT  # noqa: E402  (one limit for every input)
MAX_SPEED_MPS = 15.0  # ~2:30 min/km sprint is well under this; more is a unit error (km/h sent as m/s)
MAX_CADENCE_SPM = 300.0
MIN_ELEVATION_M = -1000.0  # Dead Sea shore is -430 m
MAX_ELEVATION_M = 10000.0  # Everest is 8849 m
MAX_DISTANCE_M = 1.0e7  # 10 000 km
MAX_LAT_DEG = 90.0  # WGS84 latitude / longitude ranges
MAX_LON_DEG = 180.0
#: A horizontal accuracy worse than this is no position on a course at all (a cell-tower fix is ~1-3 km); the
#: follower would refuse it anyway, the protocol refuses it first.
MAX_ACCURACY_M = 10000.0


class RejectReason(enum.IntEnum):
    """Why a message was dropped.  The value indexes the per-reason counter (``S_REJECT_BASE + reason``)."""

    OVERSIZE = 0
    NOT_UTF8 = 1
    NOT_JSON = 2
    NOT_OBJECT = 3
    MISSING_GRADE = 4
    NOT_NUMBER = 5  # includes bool: JSON true is not a grade
    NOT_FINITE = 6  # NaN / Infinity literals, 1e999, integers too large for a float
    GRADE_RANGE = 7
    SPEED_RANGE = 8
    CADENCE_RANGE = 9
    DISTANCE_RANGE = 10
    ELEVATION_RANGE = 11
    DEVICE = 12  # BLE notification that does not decode (truncated, garbage)
    POSITION_RANGE = 13  # lat outside -90..90, lon outside -180..180, only one of them, or a bad accuracy
    NO_FIX = 14  # a position report that says it has no fix (gpsd TPV mode < 2)
    BAD_BODY = 15  # an HTTP push body (or query) that is not a position batch


@dataclass(frozen=True, slots=True)
class Reject:
    """A dropped message: the reason (counted) and a one-line detail naming the field/value (for logs)."""

    reason: RejectReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    """One accepted sensor message, SI units.

    ``grade_pct`` is ``None`` only for devices that cannot know the slope (an RSC foot pod); the JSON protocol
    requires it.  ``t_s`` is the *sender's* clock (optional), used only to detect reordering.
    """

    grade_pct: float | None
    t_s: float | None = None
    speed_mps: float | None = None
    cadence_spm: float | None = None
    distance_m: float | None = None
    elevation_m: float | None = None
    lat_deg: float | None = None
    lon_deg: float | None = None
    accuracy_m: float | None = None
    #: The message was sent at a foot strike (a foot pod's or a phone's step detector): its *arrival* time is the
    #: footfall's time on the host clock, which the live session compares with the clicks the runner hears.
    footfall: bool = False

    @property
    def has_position(self) -> bool:
        return self.lat_deg is not None and self.lon_deg is not None


def _number(value):
    """JSON value -> float, or a RejectReason.  ``bool`` is an ``int`` subclass in Python; refuse it explicitly."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return RejectReason.NOT_NUMBER
    try:
        x = float(value)
    except OverflowError:  # an integer literal with hundreds of digits
        return RejectReason.NOT_FINITE
    if not math.isfinite(x):
        return RejectReason.NOT_FINITE
    return x


def make_reading(*, grade_pct, t_s=None, speed_mps=None, cadence_spm=None, distance_m=None,
                 elevation_m=None, lat_deg=None, lon_deg=None, accuracy_m=None, footfall=False) -> Reading | Reject:
    """Validate field values (JSON-decoded or from a BLE decoder) into a :class:`Reading` or a :class:`Reject`.

    ``None`` means absent.  Ranges: ``|grade| <= 45 %``, speed ``0..15 m/s``, cadence ``0..300 /min``,
    distance ``0..1e7 m``, elevation ``-1000..10000 m``, ``lat`` -90..90 and ``lon`` -180..180 degrees (both or
    neither), accuracy ``0..10000 m``; every number finite and not a bool; ``footfall`` a bool.
    """
    if footfall is None:
        footfall = False
    if not isinstance(footfall, bool):
        return Reject(RejectReason.NOT_NUMBER, f"footfall: {footfall!r:.40} is not true or false")
    out = {}
    for name, value in (("grade_pct", grade_pct), ("t", t_s), ("speed_mps", speed_mps),
                        ("cadence_spm", cadence_spm), ("distance_m", distance_m), ("elevation_m", elevation_m),
                        ("lat", lat_deg), ("lon", lon_deg), ("accuracy_m", accuracy_m)):
        if value is None:
            out[name] = None
            continue
        x = _number(value)
        if isinstance(x, RejectReason):
            return Reject(x, f"{name}: {value!r:.40} is not a finite number")
        out[name] = x
    g = out["grade_pct"]
    if g is not None and abs(g) > MAX_GRADE_PCT:
        return Reject(RejectReason.GRADE_RANGE, f"grade_pct: {g!r} is outside -{MAX_GRADE_PCT:g}..{MAX_GRADE_PCT:g}")
    v = out["speed_mps"]
    if v is not None and not (0.0 <= v <= MAX_SPEED_MPS):
        return Reject(RejectReason.SPEED_RANGE, f"speed_mps: {v!r} is outside 0..{MAX_SPEED_MPS:g} m/s")
    c = out["cadence_spm"]
    if c is not None and not (0.0 <= c <= MAX_CADENCE_SPM):
        return Reject(RejectReason.CADENCE_RANGE, f"cadence_spm: {c!r} is outside 0..{MAX_CADENCE_SPM:g}")
    d = out["distance_m"]
    if d is not None and not (0.0 <= d <= MAX_DISTANCE_M):
        return Reject(RejectReason.DISTANCE_RANGE, f"distance_m: {d!r} is outside 0..{MAX_DISTANCE_M:g} m")
    e = out["elevation_m"]
    if e is not None and not (MIN_ELEVATION_M <= e <= MAX_ELEVATION_M):
        return Reject(RejectReason.ELEVATION_RANGE,
                      f"elevation_m: {e!r} is outside {MIN_ELEVATION_M:g}..{MAX_ELEVATION_M:g} m")
    lat, lon, acc = out["lat"], out["lon"], out["accuracy_m"]
    if (lat is None) != (lon is None):
        have, miss = ("lat", "lon") if lon is None else ("lon", "lat")
        return Reject(RejectReason.POSITION_RANGE, f"{have} given without {miss}")
    if lat is not None and not (-MAX_LAT_DEG <= lat <= MAX_LAT_DEG):
        return Reject(RejectReason.POSITION_RANGE, f"lat: {lat!r} is outside -90..90 degrees")
    if lon is not None and not (-MAX_LON_DEG <= lon <= MAX_LON_DEG):
        return Reject(RejectReason.POSITION_RANGE, f"lon: {lon!r} is outside -180..180 degrees")
    if acc is not None and not (0.0 <= acc <= MAX_ACCURACY_M):
        return Reject(RejectReason.POSITION_RANGE, f"accuracy_m: {acc!r} is outside 0..{MAX_ACCURACY_M:g} m")
    return Reading(grade_pct=g, t_s=out["t"], speed_mps=v, cadence_spm=c, distance_m=d, elevation_m=e,
                   lat_deg=lat, lon_deg=lon, accuracy_m=acc, footfall=footfall)


class _NonFinite(ValueError):
    pass


def _refuse_constant(name):
    # Python's json accepts NaN, Infinity and -Infinity although JSON does not; refuse them at the source.
    raise _NonFinite(name)


def parse_message(data: bytes) -> Reading | Reject:
    """Parse one datagram/line of the sensor protocol.  Pure; never raises, whatever ``data`` holds.

    ``{"t"?: s, "grade_pct": float, "speed_mps"?, "cadence_spm"?, "distance_m"?, "elevation_m"?, "lat"?, "lon"?,
    "accuracy_m"?, "footfall"?: bool}``; unknown keys are ignored and ``null`` means absent.  ``grade_pct`` may be
    left out only by a message that carries a position (``lat`` and ``lon``: a phone knows where it is, not the
    slope) or marks a footfall (``"footfall": true``, sent by a step detector at each foot strike).  See
    :class:`RejectReason` for everything that is refused.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    try:
        n = len(data)
    except TypeError:
        return Reject(RejectReason.NOT_JSON, f"expected bytes, got {type(data).__name__}")
    if n > MAX_MESSAGE_BYTES:
        return Reject(RejectReason.OVERSIZE, f"{n} bytes > {MAX_MESSAGE_BYTES}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(RejectReason.NOT_UTF8, f"byte {exc.start} is not UTF-8")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        return Reject(RejectReason.NOT_FINITE, f"{exc.args[0]} is not a finite number")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; 1 KiB of '[' nests deeper than the C scanner allows
        return Reject(RejectReason.NOT_JSON, str(exc).splitlines()[0][:80] if str(exc) else "not JSON")
    if not isinstance(obj, dict):
        return Reject(RejectReason.NOT_OBJECT, f"top level is a JSON {type(obj).__name__}, not an object")
    if (obj.get("grade_pct") is None and (obj.get("lat") is None or obj.get("lon") is None)
            and obj.get("footfall") is not True):
        return Reject(RejectReason.MISSING_GRADE, "grade_pct is missing")
    return make_reading(grade_pct=obj.get("grade_pct"), t_s=obj.get("t"), speed_mps=obj.get("speed_mps"),
                        cadence_spm=obj.get("cadence_spm"), distance_m=obj.get("distance_m"),
                        elevation_m=obj.get("elevation_m"), lat_deg=obj.get("lat"), lon_deg=obj.get("lon"),
                        accuracy_m=obj.get("accuracy_m"), footfall=obj.get("footfall"))
