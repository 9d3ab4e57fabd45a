"""``downbeat`` command line (contract in docs/DESIGN.md: scripts and benchmarks depend on it).

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback), 1 unexpected or device failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import click

from metronome.errors import DownbeatError, InputError
from metronome.settings import EngineSettings, MusicSettings, TempoSettings

from .music_options import music_options, music_plan, music_tracks
from .travel import travel_options, travel_spec

#: Settings fields -> the options that set them: library errors name the field, the CLI names its option.
FLAG_FOR_FIELD = {
    "samplerate": "--samplerate", "channels": "--channels", "ceiling_dbfs": "--ceiling-db",
    "volume_db": "--volume-db", "accent_every": "--accent-every", "base_cadence_spm": "--base-cadence",
    "upper_cap": "--upper-cap", "music": "--music", "click_level_db": "--click-level",
    "music_duck_db": "--music-duck", "interval_m": "--anchors", "finish_time_s": "--finish-time",
    "music_sync": "--music-sync", "clicks": "--clicks",
}


def error_line(exc: DownbeatError) -> str:
    """The one line printed for an error: newlines folded, a settings field named by its option."""
    msg = " ".join(str(exc).split("\n")).replace("\r", " ") if str(exc) else type(exc).__name__
    field = getattr(exc, "field", None)
    if field in FLAG_FOR_FIELD and msg.startswith(field + ":"):
        msg = FLAG_FOR_FIELD[field] + msg[len(field):]
    return msg

GUIDE = """\
Downbeat: a cadence coach for downhill running. The metronome follows the gradient; spoken cues coach technique.

  downbeat play demo-descent                     play the bundled demo descent (headphones on)
  downbeat render demo-descent -o run.wav        make a track for your phone instead (no sound card needed)
  downbeat profile show my-run.gpx --png p.png   grade, target cadence and cue timeline of a course
  downbeat play --sensor udp://127.0.0.1:47800   follow a live treadmill/footpod/phone feed
  downbeat doctor                                what works here, what is missing and how to fix it
  downbeat devices | cues list                   audio outputs, the cue library

Bundled profiles: {bundled}.  More: downbeat COMMAND --help
"""


def _bundled() -> str:
    try:
        from profiles import bundled_names

        return ", ".join(bundled_names())
    except Exception:
        return "demo-descent"


#: Sub-commands that live in their own modules, imported only when used (``downbeat render`` does not pay for the
#: doctor's or the profile plotter's imports; a broken module still fails loudly when its command runs or help
#: lists it).
LAZY_COMMANDS = {
    "profile": "metronome.cli.profile:profile",
    "cues": "metronome.cli.cues:cues",
    "doctor": "metronome.cli.doctor:doctor",
    "play": "metronome.cli.play:play",
    "export": "metronome.cli.export:export",
    "latency": "metronome.cli.latency:latency",
    "learn": "metronome.cli.history:learn",
    "review": "metronome.cli.history:review",
    "progress": "metronome.cli.history:progress",
}


class _Group(click.Group):
    def format_help(self, ctx, formatter):
        formatter.write(GUIDE.format(bundled=_bundled()))
        formatter.write("\n")
        self.format_commands(ctx, formatter)

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            module, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=_Group, invoke_without_command=True)
@click.pass_context
def cli(ctx):
    """Downbeat: a gradient-following metronome with spoken technique cues for downhill running."""
    if ctx.invoked_subcommand is None:
        click.echo(GUIDE.format(bundled=_bundled()), nl=False)


VOICE_HELP = ("Speech engine and voice of the cues: festival, flite or espeak-ng, e.g. flite:slt "
              "(default: the best installed, festival > flite > espeak-ng; `downbeat doctor` lists them).")


def voice_spec(voice):
    """``--voice`` parsed and checked (engine installed, voice known) before any work: exit 2 naming it."""
    from cues.tts import check_voice, parse_voice

    vs = parse_voice(voice)
    if vs.explicit:
        check_voice(vs)
    return vs


_common = [
    click.option("--base-cadence", type=float, default=None, metavar="SPM",
                 help="Your cadence on the flat, steps per minute (default: the profile's, else 170)."),
    click.option("--samplerate", type=int, default=EngineSettings.samplerate, show_default=True),
    click.option("--upper-cap", type=float, default=TempoSettings.upper_cap, show_default=True,
                 help="Largest cadence factor on steep descents (at most 1.10)."),
    click.option("--volume-db", type=float, default=EngineSettings.volume_db, show_default=True,
                 help="Master volume, <= 0 dB."),
    click.option("--ceiling-db", type=float, default=EngineSettings.ceiling_dbfs, show_default=True,
                 help="Output peak ceiling, dBFS."),
    click.option("--accent-every", type=int, default=EngineSettings.accent_every, show_default=True,
                 help="Accent every N steps (0: off)."),
    click.option("--flat-pace", default=None, metavar="MM:SS",
                 help="Your pace on the flat per km, for courses without timing (default 5:30)."),
    click.option("--runner", "runner", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                 help="Runner profile from `downbeat learn` (default: ~/.config/downbeat/runner.yaml if it exists)."),
    click.option("--no-cues", is_flag=True, help="Clicks only, no spoken cues."),
    click.option("--voice-pack", type=click.Path(), default=None, help="Folder of WAV files overriding cue voices."),
    click.option("--voice", default=None, metavar="ENGINE[:VOICE]", help=VOICE_HELP),
]


def common_options(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


def _plan_settings(profile, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, channels,
                   clicks=EngineSettings.clicks):
    """Tempo and engine settings of a session from the common flags (each default lives in the dataclasses)."""
    from metronome.mix import EngineSettings
    from metronome.session import tempo_settings_for

    es = EngineSettings(samplerate=samplerate, channels=channels, ceiling_dbfs=ceiling_db, volume_db=volume_db,
                        accent_every=accent_every, clicks=clicks)
    return tempo_settings_for(profile, base_cadence, upper_cap), es


def _plan(profile_spec, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, no_cues,
          voice_pack, channels=2, flat_pace=None, runner=None, voice=None, finish_time_s=None, anchor_every_m=None,
          clicks=EngineSettings.clicks):
    from metronome.session import DEFAULT_RUNNER, load_profile, plan_session

    profile = load_profile(profile_spec, flat_pace=flat_pace, runner=runner or DEFAULT_RUNNER)
    if finish_time_s is not None:  # render --finish-time (issue 16)
        from metronome.export.finish import scale_track_to_finish

        profile = scale_track_to_finish(profile, finish_time_s)
    ts, es = _plan_settings(profile, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every,
                            channels, clicks)
    plan = plan_session(profile, ts, es, cues=not no_cues, voice_pack=voice_pack, voice=voice,
                        anchor_every_m=anchor_every_m)
    for w in plan.warnings:
        click.echo(f"downbeat: warning: {w}", err=True)
    return plan


@cli.command()
@click.argument("profile", default="demo-descent")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .wav, .flac or .ogg.")
@click.option("--events", "events", type=click.Path(dir_okay=False), default=None,
              help="CSV of every scheduled event: kind, sample, time_s, bpm, clip.")
@click.option("--blocksize", type=int, default=65536, show_default=True,
              help="Frames per kernel call, at least 64 (the output is bit-identical for any value).")
@click.option("--follow", "follow", default=None, metavar="replay:RUN",
              help="Render what `play` would have played following the runner of RUN (GPX/FIT/TCX with times).")
@click.option("--channels", type=int, default=2, show_default=True)
@click.option("--subtype", default=None, help="PCM_16 (default), PCM_24, FLOAT (WAV), VORBIS (OGG).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@common_options
@music_options
@travel_options
def render(profile, out, events, blocksize, channels, subtype, quiet, as_json, base_cadence, samplerate, upper_cap,
           volume_db, ceiling_db, accent_every, flat_pace, runner, no_cues, voice_pack, follow=None, voice=None,
           music=(), music_once=False, click_level=MusicSettings.click_level_db, music_duck=MusicSettings.duck_db,
           finish_time=None, anchors=None, split=False, music_sync=False, clicks=EngineSettings.clicks):
    """Render PROFILE (a file or a bundled name) to an audio file, through the same kernel as `play`."""
    travel = travel_spec(finish_time, anchors, split, no_cues=no_cues, follow=follow)
    if follow is not None and (music or clicks != EngineSettings.clicks):
        raise InputError("--follow: --music, --music-sync and --clicks are not supported with --follow yet")
    if follow is not None:
        from .follow import render_follow_command

        return render_follow_command(profile, out, events, blocksize, channels, subtype, quiet, as_json, follow,
                                     base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every,
                                     runner, no_cues, voice_pack)
    from metronome import outfiles
    from metronome.course_plan import distance_at_sample
    from metronome.engine import warm_kernels
    from metronome.render import output_format, render as do_render, render_estimate

    output_format(out, subtype, samplerate)  # validate flags before any work
    voice = voice_spec(voice) if voice is not None or not no_cues else None  # clicks only: no speech stack
    checked_music = music_tracks(music, music_once, click_level, music_duck, music_sync)
    # Never write over what this session reads (--events course.yaml turned the course into a CSV).
    inputs = (outfiles.input_files(profile, voice_pack) + ([runner] if runner else [])
              + ([t.path for t in checked_music[1]] if checked_music else []))
    outfiles.refuse_overwriting_inputs([("--output", out), ("--events", events)], inputs)
    for folder in sorted({os.path.dirname(os.path.abspath(p)) for p in (out, events) if p}):
        for line in outfiles.clean_stale_partials(folder):
            click.echo(f"downbeat: {line}", err=True)
    plan = _plan(profile, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, no_cues,
                 voice_pack, channels, flat_pace, runner, voice, travel.finish_time_s, travel.anchor_every_m,
                 clicks)
    split_at, cuts, parts = travel.cuts(plan, out)  # --split: where each part starts, and its file
    outfiles.refuse_overwriting_inputs([("--split", p) for p in parts] + [("--events", events)], inputs)
    mplan = music_plan(checked_music, plan)
    est = render_estimate(plan.tempo_map, out, plan.engine_settings, subtype=subtype, events_path=events)
    outfiles.check_free_space({out: est.audio_bytes, **({events: est.events_bytes} if events else {})})
    for w in est.warnings:
        click.echo(f"downbeat: warning: {w}", err=True)
    if est.large and not quiet:
        click.echo(f"downbeat: note: {est.note(out)}", err=True)
    warm_kernels(samplerate, channels, for_play=False)  # render needs no PortAudio callback
    progress = None
    bar = None
    if not quiet and not as_json and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("rendering", total=plan.tempo_map.end_sample)
        progress = lambda done, total: bar.update(task, completed=done, total=total)  # noqa: E731
    try:
        res = do_render(plan.tempo_map, out, plan.engine_settings, bank=plan.bank, cue_requests=plan.cue_requests,
                        events_path=events, blocksize=blocksize, subtype=subtype, progress=progress,
                        event_distance=distance_at_sample(plan.profile, samplerate), music=mplan, split_at=split_at)
    finally:
        if bar is not None:
            bar.stop()
    summary = {"output": out, "events": events, "duration_s": round(res.frames / samplerate, 3),
               "beats": res.beats, "cues": res.cues, "cues_dropped": res.cues_dropped,
               "peak_dbfs": round(20 * __import__("math").log10(max(res.peak, 1e-12)), 2),
               "bpm_min": round(float(plan.tempo_map.bpm.min()), 2), "bpm_max": round(float(plan.tempo_map.bpm.max()), 2),
               "render_s": round(res.seconds, 3)}
    if res.music is not None:
        summary["music"] = res.music
    summary.update(travel.summary(plan, cuts, parts))
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        shown = f"{len(parts)} parts {parts[0]} .. {parts[-1]}" if parts else out
        click.echo(f"wrote {shown}: {summary['duration_s'] / 60:.1f} min, {res.beats} steps at "
                   f"{summary['bpm_min']:.0f}-{summary['bpm_max']:.0f} spm, {res.cues} cues, "
                   f"peak {summary['peak_dbfs']} dBFS ({res.seconds:.1f} s)")
    FINISHED_RENDER.append(out)  # the console script may skip the interpreter's teardown (metronome.entry)


@cli.command()
def devices():
    """List audio output devices (PortAudio), with the latency stored for each by `downbeat latency`."""
    from metronome.devices import NoOutputDevice, list_devices
    from metronome.latency.offsets import format_offsets

    try:
        outs = [d for d in list_devices() if d.outputs > 0]
    except NoOutputDevice as exc:
        raise InputError(exc.reason) from None
    if not outs:
        click.echo("no output devices (no sound card, JACK or PulseAudio server): use 'downbeat render'")
    for d in outs:
        mark = "*" if d.default_output else " "
        click.echo(f"{mark} {d.index:2d}  {d.name}  ({d.hostapi}, {d.outputs} out, {d.default_samplerate:.0f} Hz)")
    stored = format_offsets()
    if stored:
        click.echo("stored latency (downbeat latency):")
        for line in stored:
            click.echo(f"  {line}")


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an exception so cleanup code runs."""


def _terminate(signum, frame):
    raise Terminated()


#: Outputs of renders this process finished (every file committed): read by :mod:`metronome.entry`.
FINISHED_RENDER: list = []


def _exit_interrupted(code: int) -> None:
    """Leave at once after Ctrl-C/SIGTERM: the command has unwound (temporary files removed in its ``finally``
    blocks), and a second signal, or one still pending, must not turn the exit into a traceback or a death by
    SIGINT during interpreter shutdown (seen as exit -2 under load)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from metronome.entry import build_kernels_later

    build_kernels_later()  # a play stopped with Ctrl-C is a finished session too
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None):
    """Console entry point: map errors to the exit-code contract."""
    # A closed pipe (downbeat ... | head) is not an error worth a traceback.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # SIGTERM (kill, systemd, timeout) unwinds like Ctrl-C, so renders remove their temporary files and live
    # sessions fade out and print their summary.
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C raises KeyboardInterrupt again (the console entry point exits quietly on it while importing).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # Under standalone_mode=False click *returns* the code of a `raise click.exceptions.Exit(n)` (play's
        # device failures, doctor) instead of raising: it must become the exit status, not be dropped.
        rv = cli.main(args=argv, prog_name="downbeat", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        terminated = isinstance(exc.__context__, Terminated) or isinstance(exc.__cause__, Terminated)
        click.echo("downbeat: terminated" if terminated else "downbeat: aborted", err=True)
        _exit_interrupted(143 if terminated else 130)
    except click.ClickException as exc:  # usage errors: one line, exit 2
        msg = exc.format_message().replace("\n", " ")
        cmd = exc.ctx.command_path if getattr(exc, "ctx", None) else "downbeat"
        click.echo(f"{cmd}: error: {msg}", err=True)
        sys.exit(2)
    except DownbeatError as exc:
        # One line, always: a file name or value may itself hold a newline.
        click.echo(f"downbeat: error: {error_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("downbeat: interrupted", err=True)
        _exit_interrupted(130)
    except OSError as exc:  # files we were asked to read/write
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"downbeat: error: {name}{exc.strerror or exc}", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)

