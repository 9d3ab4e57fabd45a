"""Everything between a source and the control slot, minus threads and I/O: rate limit, parse, reorder, filter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .counters import S_ACCEPTED, S_CLOCK_RESETS, S_RATE_LIMITED, S_RECEIVED, S_REJECT_BASE, S_REORDERED, SensorStats
from .filter import Fallback, FilterParams, GradeFilter
from .position import Fix, fix_from_reading
from .protocol import Reading, Reject, parse_message
from .ratelimit import TokenBucket
from ..tempo import TempoSettings

# --------------------------------------------------------------------------------------------------------------
# Core: everything between the source and the control slot, minus threads and I/O
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedState:
    """Immutable snapshot for the status line (swapped in whole by the sensor thread: never torn)."""

    mode: str  # waiting | live | hold | fallback
    target_bpm: float
    grade_pct: float | None  # last raw grade received
    level_grade_pct: float | None  # grade the tempo currently follows
    cadence_spm: float | None
    speed_mps: float | None
    distance_m: float | None
    since_last_good_s: float | None  # None before the first grade-bearing packet
    last_good_s: float | None = None
    source_done: bool = False
    error: str | None = None
    last_reject: str | None = None
    address: str | None = None

    def get(self, name: str, default=None):
        """Mapping-style access (``state.get("grade_pct")``) for status-line code."""
        return getattr(self, name, default)

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__} | {"status": self.status}

    @property
    def status(self) -> str:
        """Short human summary, e.g. ``live -6.0% (level -5.8%) 2.8 m/s 176 spm`` or ``fallback: no data 42 s``."""
        if self.mode == "waiting":
            txt = "waiting for data"
        elif self.mode == "fallback":
            txt = ("fallback: this sensor sends no grade" if self.since_last_good_s is None
                   else f"fallback: no grade for {self.since_last_good_s:.0f} s")
        else:
            txt = f"{self.mode} {self.grade_pct:+.1f}% (level {self.level_grade_pct:+.1f}%)"
            if self.mode == "hold":
                txt += f" {self.since_last_good_s:.0f} s old"
        if self.speed_mps is not None:
            txt += f" {self.speed_mps:.1f} m/s"
        if self.cadence_spm is not None:
            txt += f" {self.cadence_spm:.0f} spm"
        if self.source_done:
            txt += " [source ended]"
        if self.error:
            txt += f" [{self.error}]"
        return txt


#: Footfall arrival times kept for the live session (a ring: at 200 steps/min and a 10 Hz poll, 256 slots hold
#: 77 s of steps, far more than the session reads between two polls).
FOOTFALL_RING = 256


class FeedCore:
    """Rate limit + parse + reorder + filter + counters, on an injected clock.  No threads, no I/O.

    ``handle(item, now_s)`` accepts raw bytes (parsed here), or a :class:`Reading`/:class:`Reject` already
    decoded by a BLE source, or a :class:`~.position.Fix` from a position source (gpsd, HTTP push).  A fix
    reaches the grade filter as a grade-less reading (speed, elevation); every accepted position (a Fix, or a
    Reading with ``lat``/``lon``, as a Fix) and every distance-only reading (a treadmill's Total Distance) is also
    handed to ``on_position(item, now_s)`` if given: that is where a course follower plugs in.  A sender timestamp older than the last accepted one is dropped as reordered,
    unless it is older by more than ``reorder_reset_s``: that is a sender restart (its clock started again), and
    refusing it would silence the feed for good.
    """

    def __init__(self, settings: TempoSettings, fallback: Fallback | None = None, *, rate_hz: float = 50.0,
                 burst: float = 50.0, params: FilterParams = FilterParams(), reorder_reset_s: float = 10.0,
                 on_position=None):
        self.on_position = on_position
        self.last_fix: Fix | None = None
        self.stats = SensorStats()
        self.bucket = TokenBucket(rate_hz, burst)
        self.filter = GradeFilter(settings, fallback, params)
        self.reorder_reset_s = float(reorder_reset_s)
        self.last_t_s: float | None = None
        self.last_reject: Reject | None = None
        #: ``now_s`` of the latest accepted reading that can move the tempo (not a bare footfall); None before one.
        self.last_reading_s: float | None = None
        #: Footfall arrival times (``now_s``), single writer: slot ``n % FOOTFALL_RING`` is written, then
        #: ``footfalls`` counts it (a reader that sees ``footfalls == n`` can read slots up to ``n - 1``).
        self.footfall_s = np.zeros(FOOTFALL_RING, dtype=np.float64)
        self.footfalls = 0

    def handle(self, item, now_s: float) -> Reading | Reject | None:
        """Process one item; returns the accepted Reading, the Reject, or None (rate-limited / reordered).

        The token bucket comes first, so during a flood most items are counted as ``rate_limited`` whatever they
        contain: refusing them unparsed is the point.
        """
        c = self.stats.counts
        c[S_RECEIVED] += 1
        if not self.bucket.take(now_s):
            c[S_RATE_LIMITED] += 1
            return None
        fix = item if isinstance(item, Fix) else None
        r = item if isinstance(item, (Reading, Reject, Fix)) else parse_message(item)
        if isinstance(r, Reject):
            c[S_REJECT_BASE + int(r.reason)] += 1
            self.last_reject = r
            return r
        if r.t_s is not None:
            if self.last_t_s is not None and r.t_s < self.last_t_s:
                if self.last_t_s - r.t_s <= self.reorder_reset_s:
                    c[S_REORDERED] += 1
                    return None
                c[S_CLOCK_RESETS] += 1
            self.last_t_s = r.t_s
        c[S_ACCEPTED] += 1
        if isinstance(r, Reading) and r.footfall:
            self.footfall_s[self.footfalls % FOOTFALL_RING] = now_s
            self.footfalls += 1
            if (r.grade_pct is None and r.speed_mps is None and r.cadence_spm is None and r.distance_m is None
                    and not r.has_position):
                return r  # a bare step mark: nothing for the grade filter or the follower
        self.last_reading_s = now_s
        if fix is None and isinstance(r, Reading) and r.has_position:
            fix = fix_from_reading(r)
        self.filter.push(r.as_reading() if isinstance(r, Fix) else r, now_s)
        if fix is not None:
            self.last_fix = fix
        if self.on_position is not None:
            if fix is not None:
                self.on_position(fix, now_s)
            elif r.distance_m is not None:
                self.on_position(r, now_s)
        return r

    def target_bpm(self, now_s: float) -> float:
        return self.filter.target_bpm(now_s)

    def snapshot(self, now_s: float, target_bpm: float | None = None, **extra) -> FeedState:
        f = self.filter
        return FeedState(
            mode=f.mode(now_s), target_bpm=f.target_bpm(now_s) if target_bpm is None else target_bpm, grade_pct=f.last_grade_pct,
            level_grade_pct=f.level_grade_pct, cadence_spm=f.cadence_spm, speed_mps=f.speed_mps,
            distance_m=f.distance_m, last_good_s=f.last_good_s,
            since_last_good_s=None if f.last_good_s is None else max(0.0, now_s - f.last_good_s),
            last_reject=None if self.last_reject is None else
            f"{self.last_reject.reason.name.lower()}: {self.last_reject.detail}", **extra)
