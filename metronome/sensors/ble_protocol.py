"""Bluetooth LE notification meaning: pure decoders for FTMS Treadmill Data and RSC Measurement (transport: :mod:`.ble`).

Decoders
--------
:func:`decode_treadmill_data` and :func:`decode_rsc_measurement` are pure functions of the notification bytes.
They never raise anything but :class:`~metronome.errors.SensorError` (one line naming the characteristic, the field
and the offset), whatever the bytes: a truncated or garbage notification must not take the session down with an
``IndexError``.

Field layouts follow the Bluetooth SIG GATT definitions (``org.bluetooth.characteristic.treadmill_data``, UUID
0x2ACD, and ``org.bluetooth.characteristic.rsc_measurement``, UUID 0x2A53).  All multi-byte fields are little
endian.  The test vectors are real notifications captured from treadmills and foot pods by other projects; their
provenance is in ``tests/data/ble/SOURCES.md``.

Treadmill Data (0x2ACD)::

    flags uint16; then, in this order, each present if its flag says so:
    bit 0 More Data        -> Instantaneous Speed uint16 0.01 km/h is present when the bit is 0 (inverted logic)
    bit 1                  -> Average Speed uint16 0.01 km/h
    bit 2                  -> Total Distance uint24 m
    bit 3                  -> Inclination sint16 0.1 %  +  Ramp Angle Setting sint16 0.1 deg
    bit 4                  -> Positive / Negative Elevation Gain uint16 0.1 m each
    bit 5                  -> Instantaneous Pace uint8 0.1 km/min
    bit 6                  -> Average Pace uint8 0.1 km/min
    bit 7                  -> Total Energy uint16 kcal, Energy per Hour uint16 kcal, Energy per Minute uint8 kcal
    bit 8                  -> Heart Rate uint8 bpm
    bit 9                  -> Metabolic Equivalent uint8 0.1
    bit 10                 -> Elapsed Time uint16 s
    bit 11                 -> Remaining Time uint16 s
    bit 12                 -> Force on Belt sint16 N  +  Power Output sint16 W
    bits 13-15 reserved

Two real-world wrinkles are handled on purpose:

* 0x7FFF in Inclination / Ramp Angle means "not available" (FTMS); so do 0xFFFF in Energy per Hour and 0xFF in
  Energy per Minute.  Those decode to ``None``, never to 3276.7 %.
* Some machines set flags for fields they do not send (the Matrix treadmill vectors in the tests claim 9 field
  groups in 20 bytes).  ``partial=True`` keeps every field that was complete *before* the packet ran out and names
  the first missing one in ``truncated_at``; fields come in a fixed order, so the early ones (speed, distance,
  inclination: all Downbeat needs) are still where the specification puts them.  The pace fields are uint8 in
  the GATT XML but some firmware sends uint16; they come *after* inclination, so that ambiguity cannot move the
  grade.

RSC Measurement (0x2A53)::

    flags uint8: bit 0 stride length present, bit 1 total distance present, bit 2 running (1) / walking (0)
    Instantaneous Speed uint16, 1/256 m/s
    Instantaneous Cadence uint8, 1/min
    [Instantaneous Stride Length uint16, 0.01 m]
    [Total Distance uint32, 0.1 m]

Cadence units: the RSC specification defines Instantaneous Cadence as "the number of times per minute a foot
fall occurs", i.e. *steps* per minute (both feet) -- the same unit as Downbeat's clicks.  Real pods disagree:
Technogym treadmills report ~161 at 12 km/h (steps), while the Zwift RunPod is known to report strides (half;
qdomyos-zwift issue #1099 and its "double cadence for run" option).  ``rsc:ADDR?cadence=strides`` doubles the
value for such pods; Downbeat never guesses.  RSC carries no gradient at all: with a foot pod the tempo follows
the profile (the feed's fallback), the pod contributes cadence, speed and distance.

Sources
-------
:class:`FtmsSource` and :class:`RscSource` use bleak (optional: ``pip install 'downbeat[ble]'``).  They run their
own asyncio loop in a private thread, decode each notification into a :class:`~metronome.sensors.protocol.Reading` (or a
:class:`~metronome.sensors.protocol.Reject`) and hand it to the sensor thread through a bounded deque.  They reconnect
after a disconnect.  They have been exercised here only with fake notifications, not against hardware.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import SensorError
from .protocol import Reject, RejectReason, make_reading

FTMS_SERVICE_UUID = "00001826-0000-1000-8000-00805f9b34fb"
TREADMILL_DATA_UUID = "00002acd-0000-1000-8000-00805f9b34fb"
RSC_SERVICE_UUID = "00001814-0000-1000-8000-00805f9b34fb"
RSC_MEASUREMENT_UUID = "00002a53-0000-1000-8000-00805f9b34fb"

BLE_MISSING = "BLE needs the optional extra: pip install 'downbeat[ble]'"

_SINT16_NA = 0x7FFF
_UINT16_NA = 0xFFFF
_UINT8_NA = 0xFF


# --------------------------------------------------------------------------------------------------------------
# Byte cursor
# --------------------------------------------------------------------------------------------------------------
class _Truncated(Exception):
    def __init__(self, field: str, offset: int, need: int, have: int):
        super().__init__(field)
        self.field, self.offset, self.need, self.have = field, offset, need, have


class _Cursor:
    """Reads little-endian fields and raises :class:`_Truncated` (never ``IndexError``) past the end."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str, size: int, field: str):
        if self.pos + size > len(self.data):
            raise _Truncated(field, self.pos, size, len(self.data))
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def u8(self, field):
        return self.take("<B", 1, field)

    def u16(self, field):
        return self.take("<H", 2, field)

    def s16(self, field):
        return self.take("<h", 2, field)

    def u24(self, field):
        lo = self.take("<H", 2, field)
        try:
            hi = self.take("<B", 1, field)
        except _Truncated as exc:
            self.pos -= 2
            raise _Truncated(field, self.pos, 3, exc.have) from None
        return lo | (hi << 16)

    def u32(self, field):
        return self.take("<I", 4, field)


def _as_bytes(data, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise SensorError(f"{what}: expected bytes, got {type(data).__name__}")


# --------------------------------------------------------------------------------------------------------------
# FTMS Treadmill Data (0x2ACD)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreadmillData:
    """One decoded Treadmill Data notification; absent or "not available" fields are ``None``."""

    flags: int
    speed_kmh: float | None = None
    average_speed_kmh: float | None = None
    total_distance_m: int | None = None
    inclination_pct: float | None = None
    ramp_angle_deg: float | None = None
    positive_elevation_gain_m: float | None = None
    negative_elevation_gain_m: float | None = None
    instantaneous_pace_km_per_min: float | None = None
    average_pace_km_per_min: float | None = None
    total_energy_kcal: int | None = None
    energy_per_hour_kcal: int | None = None
    energy_per_minute_kcal: int | None = None
    heart_rate_bpm: int | None = None
    metabolic_equivalent: float | None = None
    elapsed_time_s: int | None = None
    remaining_time_s: int | None = None
    force_on_belt_n: int | None = None
    power_output_w: int | None = None
    truncated_at: str | None = None
    """Name of the first field the packet was too short for (``partial=True`` only), else ``None``."""

    @property
    def speed_mps(self) -> float | None:
        return None if self.speed_kmh is None else self.speed_kmh / 3.6


def _na(value, sentinel):
    return None if value == sentinel else value


def decode_treadmill_data(data, *, partial: bool = False) -> TreadmillData:
    """Decode an FTMS Treadmill Data (0x2ACD) notification.

    Parameters
    ----------
    data : bytes-like
        The characteristic value as notified (flags first).
    partial : bool
        If False (default) a packet shorter than its flags promise raises :class:`SensorError`.  If True, the
        fields complete before the end are returned and ``truncated_at`` names the first missing one.

    Raises
    ------
    SensorError
        Non-bytes input, fewer than 2 bytes (no flags), or truncation with ``partial=False``.
    """
    raw = _as_bytes(data, "FTMS Treadmill Data")
    cur = _Cursor(raw)
    try:
        flags = cur.u16("flags")
    except _Truncated:
        raise SensorError(f"FTMS Treadmill Data: {len(raw)} byte(s), need at least 2 for the flags") from None
    out: dict = {"flags": flags}
    try:
        if not flags & 0x0001:  # inverted: speed present when More Data is 0
            out["speed_kmh"] = cur.u16("instantaneous speed") / 100.0
        if flags & 0x0002:
            out["average_speed_kmh"] = cur.u16("average speed") / 100.0
        if flags & 0x0004:
            out["total_distance_m"] = cur.u24("total distance")
        if flags & 0x0008:
            incl = cur.s16("inclination")
            out["inclination_pct"] = None if incl == _SINT16_NA else incl / 10.0
            ramp = cur.s16("ramp angle setting")
            out["ramp_angle_deg"] = None if ramp == _SINT16_NA else ramp / 10.0
        if flags & 0x0010:
            out["positive_elevation_gain_m"] = cur.u16("positive elevation gain") / 10.0
            out["negative_elevation_gain_m"] = cur.u16("negative elevation gain") / 10.0
        if flags & 0x0020:
            out["instantaneous_pace_km_per_min"] = cur.u8("instantaneous pace") / 10.0
        if flags & 0x0040:
            out["average_pace_km_per_min"] = cur.u8("average pace") / 10.0
        if flags & 0x0080:
            out["total_energy_kcal"] = cur.u16("total energy")
            out["energy_per_hour_kcal"] = _na(cur.u16("energy per hour"), _UINT16_NA)
            out["energy_per_minute_kcal"] = _na(cur.u8("energy per minute"), _UINT8_NA)
        if flags & 0x0100:
            out["heart_rate_bpm"] = cur.u8("heart rate")
        if flags & 0x0200:
            out["metabolic_equivalent"] = cur.u8("metabolic equivalent") / 10.0
        if flags & 0x0400:
            out["elapsed_time_s"] = cur.u16("elapsed time")
        if flags & 0x0800:
            out["remaining_time_s"] = cur.u16("remaining time")
        if flags & 0x1000:
            out["force_on_belt_n"] = cur.s16("force on belt")
            out["power_output_w"] = cur.s16("power output")
    except _Truncated as exc:
        if not partial:
            raise SensorError(
                f"FTMS Treadmill Data: truncated at {exc.field} (offset {exc.offset}, needs {exc.need} byte(s), "
                f"packet has {exc.have}; flags 0x{flags:04x})") from None
        out["truncated_at"] = exc.field
    # Bytes past the last flagged field are ignored: the spec reserves them and real devices pad.
    return TreadmillData(**out)


# --------------------------------------------------------------------------------------------------------------
# RSC Measurement (0x2A53)
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RscMeasurement:
    """One decoded RSC Measurement notification.

    ``cadence_per_min`` is the raw field (steps per minute per the specification; see the module docstring).
    """

    flags: int
    speed_mps: float
    cadence_per_min: int
    running: bool
    stride_length_m: float | None = None
    total_distance_m: float | None = None


def decode_rsc_measurement(data) -> RscMeasurement:
    """Decode an RSC Measurement (0x2A53) notification.

    Reserved flag bits are ignored (a real Stryd packet in the tests sets bit 7) and so are trailing bytes.

    Raises
    ------
    SensorError
        Non-bytes input or a packet shorter than its flags promise (one line naming field and offset).
    """
    raw = _as_bytes(data, "RSC Measurement")
    cur = _Cursor(raw)
    try:
        flags = cur.u8("flags")
        speed = cur.u16("instantaneous speed") / 256.0
        cadence = cur.u8("instantaneous cadence")
        stride = cur.u16("instantaneous stride length") / 100.0 if flags & 0x01 else None
        dist = cur.u32("total distance") / 10.0 if flags & 0x02 else None
    except _Truncated as exc:
        raise SensorError(
            f"RSC Measurement: truncated at {exc.field} (offset {exc.offset}, needs {exc.need} byte(s), "
            f"packet has {exc.have})") from None
    return RscMeasurement(flags=flags, speed_mps=speed, cadence_per_min=cadence, running=bool(flags & 0x04),
                          stride_length_m=stride, total_distance_m=dist)


# --------------------------------------------------------------------------------------------------------------
# Notification -> Reading
# --------------------------------------------------------------------------------------------------------------
def treadmill_to_reading(data):
    """Notification bytes -> :class:`~metronome.sensors.protocol.Reading` or :class:`~metronome.sensors.protocol.Reject`.

    Uses ``partial=True`` so a machine that over-promises in its flags still yields its inclination, as long as
    the inclination itself was complete.  Range checks are the same as for the JSON protocol.
    """
    try:
        td = decode_treadmill_data(data, partial=True)
    except SensorError as exc:
        return Reject(RejectReason.DEVICE, str(exc))
    if td.truncated_at in _FIELDS_WE_USE:
        # The packet ended before (or inside) a field Downbeat reads: nothing in it can be trusted.
        return Reject(RejectReason.DEVICE, f"FTMS Treadmill Data: truncated at {td.truncated_at} "
                                           f"(flags 0x{td.flags:04x}, {len(bytes(data))} bytes)")
    return make_reading(grade_pct=td.inclination_pct, speed_mps=td.speed_mps, distance_m=td.total_distance_m)


# Fields up to and including the inclination group, in packet order; a truncation after them leaves them valid.
_FIELDS_WE_USE = frozenset({"instantaneous speed", "average speed", "total distance", "inclination",
                            "ramp angle setting"})


def rsc_to_reading(data, cadence_factor: float = 1.0):
    """RSC notification bytes -> Reading (no grade: a foot pod does not know the slope) or Reject.

    ``cadence_factor`` is 2 for pods that report strides per minute (``rsc:ADDR?cadence=strides``).
    """
    try:
        m = decode_rsc_measurement(data)
    except SensorError as exc:
        return Reject(RejectReason.DEVICE, str(exc))
    return make_reading(grade_pct=None, speed_mps=m.speed_mps, cadence_spm=m.cadence_per_min * cadence_factor,
                        distance_m=m.total_distance_m)
