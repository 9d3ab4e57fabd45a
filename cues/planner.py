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
* **core cues**: every descent of ``core_min_descent_s`` (60 s) or more gets one of the core technique cues
  (library ``core: true``: lean from the ankles, eyes ahead, arms wide) near its start, i.e. starting within
  :meth:`PlannerRules.core_window_s` of it (the first 20 s or 15 % of the descent, whichever is longer, at most
  45 s).  The core cue is chosen least-recently-used first, so the core cues take turns and all of them are heard
  across a session; a tie goes to the cue that fits the ground (arms wide where a steep section starts inside the
  window, spoken at that steep start).  Core cues are placed right after the safety cues (``core_priority``),
  before every other technique cue, and only their own ``cooldown_s`` applies (the rotation already spaces them);
* **never silent on a long descent**: inside a descent of ``core_min_descent_s`` or more, no stretch longer than
  ``max_quiet_s`` (240 s) passes without a cue starting; where the ordinary cues leave such a stretch, a reminder
  is added at the latest beat that closes it (``long_descent`` cues in rotation, their own cooldown only);
* phrasings rotate in time order; cues of the same trigger rotate too (one technique cue per descent, a different
  one next time); a cue used often is spaced out more and more (``fade_growth``, up to ``fade_max_cooldown_s``):
  repetition thins out by spacing, it never stops (``max_uses_per_cue`` is unlimited unless set);
* treadmill workouts: every incline change is announced ``incline_lead_s`` (10 s) ahead with the coming value
  ("Decline 6 percent in 10 seconds.", "Back to flat in 10 seconds."); the descent announcement is left out
  there (the incline announcement says it);
* clips are at most ``max_clip_s`` (2.5 s) long.

Higher priority candidates are placed first; ties go to the earlier one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metronome.errors import CueError, InputError

from .library import CueEntry, CueLibrary, format_grade
from .terrain import TERRAIN_KINDS, TerrainEvent


@dataclass(frozen=True)
class PlannerRules:
    """Planner parameters (seconds unless named otherwise).

    Core cues and quiet stretches (see the module docstring): a descent of at least ``core_min_descent_s`` gets a
    core cue starting within ``core_window_s(duration)`` = min(``core_window_max_s``, max(``core_window_min_s``,
    ``core_window_frac`` * duration)) of its start; inside it no gap between cue starts (or between the descent's
    start/end and the nearest cue) is longer than ``max_quiet_s``.  Both hold wherever the tempo ramps and safety
    cues leave a free beat in the window, which the profile's own tempo map always does (its ramps last a few
    seconds); a user-set ``max_uses_per_cue`` can also stop them.
    """

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
    # A cue heard many times still comes back every 10 minutes: thinned out, never gone (issue 11: with a hard stop
    # after 6 uses a 28 km run's last descent had no cue for 15.5 minutes).
    fade_max_cooldown_s: float = 600.0
    max_uses_per_cue: float = math.inf
    # Core technique cues near the start of every descent of a minute or more.
    core_min_descent_s: float = 60.0
    core_window_min_s: float = 20.0
    core_window_frac: float = 0.15
    core_window_max_s: float = 45.0
    core_priority: int = 80  # above the steep cues (75), below the safety announcements (90+)
    max_quiet_s: float = 240.0
    # Treadmill incline announcements: "... in 10 seconds" starts 10 s (+- the tolerance) before the change.
    incline_lead_s: float = 10.0
    incline_lead_tolerance_s: float = 1.5
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
        if not 0 < self.core_window_min_s <= self.core_window_max_s or not 0 <= self.core_window_frac <= 1:
            raise InputError("planner rules: need 0 < core_window_min_s <= core_window_max_s and "
                             "0 <= core_window_frac <= 1")
        if self.max_quiet_s < self.reminder_after_s + self.reminder_window_s or self.max_quiet_s <= self.min_gap_s:
            raise InputError("planner rules: max_quiet_s must be >= reminder_after_s + reminder_window_s and "
                             "> min_gap_s")
        if not 0 <= self.incline_lead_tolerance_s < self.incline_lead_s:
            raise InputError("planner rules: need 0 <= incline_lead_tolerance_s < incline_lead_s")

    def core_window_s(self, descent_s: float) -> float:
        """How soon after its start a descent of ``descent_s`` seconds must hear its core cue."""
        return min(self.core_window_max_s, max(self.core_window_min_s, self.core_window_frac * descent_s))


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
        The words spoken (a ``{grade}`` phrasing with its value filled in).
    trigger : str
    priority : int
    safety : bool
    event_sample : int
        Sample of the terrain event this cue is about (for an announcement: the start of the descent).
    fill : str
        The value put into a ``{grade}`` phrasing (``"6"``), ``""`` for a plain phrasing.
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
    fill: str = ""

    @property
    def clip_name(self) -> str:
        """Name of this phrasing's clip in a clip bank: ``<cue_id>-<n>`` (1-based, like voice pack files), plus
        ``@<value>`` for a filled-in ``{grade}`` phrasing (one clip per value)."""
        return clip_name(self.cue_id, self.phrasing_index, self.fill)


def clip_name(cue_id: str, phrasing_index: int, fill: str = "") -> str:
    """Clip-bank name of phrasing ``phrasing_index`` (0-based) of ``cue_id``: ``<cue_id>-<n>``, n 1-based;
    ``<cue_id>-<n>@<fill>`` for a ``{grade}`` phrasing filled with ``fill``."""
    return f"{cue_id}-{phrasing_index + 1}" + (f"@{fill}" if fill else "")


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
    fill: str = ""
    key: tuple = ()  # (kind, event_sample): a core cue spoken at this event voices it already


@dataclass(frozen=True)
class _CoreSlot:
    """A descent that must hear a core cue within [lo, hi]; ``options`` are other events inside that window a
    core cue of the same trigger may be spoken at: ((trigger, event_sample, lo, hi), ...)."""

    priority: int
    ideal: int
    lo: int
    hi: int
    event_sample: int
    grade_pct: float
    options: tuple
    seq: int


def required_cooldown_s(entry: CueEntry, uses: int, rules: PlannerRules) -> float:
    """Spacing between two plays of ``entry`` once it has been used ``uses`` times (repetition fade-out).

    Up to ``fade_after_uses`` uses the cue's own ``cooldown_s`` applies; after that the spacing grows
    geometrically by ``fade_growth``, up to ``fade_max_cooldown_s`` (never below the cue's own cooldown), so a cue
    heard many times becomes rare but does not stop.
    """
    if entry.safety or uses < rules.fade_after_uses:
        return entry.cooldown_s
    base = max(entry.cooldown_s, rules.min_gap_s)
    grown = base * rules.fade_growth ** (uses - rules.fade_after_uses + 1)
    return min(grown, max(rules.fade_max_cooldown_s, entry.cooldown_s))


def _matching(library: CueLibrary, trigger: str, grade_pct: float) -> list:
    """Cues for ``trigger`` applicable at ``grade_pct``, the most specific (steep-only) first."""
    out = [c for c in library.by_trigger(trigger) if c.grade_max_pct is None or grade_pct <= c.grade_max_pct]
    return sorted(out, key=lambda c: (c.grade_max_pct if c.grade_max_pct is not None else math.inf, -c.priority))


def _rotated(cues: list, k: int) -> tuple:
    if not cues:
        return ()
    k %= len(cues)
    return tuple(cues[k:] + cues[:k])


def incline_trigger(grade_pct: float) -> str:
    """Announcement trigger for a treadmill incline change to ``grade_pct``."""
    return "announce_flat" if grade_pct == 0 else ("announce_decline" if grade_pct < 0 else "announce_incline")


def _candidates(events, library: CueLibrary, rules: PlannerRules, samplerate: int) -> list:
    sr = samplerate
    s = lambda t: int(round(t * sr))  # noqa: E731 - seconds -> samples, one rounding rule everywhere
    out = []
    counts: dict[str, int] = {}

    def add(trigger, alts, ideal, lo, hi, event_sample, fill="", key=()):
        if not alts or hi < lo:
            return
        out.append(_Candidate(max(c.priority for c in alts), ideal, lo, hi, tuple(alts), trigger, event_sample,
                              len(out), fill, key))

    def rot(trigger, cues):
        k = counts.get(trigger, 0)
        counts[trigger] = k + 1
        return _rotated(cues, k)

    events = list(events)
    for ev in events:
        if not isinstance(ev, TerrainEvent) or ev.kind not in TERRAIN_KINDS or not math.isfinite(ev.time_s):
            raise CueError(f"plan_cues: events: {ev!r} is not a TerrainEvent")
    ordered = sorted(events, key=lambda e: (e.time_s, TERRAIN_KINDS.index(e.kind)))
    # On a treadmill the incline announcement says what the descent announcement would (and more).
    incline_at = sorted(s(e.time_s) for e in ordered if e.kind == "incline_change")
    tol = s(1.0)
    for ev in ordered:
        t = s(ev.time_s)
        if ev.kind == "descent_start":
            i = int(np.searchsorted(incline_at, t - tol))
            if not (i < len(incline_at) and incline_at[i] <= t + tol):
                # Announcement: the most specific matching cue (steep descents get "steep descent coming up").
                ann = _matching(library, "announce_descent", ev.grade_pct)
                add("announce_descent", ann[:1] + ann[1:], t - s(rules.announce_ideal_lead_s),
                    t - s(rules.announce_lead_max_s), t - s(rules.announce_lead_min_s), t)
            if ev.end_s - ev.start_s >= rules.core_min_descent_s:
                hi = t + s(rules.core_window_s(ev.end_s - ev.start_s))
                # Other events inside the window a core cue could be spoken at (a steep start: arms wide there).
                options = tuple(
                    (o.kind, s(o.time_s), s(o.time_s), min(hi, s(o.time_s) + s(rules.steep_expiry_s)))
                    for o in ordered if o.kind == "steep_descent" and t <= s(o.time_s) <= hi
                    and ev.start_s <= o.time_s < ev.end_s)
                out.append(_CoreSlot(rules.core_priority, t, t, hi, t, ev.grade_pct, options, len(out)))
            else:
                add("descent_start", rot("descent_start", _matching(library, "descent_start", ev.grade_pct)),
                    t, t, t + s(rules.start_expiry_s), t)
        elif ev.kind == "steep_descent":
            add("steep_descent", rot("steep_descent", _matching(library, "steep_descent", ev.grade_pct)),
                t, t, t + s(rules.steep_expiry_s), t, key=("steep_descent", t))
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
        elif ev.kind == "incline_change":
            trig = incline_trigger(ev.grade_pct)
            lead, tol_s = s(rules.incline_lead_s), s(rules.incline_lead_tolerance_s)
            add(trig, rot(trig, _matching(library, trig, ev.grade_pct)), t - lead, t - lead - tol_s,
                t - lead + tol_s, t, fill=format_grade(ev.grade_pct))
    return out


def templated_texts(events, library: CueLibrary, rules: PlannerRules = PlannerRules()) -> list:
    """``[(cue_id, phrasing_index, fill), ...]``: the ``{grade}`` phrasings ``events`` may need, per value.

    Clips are synthesized per filled-in text, so the caller makes these (and passes their lengths to
    :func:`plan_cues` under the key ``(cue_id, phrasing_index, text)``) before planning.
    """
    out = set()
    for cand in _candidates(events, library, rules, 1000):
        if isinstance(cand, _Candidate) and cand.fill:
            for entry in cand.alternatives:
                out.update((entry.id, i, cand.fill) for i in range(len(entry.phrasings)) if entry.is_template(i))
    return sorted(out)


def _clip_lengths(clip_len_samples, library: CueLibrary, rules: PlannerRules, samplerate: int):
    """``({cue_id: {phrasing_index: length}}, {(cue_id, phrasing_index, text): length})``; validates lengths.

    A key ``(cue_id, phrasing_index, text)`` gives the length of one filled-in ``{grade}`` phrasing; a key
    ``(cue_id, phrasing_index)`` the length of a plain phrasing, or of every value of a ``{grade}`` one (a voice
    pack recording, or a test's uniform lengths).
    """
    limit = int(math.floor(rules.max_clip_s * samplerate))
    known = {c.id: c for c in library}
    out: dict[str, dict[int, int]] = {}
    by_text: dict[tuple, int] = {}
    for key, n in clip_len_samples.items():
        try:
            cid, idx, *rest = key
        except (TypeError, ValueError):
            raise CueError(f"clip_len_samples: key {key!r} is not (cue_id, phrasing_index)") from None
        if len(rest) > 1 or (rest and not isinstance(rest[0], str)):
            raise CueError(f"clip_len_samples: key {key!r} is not (cue_id, phrasing_index[, text])")
        if cid not in known or not 0 <= idx < len(known[cid].phrasings):
            raise CueError(f"clip_len_samples: {key!r} is not a phrasing of {library.source}")
        n = int(n)
        if not 0 < n <= limit:
            raise CueError(f"clip_len_samples: {key!r}: {n} samples is outside 1..{limit} "
                           f"(cues must be at most {rules.max_clip_s} s)")
        if rest:
            by_text[(cid, int(idx), rest[0])] = n
        else:
            out.setdefault(cid, {})[int(idx)] = n
    return out, by_text


def _lengths_for(entry: CueEntry, fill: str, lens, by_text) -> dict:
    """``{phrasing_index: length}`` of the phrasings of ``entry`` that have a clip for value ``fill``."""
    plain = lens.get(entry.id, {})
    out = {}
    for i in range(len(entry.phrasings)):
        if entry.is_template(i):
            n = by_text.get((entry.id, i, entry.text(i, fill)), plain.get(i)) if fill else None
        else:
            n = plain.get(i)
        if n is not None:
            out[i] = n
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
        From :func:`cues.terrain.cue_events` (terrain events plus a workout's incline changes).
    beat_samples : 1-D int array
        Sample index of every beat (``TempoMap.beat_samples()``), strictly increasing.
    ramps : iterable of (start_sample, end_sample)
        Stretches where the tempo changes (``TempoMap.ramps()``); no cue may overlap one.
    clip_len_samples : mapping (cue_id, phrasing_index) -> int
        Clip lengths at ``samplerate`` (``VoiceBank.durations_samples()``), plus ``(cue_id, phrasing_index, text)``
        keys for filled-in ``{grade}`` phrasings (see :func:`templated_texts`).  Cues without a clip are never
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
    lens, by_text = _clip_lengths(clip_len_samples, library, rules, sr)
    ramp_list = sorted((int(a), int(b)) for a, b in ramps if int(b) > int(a))
    if beats.size < 2:
        return []
    events = list(events)
    session_end = int(beats[-1])
    min_gap = int(round(rules.min_gap_s * sr))
    guard = int(round(rules.min_silence_s * sr))
    s = lambda t: int(round(t * sr))  # noqa: E731

    # (start, end using the longest phrasing, entry, event, fill)
    placed: list[tuple[int, int, CueEntry, int, str]] = []
    uses: dict[str, int] = {}
    voiced: set = set()  # (kind, event_sample) already spoken about by a core cue

    def free(b: int, length: int, entry: CueEntry, fade: bool = True) -> bool:
        if b + length > session_end:
            return False
        for rs, re in ramp_list:
            if rs >= b + length:
                break
            if b < re:
                return False
        n_used = uses.get(entry.id, 0)
        cool_s = required_cooldown_s(entry, n_used, rules) if fade else entry.cooldown_s
        cooldown = int(round(cool_s * sr))
        for start, end, other, _, _ in placed:
            if b < end + guard and b + length + guard > start:
                return False  # overlaps (or is glued to) another cue
            if not entry.safety and not other.safety and abs(b - start) < min_gap:
                return False
            if other.id == entry.id and abs(b - start) < cooldown:
                return False
        return True

    def place(entry: CueEntry, lo: int, hi: int, ideal: int, event_sample: int, fill: str = "",
              fade: bool = True, latest_first: bool = False):
        """Put ``entry`` on the free beat nearest ``ideal`` in [lo, hi]; the beat, or None."""
        lo, hi = max(lo, 0), min(hi, session_end)
        if hi < lo:
            return None
        avail = _lengths_for(entry, fill, lens, by_text)
        if not avail or (not entry.safety and uses.get(entry.id, 0) >= rules.max_uses_per_cue):
            return None  # no clip, or faded out by a user-set max_uses_per_cue
        window = beats[np.searchsorted(beats, lo, "left"):np.searchsorted(beats, hi, "right")]
        if window.size == 0:
            return None
        # Nearest beat to the ideal moment first; on a tie the earlier one (speech before the event, not after).
        order = np.lexsort((-window if latest_first else window, np.abs(window - ideal)))
        # Place with the longest phrasing: which phrasing plays is decided afterwards, in time order.
        length = max(avail.values())
        hit = next((int(window[i]) for i in order if free(int(window[i]), length, entry, fade)), None)
        if hit is not None:
            placed.append((hit, hit + length, entry, event_sample, fill))
            uses[entry.id] = uses.get(entry.id, 0) + 1
        return hit

    core_cues = [c for c in library if c.core]
    file_order = {c.id: n for n, c in enumerate(library)}
    core_last: dict[str, int] = {}

    def place_core(slot: _CoreSlot, n: int) -> None:
        fits = {trig for trig, *_ in slot.options}
        order = sorted(core_cues, key=lambda e: (core_last.get(e.id, -1), 0 if e.trigger in fits else 1,
                                                 file_order[e.id]))
        for entry in order:
            if entry.grade_max_pct is not None and slot.grade_pct > entry.grade_max_pct and entry.trigger not in fits:
                continue  # a steep-only cue on a gentle descent
            tries = [(lo, hi, ev, (trig, ev)) for trig, ev, lo, hi in slot.options if trig == entry.trigger]
            tries.append((slot.lo, slot.hi, slot.event_sample, None))
            for lo, hi, ev, key in tries:
                if place(entry, lo, hi, ev, ev, fade=False) is not None:
                    core_last[entry.id] = n
                    if key is not None:
                        voiced.add(key)
                    return

    n_core = 0
    for cand in sorted(_candidates(events, library, rules, sr), key=lambda c: (-c.priority, c.ideal, c.seq)):
        if isinstance(cand, _CoreSlot):
            place_core(cand, n_core)
            n_core += 1
            continue
        if cand.key and cand.key in voiced:
            continue
        for entry in cand.alternatives:
            if place(entry, cand.lo, cand.hi, cand.ideal, cand.event_sample, cand.fill) is not None:
                break

    _fill_quiet_stretches(events, library, rules, sr, s, placed, place)

    placed.sort(key=lambda p: p[0])
    out = []
    turn: dict[str, int] = {}
    for start, _, entry, ev_sample, fill in placed:
        avail_len = _lengths_for(entry, fill, lens, by_text)
        avail = sorted(avail_len)
        k = turn.get(entry.id, 0)
        turn[entry.id] = k + 1
        idx = avail[k % len(avail)]
        out.append(PlannedCue(start_sample=start, end_sample=start + avail_len[idx], cue_id=entry.id,
                              phrasing_index=idx, text=entry.text(idx, fill), trigger=entry.trigger,
                              priority=entry.priority, safety=entry.safety, event_sample=ev_sample,
                              fill=fill if entry.is_template(idx) else ""))
    return out


def _fill_quiet_stretches(events, library, rules, sr, s, placed, place) -> None:
    """Add reminders inside every descent of ``core_min_descent_s`` or more until no stretch between cue starts
    (or between the descent's ends and the nearest cue) is longer than ``max_quiet_s``.

    Each reminder goes on the latest free beat that still closes the gap (the sparsest plan that keeps the rule),
    after ``reminder_after_s`` of descent and early enough to end inside it; its window is one reminder window
    wide (so it is an ordinary reminder slot), stepping back a window at a time past ramps and other cues.
    """
    quiet, win = s(rules.max_quiet_s), s(rules.reminder_window_s)
    rotation = 0
    descents = sorted({(e.start_s, e.end_s, e.grade_pct) for e in events if e.kind == "descent_start"
                       and e.end_s - e.start_s >= rules.core_min_descent_s})
    for start_s, end_s, grade in descents:
        ds, de = s(start_s), s(end_s)
        earliest = ds + s(rules.reminder_after_s)
        latest = de - s(rules.max_clip_s)
        fillers = _matching(library, "long_descent", grade)
        cursor = ds
        while fillers:
            starts = sorted(p[0] for p in placed if cursor <= p[0] < de)
            pts = [cursor] + starts + [de]
            gap = next(((a, b) for a, b in zip(pts, pts[1:]) if b - a > quiet), None)
            if gap is None:
                break
            gap_lo, gap_hi = gap
            hit = None
            hi = min(gap_lo + quiet, latest, gap_hi - 1)
            while hit is None and hi >= max(earliest, gap_lo + 1):
                lo = max(hi - win, earliest, gap_lo + 1)
                for entry in _rotated(fillers, rotation):
                    hit = place(entry, lo, hi, hi, lo, fade=False, latest_first=True)
                    if hit is not None:
                        rotation += 1
                        break
                hi = lo - 1
            cursor = hit if hit is not None else gap_hi  # an unfillable stretch (ramps everywhere): go on
