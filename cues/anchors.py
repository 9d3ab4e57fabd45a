"""Spoken distance anchors (``render --anchors``, issue 16): "5 kilometres", "descent in 300 metres".

A rendered track is timed by the plan's clock (the pace model, a runner profile, a recording or ``--finish-time``).
Anchors say where that clock puts the runner, so a runner hears whether they are ahead of the track or behind it:

* a **distance mark** every ``interval_m`` from the start (not at 0, not at or past the finish):
  ``distance_mark`` with ``{distance}`` = the mark ("5 kilometres", "2.5 kilometres", "500 metres");
* a **descent anchor** ``descent_lead_m`` (300 m) before each descent :func:`cues.terrain.terrain_events` finds:
  ``descent_in``, "Descent in 300 metres." (none when that point is before the start; when it is inside the
  previous descent, the anchor is said where that one ends, with the distance left: "Descent in 250 metres.").

Placement (:func:`place_anchors`), after :func:`cues.planner.plan_cues` has placed every other cue, which it does
not change (anchors are the lowest priority: a safety or technique cue always wins):

* an anchor starts on a beat, the beat nearest the sample where the plan's clock reaches its distance (a tie goes
  to the earlier beat);
* it never overlaps another cue (plus ``PlannerRules.min_silence_s`` either side), a tempo ramp, nor runs past the
  last beat; it is exempt from the 45 s spacing between technique cues (it belongs to a place, like a safety cue);
* if that beat is not free it moves to the nearest free beat within ``tolerance_m`` (15 m) of its distance, else
  it is **dropped**, never played late.  Distance marks are placed first (they are what a runner checks the
  track against; a descent still gets its "Descent ahead." announcement 12 s before it), then descent anchors.

Pure and deterministic, like the planner; :func:`plan_profile_anchors` is the glue that makes the clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metronome.errors import InputError

from .library import CueLibrary, distance_words
from .planner import PlannedCue, PlannerRules
from .terrain import TerrainRules, terrain_events

#: The triggers of the anchor cues (library.yaml), in placement order.
ANCHOR_TRIGGERS = ("distance_anchor", "descent_anchor")
#: A descent anchor's distance left is said in steps of this (rounded down: "descent in 250 metres").
DESCENT_ROUND_M = 50.0


@dataclass(frozen=True)
class AnchorRules:
    """Where anchors go and how far one may move to find a free beat.

    Attributes
    ----------
    descent_lead_m : float
        How far before a descent its anchor is spoken (> 0).
    tolerance_m : float
        Largest distance between an anchor's beat and its distance (>= 0); beyond it the anchor is dropped.
    min_interval_m : float
        Shortest interval between distance marks (100 m, ~30 s at a fast downhill pace: anything shorter would be
        crowded out by the cues anyway).
    min_descent_gap_m : float
        A descent that starts less than ``descent_lead_m`` after the previous one ends gets its anchor where that
        one ends, saying the distance left (rounded down to 50 m), if at least this much is left; else none (its
        "Descent ahead" announcement still comes).
    """

    descent_lead_m: float = 300.0
    tolerance_m: float = 15.0
    min_interval_m: float = 100.0
    min_descent_gap_m: float = 100.0

    def __post_init__(self):
        for name in ("descent_lead_m", "tolerance_m", "min_interval_m", "min_descent_gap_m"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) or (name != "tolerance_m" and v == 0):
                raise InputError(f"{name}: {v!r} must be a distance {'>= 0' if name == 'tolerance_m' else '> 0'} m",
                                 field=name)


@dataclass(frozen=True)
class Anchor:
    """One anchor the course asks for.

    Attributes
    ----------
    distance_m : float
        Course distance where it is spoken.
    trigger : str
        ``distance_anchor`` or ``descent_anchor``.
    fill : str
        Whole metres said (the ``{distance}`` value): the mark itself, or the descent lead.
    """

    distance_m: float
    trigger: str
    fill: str

    @property
    def words(self) -> str:
        """What is said, without the phrasing around it: ``"5 kilometres"``, ``"descent in 300 metres"``."""
        w = distance_words(self.fill)
        return w if self.trigger == "distance_anchor" else f"descent in {w}"


def parse_interval(value, rules: AnchorRules = AnchorRules()) -> float:
    """``interval_m`` as a number of metres >= ``rules.min_interval_m``; InputError naming ``interval_m``."""
    try:
        step = float(value)
    except (TypeError, ValueError):
        raise InputError(f"interval_m: {value!r} is not a number of metres", field="interval_m") from None
    if not (math.isfinite(step) and step >= rules.min_interval_m):
        raise InputError(f"interval_m: {value!r} must be at least {rules.min_interval_m:g} m", field="interval_m")
    return step


def course_anchors(profile, interval_m, rules: AnchorRules = AnchorRules(),
                   terrain_rules: TerrainRules | None = None) -> list:
    """The anchors of a course, sorted by distance (see the module docstring); ``[]`` without a distance axis.

    ``interval_m`` None gives the descent anchors only.
    """
    step = None if interval_m is None else parse_interval(interval_m, rules)
    total = float(profile.total_distance_m)
    if not total > 0:
        return []
    out = []
    if step is not None:
        n = 1
        while n * step < total - 1e-6:
            out.append(Anchor(n * step, "distance_anchor", f"{int(round(n * step))}"))
            n += 1
    lead = float(rules.descent_lead_m)
    prev_end = 0.0
    for ev in terrain_events(profile, terrain_rules or TerrainRules()):
        if ev.kind != "descent_start":
            continue
        start = float(profile.distance_at_time(ev.start_s))
        if start - lead >= prev_end - 1e-9:
            out.append(Anchor(start - lead, "descent_anchor", f"{int(round(lead))}"))
        elif prev_end > 0 and start - prev_end >= rules.min_descent_gap_m:
            # Close behind the previous descent: said where that one ends, with the distance really left.
            left = math.floor((start - prev_end) / DESCENT_ROUND_M) * DESCENT_ROUND_M
            out.append(Anchor(prev_end, "descent_anchor", f"{int(left)}"))
        prev_end = float(profile.distance_at_time(ev.end_s))
    out.sort(key=lambda a: (a.distance_m, ANCHOR_TRIGGERS.index(a.trigger)))
    return out


def anchor_texts(anchors, library: CueLibrary) -> list:
    """``[(cue_id, phrasing_index, fill), ...]``: the clips the anchors may use (one per filled-in text)."""
    out = set()
    for a in anchors:
        for entry in library.by_trigger(a.trigger):
            out.update((entry.id, i, a.fill) for i in range(len(entry.phrasings)))
    return sorted(out)


def place_anchors(anchors, sample_at_m, beat_samples, ramps, planned, clip_len_samples, samplerate: int,
                  library: CueLibrary, rules: AnchorRules = AnchorRules(),
                  planner_rules: PlannerRules = PlannerRules()):
    """Put anchors on free beats near their distance, around an existing cue plan (which is not changed).

    Parameters
    ----------
    anchors : iterable of Anchor
    sample_at_m : callable(distance_m) -> int
        The sample where the plan's clock reaches a course distance.
    beat_samples : 1-D int array
        Every beat of the tempo map, strictly increasing.
    ramps : iterable of (start_sample, end_sample)
    planned : iterable of PlannedCue
        The cues already placed (:func:`cues.planner.plan_cues`).
    clip_len_samples : mapping (cue_id, phrasing_index, fill) -> int
        Clip lengths (:func:`anchor_texts` lists the keys); a phrasing without one is not used.
    samplerate : int
    library : CueLibrary
    rules, planner_rules : AnchorRules, PlannerRules

    Returns
    -------
    (placed, dropped) : (list of PlannedCue, list of Anchor)
        ``placed`` sorted by ``start_sample`` (``event_sample``: the sample of the anchor's distance); ``dropped``:
        the anchors with no free beat within ``rules.tolerance_m``.
    """
    beats = np.asarray(beat_samples, dtype=np.int64)
    if beats.size < 2:
        return [], list(anchors)
    session_end = int(beats[-1])
    guard = int(round(planner_rules.min_silence_s * samplerate))
    ramp_list = sorted((int(a), int(b)) for a, b in ramps if int(b) > int(a))
    busy = sorted((int(c.start_sample), int(c.end_sample)) for c in planned)
    last_start: dict[str, int] = {}
    turn: dict[str, int] = {}
    placed, dropped = [], []

    def free(b: int, length: int, entry) -> bool:
        if b < 0 or b + length > session_end:
            return False
        if any(b < re and rs < b + length for rs, re in ramp_list):
            return False
        if any(b < end + guard and b + length + guard > start for start, end in busy):
            return False
        prev = last_start.get(entry.id)
        return prev is None or abs(b - prev) >= int(round(entry.cooldown_s * samplerate))

    order = sorted(anchors, key=lambda a: (ANCHOR_TRIGGERS.index(a.trigger), a.distance_m))
    for a in order:
        ideal = int(sample_at_m(a.distance_m))
        lo = int(sample_at_m(max(0.0, a.distance_m - rules.tolerance_m)))
        hi = int(sample_at_m(a.distance_m + rules.tolerance_m))
        window = beats[np.searchsorted(beats, lo, "left"):np.searchsorted(beats, hi, "right")]
        hit = None
        for entry in sorted(library.by_trigger(a.trigger), key=lambda e: -e.priority):
            avail = [i for i in range(len(entry.phrasings)) if (entry.id, i, a.fill) in clip_len_samples]
            if not avail or window.size == 0:
                continue
            idx = avail[turn.get(entry.id, 0) % len(avail)]
            length = int(clip_len_samples[(entry.id, idx, a.fill)])
            for i in np.lexsort((window, np.abs(window - ideal))):
                b = int(window[i])
                if free(b, length, entry):
                    hit = PlannedCue(start_sample=b, end_sample=b + length, cue_id=entry.id, phrasing_index=idx,
                                     text=entry.text(idx, a.fill), trigger=entry.trigger, priority=entry.priority,
                                     safety=entry.safety, event_sample=ideal,
                                     fill=a.fill if entry.is_template(idx) else "")
                    break
            if hit is not None:
                turn[entry.id] = turn.get(entry.id, 0) + 1
                last_start[entry.id] = hit.start_sample
                busy.append((hit.start_sample, hit.end_sample))
                placed.append(hit)
                break
        if hit is None:
            dropped.append(a)
    placed.sort(key=lambda c: c.start_sample)
    dropped.sort(key=lambda a: a.distance_m)
    return placed, dropped


def sample_clock(profile, samplerate: int):
    """``distance_m -> sample`` on the plan's clock (the inverse of ``metronome.course_plan.distance_at_sample``)."""
    sr = float(samplerate)
    return lambda d_m: int(round(float(profile.time_at_distance(d_m)) * sr))


def plan_profile_anchors(profile, tempo_map, samplerate: int, planned, interval_m, *, voice=None, voice_pack=None,
                         library=None, rules: AnchorRules = AnchorRules(),
                         planner_rules: PlannerRules = PlannerRules(),
                         terrain_rules: TerrainRules = TerrainRules(), cache_dir=None):
    """Plan the anchors of a profile around its cue plan and synthesize their clips.

    Returns
    -------
    (clips, placed, dropped) : (list of (name, float32 ndarray), list of PlannedCue, list of Anchor)
        ``clips`` named ``PlannedCue.clip_name`` (``distance_mark-1@5000``), one per placed text.

    Raises
    ------
    InputError
        ``interval_m`` too small, or a profile without a distance axis (nothing to anchor).
    VoiceUnavailableError, CueError
        As :func:`cues.session.plan_profile_cues`.
    """
    from .library import load_library
    from .voice import VoiceBank

    if not float(profile.total_distance_m) > 0:
        raise InputError(f"interval_m: {profile.source} has no course distance to anchor (a time-only workout)",
                         field="interval_m")
    lib = library if library is not None else load_library()
    anchors = course_anchors(profile, interval_m, rules, terrain_rules)
    bank = VoiceBank(lib, samplerate, voice=voice, pack_dir=voice_pack, cache_dir=cache_dir)
    lengths = {key: int(bank.clip(*key).size) for key in anchor_texts(anchors, lib)}
    placed, dropped = place_anchors(anchors, sample_clock(profile, samplerate), tempo_map.beat_samples(),
                                    tempo_map.ramps(), planned, lengths, samplerate, lib, rules, planner_rules)
    clips, seen = [], set()
    for cue in placed:
        if cue.clip_name not in seen:
            seen.add(cue.clip_name)
            clips.append((cue.clip_name, bank.clip(cue.cue_id, cue.phrasing_index, cue.fill or None)))
    return clips, placed, dropped
