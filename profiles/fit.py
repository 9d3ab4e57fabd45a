"""FIT reader: ``record`` messages with altitude, distance, timestamp and cadence, and the ``session`` legs.

The decoder is our own, a single pass over the bytes with one precompiled :class:`struct.Struct` per message
definition that unpacks only the fields we use.  fitdecode (the reference decoder, used by the tests to cross-check
this one on every real file) builds a Python object per field and takes ~65 us per message, 65 s for a
1M-record file; this reader does the same file in about 2 s (``benchmarks/bench_huge_tracks.py``).  Layout, base
types, invalid values and compressed timestamps follow the FIT protocol (Garmin FIT SDK, "FIT Protocol" document,
sections 3.3-3.4, and ``Profile.xlsx`` for message/field numbers).

``enhanced_altitude`` wins over ``altitude`` (same value, more range).  Running cadence in FIT counts strides
(one foot) per minute, plus ``fractional_cadence``; it is doubled into steps per minute for running sessions.

Damage:

* a complete body whose final 2-byte CRC is missing, cut short or wrong is still decoded, with a warning (watches
  that lose power while closing the file leave exactly that, with every record intact);
* a truncated body, a corrupt header or a message that cannot be decoded is a :class:`ProfileError`: a
  half-decoded activity would silently give a wrong course.

Multisport files (triathlon: swim, transition, bike, transition, run in one file, one ``session`` per leg): only the
running legs are kept, the others are named in a warning.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from metronome.errors import ProfileError

from . import track as _track
from .track import RawTrack, refuse_too_many_points

_SEMICIRCLE_TO_DEG = 180.0 / 2 ** 31
#: FIT timestamps count seconds from 1989-12-31T00:00:00Z (FIT SDK); values below 0x10000000 are seconds since
#: the device was switched on, not dates (FIT protocol, ``date_time`` type).
FIT_EPOCH_UNIX_S = 631065600
FIT_DATETIME_MIN = 0x10000000

#: Global message numbers and field numbers used (FIT SDK Profile.xlsx).
MESG_FILE_ID, MESG_SPORT, MESG_SESSION, MESG_RECORD = 0, 12, 18, 20
FIELD_TIMESTAMP = 253
_WANTED = {
    MESG_FILE_ID: (0,),                                  # type
    MESG_SPORT: (0,),                                    # sport
    MESG_SESSION: (2, 5, 7),                             # start_time, sport, total_elapsed_time (ms)
    MESG_RECORD: (0, 1, 2, 4, 5, 53, 78),                # lat, long, altitude, cadence, distance, frac. cad., enh. alt.
}
#: ``sport`` enum (FIT SDK): the sports whose legs are coached as runs, and names for the others in messages.
RUNNING_SPORTS = {1: "running", 10: "training", 11: "walking", 17: "hiking"}
SPORT_NAMES = {0: "generic", 1: "running", 2: "cycling", 3: "transition", 4: "fitness equipment", 5: "swimming",
               10: "training", 11: "walking", 12: "cross-country skiing", 15: "rowing", 17: "hiking",
               18: "multisport", 19: "paddling", 21: "e-biking", 22: "motorcycling", 23: "boating", 24: "driving",
               30: "inline skating", 37: "stand-up paddleboarding"}
_FILE_TYPES = {1: "device", 2: "settings", 3: "sport", 4: "activity", 5: "workout", 6: "course", 7: "schedules",
               9: "weight", 10: "totals", 11: "goals", 14: "blood_pressure", 15: "monitoring_a", 20: "activity_summary",
               28: "monitoring_daily", 32: "monitoring_b", 34: "segment", 35: "segment_list"}

#: Base types (FIT protocol table 7): number (low 5 bits) -> (struct code, size, invalid value).
_BASE = {0: ("B", 1, 0xFF), 1: ("b", 1, 0x7F), 2: ("B", 1, 0xFF), 3: ("h", 2, 0x7FFF), 4: ("H", 2, 0xFFFF),
         5: ("i", 4, 0x7FFFFFFF), 6: ("I", 4, 0xFFFFFFFF), 8: ("f", 4, None), 9: ("d", 8, None), 10: ("B", 1, 0),
         11: ("H", 2, 0), 12: ("I", 4, 0), 13: ("B", 1, 0xFF), 14: ("q", 8, 0x7FFFFFFFFFFFFFFF),
         15: ("Q", 8, 0xFFFFFFFFFFFFFFFF), 16: ("Q", 8, 0)}

#: CRC-16 of the FIT protocol (section 3.3.5): the reflected 0x8005 polynomial ("CRC-16/ARC"), initial value 0.
_CRC_TABLE = np.zeros(256, dtype=np.uint16)
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0xA001 if _c & 1 else _c >> 1
    _CRC_TABLE[_i] = _c
del _i, _c


def fit_crc(data: bytes) -> int:
    """FIT CRC-16 of ``data``, vectorised with numpy (no per-byte Python loop).

    The CRC starts at 0 with no final xor, so it is linear over GF(2) and leading zero bytes do not change it:
    the data is zero-padded in front to ``rows x cols``, every row's CRC is computed at once (one numpy step per
    column), and the rows are combined with ``crc(A || B) = advance(crc(A), len(B)) ^ crc(B)``, where ``advance``
    (the CRC of ``c`` followed by ``cols`` zero bytes) is linear in ``c`` and so a pair of 256-entry tables.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    n = buf.size
    if n == 0:
        return 0
    cols = max(64, int(math.isqrt(n)))
    rows = -(-n // cols)
    padded = np.zeros(rows * cols, dtype=np.uint8)
    padded[rows * cols - n:] = buf
    m = padded.reshape(rows, cols)
    crc = np.zeros(rows, dtype=np.uint16)
    table = _CRC_TABLE
    for j in range(cols):
        crc = (crc >> 8) ^ table[(crc ^ m[:, j]) & 0xFF]
    # advance(c) for c = 0..65535 from its 16 basis vectors: zero bytes step c -> (c >> 8) ^ T[c & 0xFF].
    basis = (np.uint16(1) << np.arange(16, dtype=np.uint16)).astype(np.uint16)
    for _ in range(cols):
        basis = (basis >> 8) ^ table[basis & 0xFF]
    byte = np.arange(256, dtype=np.uint16)
    lo = np.zeros(256, dtype=np.uint16)
    hi = np.zeros(256, dtype=np.uint16)
    for bit in range(8):
        lo ^= np.where((byte >> bit) & 1, basis[bit], 0).astype(np.uint16)
        hi ^= np.where((byte >> bit) & 1, basis[bit + 8], 0).astype(np.uint16)
    lo_l, hi_l, rows_l = lo.tolist(), hi.tolist(), crc.tolist()
    total = 0
    for r in rows_l:
        total = lo_l[total & 0xFF] ^ hi_l[total >> 8] ^ r
    return total


class _Corrupt(Exception):
    pass


_NP_CODE = {"B": "u1", "b": "i1", "h": "i2", "H": "u2", "i": "i4", "I": "u4", "f": "f4", "d": "f8", "q": "i8",
            "Q": "u8"}


class _Definition:
    __slots__ = ("mesg", "size", "unpack", "ts_index", "columns", "dtype")

    def __init__(self, mesg: int, endian: str, fields: bytes, dev_size: int):
        self.mesg = mesg
        wanted = _WANTED.get(mesg, ())
        fmt, columns, self.ts_index = [endian], [], -1
        pending_pad = 0
        size = 0
        names, formats, offsets = [], [], []
        for k in range(0, len(fields), 3):
            num, fsize, btype = fields[k], fields[k + 1], fields[k + 2] & 0x1F
            base = _BASE.get(btype)
            use = base is not None and base[1] == fsize and (num in wanted or num == FIELD_TIMESTAMP)
            if use:
                if pending_pad:
                    fmt.append(f"{pending_pad}x")
                    pending_pad = 0
                fmt.append(base[0])
                names.append(f"c{len(columns)}")
                formats.append(endian + _NP_CODE[base[0]])
                offsets.append(1 + size)                  # + the record header byte
                if num == FIELD_TIMESTAMP:
                    self.ts_index = len(columns)
                columns.append((num, base[2]))
            else:
                pending_pad += fsize
            size += fsize
        pending_pad += dev_size
        if pending_pad:
            fmt.append(f"{pending_pad}x")
        self.size = size + dev_size
        self.unpack = struct.Struct("".join(fmt)).unpack_from
        self.columns = columns
        # The same layout as a numpy record (header byte included) for runs of consecutive messages.
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": 1 + self.size})


def _run_length(buf: np.ndarray, start: int, stride: int, header: int, end: int) -> int:
    """How many consecutive messages from ``start`` carry the same header byte (so the same definition).

    Probes 16, 64, 256... messages ahead, so the cost stays proportional to the run, even when runs are short.
    """
    maxk = (end - start) // stride
    k, probe = 1, 16
    while k < maxk:
        m = min(maxk, k + probe)
        bad = np.flatnonzero(buf[start + k * stride:start + m * stride:stride] != header)
        if bad.size:
            return k + int(bad[0])
        k, probe = m, probe * 4
    return k


def _columns(rows: np.ndarray, columns: list, nums) -> dict:
    """Fields ``nums`` of the unpacked ``rows`` (k x columns, float) as float64 arrays, NaN where absent or invalid."""
    out = {}
    for num in nums:
        j = next((j for j, (nn, _) in enumerate(columns) if nn == num), None)
        if j is None:
            out[num] = np.full(rows.shape[0], np.nan)
            continue
        col = rows[:, j].copy()
        invalid = columns[j][1]
        if invalid is not None:
            col[col == invalid] = np.nan
        col[~np.isfinite(col)] = np.nan
        out[num] = col
    return out


def _decode(data: bytes, display: str):
    """Decode every FIT file in ``data`` (chained files allowed); returns records, sessions, file type, warnings."""
    warnings: list[str] = []
    # Records in order, as blocks (definition, float rows (k x columns), FIT timestamps (k)): a run of consecutive
    # record messages of one definition is read with one numpy call, isolated ones one by one.
    blocks: list[tuple] = []
    pend_def, pend_rows, pend_ts = None, [], []
    n_rec = 0
    buf = np.frombuffer(data, dtype=np.uint8)

    def flush():
        nonlocal pend_def, pend_rows, pend_ts
        if pend_rows:
            blocks.append((pend_def, np.array(pend_rows, dtype=np.float64).reshape(len(pend_rows), -1),
                           np.array(pend_ts, dtype=np.float64)))
        pend_def, pend_rows, pend_ts = None, [], []
    sessions: list[tuple] = []           # (start_time, sport, total_elapsed_time_ms, timestamp)
    file_type = sport = None
    pos, n = 0, len(data)
    nan = math.nan
    while pos < n:
        if n - pos < 12:
            raise _Corrupt(f"{n - pos} bytes at byte {pos} are too short for a FIT header")
        hsize = data[pos]
        if hsize < 12 or data[pos + 8:pos + 12] != b".FIT":
            raise _Corrupt(f"not a FIT file @ {pos}")
        if n - pos < hsize:
            raise _Corrupt(f"truncated FIT header at byte {pos}")
        if hsize >= 14:
            (hcrc,) = struct.unpack_from("<H", data, pos + 12)
            if hcrc and hcrc != fit_crc(data[pos:pos + 12]):
                raise _Corrupt(f"mismatching CRC in FIT header at byte {pos}")
        (body_size,) = struct.unpack_from("<I", data, pos + 4)
        start = pos + hsize
        end = start + body_size
        if end > n:
            raise _Corrupt(f"file truncated: the header announces {body_size} bytes of data, "
                           f"{n - start} are present")
        defs: dict[int, _Definition] = {}
        last_ts = None
        p = start
        while p < end:
            h = data[p]
            p += 1
            if h & 0x80:                                     # compressed timestamp header
                d = defs.get((h >> 5) & 0x03)
                if d is None:
                    raise _Corrupt(f"data message of undefined local type {(h >> 5) & 0x03} at byte {p - 1}")
                if last_ts is not None:
                    off = h & 0x1F
                    ts = (last_ts & ~0x1F) + off + (0x20 if off < (last_ts & 0x1F) else 0)
                    last_ts = ts
                else:
                    ts = None
            elif h & 0x40:                                   # definition message
                if p + 5 > end:
                    raise _Corrupt(f"definition message cut at byte {p - 1}")
                arch = data[p + 1]
                if arch > 1:
                    raise _Corrupt(f"definition message at byte {p - 1}: architecture {arch} is not 0 or 1")
                endian = ">" if arch == 1 else "<"
                (mesg,) = struct.unpack_from(endian + "H", data, p + 2)
                nf = data[p + 4]
                p += 5
                fields = data[p:p + 3 * nf]
                p += 3 * nf
                dev_size = 0
                if h & 0x20:                                 # developer fields: sizes only, values skipped
                    if p >= end:
                        raise _Corrupt(f"definition message cut at byte {p}")
                    nd = data[p]
                    dev = data[p + 1:p + 1 + 3 * nd]
                    p += 1 + 3 * nd
                    dev_size = sum(dev[k + 1] for k in range(0, len(dev), 3))
                if p > end:
                    raise _Corrupt(f"definition message runs past the end of the data at byte {end}")
                defs[h & 0x0F] = _Definition(mesg, endian, fields, dev_size)
                continue
            else:                                            # normal data message
                d = defs.get(h & 0x0F)
                if d is None:
                    raise _Corrupt(f"data message of undefined local type {h & 0x0F} at byte {p - 1}")
                ts = None
                if d.mesg == MESG_RECORD and p + 16 * (d.size + 1) <= end:
                    k = _run_length(buf, p - 1, d.size + 1, h, end)
                    if k >= 16:
                        flush()
                        arr = np.frombuffer(data, dtype=d.dtype, count=k, offset=p - 1)
                        rows = np.column_stack([arr[nm].astype(np.float64) for nm in d.dtype.names]) \
                            if d.dtype.names else np.empty((k, 0))
                        if d.ts_index >= 0:
                            t_col = rows[:, d.ts_index].copy()
                            t_col[t_col == 0xFFFFFFFF] = np.nan
                            valid = t_col[np.isfinite(t_col)]
                            if valid.size:
                                last_ts = int(valid[-1])
                            t_col[t_col < FIT_DATETIME_MIN] = np.nan
                        else:
                            t_col = np.full(k, np.nan)
                        blocks.append((d, rows, t_col))
                        n_rec += k
                        if n_rec > _track.MAX_POINTS:
                            refuse_too_many_points(display, "record messages")
                        p += k * (d.size + 1) - 1
                        continue
            if p + d.size > end:
                raise _Corrupt(f"message at byte {p - 1} runs past the end of the data at byte {end}")
            vals = d.unpack(data, p)
            p += d.size
            if d.ts_index >= 0:
                v = vals[d.ts_index]
                if v != 0xFFFFFFFF:
                    ts = last_ts = v
            mesg = d.mesg
            if mesg == MESG_RECORD:
                if d is not pend_def:
                    flush()
                    pend_def = d
                pend_rows.append(vals)
                pend_ts.append(nan if ts is None or ts < FIT_DATETIME_MIN else float(ts))
                n_rec += 1
                if n_rec > _track.MAX_POINTS:
                    refuse_too_many_points(display, "record messages")
            elif mesg == MESG_FILE_ID and file_type is None:
                file_type = _get(vals, d.columns, 0)
            elif mesg == MESG_SPORT and sport is None:
                sport = _get(vals, d.columns, 0)
            elif mesg == MESG_SESSION:
                sessions.append((_get(vals, d.columns, 2), _get(vals, d.columns, 5), _get(vals, d.columns, 7), ts))
        # Footer: the CRC of header + data.
        if n - end < 2:
            warnings.append(f"{display}: the file's final CRC is missing (the file ends after its data): "
                            f"records kept as read")
            pos = n
        else:
            (crc,) = struct.unpack_from("<H", data, end)
            if crc != fit_crc(data[pos:end]):
                warnings.append(f"{display}: the file's CRC does not match its data (read 0x{crc:04x}): records "
                                f"kept as read; check the course")
            pos = end + 2
    flush()
    return blocks, sessions, file_type, sport, warnings


def _get(vals, columns, num):
    for j, (n, invalid) in enumerate(columns):
        if n == num:
            v = vals[j]
            return None if v == invalid else v
    return None


def _fit_time_s(value) -> float:
    return float(value) if value is not None and value >= FIT_DATETIME_MIN else math.nan


def _running_legs(ts: np.ndarray, sessions: list, display: str):
    """(keep mask or None, leg index per record, warnings) for multisport files (several sessions)."""
    legs = []
    for start, sp, elapsed_ms, end in sessions:
        t0 = _fit_time_s(start)
        t1 = t0 + elapsed_ms / 1000.0 if elapsed_ms is not None and math.isfinite(t0) else _fit_time_s(end)
        if math.isfinite(t0) and math.isfinite(t1):
            legs.append((t0, t1, sp))
    if len(legs) < 2 or len({sp for _, _, sp in legs}) < 2:
        return None, None, []
    legs.sort()
    leg = np.full(ts.size, -1, dtype=np.int64)
    for k, (t0, t1, _) in enumerate(legs):
        leg[(ts >= t0) & (ts <= t1) & (leg < 0)] = k
    running = np.array([sp in RUNNING_SPORTS for _, _, sp in legs])
    keep = (leg >= 0) & running[np.maximum(leg, 0)]
    skipped = []
    for k, (t0, t1, sp) in enumerate(legs):
        if not running[k]:
            name = SPORT_NAMES.get(sp, f"sport {sp}")
            mins = (t1 - t0) / 60.0
            skipped.append(f"{name} ({mins:.0f} min)")
    if not keep.any():
        names = ", ".join(SPORT_NAMES.get(sp, f"sport {sp}") for _, _, sp in legs)
        raise ProfileError(f"{display}: multisport file with no running leg (legs: {names}): nothing to coach")
    n_run = int(running.sum())
    return keep, leg, [f"{display}: multisport file: coaching the {n_run} running leg{'s' if n_run > 1 else ''} "
                       f"only; skipped {', '.join(skipped)}"]


def read_fit(data: bytes, display: str) -> RawTrack:
    try:
        blocks, sessions, file_type, sport, warnings = _decode(data, display)
    except _Corrupt as exc:
        raise ProfileError(f"{display}: truncated or corrupt FIT file ({exc})") from None
    except ProfileError:
        raise
    except (struct.error, IndexError, ValueError) as exc:  # a definition that asks for an impossible layout
        msg = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ProfileError(f"{display}: truncated or corrupt FIT file ({msg})") from None
    n = sum(b[1].shape[0] for b in blocks)
    if n == 0:
        what = (f"file type {_FILE_TYPES.get(file_type, file_type)!r}" if file_type is not None
                else "no activity data")
        raise ProfileError(f"{display}: no record messages ({what}): only activity files can be used")
    parts = [_columns(rows, d.columns, _WANTED[MESG_RECORD]) for d, rows, _ in blocks]
    cols = {num: np.concatenate([c[num] for c in parts]) for num in _WANTED[MESG_RECORD]}
    t_fit = np.concatenate([b[2] for b in blocks])
    alt = np.where(np.isfinite(cols[78]), cols[78], cols[2]) / 5.0 - 500.0   # scale 5, offset 500 (m)
    lat = cols[0] * _SEMICIRCLE_TO_DEG
    lon = cols[1] * _SEMICIRCLE_TO_DEG
    dist = cols[5] / 100.0                                                   # scale 100 (m)
    cad = cols[4] + np.where(np.isfinite(cols[53]), cols[53] / 128.0, 0.0)   # fractional_cadence: scale 128
    segment = np.zeros(n, dtype=np.int64)

    keep, leg, leg_warnings = _running_legs(t_fit, sessions, display)
    warnings += leg_warnings
    if keep is not None:
        # Legs are segments (the time and distance between them are not the run's); each leg's distance restarts
        # from the leg's first record, as the watch counts it across the whole file.
        lat, lon, alt, t_fit, dist, cad = (x[keep] for x in (lat, lon, alt, t_fit, dist, cad))
        segment = leg[keep]
        if np.isfinite(dist).any():
            dist = dist.copy()
            for s in np.unique(segment):
                m = segment == s
                first = dist[m][np.isfinite(dist[m])]
                if first.size:
                    dist[m] -= first[0]
            offsets = np.zeros_like(dist)
            total = 0.0
            for s in np.unique(segment):
                m = segment == s
                offsets[m] = total
                seg_d = dist[m][np.isfinite(dist[m])]
                total += float(seg_d.max()) if seg_d.size else 0.0
            dist = dist + offsets
        running = True
    else:
        if sport is None and sessions:
            sport = sessions[0][1]
        running = sport in RUNNING_SPORTS
    t = t_fit + FIT_EPOCH_UNIX_S
    # Keep lat/lon only if there are any (treadmill runs have none; distance comes from the footpod then).
    has_pos = bool(np.isfinite(lat).any())
    cadence = cad * 2.0 if running and np.isfinite(cad).any() else None
    if cadence is not None:
        cadence[cadence <= 0] = np.nan  # 0 = standing still, not a cadence to replay
    if has_pos and np.isfinite(dist).sum() < 2:
        # No distance field: drop points without a fix, haversine needs both ends.
        ok = np.isfinite(lat) & np.isfinite(lon)
        lat, lon, alt, t, dist, segment = lat[ok], lon[ok], alt[ok], t[ok], dist[ok], segment[ok]
        cadence = cadence[ok] if cadence is not None else None
    return RawTrack(segment=segment, lat_deg=lat if has_pos else None, lon_deg=lon if has_pos else None,
                    elevation_m=alt, time_s=t, distance_m=dist, cadence_spm=cadence, ele_field="altitude",
                    point_name="record", warnings=tuple(warnings))
