"""``downbeat play``: flags, the status line, and what a lost device means (an error, or wait and resume).

The session itself is :class:`metronome.live.LiveSession`; this module only drives it: argv, printing, the
``--reconnect`` hand-over to a fresh process (``exec``) and exit codes live here and nowhere below.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import click

from metronome.errors import AudioDeviceError, InputError
from metronome.safeyaml import short

from .app import _plan_settings, common_options, render, voice_spec
from .music_options import music_options, music_plan, music_tracks

POLL_S = 0.1

# An upper bound for a resume position before the session is planned: 400 h at 384 kHz, more than any session
# lasts (the longest valid course, 1000 km, is ~92 h at the default pace).  The exact bound, the session's own
# length, is checked once the tempo map exists (LiveSession).
MAX_RESUME_SAMPLES = 400 * 3600 * 384000
MAX_COUNT = 2 ** 53  # exact in a float, and far more than any session counts


def parse_resume(resume_at, env_text) -> dict:
    """Validate the hand-over of ``--reconnect`` (``--resume-at`` + the ``DOWNBEAT_RESUME`` JSON).

    Returns ``{"position": int, "counters": {...}, "bpm": float or None}``; raises InputError naming the bad
    field.  Both come from the process environment, so they are checked like any other input (a huge position
    would allocate its beat grid, bad JSON would be a traceback).
    """
    from metronome.live import RESUME_COUNTERS

    if isinstance(resume_at, bool) or not isinstance(resume_at, int) or not 0 <= resume_at <= MAX_RESUME_SAMPLES:
        raise InputError(f"--resume-at: {short(resume_at)} is not a sample position in 0..{MAX_RESUME_SAMPLES}")
    if env_text is None or not env_text.strip():
        return {"position": resume_at, "counters": {}, "bpm": None}
    try:
        data = json.loads(env_text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"DOWNBEAT_RESUME: not valid JSON ({' '.join(str(exc).split())[:80]})") from None
    if not isinstance(data, dict):
        raise InputError(f"DOWNBEAT_RESUME: expected a JSON object, got {short(data)}")
    unknown = sorted(set(data) - {"counters", "bpm"})
    if unknown:
        raise InputError(f"DOWNBEAT_RESUME: unknown key {short(unknown[0])} (known: counters, bpm)")
    counters = data.get("counters", {})
    if not isinstance(counters, dict):
        raise InputError(f"DOWNBEAT_RESUME: counters: expected an object, got {short(counters)}")
    for key, value in counters.items():
        if key not in RESUME_COUNTERS:
            raise InputError(f"DOWNBEAT_RESUME: counters: unknown key {short(key)} "
                             f"(known: {', '.join(RESUME_COUNTERS)})")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise InputError(f"DOWNBEAT_RESUME: counters.{key}: {short(value)} is not an integer in 0..{MAX_COUNT}")
    bpm = data.get("bpm")
    if bpm is not None:
        if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not (math.isfinite(bpm) and 1 <= bpm <= 1000):
            raise InputError(f"DOWNBEAT_RESUME: bpm: {short(bpm)} is not a tempo in 1..1000 steps/min")
        bpm = float(bpm)
    return {"position": resume_at, "counters": dict(counters), "bpm": bpm}


def status_line(st) -> str:
    """One line of the live view from a :class:`metronome.live.LiveStatus`."""
    g = "  --  " if st.grade_pct is None or not math.isfinite(st.grade_pct) else f"{st.grade_pct:+5.1f}%"
    nc = f"next cue {st.next_cue}" if st.next_cue else "no cue queued"
    sensor = f"  sensor {st.sensor_status}" if st.sensor_status is not None else ""
    if st.course is not None:
        sensor = f"  {st.course}{sensor}"
    return (f"{int(st.t_s // 60):02d}:{st.t_s % 60:04.1f}  grade {g}  cadence {st.actual_bpm:5.1f} -> "
            f"{st.target_bpm:5.1f} spm  {nc}  xruns {st.underflows}{sensor}"
            + (f"  music gaps {st.music_underruns / 48000:.1f} s" if st.music_underruns else ""))


def _device_available(device) -> bool:
    """Ask a *fresh* process whether an output device exists: this process's PortAudio is wedged on the dead
    server (its JACK teardown blocks on a mutex forever) and cannot rescan."""
    import subprocess

    code = ("import sys; from metronome.devices import find_device; "
            "find_device(sys.argv[1] if len(sys.argv) > 1 else None)")
    try:
        r = subprocess.run([sys.executable, "-c", code, *([device] if device else [])], capture_output=True,
                           timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def _strip_resume_args(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--resume-at":
            skip = True
            continue
        if a.startswith("--resume-at="):
            continue
        out.append(a)
    return out


def _wait_and_resume(state: dict, device) -> None:
    """Wait for an output device, then replace this process with a fresh one resuming at ``state["position"]``.

    ``exec`` gives the new session a fresh PortAudio and skips this one's blocking teardown; the tempo map,
    cue plan and beat grid are recomputed from the same arguments, so clicks continue on the same samples.
    """
    print("downbeat: audio device lost; waiting for it to come back (Ctrl-C to stop)", file=sys.stderr, flush=True)
    argv = _strip_resume_args(sys.argv[1:])
    delay = 0.5
    while not _device_available(device):
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
    counters = dict(state["counters"])
    counters["reconnects"] += 1
    os.environ["DOWNBEAT_RESUME"] = json.dumps({"counters": counters, "bpm": state["bpm"]})
    print("downbeat: audio device back, resuming", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "metronome.cli", *argv, "--resume-at", str(state["position"])])


def _exit_now_if_wedged(code):
    """A stream on a dead server cannot be closed, and PortAudio's atexit teardown would block on it forever:
    flush and leave without it."""
    from metronome.player import any_stream_wedged

    if any_stream_wedged():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_session(session, *, quiet: bool, reconnect: bool, device=None) -> dict:
    """Drive a :class:`~metronome.live.LiveSession` until it ends, the device goes or Ctrl-C; return its summary.

    With ``reconnect`` a lost device does not return: the process waits and execs a fresh one that resumes.
    """
    live_view = None
    if not quiet and sys.stderr.isatty():
        from rich.console import Console
        from rich.live import Live

        live_view = Live("", console=Console(file=sys.stderr), refresh_per_second=4, transient=True)
    try:
        session.start()
        if live_view is not None:
            live_view.start()
        while True:
            st = session.poll()
            if st.finished:
                break
            if live_view is not None:
                live_view.update(status_line(st))
            session.wait(POLL_S)
    except KeyboardInterrupt:
        session.interrupted()
    except AudioDeviceError as exc:  # the stream could not be opened
        session.summary["error"] = str(exc)
        session.summary["stop_reason"] = "device"
    finally:
        if live_view is not None:
            live_view.stop()
        summary = session.stop(abandon_stream=session.lost and reconnect)
    if session.lost:
        if reconnect:  # does not return
            _wait_and_resume(session.resume_state(), device)
        summary["error"] = "audio device stopped (server gone or device unplugged); use --reconnect to keep trying"
    return summary


@click.command()
@click.argument("profile", required=False, default=None)
@click.option("--sensor", default=None, metavar="URL",
              help="Live feed: udp://HOST:PORT, -, replay:FILE[@SPEEDx], ftms:ADDR, rsc:ADDR, gpsd://HOST:PORT, "
                   "http://127.0.0.1:PORT.  With a COURSE, gpsd://, http:// and replay:RUN.gpx|.fit|.tcx follow "
                   "it by position.")
@click.option("--listen-any", is_flag=True, help="Allow the UDP or HTTP listener on a non-loopback address.")
@click.option("--follow-course", is_flag=True,
              help="Follow COURSE by the feed's position or distance (UDP lat/lon or distance_m, a treadmill's "
                   "Total Distance) instead of its grade; automatic for gpsd://, http:// and replay:RUN.")
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
@music_options
def play(profile, sensor, listen_any, follow_course, device, blocksize, duration, quiet, as_json, fallback_render, reconnect,
         resume_at, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, flat_pace, runner,
         no_cues, voice_pack, music, music_once, click_level, music_duck, voice=None, music_sync=False, clicks="on"):
    """Play PROFILE live on an audio device (default: the bundled demo descent)."""
    from metronome.devices import NoOutputDevice, find_device

    # Every flag is checked before deciding anything, the fallback render included.
    if blocksize < 0 or blocksize > 65536:
        raise InputError(f"--blocksize: {blocksize!r} is outside 0..65536")
    if duration is not None and not (0 < duration < 24 * 3600):
        raise InputError(f"--duration: {duration!r} is outside (0, 86400) seconds")
    vs = voice_spec(voice)
    spec = None
    if sensor is not None:
        from metronome.sensors import parse_sensor_url

        spec = parse_sensor_url(sensor, listen_any=listen_any)  # bad input (exit 2) before device problems (exit 1)
    checked_music = music_tracks(music, music_once, click_level, music_duck, music_sync)  # bad paths: exit 2, before devices
    resume = None
    if resume_at is not None:
        resume = parse_resume(resume_at, os.environ.pop("DOWNBEAT_RESUME", None))
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
                       flat_pace=flat_pace, runner=runner, no_cues=no_cues, voice_pack=voice_pack, voice=voice,
                       music=music, music_once=music_once, click_level=click_level, music_duck=music_duck,
                       music_sync=music_sync, clicks=clicks)
            return
    if profile is None and sensor is None:
        profile = "demo-descent"

    from metronome.live import LiveSession, follows_position
    from metronome.session import DEFAULT_RUNNER, load_profile, plan_live_session

    if follow_course and (profile is None or spec is None):
        raise InputError("--follow-course: needs a COURSE and a --sensor feed that reports position or distance")
    by_position = spec is not None and follows_position(spec)
    follow = profile is not None and spec is not None and (by_position or follow_course)
    if follow and spec.speed != 1.0:
        raise InputError(f"--sensor {sensor!r}: following a course replays a run on its own clock; leave out "
                         f"@{spec.speed:g}x")
    prof = None
    if follow:  # a course that cannot be followed is bad input: exit 2 before any device problem
        prof = load_profile(profile, flat_pace=flat_pace, runner=runner or DEFAULT_RUNNER)
        if by_position and prof.lat_deg is None:
            raise InputError(f"{profile}: following a course by position needs its coordinates (lat/lon); this "
                             "course has none (a YAML course or a track without positions)", field="profile")
    dev = find_device(device)  # fail fast, before any slow preparation
    if profile and prof is None:
        prof = load_profile(profile, flat_pace=flat_pace, runner=runner or DEFAULT_RUNNER)
    ts, es = _plan_settings(prof, base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, 2, clicks)
    fplan = None
    if follow:
        # The course by distance, followed by position (issue 14): the same plan as `render --follow replay:RUN`.
        from metronome.follow_session import plan_follow
        from metronome.session import plan_follow_live

        fplan = plan_follow(prof, ts, es, cues=not no_cues, voice_pack=voice_pack, voice=vs, by_position=by_position)
        plan = plan_follow_live(fplan, duration)
    else:
        plan = plan_live_session(prof, ts, es, follows_feed=spec is not None, cues=not no_cues,
                                 voice_pack=voice_pack, duration_s=duration, voice=vs)
    for w in plan.warnings:
        click.echo(f"downbeat: warning: {w}", err=True)
    if resume is not None and resume["position"] > plan.tempo_map.end_sample + es.samplerate:
        raise InputError(f"--resume-at: {resume['position']} is past the end of this session "
                         f"({plan.tempo_map.end_sample} samples)")
    mplan = music_plan(checked_music, plan, resume["position"] if resume is not None else 0)
    session = LiveSession(plan, feed_spec=spec, device=dev, blocksize=blocksize, duration_s=duration, resume=resume,
                          music=mplan, follow=fplan)
    summary = run_session(session, quiet=quiet or as_json, reconnect=reconnect, device=device)
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        click.echo(f"session: {summary['played_s']:.1f} s, {summary['beats']} steps, {summary['cues']} cues, "
                   f"{summary['underflows']} underflows, callback p99 {summary['callback_p99_ms']:.3f} ms"
                   + (f", output latency {summary['output_latency_ms']:.1f} ms"
                      + (" (measured)" if summary.get("output_offset_stored_ms") is not None else " (reported)")
                      if summary.get("output_latency_ms") is not None else "")
                   + (f", sensor to sound {summary['sensor_to_sound_ms']['p50']:.1f} ms"
                      if summary.get("sensor_to_sound_ms") else "")
                   + (f", footfalls {summary['footfall_phase_ms']['median']:+.0f} ms from the click"
                      if summary.get("footfall_phase_ms") else "")
                   + (f", stopped: {summary['stop_reason']}" if summary.get("stop_reason") else ""))
    if summary.get("error"):
        click.echo(f"downbeat: error: {summary['error']}", err=True)
        _exit_now_if_wedged(1)
        raise click.exceptions.Exit(1)
    _exit_now_if_wedged(0)
