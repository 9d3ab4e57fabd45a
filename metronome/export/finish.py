"""Keeping a rendered track in step with the runner: a plan scaled to a finish time, and spoken distance anchors.

Library functions only; ``render`` wires them in (issue 16).  Both work on a :class:`profiles.schema.Profile` and
live on the ``metronome`` side of the dependency (``metronome`` uses ``profiles``, never the reverse).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from metronome.errors import InputError

#: Fastest mean speed a scaled plan may ask for: the importers' own ceiling for a plausible run (profiles.track).
MAX_MEAN_SPEED_MPS = 30.0
#: Shortest interval between distance anchors.  Cues keep >= 45 s between them (cues/planner.py); 100 m is ~30 s
#: at a fast downhill pace, so anything shorter would be crowded out by the spacing rule anyway.
MIN_ANCHOR_INTERVAL_M = 100.0
#: How far before a descent its anchor is spoken ("descent in 300 metres").
DESCENT_LEAD_M = 300.0


def scale_to_finish_time(profile, finish_time_s: float):
    """A new profile whose timing is scaled so the course ends exactly at ``finish_time_s``.

    Every elapsed time is multiplied by ``finish_time_s / profile.duration_s`` and every speed divided by it, so the
    pace model's (or the recording's) shape is kept: steep sections stay slower than the flat.  Distance, elevation
    and grade are unchanged.

    Parameters
    ----------
    profile : profiles.schema.Profile
    finish_time_s : float
        Target finish time, seconds, > 0.

    Returns
    -------
    profiles.schema.Profile
        ``time_s[-1] == finish_time_s`` exactly; a note records the scaling.

    Raises
    ------
    InputError
        ``finish_time_s`` is not a positive finite number, or asks for a mean speed above
        :data:`MAX_MEAN_SPEED_MPS`.
    """
    try:
        target = float(finish_time_s)
    except (TypeError, ValueError):
        raise InputError(f"finish_time_s: {finish_time_s!r} is not a number") from None
    if not (math.isfinite(target) and target > 0):
        raise InputError(f"finish_time_s: {finish_time_s!r} must be a positive number of seconds")
    if profile.total_distance_m / target > MAX_MEAN_SPEED_MPS:
        raise InputError(f"finish_time_s: {target:g} s for {profile.total_distance_m:.0f} m is a mean speed above "
                         f"{MAX_MEAN_SPEED_MPS:g} m/s")
    k = target / profile.duration_s
    time_s = np.asarray(profile.time_s, dtype=np.float64) * k
    time_s[-1] = target  # exactly, whatever the rounding of the product
    speed = np.asarray(profile.speed_mps, dtype=np.float64) / k
    h, rem = divmod(int(round(target)), 3600)
    note = f"timing scaled x{k:.3f} to finish in {h}:{rem // 60:02d}:{rem % 60:02d}"
    return dataclasses.replace(profile, time_s=time_s, speed_mps=speed, notes=tuple(profile.notes) + (note,))


def parse_finish_time(text) -> float:
    """``H:MM:SS`` or ``MM:SS`` (``--finish-time``) -> seconds; InputError naming ``--finish-time``.

    ``MM`` may exceed 59 in the two-field form (``90:00`` is 1.5 h); seconds may have decimals (``1:02:03.5``).
    """
    raw = str(text).strip()
    parts = raw.split(":")
    bad = InputError(f"--finish-time: {text!r} is not H:MM:SS or MM:SS (e.g. 1:45:00 or 25:30)",
                     field="finish_time_s")
    if len(parts) not in (2, 3) or not all(parts):
        raise bad
    try:
        *hm, sec = parts
        nums = [int(x) for x in hm] + [float(sec)]
    except ValueError:
        raise bad from None
    if any(n < 0 for n in nums) or not math.isfinite(nums[-1]) or nums[-1] >= 60 or not sec[0].isdigit():
        raise bad
    if len(nums) == 3 and nums[1] >= 60:
        raise bad
    total = nums[-1] + 60.0 * nums[-2] + (3600.0 * nums[0] if len(nums) == 3 else 0.0)
    if total <= 0:
        raise InputError(f"--finish-time: {text!r} must be longer than 0 s", field="finish_time_s")
    return total


def scale_track_to_finish(profile, finish_time_s: float, tail_s: float | None = None):
    """The profile a render of ``finish_time_s`` needs: the course ends ``tail_s`` before it, so the file (which
    renders ``tail_s`` of decay after the last step, :func:`metronome.render.render`) lasts exactly
    ``finish_time_s``.  Errors name ``--finish-time``."""
    if tail_s is None:
        from metronome.render import TAIL_S as tail_s
    if finish_time_s <= tail_s:
        raise InputError(f"--finish-time: {finish_time_s:g} s is not longer than the {tail_s:g} s tail after "
                         "the last step", field="finish_time_s")
    if profile.total_distance_m / (finish_time_s - tail_s) > MAX_MEAN_SPEED_MPS:
        raise InputError(f"--finish-time: {finish_time_s:g} s for {profile.total_distance_m:.0f} m is a mean speed "
                         f"above {MAX_MEAN_SPEED_MPS:g} m/s", field="finish_time_s")
    return scale_to_finish_time(profile, finish_time_s - tail_s)


def distance_anchors(profile, interval_m: float, *, descent_lead_m: float = DESCENT_LEAD_M,
                     terrain_rules=None) -> list:
    """Spoken distance anchors: ``(distance_m, words)`` sorted by distance (:func:`cues.anchors.course_anchors`).

    * every ``interval_m`` from the start (not at 0 and not at or beyond the finish): ``"5 kilometres"``,
      ``"2.5 kilometres"``, ``"500 metres"``;
    * ``descent_lead_m`` before each descent that :func:`cues.terrain.terrain_events` finds:
      ``"descent in 300 metres"`` (skipped when that point is before the start or inside the previous descent).

    A profile without distance (a time-only treadmill workout) has no anchors.

    Raises
    ------
    InputError
        ``interval_m`` is not a number >= :data:`MIN_ANCHOR_INTERVAL_M`, or ``descent_lead_m`` is not > 0.
    """
    from cues.anchors import AnchorRules, course_anchors

    try:
        lead = float(descent_lead_m)
    except (TypeError, ValueError):
        raise InputError(f"descent_lead_m: {descent_lead_m!r} is not a number") from None
    rules = AnchorRules(descent_lead_m=lead, min_interval_m=MIN_ANCHOR_INTERVAL_M)
    return [(a.distance_m, a.words) for a in course_anchors(profile, interval_m, rules, terrain_rules)]
