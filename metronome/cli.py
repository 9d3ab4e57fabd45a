"""``downbeat`` command line (contract in DESIGN.md: scripts and benchmarks depend on it).

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback), 1 unexpected or device failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import click

from .errors import DownbeatError, InputError

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


class _Group(click.Group):
    def format_help(self, ctx, formatter):
        formatter.write(GUIDE.format(bundled=_bundled()))
        formatter.write("\n")
        self.format_commands(ctx, formatter)


@click.group(cls=_Group, invoke_without_command=True)
@click.pass_context
def cli(ctx):
    """Downbeat: a gradient-following metronome with spoken technique cues for downhill running."""
    if ctx.invoked_subcommand is None:
        click.echo(GUIDE.format(bundled=_bundled()), nl=False)


_common = [
    click.option("--base-cadence", type=float, default=None, metavar="SPM",
                 help="Your cadence on the flat, steps per minute (default: the profile's, else 170)."),
    click.option("--samplerate", type=int, default=48000, show_default=True),
    click.option("--upper-cap", type=float, default=1.08, show_default=True,
                 help="Largest cadence factor on steep descents (at most 1.10)."),
    click.option("--volume-db", type=float, default=0.0, show_default=True, help="Master volume, <= 0 dB."),
    click.option("--ceiling-db", type=float, default=-6.0, show_default=True, help="Output peak ceiling, dBFS."),
    click.option("--accent-every", type=int, default=4, show_default=True, help="Accent every N steps (0: off)."),
    click.option("--flat-pace", default=None, metavar="MM:SS",
                 help="Your pace on the flat per km, for courses without timing (default 5:30)."),
    click.option("--no-cues", is_flag=True, help="Clicks only, no spoken cues."),
    click.option("--voice-pack", type=click.Path(), default=None, help="Folder of WAV files overriding cue voices."),
]


def common_options(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


def _plan(profile_spec, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, no_cues,
          voice_pack, channels=2, flat_pace=None):
    from .engine import EngineSettings
    from .session import load_profile, plan_session, tempo_settings_for

    profile = load_profile(profile_spec, flat_pace=flat_pace)
    es = EngineSettings(samplerate=samplerate, channels=channels, ceiling_dbfs=ceiling_db, volume_db=volume_db,
                        accent_every=accent_every)
    plan = plan_session(profile, tempo_settings_for(profile, base_cadence, upper_cap), es, cues=not no_cues,
                        voice_pack=voice_pack)
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
              help="Frames per kernel call (the output is bit-identical for any value).")
@click.option("--channels", type=int, default=2, show_default=True)
@click.option("--subtype", default=None, help="PCM_16 (default), PCM_24, FLOAT (WAV), VORBIS (OGG).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@common_options
def render(profile, out, events, blocksize, channels, subtype, quiet, as_json, base_cadence, samplerate, upper_cap,
           volume_db, ceiling_db, accent_every, flat_pace, no_cues, voice_pack):
    """Render PROFILE (a file or a bundled name) to an audio file, through the same kernel as `play`."""
    from .engine import output_format, render as do_render, warm_kernels

    output_format(out, subtype, samplerate)  # validate flags before any work
    plan = _plan(profile, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, no_cues,
                 voice_pack, channels, flat_pace)
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
                        events_path=events, blocksize=blocksize, subtype=subtype, progress=progress)
    finally:
        if bar is not None:
            bar.stop()
    summary = {"output": out, "events": events, "duration_s": round(res.frames / samplerate, 3),
               "beats": res.beats, "cues": res.cues, "cues_dropped": res.cues_dropped,
               "peak_dbfs": round(20 * __import__("math").log10(max(res.peak, 1e-12)), 2),
               "bpm_min": round(float(plan.tempo_map.bpm.min()), 2), "bpm_max": round(float(plan.tempo_map.bpm.max()), 2),
               "render_s": round(res.seconds, 3)}
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        click.echo(f"wrote {out}: {summary['duration_s'] / 60:.1f} min, {res.beats} steps at "
                   f"{summary['bpm_min']:.0f}-{summary['bpm_max']:.0f} spm, {res.cues} cues, "
                   f"peak {summary['peak_dbfs']} dBFS ({res.seconds:.1f} s)")


@cli.command()
@click.argument("profile", required=False, default=None)
@click.option("--sensor", default=None, metavar="URL",
              help="Live feed: udp://HOST:PORT, -, replay:FILE[@SPEEDx], ftms:ADDR, rsc:ADDR.")
@click.option("--listen-any", is_flag=True, help="Allow the UDP listener on a non-loopback address.")
@click.option("--device", default=None, help="Output device (index or name substring).")
@click.option("--blocksize", type=int, default=0, show_default=True, help="Frames per callback (0: the host's).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--quiet", is_flag=True, help="No live status line.")
@click.option("--json", "as_json", is_flag=True, help="Print the session summary as JSON.")
@click.option("--fallback-render", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="With no audio output device, render to FILE instead of failing.")
@click.option("--reconnect", is_flag=True, help="If the audio device or server goes away, wait for it and carry on.")
@click.option("--resume-at", type=int, default=None, hidden=True)  # used by --reconnect's fresh process
@common_options
def play(profile, sensor, listen_any, device, blocksize, duration, quiet, as_json, fallback_render, reconnect,
         resume_at, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, flat_pace, no_cues,
         voice_pack):
    """Play PROFILE live on an audio device (default: the bundled demo descent)."""
    from .engine import NoOutputDevice, find_device
    from .live import run_play

    if fallback_render is not None:
        try:
            find_device(device)
        except NoOutputDevice as exc:
            if profile is None:
                profile = "demo-descent"
            click.echo(f"downbeat: {exc.reason}; rendering {profile} to {fallback_render} instead", err=True)
            ctx = click.get_current_context()
            ctx.invoke(render, profile=profile, out=fallback_render, events=None, blocksize=65536, channels=2,
                       subtype=None, quiet=quiet, as_json=as_json, base_cadence=base_cadence, samplerate=samplerate,
                       upper_cap=upper_cap, volume_db=volume_db, ceiling_db=ceiling_db, accent_every=accent_every,
                       flat_pace=flat_pace, no_cues=no_cues, voice_pack=voice_pack)
            return

    if blocksize < 0 or blocksize > 65536:
        raise InputError(f"--blocksize: {blocksize!r} is outside 0..65536")
    if duration is not None and not (0 < duration < 24 * 3600):
        raise InputError(f"--duration: {duration!r} is outside (0, 86400) seconds")
    if profile is None and sensor is None:
        profile = "demo-descent"
    summary = run_play(profile=profile, sensor=sensor, listen_any=listen_any, device=device, blocksize=blocksize,
                       duration=duration, quiet=quiet or as_json, base_cadence=base_cadence, samplerate=samplerate,
                       upper_cap=upper_cap, volume_db=volume_db, ceiling_db=ceiling_db, accent_every=accent_every,
                       flat_pace=flat_pace, no_cues=no_cues, voice_pack=voice_pack, reconnect=reconnect,
                       resume_at=resume_at)
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        click.echo(f"session: {summary['played_s']:.1f} s, {summary['beats']} steps, {summary['cues']} cues, "
                   f"{summary['underflows']} underflows, callback p99 {summary['callback_p99_ms']:.3f} ms"
                   + (f", stopped: {summary['stop_reason']}" if summary.get("stop_reason") else ""))
    if summary.get("error"):
        click.echo(f"downbeat: error: {summary['error']}", err=True)
        _exit_now_if_wedged(1)
        raise click.exceptions.Exit(1)
    _exit_now_if_wedged(0)


def _exit_now_if_wedged(code):
    """A stream on a dead server cannot be closed, and PortAudio's atexit teardown would block on it forever:
    flush and leave without it."""
    from .engine import any_stream_wedged

    if any_stream_wedged():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@cli.command()
def devices():
    """List audio output devices (PortAudio)."""
    import sounddevice as sd

    try:
        devs = sd.query_devices()
        apis = sd.query_hostapis()
    except Exception as exc:
        raise InputError(f"PortAudio is not usable ({exc}); install it with 'apt-get install libportaudio2'")
    outs = [(i, d) for i, d in enumerate(devs) if d["max_output_channels"] > 0]
    if not outs:
        click.echo("no output devices (no sound card, JACK or PulseAudio server): use 'downbeat render'")
        return
    default = sd.default.device[1]
    for i, d in outs:
        mark = "*" if i == default else " "
        click.echo(f"{mark} {i:2d}  {d['name']}  ({apis[d['hostapi']]['name']}, {d['max_output_channels']} out, "
                   f"{d['default_samplerate']:.0f} Hz)")


def _register_groups():
    # Sub-command groups live with their packages; the CLI stays one place to read.
    from cues.cli import cues as cues_group
    from profiles.cli import profile as profile_group

    from .doctor import doctor

    cli.add_command(profile_group)
    cli.add_command(cues_group)
    cli.add_command(doctor)


_register_groups()


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an exception so cleanup code runs."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None):
    """Console entry point: map errors to the exit-code contract."""
    # A closed pipe (downbeat ... | head) is not an error worth a traceback.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # SIGTERM (kill, systemd, timeout) unwinds like Ctrl-C, so renders remove their temporary files and live
    # sessions fade out and print their summary.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="downbeat", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        terminated = isinstance(exc.__context__, Terminated) or isinstance(exc.__cause__, Terminated)
        click.echo("downbeat: terminated" if terminated else "downbeat: aborted", err=True)
        sys.exit(143 if terminated else 130)
    except click.ClickException as exc:  # usage errors: one line, exit 2
        msg = exc.format_message().replace("\n", " ")
        cmd = exc.ctx.command_path if getattr(exc, "ctx", None) else "downbeat"
        click.echo(f"{cmd}: error: {msg}", err=True)
        sys.exit(2)
    except DownbeatError as exc:
        # One line, always: a file name or value may itself hold a newline.
        msg = " ".join(str(exc).split("\n")).replace("\r", " ") if str(exc) else type(exc).__name__
        click.echo(f"downbeat: error: {msg}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("downbeat: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # files we were asked to read/write
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"downbeat: error: {name}{exc.strerror or exc}", err=True)
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
