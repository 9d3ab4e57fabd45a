"""``downbeat cues ...``: list the cue library and speak a cue.

Errors are raised, never turned into ``sys.exit`` here: the top-level CLI prints an :class:`InputError` on one
line and exits 2, and an :class:`AudioDeviceError` with exit 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from metronome.errors import AudioDeviceError, InputError

from cues.library import load_library

from .app import VOICE_HELP

_SAMPLERATE = 48000


def _library(path):
    return load_library(path)


@click.group(name="cues")
def cues():
    """The spoken technique cues: list them, hear them."""


@cues.command(name="list")
@click.option("--library", "library_path", type=click.Path(dir_okay=False), default=None,
              help="A cue library YAML instead of the bundled one.")
def list_cmd(library_path):
    """Table of cues: id, trigger, priority, phrasings."""
    from rich.console import Console
    from rich.table import Table

    lib = _library(library_path)
    table = Table(title=f"Cue library ({lib.source}, {len(lib)} cues)")
    table.add_column("id", style="bold")
    table.add_column("trigger")
    table.add_column("priority", justify="right")
    table.add_column("phrasings")
    for c in lib:
        prio = f"{c.priority} safety" if c.safety else str(c.priority)
        table.add_row(c.id, c.trigger, prio, "\n".join(f"{i + 1}. {p}" for i, p in enumerate(c.phrasings)))
    # Wide enough for the phrasings when piped (rich would otherwise wrap to 80 columns).
    Console(width=None if click.get_text_stream("stdout").isatty() else 120).print(table)


@cues.command(name="say")
@click.argument("cue_id")
@click.option("--phrasing", "phrasing_n", type=int, default=1, show_default=True,
              help="Which phrasing (1-based, as `cues list` numbers them).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write a WAV file instead of playing.")
@click.option("--voice", default=None, metavar="ENGINE[:VOICE]", help=VOICE_HELP)
@click.option("--voice-pack", type=click.Path(), default=None, help="Folder of WAV files overriding cue voices.")
@click.option("--samplerate", type=int, default=_SAMPLERATE, show_default=True)
@click.option("--library", "library_path", type=click.Path(dir_okay=False), default=None)
@click.option("--grade", "grade_pct", type=float, default=6.0, show_default=True,
              help="The value spoken for {grade} in a phrasing that has one (e.g. the treadmill announcements).")
def say_cmd(cue_id, phrasing_n, out_path, voice, voice_pack, samplerate, library_path, grade_pct):
    """Speak cue CUE_ID on the default output device (or write it with --out FILE.wav)."""
    from cues.voice import VoiceBank

    from .app import voice_spec

    voice = voice_spec(voice)
    lib = _library(library_path)
    entry = lib.get(cue_id)
    if not 1 <= phrasing_n <= len(entry.phrasings):
        raise InputError(f"--phrasing: {phrasing_n} is outside 1..{len(entry.phrasings)} for cue {cue_id!r}")
    if out_path is not None and Path(out_path).suffix.lower() != ".wav":
        raise InputError(f"--out: {out_path!r} must end in .wav")
    from cues.library import format_grade

    bank = VoiceBank(lib, samplerate, voice=voice, pack_dir=voice_pack)
    fill = format_grade(grade_pct) if entry.is_template(phrasing_n - 1) else None
    clip = bank.clip(cue_id, phrasing_n - 1, fill)
    text = entry.text(phrasing_n - 1, fill or "")
    if out_path is not None:
        import soundfile as sf

        try:
            sf.write(out_path, clip, samplerate, subtype="PCM_16")
        except (RuntimeError, OSError) as exc:
            raise InputError(f"--out: {out_path}: cannot write: {exc}") from None
        click.echo(f"{cue_id} #{phrasing_n}: \"{text}\" ({clip.size / samplerate:.2f} s) -> {out_path}")
        return
    _play(clip, samplerate)
    click.echo(f"{cue_id} #{phrasing_n}: \"{text}\" ({clip.size / samplerate:.2f} s)")


def _play(clip, samplerate: int) -> None:
    """Blocking playback on the default output; a missing device is one clear line suggesting --out."""
    hint = "no audio output device: use --out FILE.wav to write the cue to a file instead"
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: PortAudio library missing
        raise AudioDeviceError(f"{hint} ({exc})") from None
    try:
        sd.check_output_settings(samplerate=samplerate, channels=1)
        sd.play(clip, samplerate, blocking=True)
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioDeviceError(f"{hint} ({str(exc).splitlines()[0]})") from None
