"""The ``--music`` options of ``render`` and ``play`` (defaults from :class:`metronome.settings.MusicSettings`)."""

from __future__ import annotations

import click

from metronome.settings import MusicSettings

MUSIC_OPTIONS = [
    click.option("--music", "music", multiple=True, metavar="PATH",
                 help="Your music under the coach: an audio file (WAV, FLAC, OGG, MP3), a folder or an M3U/PLS "
                      "playlist; repeat for several.  Plays in order, gapless, repeating until the session ends."),
    click.option("--music-once", is_flag=True, help="Play the music once instead of repeating it."),
    click.option("--click-level", type=float, default=MusicSettings.click_level_db, show_default=True,
                 metavar="DB", help="Loudness of the clicks above the music (the music is set to match)."),
    click.option("--music-duck", type=float, default=MusicSettings.duck_db, show_default=True, metavar="DB",
                 help="Music level while a cue is spoken."),
]


def music_options(f):
    for opt in reversed(MUSIC_OPTIONS):
        f = opt(f)
    return f


def music_tracks(music, music_once, click_level, music_duck):
    """``(MusicSettings, tracks)`` from the flags, every path checked (exit 2 naming a bad one); None without."""
    if not music:
        return None
    from metronome.music.plan import resolve_music

    settings = MusicSettings(click_level_db=click_level, duck_db=music_duck, once=music_once)
    return settings, resolve_music(music, settings)


def music_plan(checked, plan):
    """The session's :class:`~metronome.music.plan.MusicPlan` from :func:`music_tracks`, or None."""
    if checked is None:
        return None
    from metronome.music.plan import plan_music

    settings, tracks = checked
    es = plan.engine_settings
    return plan_music(tracks, plan.bank, float(plan.tempo_map.bpm[0]), es.accent_every, es.samplerate, settings,
                      es.ceiling_dbfs)
