"""Shared checks for exported FIT files (not a test module): decode with Garmin's FIT SDK and with fitdecode."""

from __future__ import annotations

import io
import math

import fitdecode


def garmin_decode(data: bytes) -> dict:
    """Messages decoded by Garmin's own FIT SDK (``garmin-fit-sdk``), after its integrity check (header, size,
    CRC) has passed and ``read()`` reported no error."""
    from garmin_fit_sdk import Decoder, Stream

    dec = Decoder(Stream.from_byte_array(bytearray(data)))
    assert dec.is_fit(), "Garmin SDK: not a FIT file"
    assert dec.check_integrity(), "Garmin SDK: integrity check failed"
    # check_integrity consumes the stream: read from a fresh one.
    messages, errors = Decoder(Stream.from_byte_array(bytearray(data))).read()
    assert errors == [], f"Garmin SDK: {errors}"
    return messages


def fitdecode_messages(data: bytes) -> list:
    """``[(name, {field: value})]`` in file order, decoded by fitdecode with CRC checks that raise."""
    out = []
    with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE,
                             error_handling=fitdecode.ErrorHandling.RAISE) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage):
                out.append((frame.name, {f.name: f.value for f in frame.fields}))
    return out


SEMICIRCLE_DEG = 180.0 / 2 ** 31


def haversine_m(lat1, lon1, lat2, lon2) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(min(1.0, a)))
