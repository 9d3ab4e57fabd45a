"""A runner profile: what ``downbeat learn`` found in a runner's own activities, saved as YAML.

File (``$XDG_CONFIG_HOME/downbeat/runner.yaml`` by default, ``~/.config/downbeat/runner.yaml`` without it)::

    kind: runner
    name: runner
    flat_pace_s_per_km: 352.1
    base_cadence_spm: 166.0          # absent when no run had cadence
    pace_curve:                      # grade bins the runs covered: mean grade, time per metre relative to flat
      - {grade_pct: -19.6, factor: 1.02, distance_m: 1840}
      - {grade_pct: 0.1, factor: 1.0, distance_m: 5210}
    cadence_curve:                   # median cadence per grade bin (running samples only)
      - {grade_pct: -19.6, cadence_spm: 171.0, distance_m: 1840}
    sources: [run1.fit, run2.gpx]

How the lead uses it (render, play, profile show)::

    from metronome.history.runner import apply_runner, load_runner_or_default
    runner = load_runner_or_default(runner_path)         # --runner FILE, else the default file, else None
    if runner is not None:
        profile = apply_runner(profile, runner)          # course timing by the runner's curve; base cadence

Precedence for the base cadence stays with the caller: ``--base-cadence`` beats ``profile.base_cadence_spm``, which
:func:`apply_runner` sets from the runner profile when it has one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from metronome import safeyaml
from metronome.errors import InputError
from ..atomic import atomic_file
from ..limits import MAX_GRADE_PCT
from profiles import pace
from profiles.course import BASE_CADENCE_RANGE_SPM

#: Learned factors outside this range are not a runner's pace on a grade but bad data (a lift, a long stop).
FACTOR_RANGE = (0.3, 12.0)
MAX_CURVE_POINTS = 200
RUNNER_KEYS = {"kind", "name", "flat_pace_s_per_km", "base_cadence_spm", "pace_curve", "cadence_curve", "sources"}


class RunnerError(InputError):
    """A runner profile file cannot be used (``file: field: problem``)."""


def default_runner_path() -> Path:
    """``$XDG_CONFIG_HOME/downbeat/runner.yaml``, or ``~/.config/downbeat/runner.yaml`` (XDG Base Directory spec)."""
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "downbeat" / "runner.yaml"


@dataclass(frozen=True)
class RunnerProfile:
    """A runner's flat pace, grade -> pace curve, base cadence and cadence vs grade.

    Attributes
    ----------
    flat_pace_s_per_km : float
    pace_curve : tuple of (grade_pct, factor, distance_m)
        Time per metre relative to the flat, at the mean grade of each learned bin, sorted by grade; the distance
        the bin was learned from.  Between points: linear; beyond the learned range: the default model
        (:func:`profiles.pace.grade_factor`) scaled to meet the last point.
    base_cadence_spm : float or None
        Median cadence on the flat while running; ``None`` if no run had cadence.
    cadence_curve : tuple of (grade_pct, cadence_spm, distance_m)
    sources : tuple of str
    """

    flat_pace_s_per_km: float
    pace_curve: tuple = ()
    base_cadence_spm: float | None = None
    cadence_curve: tuple = ()
    name: str = "runner"
    sources: tuple = field(default_factory=tuple)

    def __post_init__(self):
        pace.check_flat_pace(self.flat_pace_s_per_km, "flat_pace_s_per_km")
        curve = tuple(sorted((float(g), float(f), float(d)) for g, f, d in self.pace_curve))
        object.__setattr__(self, "pace_curve", curve)
        object.__setattr__(self, "cadence_curve",
                           tuple(sorted((float(g), float(c), float(d)) for g, c, d in self.cadence_curve)))
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))

    def grade_factor(self, grade_pct):
        """Relative time per metre at grade(s) ``grade_pct``: the learned curve, the default model beyond it."""
        g = np.clip(np.asarray(grade_pct, dtype=np.float64), *pace.MODEL_GRADE_RANGE_PCT)
        default = pace.grade_factor(g)
        if not self.pace_curve:
            return default
        xs = np.array([p[0] for p in self.pace_curve])
        fs = np.array([p[1] for p in self.pace_curve])
        inside = np.interp(g, xs, fs)
        low = pace.grade_factor(xs[0])
        high = pace.grade_factor(xs[-1])
        out = np.where(g < xs[0], default * fs[0] / low, inside)
        return np.where(g > xs[-1], default * fs[-1] / high, out)

    def cadence_at(self, grade_pct):
        """The runner's usual cadence at a grade (steps/min), or ``None`` without cadence data."""
        if not self.cadence_curve:
            return None if self.base_cadence_spm is None else np.full(np.shape(grade_pct), self.base_cadence_spm)
        xs = np.array([p[0] for p in self.cadence_curve])
        cs = np.array([p[1] for p in self.cadence_curve])
        return np.interp(grade_pct, xs, cs)

    def to_dict(self) -> dict:
        doc = {"kind": "runner", "name": self.name, "flat_pace_s_per_km": round(self.flat_pace_s_per_km, 1)}
        if self.base_cadence_spm is not None:
            doc["base_cadence_spm"] = round(float(self.base_cadence_spm), 1)
        doc["pace_curve"] = [{"grade_pct": round(g, 2), "factor": round(f, 4), "distance_m": round(d)}
                             for g, f, d in self.pace_curve]
        if self.cadence_curve:
            doc["cadence_curve"] = [{"grade_pct": round(g, 2), "cadence_spm": round(c, 1), "distance_m": round(d)}
                                    for g, c, d in self.cadence_curve]
        doc["sources"] = list(self.sources)
        return doc


def save_runner(runner: RunnerProfile, path) -> Path:
    """Write ``runner`` as YAML to ``path`` atomically (a temporary file in the same folder, then ``os.replace``):
    an existing profile is never left half-written."""
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Downbeat runner profile, written by `downbeat learn`.\n" + \
        yaml.safe_dump(runner.to_dict(), sort_keys=False, default_flow_style=None, width=120)
    with atomic_file(path) as f:
        f.write(text)
    return path


def _num(display, field_name, value, lo, hi) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunnerError(f"{display}: {field_name}: {safeyaml.short(value)} is not a number")
    x = float(value)
    if not (math.isfinite(x) and lo <= x <= hi):
        raise RunnerError(f"{display}: {field_name}: {safeyaml.short(value)} is outside {lo:g}..{hi:g}")
    return x


def _curve(display, doc, key, value_key, lo, hi) -> tuple:
    items = doc.get(key, [])
    if items is None:
        return ()
    if not isinstance(items, list) or len(items) > MAX_CURVE_POINTS:
        raise RunnerError(f"{display}: {key}: {safeyaml.short(items)} is not a list of at most "
                          f"{MAX_CURVE_POINTS} points")
    out = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or set(item) - {"grade_pct", value_key, "distance_m"} or \
                not {"grade_pct", value_key} <= set(item):
            raise RunnerError(f"{display}: {where}: {safeyaml.short(item)} is not a mapping with grade_pct and "
                              f"{value_key}")
        g = _num(display, f"{where}.grade_pct", item["grade_pct"], -MAX_GRADE_PCT, MAX_GRADE_PCT)
        v = _num(display, f"{where}.{value_key}", item[value_key], lo, hi)
        d = _num(display, f"{where}.distance_m", item.get("distance_m", 0.0), 0.0, 1e7)
        out.append((g, v, d))
    if len({g for g, _, _ in out}) != len(out):
        raise RunnerError(f"{display}: {key}: two points at the same grade_pct")
    return tuple(out)


def load_runner(path) -> RunnerProfile:
    """Read a runner profile; every problem is a one-line :class:`RunnerError` naming the file and field."""
    display = os.fspath(path)
    try:
        data = Path(display).read_bytes()
    except FileNotFoundError:
        raise RunnerError(f"{display}: no such file") from None
    except IsADirectoryError:
        raise RunnerError(f"{display}: is a directory, not a runner profile") from None
    except OSError as exc:
        raise RunnerError(f"{display}: cannot read ({exc.strerror or exc})") from None
    if len(data) > 1 << 20:
        raise RunnerError(f"{display}: larger than 1 MiB: not a runner profile")
    doc = safeyaml.load(data, display, RunnerError)
    if not isinstance(doc, dict):
        raise RunnerError(f"{display}: expected a mapping (kind: runner), got {type(doc).__name__}")
    if doc.get("kind") != "runner":
        raise RunnerError(f"{display}: kind: {safeyaml.short(doc.get('kind'))} is not 'runner'")
    unknown = sorted(str(k) for k in doc if k not in RUNNER_KEYS)
    if unknown:
        raise RunnerError(f"{display}: {safeyaml.short(unknown[0])}: unknown field "
                          f"(expected one of: {', '.join(sorted(RUNNER_KEYS))})")
    if "flat_pace_s_per_km" not in doc:
        raise RunnerError(f"{display}: flat_pace_s_per_km: missing")
    lo, hi = pace.FLAT_PACE_RANGE_S_PER_KM
    flat = _num(display, "flat_pace_s_per_km", doc["flat_pace_s_per_km"], lo, hi)
    base = doc.get("base_cadence_spm")
    if base is not None:
        base = _num(display, "base_cadence_spm", base, *BASE_CADENCE_RANGE_SPM)
    name = doc.get("name", "runner")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise RunnerError(f"{display}: name: {safeyaml.short(name)} is not a short non-empty string")
    sources = doc.get("sources", []) or []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise RunnerError(f"{display}: sources: {safeyaml.short(sources)} is not a list of file names")
    return RunnerProfile(flat_pace_s_per_km=flat, base_cadence_spm=base, name=name.strip(),
                         pace_curve=_curve(display, doc, "pace_curve", "factor", *FACTOR_RANGE),
                         cadence_curve=_curve(display, doc, "cadence_curve", "cadence_spm", *BASE_CADENCE_RANGE_SPM),
                         sources=tuple(sources))


def load_runner_or_default(path=None) -> RunnerProfile | None:
    """``path`` if given (must exist), else the default file if it exists, else ``None``."""
    if path is not None:
        return load_runner(path)
    default = default_runner_path()
    return load_runner(default) if default.is_file() else None


def predict_time_s(profile, runner: RunnerProfile | None = None, flat_pace_s_per_km=None,
                   start_m: float = 0.0, end_m: float | None = None) -> float:
    """Time (s) the pace model gives for ``start_m..end_m`` of ``profile``'s grade: the runner's curve and flat pace,
    or without a runner the default model at ``flat_pace_s_per_km`` (default 5:30 min/km)."""
    d = profile.distance_m
    end_m = float(d[-1]) if end_m is None else end_m
    if runner is not None:
        t = pace.elapsed_time_s(d, profile.grade_pct, runner.flat_pace_s_per_km, factor=runner.grade_factor)
    else:
        t = pace.elapsed_time_s(d, profile.grade_pct, flat_pace_s_per_km or pace.DEFAULT_FLAT_PACE_S_PER_KM)
    return float(np.interp(end_m, d, t) - np.interp(start_m, d, t))


def apply_runner(profile, runner: RunnerProfile):
    """``profile`` as this runner would run it.

    * courses (``kind == "course"``, timed by the pace model): time and speed from the runner's flat pace and
      grade -> pace curve;
    * recorded activities and treadmill workouts keep their timing (it is real or written);
    * every kind takes the runner's base cadence when the runner profile has one (a ``--base-cadence`` flag still
      wins: the caller passes it to ``session.tempo_settings_for``).
    """
    changes = {}
    notes = list(profile.notes)
    if profile.kind == "course":
        t = pace.elapsed_time_s(profile.distance_m, profile.grade_pct, runner.flat_pace_s_per_km,
                                factor=runner.grade_factor)
        changes["time_s"] = t
        changes["speed_mps"] = pace.speed_mps(profile.grade_pct, runner.flat_pace_s_per_km, runner.grade_factor)
        notes = [n for n in notes if not n.startswith("pace model")]
        notes.append(f"runner profile {runner.name}, flat {pace.format_pace(runner.flat_pace_s_per_km)} min/km")
    if runner.base_cadence_spm is not None:
        changes["base_cadence_spm"] = float(runner.base_cadence_spm)
        if profile.kind != "course":
            notes.append(f"runner profile {runner.name}: base cadence {runner.base_cadence_spm:.0f} spm")
    if not changes:
        return profile
    changes["notes"] = tuple(notes)
    return dataclasses.replace(profile, **changes)
