"""Course follower: where along the course the runner is, from position fixes or distance readings (issue 14).

Pure and clock-injected: no I/O, no threads, no wall clock.  Every call takes ``now_s`` (the caller's monotonic
clock, e.g. the sensor feed's); fixes also carry their own time (``Fix.t_s``), which sets the time between fixes
(apps push batches: ten fixes may arrive in one request).

Method
------
* **Course geometry** (:class:`CoursePath`): the course's lat/lon polyline with its cumulative distance (the
  profile's own ``distance_m``, so a reported distance indexes the profile directly), projected once to local
  equirectangular metres around the course's centre and stored as numpy segment arrays.  Over a 100 km course the
  projection's scale error is under 1 % (cos(lat) varies by less than that across 50 km of latitude at 45 deg),
  i.e. < 0.5 m on a 50 m cross-track distance: far below GPS noise.
* **Candidates**: each fix is projected onto the segments inside a *window* of course distance around the expected
  position: from ``max(0, reported - back)`` to ``estimate + max_speed * dt + 3 * accuracy + margin``
  (plausibility: nobody runs faster than ``max_speed``).  The window is found by ``searchsorted`` on the distance
  array, so the cost per fix depends on the window (tens of segments), not on the course length
  (benchmarks/bench_follower.py).  Only the first fix (or one after losing the course for long) scans further.
* **Choice**: among candidates within ``off_course_m`` of the fix, the one minimising
  ``(cross_track / accuracy)^2 + (s - s_expected)^2 / (var_s + accuracy^2) + 9 (max(0, reported - accuracy - s) / accuracy)^2``:
  geometric closeness, the progress the runner is expected to have made, and a penalty for lying behind what was
  already reported (runners do not run a course backwards).  A switchback's other leg, the return leg of an out-and-back or the
  second lap of a loop may be nearer the fix, but it is far in course distance from where the runner should be, so
  it loses.  The first fix prefers the candidate nearest ``start_m`` (a loop's start is also its finish).
* **Progress filter**: a constant-velocity Kalman filter on (distance along course, speed) with white-acceleration
  process noise; the chosen candidate is its measurement (variance ``accuracy^2``), the receiver's Doppler speed a
  second one.  The reported distance is the filter's, made monotone (it never goes back: a runner does not run a
  course backwards, and noise must not re-trigger a cue) and capped at the window's end (never ahead).
* **Off course**: no candidate within ``off_course_m`` (50 m) for longer than ``off_course_s`` (10 s): state
  ``off_course``, one ``off_course`` event per episode; progress holds; the window grows with the time off course,
  so the runner is found again wherever they rejoin ahead, and ``on_course`` is reported once when they do.
* **Lost fix**: nothing for ``lost_after_s``: the distance holds (no dead reckoning: nothing says the runner kept
  moving), then the state becomes ``lost_fix`` with one ``lost_fix`` event; the next fix reports ``fix_regained``.
* **Distance-only** (a treadmill's Total Distance, a course without coordinates): the reading, less its value at
  the start, is the measurement (variance 1 m^2); a device that restarts from 0 continues from the current distance.

Known limit: fixes *without* a speed (some HTTP apps) and a sudden stop a few metres before a hairpin whose
other leg is within ~2.5 accuracies: the filter's speed decays slowly, and the estimate can be carried round the bend
(seen in the property test at 7-8 m noise: ~45 m ahead).  With the receiver's Doppler speed (gpsd TPV ``speed``,
Sensor Logger ``speed``) the stop is seen at once; 500 random cases then stay within 4 accuracies + 10 m.

Confidence (0..1) is a heuristic for the status line and for gating: 0 when waiting, lost or off course, else
``exp(-sigma_s / 25 m) * cross-track term * freshness``, the cross-track term falling linearly from 1 at the fix's
accuracy to 0 at ``off_course_m``, freshness from 1 at the fix to 0 at ``lost_after_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

EARTH_RADIUS_M = 6371008.8  # mean Earth radius (IUGG), the same as profiles.track
STATES = ("waiting", "on_course", "off_course", "lost_fix")
EVENT_KINDS = ("acquired", "off_course", "on_course", "lost_fix", "fix_regained")
MAX_EVENTS = 10000


@dataclass(frozen=True)
class FollowerParams:
    """Follower constants.

    Attributes
    ----------
    off_course_m, off_course_s : float
        Farther than this from the course for longer than this is off course (issue 14: "> 50 m for > 10 s").
    lost_after_s : float
        No fix (or distance reading) for this long is a lost fix.  10 s covers apps that push every 5 s with one
        push lost; gpsd sends 1 Hz.
    max_speed_mps : float
        Fastest plausible progress along the course.  Downhill running peaks near 7 m/s (elite descents); 10 m/s
        leaves margin and is the window's forward bound.
    default_accuracy_m : float
        Horizontal accuracy assumed when a fix carries none (a consumer GPS in open sky: 3-10 m, 95 %).
    min_accuracy_m : float
        Floor on the stated accuracy (receivers report 1 m under trees when it is not).
    max_accuracy_m : float
        Fixes worse than this cannot place a runner on a course with 50 m tolerance: ignored (counted).
    accel_mps2 : float
        White-acceleration process noise spectral density (m^2/s^3): how fast the runner's speed may change
        (walk breaks, pauses: ~1 m/s in 3 s).
    speed_sigma_mps : float
        Standard error of a receiver's Doppler speed (GPS Doppler: ~0.1-0.5 m/s).
    back_m : float
        The window reaches this far behind the reported distance (besides 3 x accuracy), so noise behind is
        still matched to the right stretch instead of looking off course.
    margin_m : float
        Extra forward reach of the window (the course grid's spacing is 5 m).
    """

    off_course_m: float = 50.0
    off_course_s: float = 10.0
    lost_after_s: float = 10.0
    max_speed_mps: float = 10.0
    default_accuracy_m: float = 10.0
    min_accuracy_m: float = 3.0
    max_accuracy_m: float = 100.0
    accel_mps2: float = 0.3
    speed_sigma_mps: float = 0.5
    back_m: float = 30.0
    margin_m: float = 20.0

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise InputError(f"follower: {name}: {v!r} must be a positive number")


@dataclass(frozen=True)
class FollowerEvent:
    """Something to say once: ``kind`` (one of :data:`EVENT_KINDS`), at ``t_s`` (the caller's clock), at course
    ``distance_m``."""

    kind: str
    t_s: float
    distance_m: float


@dataclass(frozen=True)
class FollowerState:
    """Snapshot after an update (immutable, swapped whole: safe to read from another thread).

    Attributes
    ----------
    t_s : float
        The caller's clock at this update.
    state : str
        One of :data:`STATES`.
    distance_m : float
        Distance along the course (the profile's ``distance_m`` axis), monotone.
    speed_mps : float
        Speed along the course (filtered).
    confidence : float
        0..1, see the module docstring.
    cross_track_m : float or None
        Distance of the last fix from the course (``None`` in distance-only mode or before a fix).
    since_fix_s : float or None
        Time since the last fix or reading arrived (caller's clock).
    events : tuple of FollowerEvent
        Events raised by this very update (all events are also in :attr:`CourseFollower.events`).
    mode : str or None
        ``position`` (fixes on a course with coordinates), ``distance`` (distance readings), or ``None`` yet.
    """

    t_s: float
    state: str
    distance_m: float
    speed_mps: float
    confidence: float
    cross_track_m: float | None = None
    since_fix_s: float | None = None
    events: tuple = ()
    mode: str | None = None

    @property
    def on_course(self) -> bool:
        return self.state == "on_course"


class CoursePath:
    """A course as a polyline: cumulative ``distance_m`` and, if known, ``lat_deg``/``lon_deg`` per point.

    Precomputes the segment arrays the follower projects onto (local equirectangular metres).
    """

    def __init__(self, distance_m, lat_deg=None, lon_deg=None, *, name: str = "course"):
        d = np.asarray(distance_m, dtype=np.float64)
        if d.ndim != 1 or d.size < 2 or not np.all(np.isfinite(d)) or np.any(np.diff(d) < 0):
            raise InputError(f"{name}: distance_m must be a finite, non-decreasing array of at least 2 points")
        self.name = name
        self.distance_m = d
        self.total_m = float(d[-1])
        self.has_geometry = lat_deg is not None and lon_deg is not None
        if not self.has_geometry:
            return
        lat = np.asarray(lat_deg, dtype=np.float64)
        lon = np.asarray(lon_deg, dtype=np.float64)
        if lat.shape != d.shape or lon.shape != d.shape or not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
            raise InputError(f"{name}: lat_deg/lon_deg must be finite arrays as long as distance_m")
        self.lat0_deg = float(0.5 * (lat.min() + lat.max()))
        self.lon0_deg = float(0.5 * (lon.min() + lon.max()))
        self._kx = EARTH_RADIUS_M * math.cos(math.radians(self.lat0_deg)) * math.pi / 180.0
        self._ky = EARTH_RADIUS_M * math.pi / 180.0
        x = (lon - self.lon0_deg) * self._kx
        y = (lat - self.lat0_deg) * self._ky
        self.x_m, self.y_m = x, y
        self.ax, self.ay = x[:-1].copy(), y[:-1].copy()
        self.dx, self.dy = np.diff(x), np.diff(y)
        l2 = self.dx * self.dx + self.dy * self.dy
        self.zero = l2 <= 0.0
        self.inv_l2 = np.where(self.zero, 0.0, 1.0 / np.where(self.zero, 1.0, l2))
        self.d0 = d[:-1].copy()
        self.dd = np.diff(d)

    @classmethod
    def from_profile(cls, profile) -> "CoursePath":
        """From a :class:`profiles.Profile` (coordinates when the file had them: GPX/FIT/TCX)."""
        return cls(profile.distance_m, getattr(profile, "lat_deg", None), getattr(profile, "lon_deg", None),
                   name=getattr(profile, "source", "course"))

    @property
    def n_segments(self) -> int:
        return self.distance_m.size - 1

    def to_local(self, lat_deg: float, lon_deg: float) -> tuple[float, float]:
        return (lon_deg - self.lon0_deg) * self._kx, (lat_deg - self.lat0_deg) * self._ky

    def point_at(self, distance_m: float) -> tuple[float, float]:
        """(lat_deg, lon_deg) at a course distance (for tests and synthetic runs)."""
        lat = float(np.interp(distance_m, self.distance_m, self.y_m)) / self._ky + self.lat0_deg
        lon = float(np.interp(distance_m, self.distance_m, self.x_m)) / self._kx + self.lon0_deg
        return lat, lon

    def project(self, px: float, py: float, lo_m: float, hi_m: float):
        """Project a local point onto the segments overlapping course distances ``[lo_m, hi_m]``.

        Returns ``(s_m, e_m)``: per segment, the course distance of the nearest point and the distance to it.
        """
        d = self.distance_m
        n = self.n_segments
        i0 = max(0, int(np.searchsorted(d, lo_m, "right")) - 1)
        i1 = min(n, max(i0 + 1, int(np.searchsorted(d, hi_m, "left"))))
        ax = self.ax[i0:i1]
        ay = self.ay[i0:i1]
        dx = self.dx[i0:i1]
        dy = self.dy[i0:i1]
        rx = px - ax
        ry = py - ay
        t = np.clip((rx * dx + ry * dy) * self.inv_l2[i0:i1], 0.0, 1.0)
        ex = rx - t * dx
        ey = ry - t * dy
        e = np.sqrt(ex * ex + ey * ey)
        s = self.d0[i0:i1] + t * self.dd[i0:i1]
        return s, e


class CourseFollower:
    """Distance along a course from a stream of fixes or distance readings.  See the module docstring.

    Parameters
    ----------
    course : CoursePath or Profile
    params : FollowerParams
    start_m : float
        Where the runner is expected to start (0: the course's start).

    Use: ``push(item, now_s)`` for each :class:`~metronome.sensors.position.Fix` or distance-bearing
    :class:`~metronome.sensors.protocol.Reading` (anything else is ignored), ``poll(now_s)`` regularly (it raises
    ``lost_fix`` when nothing arrives); both return a :class:`FollowerState`.  :attr:`state` is the latest one,
    :attr:`events` every event so far.
    """

    def __init__(self, course, params: FollowerParams = FollowerParams(), *, start_m: float = 0.0):
        self.course = course if isinstance(course, CoursePath) else CoursePath.from_profile(course)
        self.params = params
        if not (math.isfinite(start_m) and 0.0 <= start_m <= self.course.total_m):
            raise InputError(f"follower: start_m: {start_m!r} is outside 0..{self.course.total_m:.0f} m")
        self.start_m = float(start_m)
        self.events: list[FollowerEvent] = []
        self.ignored = 0
        self.n_fixes = 0
        self.mode: str | None = None
        # Kalman state: distance s, speed v, covariance (pss, psv, pvv); t_upd: fix-clock time of s, v.
        self._s = self._v = 0.0
        self._pss = self._psv = self._pvv = 0.0
        self._t_upd: float | None = None
        self._acquired = False
        self._out = self.start_m
        self._out_cap = self.course.total_m
        self._status = "waiting"
        self._off_since: float | None = None  # fix-clock time the current off-course stretch began
        self._last_rx_s: float | None = None  # caller-clock time the last item arrived
        self._last_tf: float | None = None
        self._rx_offset: float | None = None  # fix clock - caller clock, for fixes without their own time
        self._cross_m: float | None = None
        self._acc_m = params.default_accuracy_m
        self._dev0: float | None = None
        self.state = FollowerState(0.0, "waiting", self._out, 0.0, 0.0)

    # -- inputs ------------------------------------------------------------------------------------------------
    def push(self, item, now_s: float) -> FollowerState:
        """A Fix (has ``lat_deg``/``lon_deg``) or a Reading with ``distance_m``; anything else is ignored."""
        lat = getattr(item, "lat_deg", None)
        lon = getattr(item, "lon_deg", None)
        if lat is not None and lon is not None:
            return self.update(item, now_s)
        d = getattr(item, "distance_m", None)
        if d is not None:
            return self.update_distance(d, now_s, t_s=getattr(item, "t_s", None),
                                        speed_mps=getattr(item, "speed_mps", None))
        self.ignored += 1
        return self.poll(now_s)

    def update(self, fix, now_s: float) -> FollowerState:
        """One position fix (``lat_deg``, ``lon_deg``, optional ``t_s``, ``speed_mps``, ``accuracy_m``)."""
        p = self.params
        c = self.course
        if not c.has_geometry or self.mode == "distance":
            self.ignored += 1
            return self.poll(now_s)
        acc = fix.accuracy_m if fix.accuracy_m is not None else p.default_accuracy_m
        if not (acc <= p.max_accuracy_m):
            self.ignored += 1
            return self.poll(now_s)
        acc = max(acc, p.min_accuracy_m)
        self.mode = "position"
        events = []
        tf = self._fix_time(fix.t_s, now_s)
        self._arrived(now_s, events)
        self.n_fixes += 1
        self._acc_m = acc
        px, py = c.to_local(fix.lat_deg, fix.lon_deg)

        if not self._acquired:
            s_arr, e_arr = c.project(px, py, -1.0, c.total_m + 1.0)
            ok = e_arr <= p.off_course_m
            self._cross_m = float(e_arr.min())
            if ok.any():
                # One candidate per pass of the course near the fix (a run of consecutive segments within reach:
                # the nearest point of that pass), then the pass nearest the expected start (a loop's finish is
                # its start too).  Taking the segment nearest the start outright would put a runner who joins
                # mid-course (or resumes after a reconnect) up to off_course_m behind, on the same pass.
                edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.view(np.int8), [0]])))
                best = [a + int(np.argmin(e_arr[a:b])) for a, b in zip(edges[::2], edges[1::2])]
                key = np.abs(s_arr[best] - self.start_m) + 1e-3 * e_arr[best]
                i = best[int(np.argmin(key))]
                self._s = float(s_arr[i])
                self._v = min(fix.speed_mps or 0.0, p.max_speed_mps)
                self._pss, self._psv, self._pvv = acc * acc, 0.0, 4.0
                self._t_upd = tf
                self._acquired = True
                self._out = max(self._out, self._s)
                self._cross_m = float(e_arr[i])
                self._on(tf, now_s, events, first=True)
            else:
                self._off(tf, now_s, events)
            return self._snapshot(now_s, events)

        dt = max(0.0, tf - self._t_upd)
        reach = p.max_speed_mps * dt + 3.0 * acc + p.margin_m
        lo = max(0.0, self._out - p.back_m - 3.0 * acc)
        hi = min(c.total_m, max(self._s, self._out) + reach)  # v <= max_speed, so s_pred <= hi
        s_arr, e_arr = c.project(px, py, lo, hi)
        inside = (e_arr <= p.off_course_m) & (s_arr >= lo) & (s_arr <= hi)
        if not inside.any():
            self._cross_m = float(e_arr.min()) if e_arr.size else None
            self._off(tf, now_s, events)
            return self._snapshot(now_s, events)
        self._predict(dt)
        # The runner does not run the course backwards: the filter may sit at most two accuracies behind the reported
        # distance.  Without this floor, one noisy fix matched to the other leg at an out-and-back's turn pulls the
        # estimate back (its speed clamps at 0), and it then follows the wrong leg away from the runner.
        self._s = max(self._s, self._out - 2.0 * acc)
        var_s = self._pss + acc * acc
        # Behind the reported distance is implausible beyond the noise: a candidate more than one accuracy back
        # pays as if it were 3 sigma off for every accuracy further (noise behind within one accuracy is free, so a
        # standing runner's noise does not ratchet the distance on).  At an out-and-back's turn, where the estimated speed may have dropped to 0 (fixes
        # past the end project onto the corner), this keeps the return leg ahead preferred to the outward leg behind.
        behind = np.maximum(self._out - acc - s_arr, 0.0) / acc
        cost = (e_arr / acc) ** 2 + (s_arr - self._s) ** 2 / var_s + 9.0 * behind * behind
        cost[~inside] = np.inf
        i = int(np.argmin(cost))
        self._cross_m = float(e_arr[i])
        self._measure_s(float(s_arr[i]), acc * acc)
        if fix.speed_mps is not None:
            self._measure_v(float(fix.speed_mps), p.speed_sigma_mps ** 2)
        self._s = max(self._s, self._out - 2.0 * acc)
        self._t_upd = tf
        self._advance(min(hi, self._out + reach))
        self._on(tf, now_s, events)
        return self._snapshot(now_s, events)

    def update_distance(self, distance_m: float, now_s: float, *, t_s: float | None = None,
                        speed_mps: float | None = None) -> FollowerState:
        """One cumulative distance reading (a treadmill's Total Distance; the device's own zero)."""
        p = self.params
        if self.mode == "position" or not math.isfinite(distance_m):
            self.ignored += 1
            return self.poll(now_s)
        self.mode = "distance"
        events = []
        tf = self._fix_time(t_s, now_s)
        self._arrived(now_s, events)
        self.n_fixes += 1
        self._cross_m = None
        if self._dev0 is None:
            self._dev0 = distance_m - self.start_m
        z = distance_m - self._dev0
        if z < self._out - p.back_m:  # the device restarted from 0 (or a new session): continue from here
            self._dev0 = distance_m - self._out
            z = self._out
        if not self._acquired:
            self._s, self._v = z, min(speed_mps or 0.0, p.max_speed_mps)
            self._pss, self._psv, self._pvv = 1.0, 0.0, 4.0
            self._t_upd = tf
            self._acquired = True
            self._out = max(self._out, min(z, self.course.total_m))
            self._on(tf, now_s, events, first=True)
            return self._snapshot(now_s, events)
        dt = max(0.0, tf - self._t_upd)
        hi = min(self.course.total_m, self._out + p.max_speed_mps * dt + p.margin_m)
        self._predict(dt)
        self._measure_s(min(z, hi), 1.0)
        if speed_mps is not None:
            self._measure_v(float(speed_mps), p.speed_sigma_mps ** 2)
        self._t_upd = tf
        self._advance(hi)
        self._on(tf, now_s, events)
        return self._snapshot(now_s, events)

    def poll(self, now_s: float) -> FollowerState:
        """No new data: raise ``lost_fix`` once the last item is ``lost_after_s`` old; returns the snapshot."""
        events = []
        if (self._last_rx_s is not None and self._status != "lost_fix"
                and now_s - self._last_rx_s > self.params.lost_after_s):
            self._status = "lost_fix"
            self._event("lost_fix", now_s, events)
        return self._snapshot(now_s, events)

    # -- internals ---------------------------------------------------------------------------------------------
    def _fix_time(self, t_s, now_s: float) -> float:
        """The fix clock: the sender's time when it has one and it moves forward, else the caller's clock mapped
        onto it (so a source that sends no times still gets sensible gaps)."""
        if t_s is not None and math.isfinite(t_s):
            self._rx_offset = t_s - now_s
            tf = float(t_s)
        elif self._rx_offset is not None:
            tf = now_s + self._rx_offset
        else:
            tf = now_s
        if self._last_tf is not None and tf < self._last_tf:
            tf = self._last_tf  # reordered or equal: no time passes
        self._last_tf = tf
        return tf

    def _arrived(self, now_s: float, events: list) -> None:
        if self._status == "lost_fix":
            self._status = "on_course" if self._acquired else "waiting"
            self._event("fix_regained", now_s, events)
        self._last_rx_s = now_s

    def _on(self, tf: float, now_s: float, events: list, first: bool = False) -> None:
        self._off_since = None
        if first:
            self._event("acquired", now_s, events)
        if self._status == "off_course":
            self._event("on_course", now_s, events)
        self._status = "on_course"

    def _off(self, tf: float, now_s: float, events: list) -> None:
        if self._off_since is None:
            self._off_since = tf
        if self._status != "off_course" and tf - self._off_since > self.params.off_course_s:
            self._status = "off_course"
            self._event("off_course", now_s, events)

    def _event(self, kind: str, now_s: float, events: list) -> None:
        ev = FollowerEvent(kind, float(now_s), float(self._out))
        events.append(ev)
        if len(self.events) < MAX_EVENTS:
            self.events.append(ev)

    def _predict(self, dt: float) -> None:
        if dt <= 0.0:
            return
        q = self.params.accel_mps2
        self._s += self._v * dt
        pss, psv, pvv = self._pss, self._psv, self._pvv
        self._pss = pss + 2.0 * dt * psv + dt * dt * pvv + q * dt ** 3 / 3.0
        self._psv = psv + dt * pvv + q * dt * dt / 2.0
        self._pvv = pvv + q * dt

    def _measure_s(self, z: float, r: float) -> None:
        pss, psv, pvv = self._pss, self._psv, self._pvv
        sv = pss + r
        k1, k2 = pss / sv, psv / sv
        y = z - self._s
        self._s += k1 * y
        self._v += k2 * y
        self._pss, self._psv, self._pvv = (1.0 - k1) * pss, (1.0 - k1) * psv, pvv - k2 * psv
        self._clamp_v()

    def _measure_v(self, z: float, r: float) -> None:
        pss, psv, pvv = self._pss, self._psv, self._pvv
        sv = pvv + r
        k1, k2 = psv / sv, pvv / sv
        y = z - self._v
        self._s += k1 * y
        self._v += k2 * y
        self._pss, self._psv, self._pvv = pss - k1 * psv, (1.0 - k2) * psv, (1.0 - k2) * pvv
        self._clamp_v()

    def _clamp_v(self) -> None:
        # Symmetric on purpose: clamping the estimate at 0 would keep its positive noise and drop its negative
        # noise, a forward bias that walks a standing runner on (24 m in 2 min at 10 m noise).  Reported speed is
        # max(0, v).
        m = self.params.max_speed_mps
        self._v = min(max(self._v, -m), m)

    def _advance(self, hi: float) -> None:
        self._out = min(max(self._out, min(self._s, hi)), self.course.total_m)

    def _snapshot(self, now_s: float, events: list) -> FollowerState:
        p = self.params
        since = None if self._last_rx_s is None else max(0.0, now_s - self._last_rx_s)
        conf = 0.0
        if self._status == "on_course" and since is not None:
            sigma = math.sqrt(max(self._pss, 0.0))
            conf = math.exp(-sigma / 25.0) * max(0.0, 1.0 - since / p.lost_after_s)
            if self._cross_m is not None:
                tol = max(self._acc_m, 10.0)
                if self._cross_m > tol:
                    conf *= max(0.0, 1.0 - (self._cross_m - tol) / max(p.off_course_m - tol, 1e-9))
        st = FollowerState(t_s=float(now_s), state=self._status, distance_m=float(self._out),
                           speed_mps=max(0.0, float(self._v)) if self._acquired else 0.0, confidence=float(conf),
                           cross_track_m=self._cross_m, since_fix_s=since, events=tuple(events), mode=self.mode)
        self.state = st
        return st
