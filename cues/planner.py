"""Cue planner: terrain events + beats + tempo ramps -> spoken cues placed on the beat.

Pure and deterministic: the same inputs always give the same plan (no clock, no randomness, no I/O), so a render
is reproducible and every rule can be checked by property tests.

Rules (DESIGN.md "Cue planner defaults"), all enforced here:

* a cue starts on a beat (its ``start_sample`` is an element of ``beat_samples``);
* a cue never overlaps another cue (plus ``min_silence_s`` between them) nor a tempo ramp, and ends before the
  last beat; if its preferred beat is not free it moves to the nearest free beat inside its window, else it is
  dropped, never played late (expiry);
* at least ``min_gap_s`` (45 s) between the starts of two voice cues, except safety cues (technical ground and
  descent announcements), which are exempt from the spacing but not from overlapping;
* a descent is announced 10-15 s before it starts; one technique cue is given at its start; reminders come only
  after 90 s of continuous descent;
* phrasings rotate in time order; cues of the same trigger rotate too (one technique cue per descent, a different
  one next time); a cue used often is spaced out more and more (``fade_growth``) and stops after
  ``max_uses_per_cue`` — the runner has heard it;
* clips are at most ``max_clip_s`` (2.5 s) long.

Higher priority candidates are placed first; ties go to the earlier one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metronome.errors import CueError, InputError

from .library import CueEntry, CueLibrary
from .terrain import TERRAIN_KINDS, TerrainEvent, TerrainRules


@dataclass(frozen=True)
class PlannerRules:
    """Planner parameters (seconds unless named otherwise)."""

    min_gap_s: float = 45.0
    min_silence_s: float = 1.0
    max_clip_s: float = 2.5
    announce_lead_min_s: float = 10.0
    announce_lead_max_s: float = 15.0
    announce_ideal_lead_s: float = 12.0
    start_expiry_s: float = 8.0
    steep_expiry_s: float = 8.0
    end_expiry_s: float = 10.0
    technical_early_s: float = 4.0
    technical_expiry_s: float = 4.0
    reminder_after_s: float = 90.0
    reminder_every_s: float = 90.0
    reminder_window_s: float = 30.0
    fade_after_uses: int = 2
    fade_growth: float = 2.0
    max_uses_per_cue: int = 6
    # Live mode (footpod cadence, sensor grade).
    cadence_low_tolerance: float = 0.03
    cadence_high_tolerance: float = 0.05
    cadence_hold_s: float = 10.0
    cadence_expiry_s: float = 10.0
    live_expiry_s: float = 8.0
    live_max_beat_s: float = 0.75  # longest beat interval (80 bpm): a request may start up to this late

    def __post_init__(self):
        if not 0 < self.announce_lead_min_s <= self.announce_ideal_lead_s <= self.announce_lead_max_s:
            raise InputError("planner rules: need 0 < announce_lead_min_s <= announce_ideal_lead_s "
                             "<= announce_lead_max_s")
        if self.min_gap_s < 0 or self.min_silence_s < 0 or self.max_clip_s <= 0:
            raise InputError("planner rules: min_gap_s, min_silence_s must be >= 0 and max_clip_s > 0")
        if self.fade_growth < 1 or self.max_uses_per_cue < 1 or self.fade_after_uses < 0:
            raise InputError("planner rules: fade_growth >= 1, max_uses_per_cue >= 1, fade_after_uses >= 0")


@dataclass(frozen=True)
class PlannedCue:
    """One scheduled cue.

    Attributes
    ----------
    start_sample : int
        A beat sample (element of the ``beat_samples`` given to :func:`plan_cues`).
    end_sample : int
        ``start_sample`` + clip length.
    cue_id : str
    phrasing_index : int
        0-based index into the cue's phrasings (and into the voice bank).
    text : str
    trigger : str
    priority : int
    safety : bool
    event_sample : int
        Sample of the terrain event this cue is about (for an announcement: the start of the descent).
    """

    start_sample: int
    end_sample: int
    cue_id: str
    phrasing_index: int
    text: str
    trigger: str
    priority: int
    safety: bool = False
    event_sample: int = -1

    @property
    def clip_name(self) -> str:
        """Name of this phrasing's clip in a clip bank: ``<cue_id>-<n>`` (1-based, like voice pack files)."""
        return clip_name(self.cue_id, self.phrasing_index)


def clip_name(cue_id: str, phrasing_index: int) -> str:
    """Clip-bank name of phrasing ``phrasing_index`` (0-based) of ``cue_id``: ``<cue_id>-<n>``, n 1-based."""
    return f"{cue_id}-{phrasing_index + 1}"


@dataclass(frozen=True)
class _Candidate:
    priority: int
    ideal: int
    lo: int
    hi: int
    alternatives: tuple  # CueEntry, in preference order
    trigger: str
    event_sample: int
    seq: int


def required_cooldown_s(entry: CueEntry, uses: int, rules: PlannerRules) -> float:
    """Spacing between two plays of ``entry`` once it has been used ``uses`` times (repetition fade-out).

    Up to ``fade_after_uses`` uses the cue's own ``cooldown_s`` applies; after that the spacing grows
    geometrically by ``fade_growth``, so a cue heard many times becomes rare before it stops altogether.
    """
    if entry.safety or uses < rules.fade_after_uses:
        return entry.cooldown_s
    base = max(entry.cooldown_s, rules.min_gap_s)
    return base * rules.fade_growth ** (uses - rules.fade_after_uses + 1)


def _matching(library: CueLibrary, trigger: str, grade_pct: float) -> list:
    """Cues for ``trigger`` applicable at ``grade_pct``, the most specific (steep-only) first."""
    out = [c for c in library.by_trigger(trigger) if c.grade_max_pct is None or grade_pct <= c.grade_max_pct]
    return sorted(out, key=lambda c: (c.grade_max_pct if c.grade_max_pct is not None else math.inf, -c.priority))


def _rotated(cues: list, k: int) -> tuple:
    if not cues:
        return ()
    k %= len(cues)
    return tuple(cues[k:] + cues[:k])


def _candidates(events, library: CueLibrary, rules: PlannerRules, samplerate: int) -> list:
    sr = samplerate
    s = lambda t: int(round(t * sr))  # noqa: E731 - seconds -> samples, one rounding rule everywhere
    out = []
    counts: dict[str, int] = {}

    def add(trigger, alts, ideal, lo, hi, event_sample):
        if not alts or hi < lo:
            return
        out.append(_Candidate(max(c.priority for c in alts), ideal, lo, hi, tuple(alts), trigger, event_sample,
                              len(out)))

    def rot(trigger, cues):
        k = counts.get(trigger, 0)
        counts[trigger] = k + 1
        return _rotated(cues, k)

    events = list(events)
    for ev in events:
        if not isinstance(ev, TerrainEvent) or ev.kind not in TERRAIN_KINDS or not math.isfinite(ev.time_s):
            raise CueError(f"plan_cues: events: {ev!r} is not a TerrainEvent")
    for ev in sorted(events, key=lambda e: (e.time_s, TERRAIN_KINDS.index(e.kind))):
        t = s(ev.time_s)
        if ev.kind == "descent_start":
            # Announcement: the most specific matching cue (steep descents get "steep descent coming up").
            ann = _matching(library, "announce_descent", ev.grade_pct)
            add("announce_descent", ann[:1] + ann[1:], t - s(rules.announce_ideal_lead_s),
                t - s(rules.announce_lead_max_s), t - s(rules.announce_lead_min_s), t)
            add("descent_start", rot("descent_start", _matching(library, "descent_start", ev.grade_pct)),
                t, t, t + s(rules.start_expiry_s), t)
        elif ev.kind == "steep_descent":
            add("steep_descent", rot("steep_descent", _matching(library, "steep_descent", ev.grade_pct)),
                t, t, t + s(rules.steep_expiry_s), t)
        elif ev.kind == "technical":
            add("technical", rot("technical", _matching(library, "technical", ev.grade_pct)),
                t, t - s(rules.technical_early_s), t + s(rules.technical_expiry_s), t)
        elif ev.kind == "descent_end":
            add("descent_end", rot("descent_end", _matching(library, "descent_end", ev.grade_pct)),
                t, t, t + s(rules.end_expiry_s), t)
        elif ev.kind == "long_descent":
            # Reminders only after reminder_after_s of continuous descent, then every reminder_every_s; each must
            # start early enough to finish inside the descent.
            first = max(ev.time_s, ev.start_s + rules.reminder_after_s)
            end = s(ev.end_s) - s(rules.max_clip_s)
            tk = first
            while s(tk) <= end:
                a = s(tk)
                add("long_descent", rot("long_descent", _matching(library, "long_descent", ev.grade_pct)),
                    a, a, min(a + s(rules.reminder_window_s), end), a)
                tk += rules.reminder_every_s
    return out


def _clip_lengths(clip_len_samples, library: CueLibrary, rules: PlannerRules, samplerate: int) -> dict:
    """``{cue_id: {phrasing_index: length}}`` for the phrasings that have a clip; validates lengths."""
    limit = int(math.floor(rules.max_clip_s * samplerate))
    known = {c.id: c for c in library}
    out: dict[str, dict[int, int]] = {}
    for key, n in clip_len_samples.items():
        try:
            cid, idx = key
        except (TypeError, ValueError):
            raise CueError(f"clip_len_samples: key {key!r} is not (cue_id, phrasing_index)") from None
        if cid not in known or not 0 <= idx < len(known[cid].phrasings):
            raise CueError(f"clip_len_samples: {key!r} is not a phrasing of {library.source}")
        n = int(n)
        if not 0 < n <= limit:
            raise CueError(f"clip_len_samples: {key!r}: {n} samples is outside 1..{limit} "
                           f"(cues must be at most {rules.max_clip_s} s)")
        out.setdefault(cid, {})[int(idx)] = n
    return out


def _check_beats(beat_samples) -> np.ndarray:
    beats = np.asarray(beat_samples)
    if beats.ndim != 1 or (beats.size and not np.issubdtype(beats.dtype, np.integer)):
        raise CueError("plan_cues: beat_samples must be a 1-D integer array")
    beats = beats.astype(np.int64)
    if beats.size > 1 and np.any(np.diff(beats) <= 0):
        raise CueError("plan_cues: beat_samples must be strictly increasing")
    return beats


def plan_cues(events, beat_samples, ramps, clip_len_samples, samplerate: int, library: CueLibrary,
              rules: PlannerRules = PlannerRules()) -> list:
    """Place spoken cues on beats, obeying every rule in the module docstring.

    Parameters
    ----------
    events : iterable of TerrainEvent
        From :func:`cues.terrain.terrain_events`.
    beat_samples : 1-D int array
        Sample index of every beat (``TempoMap.beat_samples()``), strictly increasing.
    ramps : iterable of (start_sample, end_sample)
        Stretches where the tempo changes (``TempoMap.ramps()``); no cue may overlap one.
    clip_len_samples : mapping (cue_id, phrasing_index) -> int
        Clip lengths at ``samplerate`` (``VoiceBank.durations_samples()``).  Cues without a clip are never
        planned; a clip longer than ``rules.max_clip_s`` is an error.
    samplerate : int
    library : CueLibrary
    rules : PlannerRules

    Returns
    -------
    list of PlannedCue
        Sorted by ``start_sample``; ``end_sample`` of one is before ``start_sample`` of the next.

    Raises
    ------
    CueError
        Malformed beats, clip lengths or events.
    """
    sr = int(samplerate)
    beats = _check_beats(beat_samples)
    lens = _clip_lengths(clip_len_samples, library, rules, sr)
    ramp_list = sorted((int(a), int(b)) for a, b in ramps if int(b) > int(a))
    if beats.size < 2:
        return []
    session_end = int(beats[-1])
    min_gap = int(round(rules.min_gap_s * sr))
    guard = int(round(rules.min_silence_s * sr))

    placed: list[tuple[int, int, CueEntry, int]] = []  # (start, end using the longest phrasing, entry, event)
    uses: dict[str, int] = {}

    def free(b: int, length: int, entry: CueEntry) -> bool:
        if b + length > session_end:
            return False
        for rs, re in ramp_list:
            if rs >= b + length:
                break
            if b < re:
                return False
        n_used = uses.get(entry.id, 0)
        cooldown = int(round(required_cooldown_s(entry, n_used, rules) * sr))
        for start, end, other, _ in placed:
            if b < end + guard and b + length + guard > start:
                return False  # overlaps (or is glued to) another cue
            if not entry.safety and not other.safety and abs(b - start) < min_gap:
                return False
            if other.id == entry.id and abs(b - start) < cooldown:
                return False
        return True

    for cand in sorted(_candidates(events, library, rules, sr), key=lambda c: (-c.priority, c.ideal, c.seq)):
        lo, hi = max(cand.lo, 0), min(cand.hi, session_end)
        if hi < lo:
            continue
        window = beats[np.searchsorted(beats, lo, "left"):np.searchsorted(beats, hi, "right")]
        if window.size == 0:
            continue
        # Nearest beat to the ideal moment first; on a tie the earlier one (speech before the event, not after).
        order = np.lexsort((window, np.abs(window - cand.ideal)))
        for entry in cand.alternatives:
            if entry.id not in lens:
                continue
            if not entry.safety and uses.get(entry.id, 0) >= rules.max_uses_per_cue:
                continue  # faded out: the runner has heard this one enough
            # Place with the longest phrasing: which phrasing plays is decided afterwards, in time order.
            length = max(lens[entry.id].values())
            hit = next((int(window[i]) for i in order if free(int(window[i]), length, entry)), None)
            if hit is not None:
                placed.append((hit, hit + length, entry, cand.event_sample))
                uses[entry.id] = uses.get(entry.id, 0) + 1
                break

    placed.sort(key=lambda p: p[0])
    out = []
    turn: dict[str, int] = {}
    for start, _, entry, ev_sample in placed:
        avail = sorted(lens[entry.id])
        k = turn.get(entry.id, 0)
        turn[entry.id] = k + 1
        idx = avail[k % len(avail)]
        out.append(PlannedCue(start_sample=start, end_sample=start + lens[entry.id][idx], cue_id=entry.id,
                              phrasing_index=idx, text=entry.phrasings[idx], trigger=entry.trigger,
                              priority=entry.priority, safety=entry.safety, event_sample=ev_sample))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Live mode
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CueRequest:
    """A cue for the kernel's request ring: it starts on the first beat at or after ``not_before_sample``."""

    not_before_sample: int
    cue_id: str
    phrasing_index: int
    text: str
    trigger: str
    priority: int
    length_samples: int
    safety: bool = False

    @property
    def clip_name(self) -> str:
        """Clip-bank name (``<cue_id>-<n>``), as for :class:`PlannedCue`."""
        return clip_name(self.cue_id, self.phrasing_index)


@dataclass(frozen=True)
class _Pending:
    trigger: str
    alternatives: tuple
    expires: int
    seq: int


class _Schmitt:
    """Streaming version of :func:`cues.terrain.hysteresis_runs` (enter/exit thresholds, each with a hold)."""

    def __init__(self, enter_pct, exit_pct, enter_hold, exit_hold):
        self.enter_pct, self.exit_pct = enter_pct, exit_pct
        self.enter_hold, self.exit_hold = enter_hold, exit_hold
        self.inside = False
        self.since_sample = None  # where the current state's qualifying stretch began
        self._cand = None  # (position, sample) where a stretch that may flip the state began

    def feed(self, pos: float, sample: int, grade_pct: float):
        """Advance; return ``"enter"``, ``"exit"`` or ``None``."""
        flips = grade_pct > self.exit_pct if self.inside else grade_pct <= self.enter_pct
        if not flips:
            self._cand = None
            return None
        if self._cand is None:
            self._cand = (pos, sample)
        if pos - self._cand[0] >= (self.exit_hold if self.inside else self.enter_hold):
            self.inside = not self.inside
            self.since_sample = self._cand[1]
            self._cand = None
            return "enter" if self.inside else "exit"
        return None


class LivePlanner:
    """Incremental planner for live sessions: sensor state in, cue requests out, same rules as :func:`plan_cues`.

    Deterministic: the clock is the ``sample`` argument of :meth:`update` (the kernel's position), never the wall
    clock.  Without look-ahead there are no announcements; a descent is recognised once the grade has stayed at
    or below -4 % for 100 m (integrated from ``speed_mps``) or ``TerrainRules.descent_hold_s`` without speed
    (whichever the first update provides), which queues one technique cue; a steep section inside it queues a
    steep cue, reminders come every ``reminder_every_s`` after ``reminder_after_s`` of descent, and the end of
    the descent queues ``descent_end``.  Footpod cadence off target by more than the tolerances for
    ``cadence_hold_s`` queues ``cadence_low`` / ``cadence_high``.  Each queued cue expires if it cannot start in
    time; at most one request is returned per update, the highest priority first.

    Parameters
    ----------
    library : CueLibrary
    clip_len_samples : mapping (cue_id, phrasing_index) -> int
    samplerate : int
    rules : PlannerRules
    terrain : TerrainRules

    Notes
    -----
    Spacing is measured conservatively: a request may start up to one beat (``rules.live_max_beat_s``) after
    ``not_before_sample``, so gaps and the "no overlap" guard include that slack.  Pass ``tempo_changing=True``
    while the tempo is slewing: no cue starts then (a cue must not overlap a ramp).
    """

    def __init__(self, library: CueLibrary, clip_len_samples, samplerate: int,
                 rules: PlannerRules = PlannerRules(), terrain: TerrainRules = TerrainRules()):
        self.library = library
        self.samplerate = int(samplerate)
        self.rules = rules
        self.terrain = terrain
        self._lens = _clip_lengths(clip_len_samples, library, rules, self.samplerate)
        self._slack = int(round(rules.live_max_beat_s * self.samplerate))
        self._last_sample = None
        # Descent/steep detectors (Schmitt trigger + debounce, as in terrain.hysteresis_runs).
        self._pos = 0.0  # metres if speed is known, else seconds
        self._descent = self._steep = None
        self._descent_start_sample = None
        self._next_reminder = None
        self._use_distance = None
        # Cadence state.
        self._low_since = None
        self._high_since = None
        # Output bookkeeping.
        self._pending: list[_Pending] = []
        self._seq = 0
        self._rot: dict[str, int] = {}
        self._uses: dict[str, int] = {}
        self._phr: dict[str, int] = {}
        self._history: list[tuple[int, CueEntry]] = []  # (not_before_sample, entry)
        self._busy_until = -1

    # -- events -----------------------------------------------------------------------------------------------
    def _queue(self, trigger: str, sample: int, expiry_s: float, grade_pct: float = 0.0):
        cues = _matching(self.library, trigger, grade_pct)
        k = self._rot.get(trigger, 0)
        self._rot[trigger] = k + 1
        alts = _rotated(cues, k)
        if alts:
            self._pending.append(_Pending(trigger, alts, sample + int(round(expiry_s * self.samplerate)),
                                          self._seq))
            self._seq += 1

    def _track_descent(self, sample: int, dt_s: float, grade_pct: float, speed_mps):
        tr = self.terrain
        if self._use_distance is None:
            # Fixed at the first update so the hold unit does not flip when a speed reading drops out.
            self._use_distance = speed_mps is not None
            m = self._use_distance
            self._descent = _Schmitt(tr.descent_enter_pct, tr.descent_exit_pct,
                                     tr.descent_hold_m if m else tr.descent_hold_s,
                                     tr.descent_exit_hold_m if m else tr.descent_exit_hold_s)
            self._steep = _Schmitt(tr.steep_enter_pct, tr.steep_exit_pct,
                                   tr.steep_hold_m if m else tr.steep_hold_s,
                                   tr.steep_exit_hold_m if m else tr.steep_exit_hold_s)
        step = max(0.0, float(speed_mps or 0.0)) * dt_s if self._use_distance else dt_s
        self._pos += step
        r = self.rules
        change = self._descent.feed(self._pos, sample, grade_pct)
        steep_change = self._steep.feed(self._pos, sample, grade_pct)
        if change == "enter":
            self._descent_start_sample = self._descent.since_sample
            self._next_reminder = self._descent_start_sample + int(round(r.reminder_after_s * self.samplerate))
            self._queue("descent_start", sample, r.live_expiry_s, grade_pct)
        elif change == "exit":
            self._next_reminder = None
            # Reminders and steep cues make no sense once the descent is over.
            self._pending = [p for p in self._pending if p.trigger not in ("long_descent", "steep_descent")]
            self._queue("descent_end", sample, r.live_expiry_s, grade_pct)
        if steep_change == "enter" and self._descent.inside:
            self._queue("steep_descent", sample, r.live_expiry_s, grade_pct)
        if self._descent.inside and self._next_reminder is not None and sample >= self._next_reminder:
            self._queue("long_descent", sample, r.reminder_window_s, grade_pct)
            self._next_reminder += int(round(r.reminder_every_s * self.samplerate))

    def _track_cadence(self, sample: int, cadence_spm: float, target_spm: float):
        r = self.rules
        hold = int(round(r.cadence_hold_s * self.samplerate))
        ratio = cadence_spm / target_spm
        if ratio < 1.0 - r.cadence_low_tolerance:
            self._low_since = sample if self._low_since is None else self._low_since
            if sample - self._low_since >= hold:
                self._queue("cadence_low", sample, r.cadence_expiry_s)
                self._low_since = None  # needs another full hold before asking again
        else:
            self._low_since = None
        if ratio > 1.0 + r.cadence_high_tolerance:
            self._high_since = sample if self._high_since is None else self._high_since
            if sample - self._high_since >= hold:
                self._queue("cadence_high", sample, r.cadence_expiry_s)
                self._high_since = None
        else:
            self._high_since = None

    # -- output -----------------------------------------------------------------------------------------------
    def _can_start(self, sample: int, entry: CueEntry, length: int) -> bool:
        r = self.rules
        if entry.id not in self._lens:
            return False
        n_used = self._uses.get(entry.id, 0)
        if not entry.safety and n_used >= r.max_uses_per_cue:
            return False
        if sample < self._busy_until:
            return False
        min_gap = int(round(r.min_gap_s * self.samplerate)) + self._slack
        cooldown = int(round(required_cooldown_s(entry, n_used, r) * self.samplerate)) + self._slack
        for start, other in self._history:
            if not entry.safety and not other.safety and sample - start < min_gap:
                return False
            if other.id == entry.id and sample - start < cooldown:
                return False
        return True

    def update(self, sample: int, grade_pct: float | None = None, speed_mps: float | None = None,
               cadence_spm: float | None = None, target_cadence_spm: float | None = None,
               tempo_changing: bool = False) -> list:
        """Feed the current state; return the cue requests to push now (at most one).

        Parameters
        ----------
        sample : int
            Current session position (kernel sample clock); must not go backwards.
        grade_pct : float, optional
            Filtered grade now; ``None`` or non-finite: no terrain update.
        speed_mps : float, optional
            Running speed (to measure the 100 m hold in metres).
        cadence_spm, target_cadence_spm : float, optional
            Footpod cadence and the metronome's target: ``cadence_low``/``cadence_high`` cues when off target by
            more than the tolerances for ``cadence_hold_s``.
        tempo_changing : bool
            The tempo is slewing now: hold cues back (never overlap a ramp).

        Returns
        -------
        list of CueRequest
        """
        sample = int(sample)
        if self._last_sample is not None and sample < self._last_sample:
            raise InputError(f"live planner: sample {sample} is before the previous update ({self._last_sample})")
        dt_s = 0.0 if self._last_sample is None else (sample - self._last_sample) / self.samplerate
        self._last_sample = sample
        if grade_pct is not None and math.isfinite(grade_pct):
            spd = speed_mps if speed_mps is not None and math.isfinite(speed_mps) else None
            self._track_descent(sample, dt_s, float(grade_pct), spd)
        if (cadence_spm is not None and target_cadence_spm is not None and math.isfinite(cadence_spm)
                and math.isfinite(target_cadence_spm) and cadence_spm > 0 and target_cadence_spm > 0):
            self._track_cadence(sample, float(cadence_spm), float(target_cadence_spm))
        # Expiry: a cue that could not be played in time is dropped, never played late.
        self._pending = [p for p in self._pending if p.expires >= sample]
        if tempo_changing or not self._pending:
            return []
        for p in sorted(self._pending, key=lambda p: (-max(c.priority for c in p.alternatives), p.seq)):
            for entry in p.alternatives:
                if entry.id not in self._lens:
                    continue
                avail = sorted(self._lens[entry.id])
                k = self._phr.get(entry.id, 0)
                idx = avail[k % len(avail)]
                length = self._lens[entry.id][idx]
                if not self._can_start(sample, entry, length):
                    continue
                self._phr[entry.id] = k + 1
                self._uses[entry.id] = self._uses.get(entry.id, 0) + 1
                self._history.append((sample, entry))
                guard = int(round(self.rules.min_silence_s * self.samplerate))
                self._busy_until = sample + self._slack + length + guard
                self._pending.remove(p)
                return [CueRequest(not_before_sample=sample, cue_id=entry.id, phrasing_index=idx,
                                   text=entry.phrasings[idx], trigger=entry.trigger, priority=entry.priority,
                                   length_samples=length, safety=entry.safety)]
        return []
