"""Distance-locked coaching: the follower's state in, the target tempo and cue requests out (issue 14).

:class:`FollowController` is the one piece of control logic both clocks run: ``downbeat play COURSE --sensor ...``
calls :meth:`FollowController.update` at every poll of the main thread, ``downbeat render COURSE --follow
replay:RUN`` at each recorded fix's sample (and once a second between fixes), with the same follower state, so a
render is what the live session would have played on that run.  Pure and deterministic: the clock is the
``sample`` argument (the engine's position), never the wall clock.

Rules (the plan, :class:`~metronome.course_plan.CoursePlan`, is indexed by course distance):

* **Tempo**: the plan's level at the runner's distance; the next level is targeted early enough that the kernel's
  slew (``max_change_per_beat`` per beat) has reached it where the grade changes: the ramp takes
  ``n = ceil(|ln(b1/b0)| / ln(1 + slew))`` beats of at most ``60 / min(b0, b1)`` s, so it starts when the
  distance to the change is at most ``speed * (n * 60 / min(b0, b1) + one beat + one update interval)``.  Once
  started, a ramp is kept (a runner who slows for a few seconds does not get the tempo pulled back and forth).
* **Announcements** ("Descent ahead.") when the time to reach the descent, ``distance / speed``, falls to
  ``announce_ideal_lead_s`` (12 s), inside the planner's 10-15 s window; not at all when the runner is already less
  than ``announce_lead_min_s`` minus the update interval away (the start cue follows at once).
* **Technique cues by position**: at the descent start (a core cue, rotating, for descents the plan times at
  ``core_min_descent_s`` or more; else a ``descent_start`` cue), at each steep section's start, reminders every
  ``reminder_every_s`` after ``reminder_after_s`` of descent, and ``descent_end`` where it ends.
* **Off course** (the follower's ``off_course`` event): said once (``off_course`` cue), pending coaching dropped,
  tempo at the base cadence; back on course is said once too and coaching resumes from where the runner rejoined
  (cues for stretches passed while off course are not played late).
* **Lost fix**: the follower holds the distance for ``lost_after_s`` (the tempo holds), then reports ``lost_fix``:
  base cadence until a fix comes back.
* Cues never overlap (clip length + ``min_silence_s`` + one beat of slack), keep ``min_gap_s`` between non-safety
  cues and each cue's own cooldown (with the planner's fade-out), and expire rather than play late.  Unlike the
  time-based planner, a cue may overlap a tempo ramp: when the runner arrives is only known as it happens, and the
  cue at the descent start matters more than a quiet ramp.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from cues.library import CueLibrary
from cues.planner import PlannerRules, _clip_lengths, _lengths_for, _matching, _rotated, clip_name, \
    required_cooldown_s

from .course_plan import CoursePlan
from .settings import TempoSettings

#: Slower than this along the course (standing, fiddling with the watch) gives no time-to-arrival.
MIN_SPEED_MPS = 0.5
#: Time-to-arrival and ramp leads use the median of the follower's speed over this window, sampled once a second:
#: one GPS position jump (a real Fenix 2 track has 3.8 and 4.7 m/s between 1.5 m/s fixes) must not announce a
#: descent 25 s early; a median of 8 s follows a real change of pace within ~4 s.
SPEED_WINDOW_S = 8.0


@dataclass(frozen=True)
class FollowCue:
    """One cue request: the kernel starts ``clip_name`` on the first beat at or after ``not_before_sample``."""

    not_before_sample: int
    cue_id: str
    phrasing_index: int
    text: str
    trigger: str
    distance_m: float
    length_samples: int
    safety: bool = False

    @property
    def clip_name(self) -> str:
        return clip_name(self.cue_id, self.phrasing_index)


@dataclass(frozen=True)
class FollowStep:
    """What one update decided, and what the status line shows."""

    sample: int
    target_bpm: float
    state: str
    distance_m: float
    speed_mps: float
    to_next_descent_m: float | None
    cues: tuple = ()

    def status(self) -> str:
        """``km 3.42  descent in 180 m`` / ``OFF COURSE  km 3.42`` / ``lost fix  km 3.42`` / ``waiting for fix``."""
        if self.state == "waiting":
            return "course: waiting for a fix"
        km = f"km {self.distance_m / 1000:.2f}"
        nxt = "no more descents" if self.to_next_descent_m is None else f"descent in {self.to_next_descent_m:.0f} m"
        if self.state == "off_course":
            return f"course: OFF COURSE (at {km})"
        if self.state == "lost_fix":
            return f"course: lost fix (at {km})"
        return f"course: {km}  {nxt}"


@dataclass
class _Pending:
    trigger: str
    alternatives: tuple
    expires: int
    seq: int
    priority: int
    distance_m: float
    fade: bool = True


@dataclass
class _DescentFlags:
    announced: bool = False
    started: bool = False
    steep_done: int = 0
    ended: bool = False
    start_sample: int | None = None
    next_reminder: int | None = None
    done: set = field(default_factory=set)


class FollowController:
    """Follower state + plan -> target bpm and cue requests (see the module docstring).

    Parameters
    ----------
    plan : CoursePlan
    library : CueLibrary or None
        None: clicks only (no cues).
    clip_len_samples : mapping (cue_id, phrasing_index) -> int
        The clips the bank holds (a cue without a clip is never requested).
    samplerate : int
    tempo_settings : TempoSettings
    update_interval_s : float
        How often the caller updates (render: 1 s between fixes; play polls faster): the ramp and announcement
        leads allow for one interval.
    """

    def __init__(self, plan: CoursePlan, library: CueLibrary | None, clip_len_samples, samplerate: int,
                 tempo_settings: TempoSettings = TempoSettings(), *, rules: PlannerRules = PlannerRules(),
                 update_interval_s: float = 1.0):
        self.plan = plan
        self.library = library
        self.sr = int(samplerate)
        self.ts = tempo_settings
        self.rules = rules
        self.update_interval_s = float(update_interval_s)
        self._lens = {}
        if library is not None:
            lens, by_text = _clip_lengths(clip_len_samples, library, rules, self.sr)
            self._lens = {c.id: n for c in library if (n := _lengths_for(c, "", lens, by_text))}
        self._slack = int(round(rules.live_max_beat_s * self.sr))
        self._flags = {d.index: _DescentFlags() for d in plan.descents}
        self._pending: list[_Pending] = []
        self._seq = 0
        self._rot: dict[str, int] = {}
        self._phr: dict[str, int] = {}
        self._uses: dict[str, int] = {}
        self._history: list = []  # (sample, entry)
        self._busy_until = -1
        self._core_n = 0
        self._committed = 0  # highest tempo level a ramp has been started toward
        self._last_sample = None
        self._v_hist: list = []  # (sample, speed), one a second
        self.last: FollowStep | None = None

    # -- tempo ------------------------------------------------------------------------------------------------
    def ramp_s(self, b0: float, b1: float) -> float:
        """Seconds the kernel's per-beat slew needs from ``b0`` to ``b1`` (an upper bound)."""
        if b0 == b1:
            return 0.0
        n = math.ceil(abs(math.log(b1 / b0)) / math.log1p(self.ts.max_change_per_beat))
        return n * 60.0 / min(b0, b1)

    def _tempo(self, d: float, v: float, bpm_now: float) -> float:
        p = self.plan
        i = p.level_index(d)
        self._committed = max(self._committed, i)
        if v >= MIN_SPEED_MPS:
            j = self._committed + 1
            while j < p.level_m.size:
                b = float(p.level_bpm[j])
                lead_s = self.ramp_s(bpm_now, b) + 60.0 / bpm_now + self.update_interval_s
                if p.level_m[j] - d > v * lead_s:
                    break
                self._committed = j
                j += 1
        return float(p.level_bpm[self._committed])

    # -- cues -------------------------------------------------------------------------------------------------
    def _queue(self, trigger: str, sample: int, expiry_s: float, grade_pct: float, d: float,
               alts=None, priority=None, fade=True) -> None:
        if self.library is None:
            return
        if alts is None:
            k = self._rot.get(trigger, 0)
            self._rot[trigger] = k + 1
            alts = _rotated(_matching(self.library, trigger, grade_pct), k)
        if alts:
            prio = max(c.priority for c in alts) if priority is None else priority
            self._pending.append(_Pending(trigger, tuple(alts), sample + int(round(expiry_s * self.sr)),
                                          self._seq, prio, d, fade))
            self._seq += 1

    def _queue_core(self, sample: int, grade_pct: float, d: float) -> None:
        core = [c for c in self.library if c.core] if self.library is not None else []
        if not core:
            self._queue("descent_start", sample, self.rules.start_expiry_s, grade_pct, d)
            return
        alts = _rotated(core, self._core_n)
        self._core_n += 1
        self._queue("core", sample, self.rules.start_expiry_s, grade_pct, d, alts=alts,
                    priority=self.rules.core_priority, fade=False)

    def _terrain(self, sample: int, d: float, v: float) -> None:
        r = self.rules
        for ds in self.plan.descents:
            f = self._flags[ds.index]
            if f.ended:
                continue
            if d < ds.start_m:
                if not f.announced and v >= MIN_SPEED_MPS:
                    eta = (ds.start_m - d) / v
                    if eta <= r.announce_ideal_lead_s:
                        f.announced = True
                        if eta >= r.announce_lead_min_s - 2.0 * self.update_interval_s:
                            self._queue("announce_descent", sample, max(1.0, eta - r.announce_lead_min_s + 1.0),
                                        ds.grade_pct, d, alts=tuple(_matching(self.library, "announce_descent",
                                                                              ds.grade_pct))
                                        if self.library is not None else ())
                break  # descents ahead of this one are further still
            if d >= ds.end_m:
                f.announced = f.started = f.ended = True
                if not ds.ends_course and d - ds.end_m < 50.0:
                    self._queue("descent_end", sample, r.end_expiry_s, ds.grade_pct, d)
                continue
            # Inside the descent.
            f.announced = True
            if not f.started:
                f.started = True
                f.start_sample = sample
                f.next_reminder = sample + int(round(r.reminder_after_s * self.sr))
                if ds.duration_s >= r.core_min_descent_s:
                    self._queue_core(sample, ds.grade_pct, d)
                else:
                    self._queue("descent_start", sample, r.start_expiry_s, ds.grade_pct, d)
            while f.steep_done < len(ds.steep_m) and d >= ds.steep_m[f.steep_done]:
                f.steep_done += 1
                self._queue("steep_descent", sample, r.steep_expiry_s, ds.grade_pct, d)
            if f.next_reminder is not None and sample >= f.next_reminder:
                f.next_reminder = sample + int(round(r.reminder_every_s * self.sr))
                self._queue("long_descent", sample, r.reminder_window_s, ds.grade_pct, d)

    def _can_start(self, sample: int, entry, fade: bool) -> bool:
        r = self.rules
        if entry.id not in self._lens or sample < self._busy_until:
            return False
        n_used = self._uses.get(entry.id, 0)
        if not entry.safety and n_used >= r.max_uses_per_cue:
            return False
        min_gap = int(round(r.min_gap_s * self.sr)) + self._slack
        cool_s = required_cooldown_s(entry, n_used, r) if fade else entry.cooldown_s
        cooldown = int(round(cool_s * self.sr)) + self._slack
        for start, other in self._history:
            if not entry.safety and not other.safety and sample - start < min_gap:
                return False
            if other.id == entry.id and sample - start < cooldown:
                return False
        return True

    def _emit(self, sample: int) -> tuple:
        self._pending = [p for p in self._pending if p.expires >= sample]
        for p in sorted(self._pending, key=lambda p: (-p.priority, p.seq)):
            for entry in p.alternatives:
                if not self._can_start(sample, entry, p.fade):
                    continue
                avail = sorted(self._lens[entry.id])
                k = self._phr.get(entry.id, 0)
                idx = avail[k % len(avail)]
                length = self._lens[entry.id][idx]
                self._phr[entry.id] = k + 1
                self._uses[entry.id] = self._uses.get(entry.id, 0) + 1
                self._history.append((sample, entry))
                self._busy_until = sample + self._slack + length + int(round(self.rules.min_silence_s * self.sr))
                self._pending.remove(p)
                return (FollowCue(sample, entry.id, idx, entry.phrasings[idx], entry.trigger, p.distance_m, length,
                                  entry.safety),)
        return ()

    def _robust_speed(self, sample: int, v: float) -> float:
        """The median of the follower's speed over the last ``SPEED_WINDOW_S`` (one value a second, then ``v``)."""
        h = self._v_hist
        if not h or sample - h[-1][0] >= self.sr:
            h.append((sample, v))
            cut = sample - int(SPEED_WINDOW_S * self.sr)
            while h and h[0][0] < cut:
                h.pop(0)
        return statistics.median([x for _, x in h[:-1]] + [v])

    # -- the step ---------------------------------------------------------------------------------------------
    def update(self, sample: int, state, bpm_now: float) -> FollowStep:
        """One control step at engine position ``sample`` with the follower's latest ``state``.

        ``state``: a :class:`~metronome.follower.FollowerState` (its ``events`` are the ones of this update);
        ``bpm_now``: the engine's current tempo.  Returns the target tempo and at most one cue to request now.
        """
        sample = int(sample)
        if self._last_sample is not None and sample < self._last_sample:
            sample = self._last_sample  # a poll never moves the clock back (it may repeat a position)
        self._last_sample = sample
        d, v = float(state.distance_m), self._robust_speed(sample, float(state.speed_mps or 0.0))
        for ev in state.events:
            if ev.kind == "off_course":
                # Coaching for where the runner is not: dropped; the warning replaces it.
                self._pending = [p for p in self._pending if p.trigger in ("off_course", "on_course")]
                self._queue("off_course", sample, 10.0, 0.0, ev.distance_m)
            elif ev.kind == "on_course":
                self._queue("on_course", sample, 10.0, 0.0, ev.distance_m)
        if state.state == "on_course":
            target = self._tempo(d, v, bpm_now)
            self._terrain(sample, d, v)
        elif state.state == "waiting":
            target = self.plan.bpm_at(0.0)
        else:  # off course, lost fix: the base cadence
            target = self.plan.base_bpm
        cues = self._emit(sample)
        nxt = self.plan.next_descent(d)
        step = FollowStep(sample, target, state.state, d, v, None if nxt is None else nxt.start_m - d, cues)
        self.last = step
        return step
