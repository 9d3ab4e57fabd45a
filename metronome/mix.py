"""Sound design and the mix: output/mixing settings, the click sounds, mix levels and the clip bank.

Everything here is computed once before audio starts; the kernel only reads the resulting arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .settings import SOFT_CLICK_DB, EngineSettings


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


# ------------------------------------------------------------------------------------------------------------------
# Clicks and the clip bank
# ------------------------------------------------------------------------------------------------------------------
def synth_click(samplerate: int, freq_hz: float, duration_s: float, peak: float) -> np.ndarray:
    """A short, bright, woodblock-like click.

    Cosine phase and a 0.5 ms linear attack: the first sample is small but non-zero, so the click's onset is
    exactly its first sample (tests and latency measurements find it without guessing), and there is no step
    large enough to be heard as a pop.  An exponential decay ends in a 2 ms fade so the tail is exactly zero.
    """
    n = int(round(duration_s * samplerate))
    i = np.arange(n, dtype=np.float64)
    attack = max(1, int(round(0.0005 * samplerate)))
    env = np.minimum(1.0, (i + 1.0) / attack) * np.exp(-i / (0.25 * n))
    fade = max(1, int(round(0.002 * samplerate)))
    env[-fade:] *= np.linspace(1.0, 0.0, fade + 1)[1:]
    tone = np.cos(2 * np.pi * freq_hz * i / samplerate) + 0.3 * np.cos(2 * np.pi * 2.0 * freq_hz * i / samplerate)
    x = env * tone
    x *= peak / np.max(np.abs(x))
    return x.astype(np.float32)


ACCENT_REL = 0.9  # accent click peak, relative to the ceiling
NORMAL_REL = 0.64  # normal click peak (-3 dB under the accent)
SPEECH_MARGIN = 0.95


def mix_levels(settings: "EngineSettings") -> dict:
    """Peak levels (linear, before the master volume) that keep every mix under the ceiling *without* the limiter.

    Clicks sit just under the ceiling; speech is scaled so that speech plus a ducked accent stays under it too.
    The limiter is then a safety net that normal sessions never engage (no pumping on clicks under speech).
    """
    ceiling = db_to_gain(settings.ceiling_dbfs)
    accent = ACCENT_REL * ceiling
    speech = SPEECH_MARGIN * (ceiling - accent * db_to_gain(settings.duck_db))
    return {"ceiling": ceiling, "accent": accent, "normal": NORMAL_REL * ceiling, "speech": speech}


def default_clicks(samplerate: int, accent_peak: float | None = None, normal_peak: float | None = None):
    """(accent, normal) clicks: a bright accent and a lower, softer normal step (default: default-ceiling levels)."""
    if accent_peak is None or normal_peak is None:
        lv = mix_levels(EngineSettings(samplerate=samplerate))
        accent_peak = lv["accent"] if accent_peak is None else accent_peak
        normal_peak = lv["normal"] if normal_peak is None else normal_peak
    accent = synth_click(samplerate, 1760.0, 0.030, accent_peak)
    normal = synth_click(samplerate, 1320.0, 0.025, normal_peak)
    return accent, normal


@dataclass(frozen=True)
class ClipBank:
    """All clips concatenated into one read-only float32 array (clip 0 accent, clip 1 normal, then cues)."""

    data: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    names: tuple

    @classmethod
    def build(cls, clips: list[tuple[str, np.ndarray]]) -> "ClipBank":
        names, arrays = zip(*clips)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        if np.any(lengths <= 0):
            raise InputError(f"clip {names[int(np.argmin(lengths))]!r} is empty")
        for name, a in zip(names, arrays):
            if not np.all(np.isfinite(a)):
                raise InputError(f"clip {name!r}: contains NaN or infinite samples")
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        data = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays]).astype(np.float32)
        for arr in (data, offsets, lengths):
            arr.flags.writeable = False
        return cls(data, offsets, lengths, tuple(names))

    def index(self, name: str) -> int:
        return self.names.index(name)


def click_gain(settings: "EngineSettings") -> float:
    """Linear gain of the clicks for ``settings.clicks``: 1 (on), :data:`SOFT_CLICK_DB` (soft), 0 (off)."""
    return {"on": 1.0, "soft": db_to_gain(SOFT_CLICK_DB), "off": 0.0}[settings.clicks]


def click_bank(samplerate: int, cue_clips=(), settings: "EngineSettings | None" = None) -> ClipBank:
    """Clicks + cue clips at the levels of :func:`mix_levels` (cue clips are rescaled to the speech peak).

    ``settings.clicks`` scales the two click clips (``off``: silent clips, so every beat still schedules, cues
    still wait for their beat and the events are the same; only the click sound is gone).
    """
    es = settings if settings is not None else EngineSettings(samplerate=samplerate)
    lv = mix_levels(es)
    accent, normal = default_clicks(samplerate, lv["accent"], lv["normal"])
    g = np.float32(click_gain(es))
    accent, normal = accent * g, normal * g
    scaled = []
    for name, clip in cue_clips:
        clip = np.asarray(clip, dtype=np.float32)
        peak = float(np.max(np.abs(clip))) if clip.size else 0.0
        scaled.append((name, (clip * np.float32(lv["speech"] / peak)) if peak > 0 else clip))
    return ClipBank.build([("accent", accent), ("normal", normal), *scaled])
