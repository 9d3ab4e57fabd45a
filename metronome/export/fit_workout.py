"""FIT workout export: one distance step per tempo plateau, each with a cadence target.

Steps: the plateaus of the tempo map (:func:`metronome.tempo.grade_plateaus`, the same call, hold and hysteresis
:func:`~metronome.tempo.tempo_map_from_profile` uses), neighbours with the same target cadence merged (the tempo map
does not change tempo between them either).  Each step lasts the plateau's course distance (``duration_type =
distance``, FIT unit metres with scale 100, i.e. centimetres; boundaries are rounded once, so the steps add up to
the course length to the centimetre).  A profile without distance (a time-only treadmill workout) gets time steps.
The step name carries the plateau's grade and target (``"-12% 181 spm"``).

Cadence unit.  The FIT profile (Profile.xlsx, ``workout_step``) declares ``custom_target_cadence_low/high`` in
``rpm``.  For running, FIT counts a cadence "revolution" as one stride, i.e. two steps: a Garmin running record with
``cadence = 79`` and ``fractional_cadence = 0.5`` is shown by Garmin as 159 steps per minute (GoldenCheetah issue
#2060, "Running Cadence in Garmin FIT use fractional_cadence"; trevordavies095/tempo issue #161 "Running cadence
from FIT is half of Garmin"), and Downbeat's FIT reader doubles it the same way (:mod:`profiles.fit`).  So
targets are written in strides per minute, half the plan's steps per minute (``cadence_unit="rpm"``, the
default).  No primary source was found that states the unit of workout *targets* specifically (Garmin's docs and
forums in the search corpus say nothing either way) and no watch was at hand to try it, so this is a reasoned
choice, not a verified one: ``cadence_unit="spm"`` writes steps per minute instead, should a watch show the
targets doubled.

Target band: a cadence target on a watch is a range (low..high) that it alerts outside of.  The band is centred on
the plan's target: ``low + high`` (in rpm, two steps each) equals the plan's target rounded to a whole step per
minute, and the band is about ``2 * band_spm`` wide (``band_spm`` = 4 by default, ~2.3 % at 170 spm: inside the
live coach's own tolerances of -3 %/+5 %, :class:`cues.planner.PlannerRules`).
"""

from __future__ import annotations

import datetime as _dt
import math
import zlib
from dataclasses import dataclass

import numpy as np

from . import _fit

CADENCE_UNITS = ("rpm", "spm")


@dataclass(frozen=True)
class WorkoutStep:
    """One plateau of the plan as a workout step.

    Attributes
    ----------
    start_m, distance_m : float
        Where the step starts on the course and how long it is (0 for time steps).
    duration_s : float
        Planned time of the step.
    grade_pct : float
        Plateau grade (distance-weighted mean when equal-target plateaus were merged).
    target_spm : float
        The plan's target cadence for the plateau (steps per minute).
    low, high : int
        Target band in the file's unit (``cadence_unit``).
    name : str
    """

    start_m: float
    distance_m: float
    duration_s: float
    grade_pct: float
    target_spm: float
    low: int
    high: int
    name: str


def cadence_band(target_spm: float, cadence_unit: str = "rpm", band_spm: float = 4.0) -> tuple:
    """``(low, high)`` integers in ``cadence_unit`` centred on ``target_spm`` (see the module docstring)."""
    if cadence_unit not in CADENCE_UNITS:
        raise ValueError(f"cadence_unit: {cadence_unit!r} is not one of {CADENCE_UNITS}")
    t = int(round(target_spm))
    if cadence_unit == "spm":
        w = max(1, int(round(band_spm)))
        return t - w, t + w
    # rpm: low + high = t (each rpm is two steps), width w of the same parity as t.
    w = max(1, int(round(band_spm)))
    if (w - t) % 2:
        w += 1
    return (t - w) // 2, (t + w) // 2


def workout_steps(profile, tempo_settings, *, cadence_unit: str = "rpm", band_spm: float = 4.0) -> list:
    """The plan's plateaus as :class:`WorkoutStep` (see the module docstring)."""
    from metronome.tempo import grade_plateaus, target_cadence

    has_distance = profile.total_distance_m > 0 and profile.kind != "workout"
    position, hold = (profile.distance_m, tempo_settings.hold_m) if has_distance else \
        (profile.time_s, tempo_settings.hold_s)
    plateaus = grade_plateaus(position, profile.grade_pct, hold, tempo_settings.hysteresis_pct)
    starts = np.array([p for p, _ in plateaus], dtype=np.float64)
    levels = [float(g) for _, g in plateaus]
    targets = [float(target_cadence(g, tempo_settings)) for g in levels]
    # Plateau starts -> time and distance.
    t_start = np.interp(starts, profile.distance_m, profile.time_s) if has_distance else starts
    d_start = starts if has_distance else np.interp(starts, profile.time_s, profile.distance_m)
    t_start[0], d_start[0] = 0.0, 0.0
    # Merge neighbours with the same target (no tempo change between them).
    groups = []
    for i, tgt in enumerate(targets):
        if groups and groups[-1][1] == tgt:
            groups[-1][2].append(i)
        else:
            groups.append([i, tgt, [i]])
    by_distance = profile.total_distance_m > 0
    total_d, total_t = profile.total_distance_m, profile.duration_s
    # Boundaries rounded once (cm / ms), so the steps add up exactly to the rounded total.
    bounds = [g[0] for g in groups]
    b_d = [round(float(d_start[i]) * 100) for i in bounds] + [round(total_d * 100)]
    b_t = [float(t_start[i]) for i in bounds] + [total_t]
    out = []
    for k, (_, tgt, members) in enumerate(groups):
        ends = [float(d_start[j + 1]) if j + 1 < len(levels) else total_d for j in members]
        lens = [max(e - float(d_start[j]), 0.0) for j, e in zip(members, ends)]
        w = sum(lens)
        g = sum(levels[j] * ln for j, ln in zip(members, lens)) / w if w > 0 else levels[members[0]]
        lo, hi = cadence_band(tgt, cadence_unit, band_spm)
        name = _fit.fit_name(f"{g:.0f}% {tgt:.0f} spm", _fit.NAME_BYTES)
        out.append(WorkoutStep(start_m=b_d[k] / 100.0, distance_m=(b_d[k + 1] - b_d[k]) / 100.0 if by_distance else 0.0,
                               duration_s=b_t[k + 1] - b_t[k], grade_pct=g, target_spm=tgt, low=lo, high=hi,
                               name=name))
    # A zero-length step (a plateau shorter than the rounding) would be an open step on a watch: fold it.
    key = (lambda s: s.distance_m) if by_distance else (lambda s: s.duration_s)
    kept = [s for s in out if key(s) > 0]
    return kept or out[:1]


@dataclass(frozen=True)
class WorkoutExport:
    data: bytes
    steps: tuple
    cadence_unit: str
    warnings: tuple = ()


def build_workout(profile, tempo_settings, *, name: str | None = None, cadence_unit: str = "rpm",
                  band_spm: float = 4.0, start: _dt.datetime = _fit.DEFAULT_START) -> WorkoutExport:
    """Encode a FIT workout file: one step per plateau with a cadence target.

    Raises
    ------
    MissingExtraError
        fit-tool is not installed.
    """
    _fit.fit_tool()
    from fit_tool.fit_file_builder import FitFileBuilder
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.workout_message import WorkoutMessage
    from fit_tool.profile.messages.workout_step_message import WorkoutStepMessage
    from fit_tool.profile.profile_type import (FileType, Intensity, Manufacturer, Sport, WorkoutStepDuration,
                                               WorkoutStepTarget)

    steps = workout_steps(profile, tempo_settings, cadence_unit=cadence_unit, band_spm=band_spm)
    by_distance = profile.total_distance_m > 0
    title = _fit.fit_name(name if name is not None else profile.name, _fit.NAME_BYTES) or "Downbeat workout"
    builder = FitFileBuilder(auto_define=True, min_string_size=_fit.NAME_BYTES + 1)

    m = FileIdMessage()
    m.type = FileType.WORKOUT
    m.manufacturer = Manufacturer.DEVELOPMENT.value
    m.product = 0
    m.time_created = _fit.fit_ms(start)
    key = f"{title}|{profile.total_distance_m:.1f}|{len(steps)}".encode("utf-8")
    m.serial_number = (zlib.crc32(key) & 0x7FFFFFFF) or 1
    builder.add(m)

    m = WorkoutMessage()
    m.workout_name = title
    m.sport = Sport.RUNNING
    m.num_valid_steps = len(steps)
    builder.add(m)

    for k, s in enumerate(steps):
        w = WorkoutStepMessage()
        w.message_index = k
        w.workout_step_name = s.name
        w.intensity = Intensity.ACTIVE
        if by_distance:
            w.duration_type = WorkoutStepDuration.DISTANCE
            w.duration_distance = s.distance_m
        else:
            w.duration_type = WorkoutStepDuration.TIME
            w.duration_time = max(1.0, float(math.floor(s.duration_s * 1000 + 0.5) / 1000))
        w.target_type = WorkoutStepTarget.CADENCE
        w.target_value = 0  # 0 = custom range (FIT profile: target_cadence_zone 0 means custom low/high)
        w.custom_target_cadence_low = int(s.low)
        w.custom_target_cadence_high = int(s.high)
        builder.add(w)

    return WorkoutExport(data=builder.build().to_bytes(), steps=tuple(steps), cadence_unit=cadence_unit)
