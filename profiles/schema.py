"""The Profile contract: what every importer (YAML, GPX, FIT, TCX) produces.

A profile is a course or workout resampled onto a regular grid.  Every array has one entry per grid point and is
read-only (a frozen dataclass holding mutable arrays would not be frozen at all).  The tempo model and the cue
planner consume only this type, never a file format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Kinds of profile. ``course``: distance-based (timing from the pace model); ``workout``: time-based treadmill
#: session (timing given); ``activity``: a recorded run whose own timestamps may be used.
PROFILE_KINDS = ("course", "workout", "activity")


def _readonly(values, name: str) -> np.ndarray:
    arr = np.array(values, dtype=np.float64, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Tag:
    """A stretch of the course carrying a label, e.g. ``technical`` or ``surface=scree``."""

    start_m: float
    end_m: float
    label: str


@dataclass(frozen=True)
class Profile:
    """A course or workout on a regular grid.

    Attributes
    ----------
    name : str
        Human name (bundled name, YAML ``name`` or the file stem).
    source : str
        Path or ``bundled:NAME`` it was loaded from; used in error messages.
    kind : str
        One of :data:`PROFILE_KINDS`.
    distance_m : ndarray
        Cumulative distance at each grid point, non-decreasing, starts at 0.
    elevation_m : ndarray
        Elevation at each grid point (for workouts: the virtual climb implied by incline x distance).
    grade_pct : ndarray
        Smoothed gradient at each point, percent, negative downhill.
    time_s : ndarray
        Elapsed time at each point, strictly increasing, starts at 0.
    speed_mps : ndarray
        Running speed at each point (pace model, workout speed or recorded speed).
    tags : tuple of Tag
        Labelled stretches (technical terrain, surface).
    base_cadence_spm : float or None
        The runner's level cadence if the file names one (CLI flag wins).
    recorded_cadence_spm : ndarray or None
        Optional (added for issue 3): cadence recorded by the device at each grid point (steps per minute), for
        activities that have it; ``None`` otherwise.  Read-only like the other arrays.
    notes : tuple of str
    lat_deg, lon_deg : ndarray or None
        Optional (added for issue 14): WGS84 position of each grid point, interpolated by distance from the file's
        points, for courses read from GPX/FIT/TCX with coordinates; ``None`` for YAML courses and workouts (a
        course follower then works on distance readings alone).  Read-only like the other arrays.
    elevation_noise_m : float
        RMS jitter of the raw elevation fixes (0 for authored courses); sets the totals' counting threshold.
        Optional (added for issue 3): how the profile was derived (smoothing window, timing source), for
        summaries.  Never needed by the tempo model or the cue planner.
    warnings : tuple of str
        Problems found in the file and worked around (a dropped outlier, placeholder elevations, unusable
        timestamps, skipped legs of a multisport file), one line each, prefixed with the file's name.  The CLI
        prints them as ``downbeat: warning: ...`` (via :func:`metronome.session.plan_session`).
    """

    name: str
    source: str
    kind: str
    distance_m: np.ndarray
    elevation_m: np.ndarray
    grade_pct: np.ndarray
    time_s: np.ndarray
    speed_mps: np.ndarray
    tags: tuple = field(default_factory=tuple)
    base_cadence_spm: float | None = None
    recorded_cadence_spm: np.ndarray | None = None
    notes: tuple = field(default_factory=tuple)
    elevation_noise_m: float = 0.0
    warnings: tuple = field(default_factory=tuple)
    lat_deg: np.ndarray | None = None
    lon_deg: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in PROFILE_KINDS:
            raise ValueError(f"{self.source}: kind: {self.kind!r} is not one of {PROFILE_KINDS}")
        n = None
        for name in ("distance_m", "elevation_m", "grade_pct", "time_s", "speed_mps"):
            arr = _readonly(getattr(self, name), name)
            object.__setattr__(self, name, arr)
            if n is None:
                n = arr.size
            elif arr.size != n:
                raise ValueError(f"{self.source}: {name}: {arr.size} points, expected {n}")
        if n < 2:
            raise ValueError(f"{self.source}: a profile needs at least 2 points, got {n}")
        if not np.all(np.isfinite(self.grade_pct)) or not np.all(np.isfinite(self.time_s)):
            raise ValueError(f"{self.source}: grade_pct/time_s contain NaN or inf")
        if np.any(np.diff(self.time_s) <= 0):
            raise ValueError(f"{self.source}: time_s must be strictly increasing")
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        if self.recorded_cadence_spm is not None:
            cad = _readonly(self.recorded_cadence_spm, "recorded_cadence_spm")
            if cad.size != n:
                raise ValueError(f"{self.source}: recorded_cadence_spm: {cad.size} points, expected {n}")
            object.__setattr__(self, "recorded_cadence_spm", cad)
        if (self.lat_deg is None) != (self.lon_deg is None):
            raise ValueError(f"{self.source}: lat_deg and lon_deg come together")
        if self.lat_deg is not None:
            for name in ("lat_deg", "lon_deg"):
                arr = _readonly(getattr(self, name), name)
                if arr.size != n:
                    raise ValueError(f"{self.source}: {name}: {arr.size} points, expected {n}")
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{self.source}: {name} contains NaN or inf")
                object.__setattr__(self, name, arr)

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1])

    @property
    def total_distance_m(self) -> float:
        return float(self.distance_m[-1])

    @property
    def total_descent_m(self) -> float:
        return self.climb_totals_m[1]

    @property
    def total_ascent_m(self) -> float:
        return self.climb_totals_m[0]

    @property
    def counting_threshold_m(self) -> float:
        """Smallest rise or fall counted in the totals: 27x the recorded altimeter jitter, at most 3 m.

        Altimeter watches and GPX tools count a climb only once it exceeds what the sensor can resolve (a Schmitt
        trigger), so sensor jitter does not pile up into phantom metres.  Scaling the threshold with the jitter
        measured on the raw fixes (``elevation_noise_m``) makes one rule serve a barometric Edge (0.04 m jitter ->
        1.1 m), a Fenix 2 (0.1 m -> 2.6 m) and GPS-only tracks (0.9-1.6 m -> 3 m): all four within 5 % of the
        device's or gpxpy's own totals (tests/test_profiles_files.py).  The factor was calibrated on those four
        files (any factor from 25 to 28 gives the same result: Fenix 2 -0.3 %, Edge -1.5 %).  Authored courses and
        workouts have no jitter: plain sums.
        """
        return min(3.0, 27.0 * float(self.elevation_noise_m))

    @property
    def climb_totals_m(self) -> tuple:
        """(ascent, descent) in metres, counted with :attr:`counting_threshold_m`."""
        from .grade import climb_totals_m

        return climb_totals_m(self.elevation_m, self.counting_threshold_m)

    def grade_at_time(self, t_s) -> np.ndarray:
        """Grade (percent) at elapsed time(s) ``t_s``, linear between grid points."""
        return np.interp(t_s, self.time_s, self.grade_pct)

    def distance_at_time(self, t_s) -> np.ndarray:
        return np.interp(t_s, self.time_s, self.distance_m)

    def time_at_distance(self, d_m) -> np.ndarray:
        return np.interp(d_m, self.distance_m, self.time_s)
