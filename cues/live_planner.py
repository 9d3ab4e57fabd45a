"""The live cue planner: cues from the terrain as a sensor feed reports it (no look-ahead), on beats, by the same
rules as :mod:`cues.planner` where the live view allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


from metronome.errors import InputError

from metronome.levels import SchmittTrigger

from .library import CueEntry, CueLibrary
from .terrain import TerrainRules
from .planner import PlannerRules, _clip_lengths, _lengths_for, _matching, _rotated, clip_name, required_cooldown_s


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
    trigger: str  # "core" for a descent's core cue, "quiet" for a reminder that ends a quiet stretch
    alternatives: tuple
    expires: int
    seq: int
    priority: int
    fade: bool = True  # False: only the cue's own cooldown applies (core cues, quiet-stretch reminders)


class LivePlanner:
    """Incremental planner for live sessions: sensor state in, cue requests out, same rules as :func:`plan_cues`.

    Deterministic: the clock is the ``sample`` argument of :meth:`update` (the kernel's position), never the wall
    clock.  Without look-ahead there are no announcements; a descent is recognised once the grade has stayed at
    or below -4 % for 100 m (integrated from ``speed_mps``) or ``TerrainRules.descent_hold_s`` without speed
    (whichever the first update provides), which queues one of the core technique cues (least recently used
    first, as in :func:`plan_cues`; its length is unknown yet, so every recognised descent gets one, with priority
    ``core_priority``); a steep section inside it queues a steep cue, reminders come every ``reminder_every_s``
    after ``reminder_after_s`` of descent, a stretch of ``max_quiet_s`` without a cue inside a descent is ended by
    a reminder (never silent on a long descent), and the end of the descent queues ``descent_end``.  Footpod cadence off target by more than the tolerances for
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
        lens, by_text = _clip_lengths(clip_len_samples, library, rules, self.samplerate)
        # Live cues have no value to put into a {grade} phrasing: only plain phrasings (or recordings) play.
        self._lens = {c.id: n for c in library if (n := _lengths_for(c, "", lens, by_text))}
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
        self._core = [c for c in library if c.core]
        self._file_order = {c.id: n for n, c in enumerate(library)}
        self._core_last: dict[str, int] = {}
        self._core_n = 0

    # -- events -----------------------------------------------------------------------------------------------
    def _queue(self, trigger: str, sample: int, expiry_s: float, grade_pct: float = 0.0):
        cues = _matching(self.library, trigger, grade_pct)
        k = self._rot.get(trigger, 0)
        self._rot[trigger] = k + 1
        self._push(trigger, _rotated(cues, k), sample, expiry_s)

    def _push(self, trigger, alts, sample, expiry_s, priority=None, fade=True):
        if alts:
            prio = max(c.priority for c in alts) if priority is None else priority
            self._pending.append(_Pending(trigger, tuple(alts), sample + int(round(expiry_s * self.samplerate)),
                                          self._seq, prio, fade))
            self._seq += 1

    def _queue_core(self, sample: int, grade_pct: float):
        """The core cue of a descent just recognised: least recently used first, ties to the one that fits."""
        fits = {"steep_descent"} if self._steep.inside else set()
        alts = sorted((c for c in self._core if c.grade_max_pct is None or grade_pct <= c.grade_max_pct
                       or c.trigger in fits),
                      key=lambda c: (self._core_last.get(c.id, -1), 0 if c.trigger in fits else 1,
                                     self._file_order[c.id]))
        self._push("core", alts, sample, self.rules.live_expiry_s, self.rules.core_priority, fade=False)

    def _track_descent(self, sample: int, dt_s: float, grade_pct: float, speed_mps):
        tr = self.terrain
        if self._use_distance is None:
            # Fixed at the first update so the hold unit does not flip when a speed reading drops out.
            self._use_distance = speed_mps is not None
            m = self._use_distance
            self._descent = SchmittTrigger(tr.descent_enter_pct, tr.descent_exit_pct,
                                     tr.descent_hold_m if m else tr.descent_hold_s,
                                     tr.descent_exit_hold_m if m else tr.descent_exit_hold_s)
            self._steep = SchmittTrigger(tr.steep_enter_pct, tr.steep_exit_pct,
                                   tr.steep_hold_m if m else tr.steep_hold_s,
                                   tr.steep_exit_hold_m if m else tr.steep_exit_hold_s)
        step = max(0.0, float(speed_mps or 0.0)) * dt_s if self._use_distance else dt_s
        self._pos += step
        r = self.rules
        change = self._descent.feed(grade_pct, self._pos, sample)
        steep_change = self._steep.feed(grade_pct, self._pos, sample)
        if change == "enter":
            self._descent_start_sample = self._descent.since
            self._next_reminder = self._descent_start_sample + int(round(r.reminder_after_s * self.samplerate))
            if self._core:
                self._queue_core(sample, grade_pct)
            else:
                self._queue("descent_start", sample, r.live_expiry_s, grade_pct)
        elif change == "exit":
            self._next_reminder = None
            # Reminders and steep cues make no sense once the descent is over.
            self._pending = [p for p in self._pending
                             if p.trigger not in ("long_descent", "steep_descent", "quiet")]
            self._queue("descent_end", sample, r.live_expiry_s, grade_pct)
        if steep_change == "enter" and self._descent.inside:
            self._queue("steep_descent", sample, r.live_expiry_s, grade_pct)
        if self._descent.inside and self._next_reminder is not None and sample >= self._next_reminder:
            self._queue("long_descent", sample, r.reminder_window_s, grade_pct)
            self._next_reminder += int(round(r.reminder_every_s * self.samplerate))
        if self._descent.inside and not any(p.trigger == "quiet" for p in self._pending):
            # Never silent on a long descent: queue a reminder (own cooldown only) early enough that it starts
            # before max_quiet_s have passed since the last cue (or the descent's start).
            sr = self.samplerate
            last = max([self._descent_start_sample] + [st for st, _ in self._history])
            due = last + int(round((r.max_quiet_s - r.reminder_window_s - r.live_max_beat_s) * sr))
            if sample >= due and sample >= self._descent_start_sample + int(round(r.reminder_after_s * sr)):
                k = self._rot.get("long_descent", 0)
                self._rot["long_descent"] = k + 1
                self._push("quiet", _rotated(_matching(self.library, "long_descent", grade_pct), k), sample,
                           r.reminder_window_s, fade=False)

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
    def _can_start(self, sample: int, entry: CueEntry, length: int, fade: bool = True) -> bool:
        r = self.rules
        if entry.id not in self._lens:
            return False
        n_used = self._uses.get(entry.id, 0)
        if not entry.safety and n_used >= r.max_uses_per_cue:
            return False
        if sample < self._busy_until:
            return False
        min_gap = int(round(r.min_gap_s * self.samplerate)) + self._slack
        cool_s = required_cooldown_s(entry, n_used, r) if fade else entry.cooldown_s
        cooldown = int(round(cool_s * self.samplerate)) + self._slack
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
        for p in sorted(self._pending, key=lambda p: (-p.priority, p.seq)):
            for entry in p.alternatives:
                if entry.id not in self._lens:
                    continue
                avail = sorted(self._lens[entry.id])
                k = self._phr.get(entry.id, 0)
                idx = avail[k % len(avail)]
                length = self._lens[entry.id][idx]
                if not self._can_start(sample, entry, length, p.fade):
                    continue
                if p.trigger == "core":
                    self._core_last[entry.id] = self._core_n
                    self._core_n += 1
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
