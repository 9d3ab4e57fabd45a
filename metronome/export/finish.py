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


def _distance_words(d_m: float) -> str:
    if d_m >= 1000.0:
        km = d_m / 1000.0
        if abs(km - round(km)) < 1e-6:
            n = int(round(km))
            return f"{n} kilometre" + ("" if n == 1 else "s")
        return f"{km:.1f}".rstrip("0").rstrip(".") + " kilometres"
    return f"{int(round(d_m))} metres"


def distance_anchors(profile, interval_m: float, *, descent_lead_m: float = DESCENT_LEAD_M,
                     terrain_rules=None) -> list:
    """Spoken distance anchors: ``(distance_m, text)`` sorted by distance.

    * every ``interval_m`` from the start (not at 0 and not at or beyond the finish): ``"5 kilometres"``,
      ``"2.5 kilometres"``, ``"500 metres"``;
    * ``descent_lead_m`` before each descent that :func:`cues.terrain.terrain_events` finds:
      ``"descent in 300 metres"`` (skipped when the descent starts closer than that to the start).

    A profile without distance (a time-only treadmill workout) has no anchors.

    Raises
    ------
    InputError
        ``interval_m`` is not a number >= :data:`MIN_ANCHOR_INTERVAL_M`, or ``descent_lead_m`` is negative.
    """
    from cues.terrain import TerrainRules, terrain_events

    try:
        step = float(interval_m)
        lead = float(descent_lead_m)
    except (TypeError, ValueError):
        raise InputError(f"interval_m: {interval_m!r} / descent_lead_m: {descent_lead_m!r} is not a number") from None
    if not (math.isfinite(step) and step >= MIN_ANCHOR_INTERVAL_M):
        raise InputError(f"interval_m: {interval_m!r} must be at least {MIN_ANCHOR_INTERVAL_M:g} m")
    if not (math.isfinite(lead) and lead >= 0):
        raise InputError(f"descent_lead_m: {descent_lead_m!r} must be a distance >= 0 m")
    total = profile.total_distance_m
    if total <= 0:
        return []
    out = []
    n = 1
    while n * step < total - 1e-6:
        out.append((n * step, _distance_words(n * step)))
        n += 1
    rules = terrain_rules if terrain_rules is not None else TerrainRules()
    lead_words = _distance_words(lead)
    for ev in terrain_events(profile, rules):
        if ev.kind != "descent_start":
            continue
        d_start = float(profile.distance_at_time(ev.start_s))
        if d_start - lead >= 0:
            out.append((d_start - lead, f"descent in {lead_words}"))
    out.sort(key=lambda a: a[0])
    return out
