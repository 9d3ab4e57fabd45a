"""Replay: a recorded file (CSV, GPX/FIT/TCX/YAML) as a schedule of protocol messages, played on a clock."""

from __future__ import annotations

import json
import math
import stat
import time
from pathlib import Path
from typing import Callable

from ..errors import SensorError
from ..safeyaml import short
from .protocol import MAX_SPEED_MPS

def load_replay(path, speed: float = 1.0, *, max_rate_hz: float = 20.0) -> list[tuple[float, bytes]]:
    """A file as a schedule of protocol messages: ``[(wall_offset_s, json_bytes), ...]``.

    ``.csv``: ``t,grade_pct[,speed_mps,cadence_spm]`` (a header row naming the columns is optional; ``#``
    comments allowed); with a speed column each message also carries the cumulative course ``distance_m``.  Anything else goes through ``profiles.load_profile`` (GPX/FIT/TCX/YAML).  Points closer
    than ``1/max_rate_hz`` of *wall* time are thinned so a fast replay of a dense profile does not look like a
    flood.  The messages are the same JSON as a live sender's, so a replay exercises the live path end to end.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows = _read_replay_csv(path)
        _add_csv_distance(rows)
    else:
        rows = _profile_rows(path)
    min_gap = speed / max_rate_hz  # in course seconds
    out = []
    last = None
    for i, row in enumerate(rows):
        t = row["t"]
        if last is not None and t - last < min_gap * (1 - 1e-9) and i != len(rows) - 1:  # float grids
            continue
        last = t
        msg = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items() if v is not None}
        out.append((t / speed, json.dumps(msg, separators=(",", ":")).encode()))
    if out:
        t0 = out[0][0]
        out = [(w - t0, m) for w, m in out]
    return out


_CSV_COLUMNS = ("t", "grade_pct", "speed_mps", "cadence_spm")


#: A replay CSV is a recording of one session: 1 Hz for 100 hours at ~40 bytes a row is ~14 MB, so 64 MiB leaves a
#: wide margin while bounding memory (a 1 GB CSV once grew a replay to 23 GB of RAM).
MAX_REPLAY_CSV_BYTES = 64 << 20
#: No real row of t,grade_pct,speed_mps,cadence_spm comes near this; a longer line is garbage, refused unread.
MAX_REPLAY_LINE_BYTES = 4096
#: Rows kept in memory (each a small dict): 1 Hz for 277 hours, longer than any recorded ultra.
MAX_REPLAY_ROWS = 1_000_000


def _replay_lines(path: Path):
    """Yield ``(lineno, text)`` from a replay CSV, streaming, with the size and line-length caps enforced."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise SensorError(f"{short(str(path))}: not a regular file")
        if st.st_size > MAX_REPLAY_CSV_BYTES:
            raise SensorError(f"{short(str(path))}: {st.st_size} bytes is more than a replay CSV can hold "
                              f"({MAX_REPLAY_CSV_BYTES >> 20} MiB)")
        f = open(path, "rb")
    except OSError as exc:
        raise SensorError(f"{short(str(path))}: cannot read: {exc.strerror or exc}") from None
    with f:
        total = 0
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_REPLAY_LINE_BYTES + 1), b""), 1):
            total += len(raw)
            if total > MAX_REPLAY_CSV_BYTES:  # the file grew while we read it
                raise SensorError(f"{short(str(path))}: more than {MAX_REPLAY_CSV_BYTES >> 20} MiB")
            if len(raw) > MAX_REPLAY_LINE_BYTES and not raw.endswith(b"\n"):
                raise SensorError(f"{short(str(path))}:{lineno}: line longer than {MAX_REPLAY_LINE_BYTES} bytes")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SensorError(f"{short(str(path))}:{lineno}: not UTF-8 text (byte {exc.start})") from None


def _read_replay_csv(path: Path) -> list[dict]:
    cols = None
    rows = []
    last_t = None
    for lineno, line in _replay_lines(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        if cols is None:
            try:
                float(cells[0])
            except ValueError:
                cols = [c.lower() for c in cells]
                for need in ("t", "grade_pct"):
                    if need not in cols:
                        raise SensorError(f"{path}:{lineno}: header has no {need!r} column (columns: {short(cells)})")
                continue
            cols = list(_CSV_COLUMNS[:len(cells)])
            if len(cells) < 2 or len(cells) > len(_CSV_COLUMNS):
                raise SensorError(f"{path}:{lineno}: expected t,grade_pct[,speed_mps,cadence_spm], got {len(cells)} "
                                  "columns")
        if len(cells) != len(cols):
            raise SensorError(f"{path}:{lineno}: {len(cells)} columns, header has {len(cols)}")
        row = {}
        for name, cell in zip(cols, cells):
            if name not in _CSV_COLUMNS:
                continue
            if cell == "" and name not in ("t", "grade_pct"):
                row[name] = None
                continue
            try:
                v = float(cell)
            except ValueError:
                raise SensorError(f"{path}:{lineno}: {name}: {short(cell)} is not a number") from None
            if not math.isfinite(v):
                raise SensorError(f"{path}:{lineno}: {name}: {short(cell)} is not finite")
            row[name] = v
        if last_t is not None and row["t"] <= last_t:
            raise SensorError(f"{path}:{lineno}: t: {row['t']!r} is not after the previous row ({last_t!r})")
        last_t = row["t"]
        rows.append(row)
        if len(rows) > MAX_REPLAY_ROWS:
            raise SensorError(f"{path}:{lineno}: more than {MAX_REPLAY_ROWS} rows")
    if not rows:
        raise SensorError(f"{path}: no data rows")
    return rows


def _add_csv_distance(rows: list[dict]) -> None:
    """Cumulative ``distance_m`` from the speed column (trapezoid over *course* time).

    The feed's own hold timers run on wall time (a replay *is* a live feed), so at 10x a 15 s hold spans 150 s
    of course; the distance hold (60 m) uses this course distance and behaves as on the day at any speed.
    """
    if not any(r.get("speed_mps") is not None for r in rows):
        return
    d = 0.0
    prev = None
    for r in rows:
        v = r.get("speed_mps")
        if prev is not None and v is not None and prev.get("speed_mps") is not None:
            d += 0.5 * (v + prev["speed_mps"]) * (r["t"] - prev["t"])
        r["distance_m"] = d
        prev = r


def _profile_rows(path: Path) -> list[dict]:
    try:
        import profiles
    except ImportError:
        profiles = None
    load = getattr(profiles, "load_profile", None)
    if load is None:
        raise SensorError(f"{path}: replaying {path.suffix or 'this file'} needs profiles.load_profile, which is "
                          "not available; use a CSV (t,grade_pct[,speed_mps,cadence_spm])")
    prof = load(str(path))
    rows = []
    for t, g, d, v, e in zip(prof.time_s, prof.grade_pct, prof.distance_m, prof.speed_mps, prof.elevation_m):
        rows.append({"t": float(t), "grade_pct": float(g), "distance_m": float(d),
                     "speed_mps": float(v) if 0.0 <= v <= MAX_SPEED_MPS else None, "elevation_m": float(e)})
    return rows


class ReplaySource:
    """Plays :func:`load_replay`'s schedule against ``clock`` (``speed`` times real time), then sets ``done``.

    The replay is a live feed: the filter's timers (15 s hold, 30 s dropout) run on the feed's wall clock, while
    the messages carry course time ``t`` and course ``distance_m``, so the 60 m hold behaves as on the day at any
    speed.  When the file ends the feed goes quiet and, 30 s later, falls back like any dropped sensor.
    """

    def __init__(self, path, speed: float = 1.0, clock: Callable[[], float] = time.monotonic, *,
                 max_rate_hz: float = 20.0, sleep: Callable[[float], None] = time.sleep):
        self.path, self.speed, self.clock = Path(path), float(speed), clock
        self.max_rate_hz = max_rate_hz
        self.sleep = sleep
        self.schedule: list[tuple[float, bytes]] = []
        self.done = False
        self._i = 0
        self._t0: float | None = None

    def open(self) -> None:
        self.schedule = load_replay(self.path, self.speed, max_rate_hz=self.max_rate_hz)
        self._i = 0
        self._t0 = self.clock()

    def due(self, now_s: float) -> list:
        """Messages whose wall offset has come by ``now_s`` (pure given the schedule; used by ``read``)."""
        elapsed = now_s - self._t0
        out = []
        sched = self.schedule
        while self._i < len(sched) and sched[self._i][0] <= elapsed:
            out.append(sched[self._i][1])
            self._i += 1
        if self._i >= len(sched):
            self.done = True
        return out

    def read(self, timeout_s: float) -> list:
        out = self.due(self.clock())
        if out or self.done:
            if self.done and not out:
                self.sleep(timeout_s)
            return out
        wait = self.schedule[self._i][0] - (self.clock() - self._t0)
        self.sleep(max(0.0, min(timeout_s, wait)))
        return self.due(self.clock())

    def close(self) -> None:
        pass
