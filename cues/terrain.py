"""Terrain events from a :class:`profiles.schema.Profile`: where descents, steep sections and technical ground are.

A descent is a stretch with grade <= -4 % held for >= 100 m (DESIGN.md).  Grades from GPS tracks are noisy even
after smoothing, so detection is a Schmitt trigger with a debounce on both edges:

* enter when the grade stays at or below ``descent_enter_pct`` (-4 %) over at least ``descent_hold_m`` (100 m);
  the descent starts where that stretch began;
* leave only when the grade stays above ``descent_exit_pct`` (-2.5 %) over at least ``exit_hold_m`` (50 m); the
  descent ends where that stretch began.

So a 30 m flat bump in the middle of a long descent, or grade wobbling around -4 %, produces no event storm.
Steep sections (<= -10 %) use the same scheme inside descents.  Time-only profiles (no distance) use the
``*_hold_s`` equivalents.

Treadmill workouts (``kind: workout``) also have an ``incline_change`` event at every segment boundary where the
incline changes (:func:`incline_changes`): the runner sets the incline by hand, so the planner announces the coming
value ahead of time.  :func:`cue_events` gives both, which is what the cue planner is fed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metronome.levels import SchmittTrigger

#: Kinds of terrain event (a subset of the cue triggers).
TERRAIN_KINDS = ("descent_start", "steep_descent", "long_descent", "technical", "descent_end", "incline_change")


@dataclass(frozen=True)
class TerrainRules:
    """Thresholds for :func:`terrain_events` (grades in percent, negative downhill)."""

    descent_enter_pct: float = -4.0
    descent_exit_pct: float = -2.5
    descent_hold_m: float = 100.0
    descent_exit_hold_m: float = 50.0
    steep_enter_pct: float = -10.0
    steep_exit_pct: float = -8.0
    steep_hold_m: float = 50.0
    steep_exit_hold_m: float = 30.0
    # Time-only profiles (treadmill workouts without a distance) and live feeds without speed.
    descent_hold_s: float = 30.0
    descent_exit_hold_s: float = 15.0
    steep_hold_s: float = 15.0
    steep_exit_hold_s: float = 10.0
    long_descent_s: float = 90.0
    technical_labels: tuple = ("technical",)


@dataclass(frozen=True)
class TerrainEvent:
    """Something on the course the cue planner may speak about.

    Attributes
    ----------
    kind : str
        One of :data:`TERRAIN_KINDS`.
    time_s : float
        When it happens (elapsed session time).  ``long_descent``: descent start + 90 s.
    start_s, end_s : float
        The stretch the event belongs to (the descent, steep section or technical stretch; for
        ``incline_change`` the workout segment that starts at ``time_s``).
    grade_pct : float
        Mean grade over that stretch (``incline_change``: the incline the runner must set).
    descent_index : int
        Which descent (0, 1, ...) the event belongs to; -1 for technical ground outside any descent.
    """

    kind: str
    time_s: float
    start_s: float
    end_s: float
    grade_pct: float
    descent_index: int = -1


def hysteresis_runs(position, grade_pct, enter_pct: float, exit_pct: float, enter_hold: float,
                    exit_hold: float) -> list:
    """Schmitt trigger with debounce on a grade series; returns ``[(i_start, i_end), ...]`` index pairs.

    A run starts at the first point of a stretch with ``grade <= enter_pct`` spanning ``>= enter_hold`` (in the
    unit of ``position``) and ends at the first point of a stretch with ``grade > exit_pct`` spanning
    ``>= exit_hold``, or at the last point.  ``i_end`` is inclusive.
    """
    pos = np.asarray(position, dtype=np.float64)
    g = np.asarray(grade_pct, dtype=np.float64)
    trigger = SchmittTrigger(enter_pct, exit_pct, enter_hold, exit_hold)  # the live planner's, over arrays
    runs = []
    start = 0
    for i in range(pos.size):
        flip = trigger.feed(float(g[i]), float(pos[i]), i)
        if flip == "enter":
            start = trigger.since
        elif flip == "exit":
            runs.append((start, trigger.since))
    if trigger.inside:
        runs.append((start, pos.size - 1))
    return runs


def _mean_grade(profile, i0: int, i1: int) -> float:
    return float(np.mean(profile.grade_pct[i0:i1 + 1]))


def incline_changes(profile) -> list:
    """``incline_change`` events of a workout: one per segment boundary where the incline changes.

    Empty for anything but a workout (``profile.kind != "workout"``).  A workout's grade is piecewise constant (``profiles.course`` puts every segment boundary on a grid point and
    gives each point the incline of the interval that starts there), so a change of ``grade_pct`` between two
    points is a segment boundary; the event's grade is the coming segment's incline, exactly as written.
    """
    if profile.kind != "workout":
        return []
    t, g = profile.time_s, profile.grade_pct
    idx = np.flatnonzero(np.diff(g[:-1]) != 0) + 1  # the last point repeats the last interval's grade
    bounds = list(idx) + [t.size - 1]
    return [TerrainEvent("incline_change", float(t[i]), float(t[i]), float(t[j]), float(g[i]))
            for i, j in zip(bounds[:-1], bounds[1:])]


def terrain_events(profile, rules: TerrainRules = TerrainRules()) -> list:
    """All terrain events of ``profile``, sorted by time.

    Parameters
    ----------
    profile : profiles.schema.Profile
    rules : TerrainRules

    Returns
    -------
    list of TerrainEvent
        ``descent_start`` (with the descent's end and mean grade), ``steep_descent`` (each steep section inside a
        descent), ``long_descent`` (90 s after the start of a descent that lasts longer than 90 s),
        ``technical`` (each tag labelled ``technical``), ``descent_end`` (where a descent ends before the
        profile does).  A workout's ``incline_change`` events come from :func:`incline_changes` (see
        :func:`cue_events` for both).
    """
    t = profile.time_s
    by_distance = profile.total_distance_m > 0
    if by_distance:
        pos = profile.distance_m
        holds = (rules.descent_hold_m, rules.descent_exit_hold_m, rules.steep_hold_m, rules.steep_exit_hold_m)
    else:
        pos = t
        holds = (rules.descent_hold_s, rules.descent_exit_hold_s, rules.steep_hold_s, rules.steep_exit_hold_s)
    last = t.size - 1
    events = []
    descents = hysteresis_runs(pos, profile.grade_pct, rules.descent_enter_pct, rules.descent_exit_pct,
                               holds[0], holds[1])
    steeps = hysteresis_runs(pos, profile.grade_pct, rules.steep_enter_pct, rules.steep_exit_pct,
                             holds[2], holds[3])
    for k, (i0, i1) in enumerate(descents):
        s, e = float(t[i0]), float(t[i1])
        g = _mean_grade(profile, i0, i1)
        events.append(TerrainEvent("descent_start", s, s, e, g, k))
        if e - s > rules.long_descent_s:
            events.append(TerrainEvent("long_descent", s + rules.long_descent_s, s, e, g, k))
        if i1 < last:
            events.append(TerrainEvent("descent_end", e, s, e, g, k))
        for j0, j1 in steeps:
            # Steep sections are reported only inside a descent (a 60 m wall between climbs is not a descent).
            if i0 <= j0 < i1:
                js, je = float(t[j0]), float(t[min(j1, i1)])
                events.append(TerrainEvent("steep_descent", js, js, je, _mean_grade(profile, j0, min(j1, i1)), k))
    if by_distance:
        labels = tuple(x.lower() for x in rules.technical_labels)
        for tag in profile.tags:
            label = str(getattr(tag, "label", "")).lower()
            if label not in labels and not any(label.startswith(x + "=") for x in labels):
                continue
            s = float(profile.time_at_distance(tag.start_m))
            e = float(profile.time_at_distance(max(tag.end_m, tag.start_m)))
            if s >= float(t[-1]):
                continue  # beyond the end of the profile
            m = (profile.distance_m >= tag.start_m) & (profile.distance_m <= tag.end_m)
            g = float(profile.grade_pct[m].mean()) if m.any() else float(profile.grade_at_time(s))
            k = next((n for n, (i0, i1) in enumerate(descents) if t[i0] <= s < t[i1]), -1)
            events.append(TerrainEvent("technical", s, s, e, g, k))
    order = {kind: n for n, kind in enumerate(TERRAIN_KINDS)}
    events.sort(key=lambda ev: (ev.time_s, order[ev.kind]))
    return events


def cue_events(profile, rules: TerrainRules = TerrainRules()) -> list:
    """Everything the cue planner speaks about: :func:`terrain_events` plus a workout's :func:`incline_changes`,
    sorted by time."""
    order = {kind: n for n, kind in enumerate(TERRAIN_KINDS)}
    return sorted(terrain_events(profile, rules) + incline_changes(profile), key=lambda ev: (ev.time_s, order[ev.kind]))
