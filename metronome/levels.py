"""One streaming level tracker (hysteresis + hold), used over arrays (renders) and live (sensor feeds).

A noisy signal (grade) is followed by a *level* that changes only when the signal stays on one side of the level by
at least ``hysteresis`` for at least ``hold`` (a Schmitt trigger with a dwell time).  The new level is the mean of
the raw values over the held stretch, and it takes effect where the stretch began.  The offline tempo map
(:func:`metronome.tempo.grade_plateaus`) runs this tracker over a profile's arrays and the live grade filter
(:class:`metronome.sensors.filter.GradeFilter`) pushes readings into it one at a time, so a render and a live replay
of the same course react to the same grade changes by the same rule.

No dependencies but numpy: part of the ground floor every package may import.
"""

from __future__ import annotations

import numpy as np


class LevelTracker:
    """Hysteresis level with a dwell time, fed one value at a time.

    Parameters
    ----------
    hysteresis : float
        How far (same unit as the values) the signal must move from the level.
    hold : float
        How long the move must be held, in the unit of ``position`` passed to :meth:`push`.
    hold_alt : float, optional
        A second hold in another unit (``position_alt``): the move is adopted when *either* hold is reached
        (live feeds hold 15 s or 60 m, whichever comes first).

    A run (the signal on one side of the level by at least ``hysteresis``) ends when the signal comes back within
    ``hysteresis`` or crosses to the other side; the sample that ends a run does not start a new one.
    """

    __slots__ = ("hysteresis", "hold", "hold_alt", "level", "_start", "_start_alt", "_sign", "_run",
                 "change_position", "change_position_alt")

    def __init__(self, hysteresis: float, hold: float, hold_alt: float | None = None):
        self.hysteresis = float(hysteresis)
        self.hold = float(hold)
        self.hold_alt = None if hold_alt is None else float(hold_alt)
        self.level: float | None = None
        self.change_position: float | None = None
        self.change_position_alt: float | None = None
        self.reset(None)

    def reset(self, level: float | None) -> None:
        """Set the level outright (a first value, or the first after a dropout) and forget any run."""
        self.level = level
        self._start = None
        self._start_alt = None
        self._sign = 0
        self._run: list[float] = []

    def push(self, value: float, position: float, raw: float | None = None,
             position_alt: float | None = None) -> bool:
        """Feed one value; True when the level changed (then :attr:`level` and :attr:`change_position` say how).

        ``value`` is compared with the level (a smoothed grade, say); ``raw`` (default ``value``) is what the new
        level averages.  ``position_alt`` may be None (no second unit for this value).
        """
        if self.level is None:
            self.reset(value)
            return False
        diff = value - self.level
        sign = 1 if diff > 0 else -1
        if abs(diff) < self.hysteresis or (self._start is not None and sign != self._sign):
            self._start = None
            return False
        if self._start is None:
            self._start, self._start_alt, self._sign = position, position_alt, sign
            self._run = []
        elif position_alt is not None and self._start_alt is not None and position_alt < self._start_alt:
            # The alternate position went back (a sender reset its odometer): restart that leg of the hold here.
            self._start_alt = position_alt
        self._run.append(value if raw is None else raw)
        held = position - self._start >= self.hold
        if not held and self.hold_alt is not None and position_alt is not None and self._start_alt is not None:
            held = position_alt - self._start_alt >= self.hold_alt
        if not held:
            return False
        # numpy's mean (pairwise summation) of the held stretch: the same bits whether the values came from an
        # array slice (renders) or one at a time (live), so both clocks adopt exactly the same level.
        self.level = float(np.mean(np.array(self._run, dtype=np.float64)))
        self.change_position, self.change_position_alt = self._start, self._start_alt
        self._start = None
        return True


def plateaus(position, values, hold: float, hysteresis: float, first_level: float) -> list[tuple[float, float]]:
    """Run a :class:`LevelTracker` over arrays: ``[(start_position, level), ...]``, starting at ``first_level``."""
    tracker = LevelTracker(hysteresis, hold)
    tracker.reset(float(first_level))
    out = [(float(position[0]), float(first_level))]
    for i in range(1, len(position)):
        if tracker.push(float(values[i]), float(position[i])):
            out.append((float(tracker.change_position), tracker.level))
    return out


class SchmittTrigger:
    """Enter/exit thresholds, each with a dwell: "inside a descent" for the cue planner, fed one value at a time.

    Outside, a stretch with ``value <= enter`` held for ``enter_hold`` (in the unit of ``position``) enters; inside,
    a stretch with ``value > exit`` held for ``exit_hold`` exits.  Either takes effect where its stretch began:
    :attr:`since` is the ``tag`` (an index, a sample) passed with the first value of that stretch.  The offline
    planner runs it over a profile's arrays (:func:`cues.terrain.hysteresis_runs`), the live planner one reading at
    a time, so both find the same descents.
    """

    __slots__ = ("enter", "exit", "enter_hold", "exit_hold", "inside", "since", "_cand")

    def __init__(self, enter: float, exit: float, enter_hold: float, exit_hold: float):
        self.enter, self.exit = float(enter), float(exit)
        self.enter_hold, self.exit_hold = float(enter_hold), float(exit_hold)
        self.inside = False
        self.since = None  # tag where the current state's qualifying stretch began
        self._cand = None  # (position, tag) where a stretch that may flip the state began

    def feed(self, value: float, position: float, tag=None):
        """Advance; return ``"enter"``, ``"exit"`` or ``None``."""
        flips = value > self.exit if self.inside else value <= self.enter
        if not flips:
            self._cand = None
            return None
        if self._cand is None:
            self._cand = (position, tag)
        if position - self._cand[0] >= (self.exit_hold if self.inside else self.enter_hold):
            self.inside = not self.inside
            self.since = self._cand[1]
            self._cand = None
            return "enter" if self.inside else "exit"
        return None
