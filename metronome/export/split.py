"""Where ``render --split`` cuts a track into parts a runner can skip between (issue 16).

A part starts

* at each **announcement** the plan speaks (``Descent ahead.``, a treadmill's ``Decline 6 percent in 10
  seconds.``): on the announcement's own beat, so skipping to the part starts with it;
* at every **distance mark**, every ``every_m`` (the ``--anchors`` interval, else 1 km): on the anchor's beat where
  one is spoken there, else on the beat nearest the mark (by the plan's clock) that no cue is sounding across.

No part is shorter than ``min_part_s`` (30 s): a mark that close to an announcement (or to the start or the end)
is left out, announcements first.  Every cut is on a beat with no speech across it, so no cue is cut in two.
The cuts are samples of the single render; :class:`metronome.parts.AudioParts` writes the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANNOUNCE_TRIGGERS = ("announce_descent", "announce_decline", "announce_incline", "announce_flat")
#: Distance marks without ``--anchors``.
DEFAULT_SPLIT_EVERY_M = 1000.0
MIN_PART_S = 30.0


@dataclass(frozen=True)
class Cut:
    """Where a part starts.

    Attributes
    ----------
    sample : int
    label : str
        What starts there: ``"start"``, ``"descent ahead"`` (the announcement's words, lower case), ``"2 km"``.
    distance_m : float
        Course distance there by the plan's clock (0 for a course without distance).
    """

    sample: int
    label: str
    distance_m: float


def split_cuts(plan, total: int, every_m: float | None = None, min_part_s: float = MIN_PART_S) -> list:
    """The parts of a render of ``plan`` (``total`` frames, tail included), as the :class:`Cut` each starts at.

    The first cut is sample 0 (``"start"``); pass ``[c.sample for c in cuts[1:]]`` to ``render(split_at=...)``.
    """
    from cues.anchors import sample_clock
    from metronome.course_plan import distance_at_sample

    sr = int(plan.engine_settings.samplerate)
    profile = plan.profile
    cues = sorted(plan.planned_cues, key=lambda c: c.start_sample)
    beats = np.asarray(plan.tempo_map.beat_samples(), dtype=np.int64)
    gap = int(round(min_part_s * sr))
    at_m = distance_at_sample(profile, sr)
    kept = [0, int(total)]

    def room(b: int) -> bool:
        return 0 < b < total and all(abs(b - k) >= gap for k in kept)

    out = []
    for c in cues:
        if c.trigger in ANNOUNCE_TRIGGERS and room(c.start_sample):
            kept.append(int(c.start_sample))
            out.append(Cut(int(c.start_sample), c.text.rstrip(".").lower(), at_m(c.start_sample)))
    total_m = float(profile.total_distance_m)
    step = float(every_m) if every_m is not None else DEFAULT_SPLIT_EVERY_M
    if total_m > 0 and beats.size:
        clock = sample_clock(profile, sr)
        anchor_at = {c.fill: c.start_sample for c in cues if c.trigger == "distance_anchor"}
        n = 1
        while n * step < total_m - 1e-6:
            d = n * step
            n += 1
            b = anchor_at.get(f"{int(round(d))}")
            if b is None:
                b = _quiet_beat(beats, clock(d), cues)
            if b is not None and room(b):
                kept.append(int(b))
                out.append(Cut(int(b), _km_label(d), at_m(b)))
    out.sort(key=lambda c: c.sample)
    return [Cut(0, "start", 0.0)] + out


def _quiet_beat(beats, ideal: int, cues):
    """The beat nearest ``ideal`` that no cue sounds across (a cue may start on it), or None."""
    order = np.argsort(np.abs(beats - ideal), kind="stable")
    for i in order[:64]:  # a cue is at most 2.5 s long: a free beat is a few beats away
        b = int(beats[i])
        if not any(c.start_sample < b < c.end_sample for c in cues):
            return b
    return None


def _km_label(d_m: float) -> str:
    km = d_m / 1000.0
    return f"{km:g} km" if d_m >= 1000 else f"{d_m:g} m"
