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
#: ``--clicks``: the click level of each mode (dB relative to the normal clicks; None: no clicks).
CLICK_MODES = ("on", "soft", "off")
SOFT_CLICK_DB = -12.0


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
    clicks : str
        ``on``, ``soft`` (:data:`SOFT_CLICK_DB` quieter) or ``off`` (no clicks; cues and music still play).
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
    clicks: str = "on"

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
        if self.clicks not in CLICK_MODES:
            raise InputError(f"clicks: {self.clicks!r} is not one of {', '.join(CLICK_MODES)}", field="clicks")
        if not (2 <= self.n_voices <= 64):
            raise InputError(f"n_voices: {self.n_voices!r} is outside 2..64")


@dataclass(frozen=True)
class MusicSettings:
    """The runner's own music under the coach (``--music``): levels, ducking and the read-ahead ring.

    Attributes
    ----------
    click_level_db : float
        Loudness of the clicks above the music's (dB, ITU-R BS.1770 / EBU R128 loudness of a click train at the
        session's cadence against each track's integrated loudness).  Every track is normalised to
        ``click_lufs - click_level_db``: the clicks keep their level (they already peak just under the ceiling)
        and the music sits under them.  0 dB already puts each click ~10 dB above the music while it sounds: a
        25 ms click every 350 ms (170 spm) is on 7 % of the time, so its power while on is 10 log10(1/0.07) =
        11.5 dB above its integrated loudness.  Raise it if the clicks drown in dense music.
    duck_db : float
        Music gain while a cue is spoken (-10 dB, the figure issue 17 asks for: speech over a music bed stays
        intelligible with the bed about 10 dB down, the usual voice-over ducking depth).
    attack_s, release_s : float
        Time constants of the music's duck ramps (one-pole): 20 ms down (speech must win at once, but without a
        step that would click), 250 ms back up (a fast return is heard as pumping).
    coach_gain_db : float
        Clicks and cues are lowered by this while music plays, and every track's peak is held under the rest of
        the ceiling (``ceiling x (1 - 10^(coach_gain_db/20))``): the sum never reaches the ceiling, so the limiter
        stays a safety net that never acts (no pumping of the music at each click).  -6 dB shares the ceiling
        half and half; the clicks' loudness, and so the music's, is measured after it.
    max_gain_db : float
        Largest normalisation gain a quiet track gets (a near-silent intro would otherwise be raised to noise).
    once : bool
        Play the playlist once (``--music-once``) instead of repeating it until the session ends.
    ring_s : float
        Read-ahead of live play: seconds of decoded music the worker keeps ahead of the audio callback (must
        cover decoding the next track, ~1 s for a 5-minute OGG on the 2-core test VM).
    max_track_s : float
        Longest track accepted (each track is decoded whole: its loudness needs all of it; 30 min of 48 kHz
        stereo float32 is 690 MB).
    sync : bool
        ``--music-sync``: stretch every track (pitch kept) so its beats fall on the steps (:mod:`metronome.music.sync`).
    max_stretch : float
        Largest relative stretch of a synced track, either way (0.10: +-10 %, the limit issue 17 sets: beyond
        it a stretch is heard, and a song slowed or sped that much no longer sounds like itself).
    """

    click_level_db: float = 0.0
    duck_db: float = -10.0
    attack_s: float = 0.020
    release_s: float = 0.250
    coach_gain_db: float = -6.0
    max_gain_db: float = 20.0
    once: bool = False
    ring_s: float = 20.0
    max_track_s: float = 1800.0
    sync: bool = False
    max_stretch: float = 0.10

    def __post_init__(self):
        if not (math.isfinite(self.max_stretch) and 0.0 < self.max_stretch <= 0.10):
            raise InputError(f"max_stretch: {self.max_stretch!r} is outside (0, 0.10]", field="max_stretch")
        if not (math.isfinite(self.click_level_db) and -20.0 <= self.click_level_db <= 40.0):
            raise InputError(f"click_level_db: {self.click_level_db!r} is outside -20..40 dB", field="click_level_db")
        if not (math.isfinite(self.duck_db) and -40.0 <= self.duck_db <= 0.0):
            raise InputError(f"music_duck_db: {self.duck_db!r} is outside -40..0 dB", field="music_duck_db")
        if not (math.isfinite(self.coach_gain_db) and -20.0 <= self.coach_gain_db <= -1.0):
            raise InputError(f"coach_gain_db: {self.coach_gain_db!r} is outside -20..-1 dB", field="coach_gain_db")
        for name in ("attack_s", "release_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0005 <= v <= 5.0):
                raise InputError(f"{name}: {v!r} is outside 0.0005..5 s", field=name)
        if not (math.isfinite(self.ring_s) and 2.0 <= self.ring_s <= 120.0):
            raise InputError(f"ring_s: {self.ring_s!r} is outside 2..120 s", field="ring_s")


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
