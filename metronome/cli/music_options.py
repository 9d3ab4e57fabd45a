"""The ``--music`` and ``--clicks`` options of ``render`` and ``play`` (defaults from
:class:`metronome.settings.MusicSettings` and :class:`metronome.settings.EngineSettings`)."""

from __future__ import annotations

import click

from metronome.errors import InputError
from metronome.settings import CLICK_MODES, SOFT_CLICK_DB, EngineSettings, MusicSettings

MUSIC_OPTIONS = [
    click.option("--music", "music", multiple=True, metavar="PATH",
                 help="Your music under the coach: an audio file (WAV, FLAC, OGG, MP3), a folder or an M3U/PLS "
                      "playlist; repeat for several.  Plays in order, gapless, repeating until the session ends."),
    click.option("--music-once", is_flag=True, help="Play the music once instead of repeating it."),
    click.option("--music-sync", is_flag=True,
                 help="Beat-match the music: stretch each track (pitch kept, at most "
                      f"+-{100 * MusicSettings.max_stretch:.0f} %) so its beats fall on the steps, in same, half "
                      "or double time; tracks play in the order that needs the least stretching (needs the "
                      "musicsync extra)."),
    click.option("--click-level", type=float, default=MusicSettings.click_level_db, show_default=True,
                 metavar="DB", help="Loudness of the clicks above the music (the music is set to match)."),
    click.option("--music-duck", type=float, default=MusicSettings.duck_db, show_default=True, metavar="DB",
                 help="Music level while a cue is spoken."),
    click.option("--clicks", "clicks", type=click.Choice(CLICK_MODES), default=EngineSettings.clicks,
                 show_default=True,
                 help=f"The step clicks: on, soft ({SOFT_CLICK_DB:.0f} dB) or off (cues and music still play)."),
]


def music_options(f):
    for opt in reversed(MUSIC_OPTIONS):
        f = opt(f)
    return f


def music_tracks(music, music_once, click_level, music_duck, music_sync=False):
    """``(MusicSettings, tracks)`` from the flags, every path checked (exit 2 naming a bad one); None without."""
    if not music:
        if music_sync:
            raise InputError("--music-sync: needs --music (the music to beat-match)")
        return None
    from metronome.music.plan import resolve_music

    settings = MusicSettings(click_level_db=click_level, duck_db=music_duck, once=music_once, sync=music_sync)
    if music_sync:
        from metronome.music.beats import require_librosa

        require_librosa()
    return settings, resolve_music(music, settings)


def music_plan(checked, plan, start_sample: int = 0):
    """The session's :class:`~metronome.music.plan.MusicPlan` from :func:`music_tracks`, or None.

    With ``--music-sync`` every track is analysed here (cached), before audio starts; a session whose tempo
    follows a live feed cannot be beat-matched ahead (exit 2).
    """
    if checked is None:
        return None
    from metronome.mix import click_gain
    from metronome.music.plan import plan_music

    settings, tracks = checked
    es = plan.engine_settings
    mp = plan_music(tracks, plan.bank, float(plan.tempo_map.bpm[0]), es.accent_every, es.samplerate, settings,
                    es.ceiling_dbfs, click_gain(es))
    if settings.sync:
        if getattr(plan, "live", False):
            raise InputError("--music-sync: the tempo follows a live feed here, so the steps are not known ahead; "
                             "beat-matching needs a course (play PROFILE without --sensor)")
        mp = mp.with_sync(plan.tempo_map, start_sample, warn=lambda w: click.echo(f"downbeat: warning: {w}",
                                                                                     err=True))
    return mp
