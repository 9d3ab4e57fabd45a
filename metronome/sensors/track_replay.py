"""A recorded run (GPX/FIT/TCX with times) as a position feed: its own fixes, on its own clock (issue 14).

``replay:RUN.gpx`` replays a *run* when the session follows a course: every recorded point becomes a
:class:`~.position.Fix` at its recorded time, pauses included (a watch's auto-pause is a gap, and the follower sees
a lost fix there), which is what a GPS would have sent on the day.  ``downbeat render COURSE --follow replay:RUN``
uses the same fixes, at the same times, as its schedule (:func:`load_track_fixes`); ``play`` plays them against
the wall clock (:class:`TrackReplaySource`).  Without a course to follow, ``replay:`` of a GPX/FIT/TCX file still
replays the profile's grade readings (:mod:`.replay`).

Speed: recorded tracks carry positions, not the receiver's Doppler speed, so each fix gets the speed of the
track around it (distance over time between its neighbours, at most ``SPEED_SPAN_S`` apart): the follower's known
limit is a fix *without* speed (its filter then sees a stop late, see :mod:`metronome.follower`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SensorError
from ..safeyaml import short
from .position import Fix
from .protocol import MAX_SPEED_MPS
from .replay import ReplaySource

TRACK_SUFFIXES = (".gpx", ".fit", ".tcx")
#: Neighbours further apart than this (a pause, a gap in the recording) give no speed: the fix goes without.
SPEED_SPAN_S = 10.0


def is_track_file(path) -> bool:
    """A file whose replay can be a position feed (its suffix; the contents are checked when it is read)."""
    return Path(path).suffix.lower() in TRACK_SUFFIXES


def load_track_fixes(path) -> list:
    """The fixes of a recorded run: ``[(t_rel_s, Fix), ...]``, ``t_rel_s`` seconds from the first fix.

    Points without a position or a time are skipped; a time that goes backwards, or a file with fewer than two
    timed positions, is a :class:`SensorError` naming the file.
    """
    from profiles.loader import read_track
    from profiles.track import haversine_m

    from ..errors import ProfileError

    try:
        raw = read_track(str(path))
    except ProfileError as exc:
        raise SensorError(str(exc)) from None
    name = short(str(path))
    if raw.lat_deg is None or raw.lon_deg is None:
        raise SensorError(f"{name}: no positions to replay (a run needs lat/lon in every {raw.point_name})")
    lat, lon = np.asarray(raw.lat_deg, float), np.asarray(raw.lon_deg, float)
    t = np.asarray(raw.time_s, float)
    ele = np.asarray(raw.elevation_m, float)
    ok = np.isfinite(lat) & np.isfinite(lon) & np.isfinite(t)
    if int(ok.sum()) < 2:
        raise SensorError(f"{name}: fewer than 2 points with a position and a time: not a recorded run")
    lat, lon, t, ele = lat[ok], lon[ok], t[ok], ele[ok]
    seg = np.asarray(raw.segment)[ok]
    dt = np.diff(t)
    if np.any(dt < 0):
        i = int(np.argmax(dt < 0)) + 1
        raise SensorError(f"{name}: point {i}: time goes backwards ({-float(dt[i - 1]):g} s)")
    step = haversine_m(lat, lon)
    step[np.diff(seg) != 0] = 0.0
    d = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(step), step, 0.0))])
    n = t.size
    out = []
    t0 = float(t[0])
    for i in range(n):
        a, b = max(0, i - 1), min(n - 1, i + 1)
        span = float(t[b] - t[a])
        v = None
        if 0 < span <= SPEED_SPAN_S and seg[a] == seg[b]:
            v = float(d[b] - d[a]) / span
            if not (0.0 <= v <= MAX_SPEED_MPS):
                v = None
        e = float(ele[i]) if math.isfinite(ele[i]) else None
        out.append((float(t[i]) - t0, Fix(t_s=float(t[i]), lat_deg=float(lat[i]), lon_deg=float(lon[i]),
                                          elevation_m=e, speed_mps=v, accuracy_m=None, source="replay")))
    return out


class TrackReplaySource(ReplaySource):
    """Plays a run's fixes against ``clock`` (``speed`` times real time); sets ``done`` after the last one.

    :class:`~.replay.ReplaySource`'s scheduling (``due``/``read``/``close``/``done``) over a different schedule:
    items are :class:`~.position.Fix` objects, which :class:`~.core.FeedCore` hands to the course follower.
    """

    def __init__(self, path, speed: float = 1.0, clock: Callable[[], float] = time.monotonic, *,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(path, speed, clock, sleep=sleep)

    def open(self) -> None:
        self.schedule = [(t / self.speed, fix) for t, fix in load_track_fixes(self.path)]
        self._i = 0
        self._t0 = self.clock()
