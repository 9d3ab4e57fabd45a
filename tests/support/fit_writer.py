"""A small FIT *writer* for test fixtures (fitdecode only reads): file_id, session and record messages, with CRCs.

Layout from the FIT protocol (Garmin FIT SDK, "FIT Protocol" sections 3.3-3.4): a 14-byte header with its CRC,
definition + data messages (little-endian), and the CRC-16 of header + data at the end.  Used to rebuild the shape
of real files that cannot be shipped (a triathlon with swim, bike and run sessions; huge activities).
"""

from __future__ import annotations

import struct

FIT_EPOCH_UNIX_S = 631065600
_CRC_TABLE = (0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
              0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400)
SPORTS = {"running": 1, "cycling": 2, "transition": 3, "swimming": 5, "walking": 11, "hiking": 17}

# (field number, size, base type) per message; values are given in the same order.
_RECORD = ((253, 4, 0x86), (0, 4, 0x85), (1, 4, 0x85), (78, 4, 0x86), (5, 4, 0x86), (4, 1, 0x02))
_FILE_ID = ((0, 1, 0x00),)
_SESSION = ((253, 4, 0x86), (2, 4, 0x86), (7, 4, 0x86), (5, 1, 0x00))
_FMT = {0x86: "I", 0x85: "i", 0x02: "B", 0x00: "B"}


def crc16(data: bytes, crc: int = 0) -> int:
    """The FIT CRC (nibble table, as in the FIT SDK), written independently of profiles.fit.fit_crc."""
    for byte in data:
        tmp = _CRC_TABLE[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ _CRC_TABLE[byte & 0xF]
        tmp = _CRC_TABLE[crc & 0xF]
        crc = (crc >> 4) & 0x0FFF
        crc = crc ^ tmp ^ _CRC_TABLE[(byte >> 4) & 0xF]
    return crc


def _definition(local: int, mesg: int, fields) -> bytes:
    out = struct.pack("<BBBHB", 0x40 | local, 0, 0, mesg, len(fields))
    return out + b"".join(struct.pack("<BBB", *f) for f in fields)


def _data(local: int, fields, values) -> bytes:
    return bytes([local]) + struct.pack("<" + "".join(_FMT[f[2]] for f in fields), *values)


def fit_time(unix_s: float) -> int:
    return int(round(unix_s)) - FIT_EPOCH_UNIX_S


def write_fit(records, sessions=(), *, file_type: int = 4) -> bytes:
    """FIT activity bytes.

    Parameters
    ----------
    records : iterable of (unix_time_s, lat_deg, lon_deg, altitude_m, distance_m, cadence_rpm)
    sessions : iterable of (sport name, start unix_time_s, end unix_time_s)
    """
    body = [_definition(1, 0, _FILE_ID), _data(1, _FILE_ID, (file_type,)), _definition(0, 20, _RECORD)]
    semi = 2 ** 31 / 180.0
    for t, lat, lon, alt, dist, cad in records:
        body.append(_data(0, _RECORD, (fit_time(t), int(round(lat * semi)), int(round(lon * semi)),
                                       int(round((alt + 500.0) * 5)), int(round(dist * 100)), int(cad))))
    if sessions:
        body.append(_definition(2, 18, _SESSION))
        for sport, t0, t1 in sessions:
            body.append(_data(2, _SESSION, (fit_time(t1), fit_time(t0), int(round((t1 - t0) * 1000)),
                                            SPORTS[sport])))
    data = b"".join(body)
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(data), b".FIT")
    header += struct.pack("<H", crc16(header))
    out = header + data
    return out + struct.pack("<H", crc16(out))
