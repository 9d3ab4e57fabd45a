"""Distance-locked coaching in a live session: the sensor thread's fixes in, the engine's target and cues out.

The live half of issue 14's "one plan, used by both clocks".  :class:`LiveFollow` runs in the main thread (at every
:meth:`metronome.live.LiveSession.poll`) the same :class:`~metronome.follower.CourseFollower` and
:class:`~metronome.follow_control.FollowController` that :class:`~metronome.follow_session.FollowSchedule` runs in
``downbeat render COURSE --follow replay:RUN``.

Threads: the sensor thread only hands each accepted position to :meth:`LiveFollow.on_position`, which stores it in a
preallocated single-writer ring (:class:`FixInbox`) and sets an event that wakes the main thread, so a fix reaches the
controller within a few milliseconds, not a poll interval later.  The main thread is the one writer of the engine's
target tempo (``ctl[CT_TARGET_BPM]``) and of the cue ring; the feed writes its own grade-based target into a scratch
array nobody reads (:class:`metronome.live.LiveSession`).

Clock: the follower and the controller run on the session's clock, ``engine.position / samplerate`` (what the
render uses too: a fix's sample is its time), never the wall clock; fixes carry their own time for the time
between them (an HTTP batch holds several).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np

from .follow_session import RENDER_POLL_S, FollowPlan

#: Fixes the ring holds between two main-thread steps (gpsd sends 1 Hz, a phone batch holds tens; the main thread
#: drains every 0.1 s at the latest).  A full ring drops the newest fix and counts it.
INBOX_SLOTS = 1024
#: Logged decisions kept for the summary (a 24 h session polls 864,000 times; only changes are logged).
MAX_LOG = 2000


class FixInbox:
    """A preallocated single-producer / single-consumer ring of ``(item, now_s)`` pairs.

    The sensor thread is the only writer of the slots and of ``_w``; the main thread the only writer of ``_r``.
    Each index is one Python int store (atomic under the GIL); a slot is filled before ``_w`` moves past it.
    """

    def __init__(self, slots: int = INBOX_SLOTS):
        self._slots = [None] * int(slots)
        self._w = 0
        self._r = 0
        self.dropped = 0  # written by the producer only

    def put(self, item) -> bool:
        n = len(self._slots)
        if self._w - self._r >= n:
            self.dropped += 1
            return False
        self._slots[self._w % n] = item
        self._w += 1
        return True

    def take_all(self) -> list:
        w, n = self._w, len(self._slots)
        out = [self._slots[i % n] for i in range(self._r, w)]
        self._r = w
        return out


class LiveFollow:
    """Follower + controller for a live session (see the module docstring).

    Parameters
    ----------
    plan : FollowPlan
        From :func:`metronome.follow_session.plan_follow` (the same plan a follow render uses).
    update_interval_s : float
        Passed to the controller (ramp and announcement leads allow for one interval).  The render's (1 s): live,
        the main thread polls every 0.1 s, but what moves the runner is a fix, and GPS fixes come at 1 Hz; the same
        value makes a live step and a render step at the same sample with the same fixes decide the same.
    """

    def __init__(self, plan: FollowPlan, update_interval_s: float = RENDER_POLL_S):
        self.plan = plan
        self.sr = plan.engine_settings.samplerate
        self.follower = plan.follower()
        self.controller = plan.controller(update_interval_s)
        self.inbox = FixInbox()
        self.wake = threading.Event()
        self.fixes = 0
        self.last = None  # the latest FollowStep
        self.last_reading_s = None  # monotonic arrival of the latest fix processed
        self.log: list[dict] = []  # tempo decisions and cues, for the summary
        self._target = None

    # -- sensor thread ----------------------------------------------------------------------------------------
    def on_position(self, item, now_s: float) -> None:
        """:class:`~metronome.sensors.SensorFeed`'s ``on_position``: store and wake; nothing else in that thread."""
        self.inbox.put((item, now_s))
        self.wake.set()

    # -- main thread ------------------------------------------------------------------------------------------
    def wait(self, timeout_s: float) -> None:
        """Sleep until a fix arrives or ``timeout_s`` passes (the CLI's poll loop)."""
        self.wake.wait(timeout_s)
        self.wake.clear()

    def step(self, engine):
        """Feed the fixes that arrived to the follower, run the controller at the engine's position, apply it."""
        sample = engine.position
        t_s = sample / self.sr
        items = self.inbox.take_all()
        state, new_events = None, []
        for item, arrived_s in items:
            state = self.follower.push(item, t_s)
            new_events.extend(state.events)  # each update's own events (CourseFollower.events stops at a cap)
            self.fixes += 1
            self.last_reading_s = arrived_s
        if state is None:
            state = self.follower.poll(t_s)
            new_events = list(state.events)
        elif len(items) > 1:
            state = replace(state, events=tuple(new_events))  # a batch: the controller sees every event in it
        st = self.controller.update(sample, state, engine.current_bpm)
        if st.target_bpm != self._target:
            if self._target is not None:
                age = None if self.last_reading_s is None else (time.monotonic() - self.last_reading_s) * 1e3
                self._note({"sample": int(sample), "kind": "target", "bpm": round(st.target_bpm, 4),
                            "distance_m": round(st.distance_m, 1),
                            "fix_age_ms": None if age is None else round(age, 2)})
            self._target = st.target_bpm
        engine.set_target_bpm(st.target_bpm)
        for cue in st.cues:
            engine.request_cue(self.plan.bank.index(cue.clip_name), cue.not_before_sample)
            self._note({"sample": int(cue.not_before_sample), "kind": "cue", "cue_id": cue.cue_id, "clip": cue.clip_name,
                        "text": cue.text, "distance_m": round(cue.distance_m, 1)})
        for ev in new_events:
            self._note({"sample": int(sample), "kind": ev.kind, "distance_m": round(ev.distance_m, 1)})
        self.last = st
        return st

    def finished(self) -> bool:
        """The runner has reached the end of the course."""
        return self.last is not None and self.last.state == "on_course" and \
            self.last.distance_m >= self.plan.course.total_m - 1.0

    def status(self) -> str:
        return "course: waiting for a fix" if self.last is None else self.last.status()

    def grade_pct(self) -> float | None:
        """The course's grade where the runner is (the plan's, not a noisy GPS altitude)."""
        if self.last is None or self.last.state == "waiting":
            return None
        prof = self.plan.profile
        return float(np.interp(self.last.distance_m, prof.distance_m, prof.grade_pct))

    def summary(self) -> dict:
        kinds = [e.kind for e in self.follower.events]
        last = self.last
        return {"course_km": round(self.plan.course.total_m / 1000, 3), "fixes": self.fixes,
                "fixes_dropped": self.inbox.dropped,
                "reached_km": round(last.distance_m / 1000, 3) if last is not None else 0.0,
                "state": last.state if last is not None else "waiting",
                "off_course": kinds.count("off_course"), "lost_fix": kinds.count("lost_fix"),
                "log": list(self.log)}

    def _note(self, entry: dict) -> None:
        if len(self.log) < MAX_LOG:
            self.log.append(entry)
