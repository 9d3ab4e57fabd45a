"""Session settings as frozen dataclasses: the one place each default and limit of the engine and the tempo model
lives (the CLI reads its option defaults from here).  Plain Python, cheap to import (no numpy, no numba).

Errors name the field (``samplerate: 5 is not ...``) and carry it in ``InputError.field``; only the CLI speaks of
flags (it maps fields to its options when it prints the message).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import InputError

MAX_UPPER_CAP = 1.10


@dataclass(frozen=True)
class EngineSettings:
    """Output and mixing parameters.

    Attributes
    ----------
    samplerate : int
    channels : int
        The mono mix is copied to every channel (headphones want 2).
    ceiling_dbfs : float
        Output peak never exceeds this (default -6 dBFS), whatever clicks and cues are mixed.
    volume_db : float
        Master volume, <= 0 dB: Downbeat never applies positive gain to the user's system.
    duck_db : float
        Click level while speech plays (-6 dB).
    accent_every : int
        Accent every N steps (0: no accent).
    n_voices : int
        Size of the fixed voice pool.
    """

    samplerate: int = 48000
    channels: int = 2
    ceiling_dbfs: float = -6.0
    volume_db: float = 0.0
    duck_db: float = -6.0
    accent_every: int = 4
    n_voices: int = 8

    def __post_init__(self):
        if not (isinstance(self.samplerate, numbers.Integral) and not isinstance(self.samplerate, bool) and 8000 <= self.samplerate <= 384000):
            raise InputError(f"samplerate: {self.samplerate!r} is not an integer in 8000..384000", field="samplerate")
        if self.channels not in (1, 2):
            raise InputError(f"channels: {self.channels!r} is not 1 or 2", field="channels")
        if not (math.isfinite(self.ceiling_dbfs) and -60.0 <= self.ceiling_dbfs <= 0.0):
            raise InputError(f"ceiling_dbfs: {self.ceiling_dbfs!r} is outside -60..0 dBFS", field="ceiling_dbfs")
        if not (math.isfinite(self.volume_db) and -60.0 <= self.volume_db <= 0.0):
            raise InputError(f"volume_db: {self.volume_db!r} is outside -60..0 dB (never positive gain)", field="volume_db")
        if not (math.isfinite(self.duck_db) and -40.0 <= self.duck_db <= 0.0):
            raise InputError(f"duck_db: {self.duck_db!r} is outside -40..0 dB", field="duck_db")
        if not (0 <= self.accent_every <= 64):
            raise InputError(f"accent_every: {self.accent_every!r} is outside 0..64", field="accent_every")
        if not (2 <= self.n_voices <= 64):
            raise InputError(f"n_voices: {self.n_voices!r} is outside 2..64")


@dataclass(frozen=True)
class TempoSettings:
    """Parameters of the grade -> cadence model and of tempo changes.

    Attributes
    ----------
    base_cadence_spm : float
        The runner's cadence on the flat (steps per minute; one click per step).
    lower_cap, upper_cap : float
        Clamp of the cadence factor (``upper_cap`` may be raised by the user up to 1.10).
    down_gain_per_pct, steep_gain_per_pct : float
        Factor change per grade point beyond the dead zones.
    down_deadzone_pct, steep_threshold_pct : float
    max_change_per_beat : float
        Ramp limit, relative tempo change per beat (0.004 = 0.4 %).
    hysteresis_pct : float
        Grade change (points) needed before the tempo reacts...
    hold_m, hold_s : float
        ...held over this distance (distance profiles) or this time (time-only profiles / live feeds).
    """

    base_cadence_spm: float = 170.0
    lower_cap: float = 0.94
    upper_cap: float = 1.08
    down_gain_per_pct: float = 0.005
    steep_gain_per_pct: float = 0.005
    down_deadzone_pct: float = 2.0
    steep_threshold_pct: float = 8.0
    max_change_per_beat: float = 0.004
    hysteresis_pct: float = 1.0
    hold_m: float = 60.0
    hold_s: float = 15.0

    def __post_init__(self):
        if not (math.isfinite(self.base_cadence_spm) and 60.0 <= self.base_cadence_spm <= 240.0):
            raise InputError(f"base_cadence_spm: {self.base_cadence_spm!r} is outside 60..240 steps per minute", field="base_cadence_spm")
        if not (1.0 <= self.upper_cap <= MAX_UPPER_CAP):
            raise InputError(f"upper_cap: {self.upper_cap!r} is outside 1.00..{MAX_UPPER_CAP:.2f}", field="upper_cap")
        if not (0.5 <= self.lower_cap <= 1.0):
            raise InputError(f"lower_cap: {self.lower_cap!r} is outside 0.50..1.00", field="lower_cap")
        if not (0.0 < self.max_change_per_beat <= 0.05):
            raise InputError(f"max_change_per_beat: {self.max_change_per_beat!r} is outside (0, 0.05]")

    @property
    def min_bpm(self) -> float:
        return self.base_cadence_spm * self.lower_cap

    @property
    def max_bpm(self) -> float:
        return self.base_cadence_spm * self.upper_cap
