"""The plan of a course indexed by distance: tempo levels and where the coaching belongs (issue 14).

One plan for both clocks.  The tempo levels are the plateaus :func:`metronome.tempo.tempo_map_from_profile` builds
the time-based map from (same :func:`~metronome.tempo.grade_plateaus` call, same targets), kept on the distance
axis; the descents are the terrain events the time-based cue planner places (:func:`cues.terrain.terrain_events`),
also on the distance axis.  A time-based render times them by the profile's clock (recorded or the pace model);
a session that follows the runner (:mod:`metronome.follow_control`) reads them at the runner's course distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .settings import TempoSettings
from .tempo import grade_plateaus, target_cadence


@dataclass(frozen=True)
class Descent:
    """One descent of the course, by distance.

    Attributes
    ----------
    index : int
        0, 1, ... in course order (the terrain events' ``descent_index``).
    start_m, end_m : float
        Course distance where it starts and ends.
    grade_pct : float
        Mean grade over it.
    duration_s : float
        How long the plan's clock says it takes (long descents get a core cue and reminders, as in the planner).
    steep_m : tuple of float
        Where each steep section inside it starts.
    ends_course : bool
        The course ends on it (no ``descent_end`` cue).
    """

    index: int
    start_m: float
    end_m: float
    grade_pct: float
    duration_s: float
    steep_m: tuple = ()
    ends_course: bool = False

    @property
    def length_m(self) -> float:
        return self.end_m - self.start_m


@dataclass(frozen=True)
class CoursePlan:
    """Tempo levels and descents of a course on its distance axis (immutable).

    Attributes
    ----------
    level_m, level_bpm : ndarray
        Tempo level ``level_bpm[i]`` applies from course distance ``level_m[i]`` (``level_m[0] == 0``) to the next.
    base_bpm : float
        The base cadence (off course, lost fix).
    descents : tuple of Descent
    total_m : float
    time_s, distance_m : ndarray
        The profile's own clock against distance (for a time-based render's ``distance_m`` column).
    """

    level_m: np.ndarray
    level_bpm: np.ndarray
    base_bpm: float
    descents: tuple
    total_m: float
    time_s: np.ndarray
    distance_m: np.ndarray

    @classmethod
    def from_profile(cls, profile, settings: TempoSettings = TempoSettings(), terrain_rules=None) -> "CoursePlan":
        """The plan of a course with a distance axis (GPX/FIT/TCX tracks, YAML courses; not a treadmill workout)."""
        from cues.terrain import TerrainRules, terrain_events

        if not (profile.total_distance_m > 0) or profile.kind == "workout":
            raise InputError(f"{profile.source}: a course to follow needs a distance axis (a treadmill workout "
                             "has none)", field="profile")
        d, t = np.asarray(profile.distance_m, float), np.asarray(profile.time_s, float)
        levels = grade_plateaus(d, profile.grade_pct, settings.hold_m, settings.hysteresis_pct)
        level_m = np.array([p for p, _ in levels], dtype=np.float64)
        level_m[0] = 0.0
        level_bpm = np.array([float(target_cadence(g, settings)) for _, g in levels])
        events = terrain_events(profile, terrain_rules or TerrainRules())
        at = lambda ts: float(np.interp(ts, t, d))  # noqa: E731 - the plan's clock back to distance
        descents = []
        for ev in events:
            if ev.kind != "descent_start":
                continue
            steep = tuple(at(o.time_s) for o in events
                          if o.kind == "steep_descent" and o.descent_index == ev.descent_index)
            ends = not any(o.kind == "descent_end" and o.descent_index == ev.descent_index for o in events)
            descents.append(Descent(ev.descent_index, at(ev.start_s), at(ev.end_s), ev.grade_pct,
                                    ev.end_s - ev.start_s, steep, ends))
        for a in (level_m, level_bpm, d, t):
            a.flags.writeable = False
        return cls(level_m, level_bpm, float(settings.base_cadence_spm), tuple(descents), float(d[-1]), t, d)

    # -- queries ----------------------------------------------------------------------------------------------
    def level_index(self, distance_m: float) -> int:
        """Index of the tempo level in force at ``distance_m``."""
        return max(0, int(np.searchsorted(self.level_m, distance_m, side="right")) - 1)

    def bpm_at(self, distance_m: float) -> float:
        """The plan's tempo level at a course distance (the tempo once any ramp into it is done)."""
        return float(self.level_bpm[self.level_index(distance_m)])

    def distance_at_time(self, t_s):
        """Course distance at the plan's own time (what a time-based render assumes the runner has covered)."""
        return np.interp(t_s, self.time_s, self.distance_m)

    def next_descent(self, distance_m: float):
        """The first descent starting after ``distance_m``, or None."""
        for ds in self.descents:
            if ds.start_m > distance_m:
                return ds
        return None


def distance_at_sample(profile, samplerate: int):
    """``sample -> course distance`` of a time-based session: where the plan's clock (recorded times or the pace
    model) puts the runner, for the events CSV's ``distance_m`` column (0 for a course without distance)."""
    t = np.asarray(profile.time_s, float)
    d = np.asarray(profile.distance_m, float)
    sr = float(samplerate)
    return lambda sample: float(np.interp(sample / sr, t, d))
