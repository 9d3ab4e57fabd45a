"""What a session's music is: its tracks, settings and the loudness every track is brought to."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, require_modules
from ..settings import MusicSettings


@dataclass(frozen=True)
class MusicPlan:
    """Tracks (in play order), settings, and the levels: ``target_lufs = click_lufs - settings.click_level_db``
    (``click_lufs`` is the clicks' loudness as mixed with music, after ``coach_gain_db``), every track's peak at
    most ``max_peak`` (the share of the ceiling the clicks and cues leave)."""

    tracks: tuple
    settings: MusicSettings
    click_lufs: float
    target_lufs: float
    max_peak: float
    sync: object = None  # metronome.music.sync.SyncPlan with --music-sync

    def with_sync(self, tempo_map, start_sample: int = 0, warn=None) -> "MusicPlan":
        """This plan beat-matched to ``tempo_map`` (:func:`metronome.music.sync.plan_sync`; tracks analysed now).

        ``start_sample``: where the music starts on the tempo map (a resumed session starts mid-course).
        """
        from dataclasses import replace

        from .sync import plan_sync

        return replace(self, sync=plan_sync(self.tracks, tempo_map, self.settings, start_sample, warn=warn))

    def ring_frames(self, samplerate: int, at_least: int = 0) -> int:
        """Capacity of the engine's music ring: the live read-ahead, and never less than one render chunk."""
        return max(int(self.settings.ring_s * samplerate), int(at_least))

    def source(self, samplerate: int, on_error=None):
        """The stream to fill the ring from.  ``on_error`` (live play) reports and skips a broken track."""
        from .source import MusicSource

        if self.sync is None:
            return MusicSource(self.tracks, samplerate, self.target_lufs, self.settings, on_error=on_error,
                               max_peak=self.max_peak)
        from .sync import SYNC_HEADROOM_DB, SyncedSource

        base = MusicSource(self.tracks, samplerate, self.target_lufs, self.settings, on_error=on_error,
                           max_peak=self.max_peak * 10.0 ** (-SYNC_HEADROOM_DB / 20.0))
        return SyncedSource(base, self.sync, samplerate, max_peak=self.max_peak)


def require_backends() -> None:
    """soxr and pyloudnorm come with the ``music`` extra; say how to get them instead of a traceback."""
    require_modules(("soxr", "pyloudnorm"), "music", "music")


def resolve_music(paths, settings: MusicSettings = MusicSettings()) -> tuple:
    """The tracks of ``--music`` paths, checked (one line naming a bad path, playlist line or file)."""
    require_backends()
    from .playlist import resolve

    try:
        return resolve(paths, settings.max_track_s)
    except InputError as exc:
        msg = str(exc)
        raise InputError(msg if msg.startswith("music:") else f"music: {msg}", field="music") from None


def plan_music(tracks, bank, bpm: float, accent_every: int, samplerate: int,
               settings: MusicSettings = MusicSettings(), ceiling_dbfs: float = -6.0,
               click_gain: float = 1.0) -> MusicPlan:
    """Set the music's loudness under the clicks: ``tracks`` from :func:`resolve_music` (or ``--music`` paths).

    ``bank`` is the session's clip bank (clips 0 and 1 are the accent and normal clicks), ``bpm`` the cadence the
    click loudness is measured at (the session's first tempo).  ``click_gain`` is the bank's click scaling of
    ``--clicks`` (:func:`metronome.mix.click_gain`): the music is set against the clicks at full level, so soft
    or no clicks do not make it quieter.
    """
    from .loudness import click_train_lufs
    from .playlist import Track

    if not all(isinstance(t, Track) for t in tracks):
        tracks = resolve_music(tracks, settings)
    accent = bank.data[bank.offsets[0]:bank.offsets[0] + bank.lengths[0]]
    normal = bank.data[bank.offsets[1]:bank.offsets[1] + bank.lengths[1]]
    if click_gain != 1.0:
        from ..mix import default_clicks, mix_levels
        from ..settings import EngineSettings

        lv = mix_levels(EngineSettings(samplerate=samplerate, ceiling_dbfs=ceiling_dbfs))
        accent, normal = default_clicks(samplerate, lv["accent"], lv["normal"])
    click = click_train_lufs(accent, normal, bpm, accent_every, samplerate) + settings.coach_gain_db
    # 0.999: float32 rounding of the sum must not touch the ceiling either.
    max_peak = 0.999 * 10.0 ** (ceiling_dbfs / 20.0) * (1.0 - 10.0 ** (settings.coach_gain_db / 20.0))
    return MusicPlan(tuple(tracks), settings, click, click - settings.click_level_db, max_peak)
