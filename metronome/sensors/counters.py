"""Per-feed counters in one preallocated ``int64`` array (single writer: the sensor thread)."""

from __future__ import annotations

import numpy as np

from .protocol import RejectReason

# --------------------------------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------------------------------
S_RECEIVED = 0  # every item read from the source
S_ACCEPTED = 1  # passed every check and reached the filter
S_REORDERED = 2  # sender timestamp older than the last accepted one (dropped)
S_RATE_LIMITED = 3  # refused by the token bucket (dropped unparsed)
S_CLOCK_RESETS = 4  # sender clock jumped back by more than reorder_reset_s: accepted as a restart
S_SOURCE_ERRORS = 5  # exceptions from the source (socket errors, BLE disconnects); the feed keeps going
S_REJECT_BASE = 8
S_N = S_REJECT_BASE + len(RejectReason)

STAT_NAMES: tuple[str, ...] = tuple(
    {S_RECEIVED: "received", S_ACCEPTED: "accepted", S_REORDERED: "reordered", S_RATE_LIMITED: "rate_limited",
     S_CLOCK_RESETS: "clock_resets", S_SOURCE_ERRORS: "source_errors"}.get(i, f"reserved_{i}")
    for i in range(S_REJECT_BASE)) + tuple(f"rejected_{r.name.lower()}" for r in RejectReason)


class SensorStats:
    """Preallocated ``int64[S_N]`` counters.  Single writer (the sensor thread); readers just index it.

    Invariant: ``received == accepted + reordered + rate_limited + sum(rejected_*)``.
    """

    __slots__ = ("counts",)

    def __init__(self):
        self.counts = np.zeros(S_N, dtype=np.int64)

    def reject(self, reason: RejectReason) -> None:
        self.counts[S_REJECT_BASE + int(reason)] += 1

    @property
    def rejected(self) -> int:
        return int(self.counts[S_REJECT_BASE:].sum())

    def as_dict(self) -> dict[str, int]:
        return stats_dict(self.counts)


def stats_dict(counts: np.ndarray) -> dict[str, int]:
    """Name -> value for a counters array (reserved slots omitted)."""
    return {name: int(counts[i]) for i, name in enumerate(STAT_NAMES) if not name.startswith("reserved_")}
