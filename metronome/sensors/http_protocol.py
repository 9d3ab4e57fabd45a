"""What an HTTP push from a phone app means: Sensor Logger JSON batches and GPSLogger / OsmAnd-style requests.

Pure: no sockets, no clocks (the server is :mod:`.http`).  :func:`parse_push` never raises, whatever the bytes.

Shapes accepted
---------------
* **Sensor Logger** (Android/iOS app, "HTTP push" data streaming): a JSON object
  ``{"messageId": int, "sessionId": str, "deviceId": str, "payload": [{"name": str, "time": ns, "values": {...}}]}``.
  ``location`` entries carry ``latitude``, ``longitude``, ``altitude``, ``speed`` (m/s), ``horizontalAccuracy``
  (m); ``barometer`` entries carry ``relativeAltitude`` (m) and ``pressure`` (hPa).  ``time`` is nanoseconds
  since the epoch.  Every other sensor (accelerometer, gyroscope...) is ignored, not rejected: users stream them.
* **GPSLogger custom URL / OsmAnd online tracking / Traccar-style**: fields as a query string (GET or POST) or as
  an ``application/x-www-form-urlencoded`` body: ``lat``, ``lon``, ``alt`` or ``altitude`` (m), ``spd`` or
  ``speed`` (m/s: GPSLogger's ``%SPD``), ``acc`` or ``accuracy`` (m), ``timestamp`` (epoch seconds; a value
  above 1e11 is milliseconds, as OsmAnd sends; or ISO 8601 like GPSLogger's ``%TIME``).  The same fields as a flat
  JSON object are accepted too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from urllib.parse import parse_qs

from .position import Fix, make_fix, parse_iso_time_s
from .protocol import Reject, RejectReason

#: A Sensor Logger batch with every sensor on at 100 Hz for 1 s is a few hundred entries; more is not a phone.
MAX_PAYLOAD_ENTRIES = 2000
#: Epoch timestamps above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1.0e11


@dataclass(frozen=True, slots=True)
class Barometer:
    """A Sensor Logger barometer sample (kept for the elevation work to come; the follower does not use it)."""

    t_s: float | None
    relative_altitude_m: float | None
    pressure_hpa: float | None


@dataclass(frozen=True)
class PushResult:
    """What one request carried: the fixes (in order), barometer samples, rejects (each names the field) and the
    number of entries ignored as other sensors.  ``ok`` is False when nothing usable came and something was
    wrong: the server answers 400."""

    fixes: tuple = ()
    barometers: tuple = ()
    rejects: tuple = ()
    ignored: int = 0
    shape: str = ""  # sensorlogger | form | json | "" (unknown)

    @property
    def ok(self) -> bool:
        return bool(self.fixes or self.barometers or self.ignored or not self.rejects)


def _bad(detail: str) -> Reject:
    return Reject(RejectReason.BAD_BODY, detail[:160])


def _num(value, name: str):
    """A JSON number or a form string -> float, or a Reject naming the field."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _bad(f"{name}: {value!r} is not a number")
    if isinstance(value, (int, float)):
        try:
            x = float(value)
        except OverflowError:
            return Reject(RejectReason.NOT_FINITE, f"{name}: integer too large")
    elif isinstance(value, str):
        v = value.strip()
        if not v or len(v) > 40:
            return _bad(f"{name}: {v[:40]!r} is not a number")
        try:
            x = float(v)
        except ValueError:
            return _bad(f"{name}: {v!r} is not a number")
    else:
        return _bad(f"{name}: a JSON {type(value).__name__} is not a number")
    if not math.isfinite(x):
        return Reject(RejectReason.NOT_FINITE, f"{name}: {value!r:.40} is not a finite number")
    return x


def _fields(get, names: dict, source: str) -> Fix | Reject:
    """Build a Fix from ``get(key)`` for each wanted field (``names``: our name -> tuple of accepted keys)."""
    vals = {}
    for ours, keys in names.items():
        raw, key = None, keys[0]
        for k in keys:
            raw = get(k)
            if raw is not None:
                key = k
                break
        if ours == "t_s" and isinstance(raw, str) and not _looks_numeric(raw):
            t = parse_iso_time_s(raw)
            if t is None:
                return _bad(f"{key}: {raw[:40]!r} is not a time (epoch seconds or ISO 8601)")
            vals[ours] = t
            continue
        x = _num(raw, key)
        if isinstance(x, Reject):
            return x
        vals[ours] = x
    t = vals.get("t_s")
    if t is not None and abs(t) > _MS_THRESHOLD:
        vals["t_s"] = t / 1000.0
    if vals.get("lat_deg") is None or vals.get("lon_deg") is None:
        return _bad(f"{names['lat_deg'][0] if vals.get('lat_deg') is None else names['lon_deg'][0]} is missing")
    return make_fix(source=source, **vals)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


_FORM_NAMES = {"lat_deg": ("lat", "latitude"), "lon_deg": ("lon", "lng", "longitude"),
               "elevation_m": ("alt", "altitude"), "speed_mps": ("spd", "speed"),
               "accuracy_m": ("acc", "accuracy"), "t_s": ("timestamp", "time")}
_SL_NAMES = {"lat_deg": ("latitude",), "lon_deg": ("longitude",), "elevation_m": ("altitude",),
             "speed_mps": ("speed",), "accuracy_m": ("horizontalAccuracy",)}


def parse_form(query: str) -> PushResult:
    """A GPSLogger/OsmAnd query string or form body -> :class:`PushResult` (one fix or one reject)."""
    try:
        qs = parse_qs(query, keep_blank_values=False, strict_parsing=False, max_num_fields=64)
    except ValueError as exc:  # too many fields
        return PushResult(rejects=(_bad(f"query: {exc}"),), shape="form")
    if not qs:
        return PushResult(rejects=(_bad("no fields (expected lat, lon, ...)"),), shape="form")
    item = _fields(lambda k: qs[k][-1] if k in qs else None, _FORM_NAMES, "gpslogger")
    if isinstance(item, Reject):
        return PushResult(rejects=(item,), shape="form")
    return PushResult(fixes=(item,), shape="form")


def parse_sensor_logger(obj: dict) -> PushResult:
    """A decoded Sensor Logger batch -> :class:`PushResult`.  Bad entries are rejected one by one; the good
    ones are kept (a batch is many samples: one bad sample must not drop the rest)."""
    payload = obj.get("payload")
    if not isinstance(payload, list):
        return PushResult(rejects=(_bad(f"payload: a JSON {type(payload).__name__} is not a list"),),
                          shape="sensorlogger")
    if len(payload) > MAX_PAYLOAD_ENTRIES:
        return PushResult(rejects=(_bad(f"payload: {len(payload)} entries > {MAX_PAYLOAD_ENTRIES}"),),
                          shape="sensorlogger")
    fixes, baros, rejects, ignored = [], [], [], 0
    for i, e in enumerate(payload):
        if not isinstance(e, dict):
            rejects.append(_bad(f"payload[{i}]: not an object"))
            continue
        name = e.get("name")
        if name not in ("location", "barometer"):
            ignored += 1
            continue
        values = e.get("values")
        if not isinstance(values, dict):
            rejects.append(_bad(f"payload[{i}].values: not an object"))
            continue
        t_ns = _num(e.get("time"), f"payload[{i}].time")
        if isinstance(t_ns, Reject):
            rejects.append(t_ns)
            continue
        t_s = None if t_ns is None else t_ns / 1e9
        if name == "location":
            item = _fields(values.get, _SL_NAMES, "sensorlogger")
            if isinstance(item, Reject):
                rejects.append(Reject(item.reason, f"payload[{i}].values.{item.detail}"[:160]))
            else:
                fixes.append(Fix(t_s=t_s, lat_deg=item.lat_deg, lon_deg=item.lon_deg, elevation_m=item.elevation_m,
                                 speed_mps=item.speed_mps, accuracy_m=item.accuracy_m, source="sensorlogger"))
        else:
            ra = _num(values.get("relativeAltitude"), f"payload[{i}].values.relativeAltitude")
            pr = _num(values.get("pressure"), f"payload[{i}].values.pressure")
            bad = next((x for x in (ra, pr) if isinstance(x, Reject)), None)
            if bad is not None:
                rejects.append(bad)
            else:
                baros.append(Barometer(t_s, ra, pr))
    # Apps batch samples in arrival order, not always time order: sort by time so the follower sees them in order.
    fixes.sort(key=lambda f: -math.inf if f.t_s is None else f.t_s)
    return PushResult(tuple(fixes), tuple(baros), tuple(rejects), ignored, shape="sensorlogger")


def parse_push(method: str, query: str, content_type: str, body: bytes) -> PushResult:
    """One request -> :class:`PushResult`.  Never raises.

    A JSON body (``Content-Type`` ``application/json``, or a body starting with ``{``) is a Sensor Logger batch
    when it has ``payload``, else a flat object of form fields.  A form body is read like a query string.  With
    an empty body, the query string carries the fields (GPSLogger's default is GET with a query).
    """
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    stripped = body.strip() if body else b""
    if stripped and (ctype.endswith("json") or stripped[:1] in (b"{", b"[")):
        try:
            obj = json.loads(stripped.decode("utf-8"), parse_constant=lambda c: float("nan"))
        except UnicodeDecodeError as exc:
            return PushResult(rejects=(Reject(RejectReason.NOT_UTF8, f"body byte {exc.start} is not UTF-8"),),
                              shape="json")
        except (ValueError, RecursionError) as exc:
            msg = str(exc).splitlines()[0][:80] if str(exc) else "not JSON"
            return PushResult(rejects=(Reject(RejectReason.NOT_JSON, f"body: {msg}"),), shape="json")
        if not isinstance(obj, dict):
            return PushResult(rejects=(Reject(RejectReason.NOT_OBJECT,
                                              f"body is a JSON {type(obj).__name__}, not an object"),), shape="json")
        if "payload" in obj:
            return parse_sensor_logger(obj)
        item = _fields(obj.get, _FORM_NAMES, "json")
        if isinstance(item, Reject):
            return PushResult(rejects=(item,), shape="json")
        return PushResult(fixes=(item,), shape="json")
    if stripped:
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            return PushResult(rejects=(Reject(RejectReason.NOT_UTF8, f"body byte {exc.start} is not UTF-8"),),
                              shape="form")
        if query:
            text = query + "&" + text
        return parse_form(text)
    return parse_form(query or "")
