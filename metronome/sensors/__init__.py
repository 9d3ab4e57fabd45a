"""Live sensor feeds: parse, police, filter, and drive the live tempo slot.

Modules, one job each (transport apart from meaning, like klick's osc_interface/osc_handler):
:mod:`.protocol` (what a message means), :mod:`.urls` (``--sensor`` URLs), :mod:`.sources` (UDP and stream
transport), :mod:`.replay` (recorded files as a feed), :mod:`.ble_protocol` / :mod:`.ble` (BLE meaning /
transport), :mod:`.position` (position fixes, gpsd TPV meaning) / :mod:`.gpsd` (gpsd transport),
:mod:`.http_protocol` / :mod:`.http` (phone-app HTTP push: meaning / transport), :mod:`.ratelimit`, :mod:`.counters`, :mod:`.filter` (grade -> target cadence), :mod:`.core`
(everything between a source and the control slot, no threads or I/O) and :mod:`.feed` (the thread).

Pipeline (one background thread per feed, nothing shared with the audio thread but one float64 slot)::

    source (UDP | stdin | replay | BLE FTMS | BLE RSC | gpsd | HTTP push)
      -> token bucket (flood control, before any parsing)
      -> parse_message (JSON -> Reading | Reject; pure, never raises)
      -> reorder check (sender timestamps must not go backwards)
      -> GradeFilter (moving average + hysteresis + dropout hold/fallback -> target bpm)
      -> ctl[CT_TARGET_BPM]   (single float64 store; the numba kernel slews toward it once per beat)

Why this shape
--------------
* The audio kernel only *reads* ``ctl``; the sensor thread is the single writer of ``ctl[CT_TARGET_BPM]``.  An
  aligned float64 store is atomic on every platform numba targets, so no lock ever stands between the network and
  the PortAudio callback (pedalboard's rule: the audio thread never waits).
* Everything that decides anything is pure and clock-injected (:class:`TokenBucket`, :func:`parse_message`,
  :class:`GradeFilter`, :class:`FeedCore`), so the tests drive it with a fake clock instead of sleeping.
* A flood (10k datagrams/s) is refused by the token bucket *before* JSON parsing, each read drains a bounded batch
  and the work per packet is bounded (1 KiB cap), so a flood costs little CPU and never starves the status line or
  ``stop()``.
* Tempo never jumps: the kernel limits the change to 0.4 %/beat; here the hysteresis (>= 1 grade point held
  >= 15 s or >= 60 m, DESIGN.md) keeps grade noise from reaching the kernel at all, and every target is clamped to
  the settings' cadence bounds.

Counters live in one preallocated ``int64`` array (:class:`SensorStats`), written by the sensor thread only and
polled by the main thread.  Names are in :data:`STAT_NAMES`.
"""

from .core import FeedCore, FeedState
from .counters import (S_ACCEPTED, S_CLOCK_RESETS, S_N, S_RATE_LIMITED, S_RECEIVED, S_REJECT_BASE, S_REORDERED,
                       S_SOURCE_ERRORS, STAT_NAMES, SensorStats, stats_dict)
from .feed import SensorFeed, make_source
from .filter import MODES, Fallback, FilterParams, GradeFilter
from .protocol import (DEFAULT_HOST, DEFAULT_PORT, MAX_CADENCE_SPM, MAX_DISTANCE_M, MAX_ELEVATION_M, MAX_GRADE_PCT,
                       MAX_MESSAGE_BYTES, MAX_SPEED_MPS, MIN_ELEVATION_M, Reading, Reject, RejectReason, make_reading,
                       parse_message)
from .ratelimit import TokenBucket
from .replay import ReplaySource, load_replay
from .sources import StreamSource, UdpSource
from .urls import SENSOR_KINDS, SensorSpec, parse_sensor_url
from .position import Fix, fix_from_reading, make_fix, parse_tpv

__all__ = [
    "FeedCore", "FeedState", "S_ACCEPTED", "S_CLOCK_RESETS", "S_N", "S_RATE_LIMITED", "S_RECEIVED", "S_REJECT_BASE",
    "S_REORDERED", "S_SOURCE_ERRORS", "STAT_NAMES", "SensorStats", "stats_dict", "SensorFeed", "make_source", "MODES",
    "Fallback", "FilterParams", "GradeFilter", "DEFAULT_HOST", "DEFAULT_PORT", "MAX_CADENCE_SPM", "MAX_DISTANCE_M",
    "MAX_ELEVATION_M", "MAX_GRADE_PCT", "MAX_MESSAGE_BYTES", "MAX_SPEED_MPS", "MIN_ELEVATION_M", "Reading", "Reject",
    "RejectReason", "make_reading", "parse_message", "TokenBucket", "ReplaySource", "load_replay", "StreamSource",
    "UdpSource", "SENSOR_KINDS", "SensorSpec", "parse_sensor_url", "Fix", "fix_from_reading", "make_fix",
    "parse_tpv",
]
