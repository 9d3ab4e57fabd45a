"""``downbeat render COURSE --follow replay:RUN``: what ``play COURSE --sensor replay:RUN`` would have played.

The flags and the printing; the work is :func:`metronome.follow_session.render_follow` (the same follower and
control code as ``play``, on the run's own clock: ``time_s`` in the events CSV counts from the run's first fix).
"""

from __future__ import annotations

import json
import math
import os

import click

from metronome.errors import InputError, SensorError


def parse_follow(follow: str):
    """``replay:RUN`` -> the run's path; anything else is bad input naming ``--follow``."""
    from metronome.sensors import parse_sensor_url
    from metronome.sensors.track_replay import is_track_file

    try:
        spec = parse_sensor_url(follow)
    except SensorError as exc:
        raise InputError(str(exc).replace("--sensor", "--follow", 1)) from None
    if spec.kind != "replay" or not is_track_file(spec.path):
        raise InputError(f"--follow {follow!r}: expected replay:RUN with RUN a recorded .gpx, .fit or .tcx file "
                         "(a live feed is `downbeat play COURSE --sensor URL`)")
    if spec.speed != 1.0:
        raise InputError(f"--follow {follow!r}: a render runs on the run's own clock; leave out @{spec.speed:g}x")
    return spec.path


def render_follow_command(profile, out, events, blocksize, channels, subtype, quiet, as_json, follow,
                          base_cadence, samplerate, upper_cap, volume_db, ceiling_db, accent_every, runner, no_cues,
                          voice_pack):
    from metronome import outfiles
    from metronome.engine import warm_kernels
    from metronome.follow_session import plan_follow, render_follow
    from metronome.render import output_format
    from metronome.sensors.track_replay import load_track_fixes
    from metronome.mix import EngineSettings
    from metronome.session import DEFAULT_RUNNER, load_profile, tempo_settings_for

    output_format(out, subtype, samplerate)
    if not (1 <= blocksize <= 1 << 20):
        raise InputError(f"--blocksize: {blocksize!r} is outside 1..1048576")
    run = parse_follow(follow)
    outfiles.refuse_overwriting_inputs([("--output", out), ("--events", events)],
                                       outfiles.input_files(profile, voice_pack) + [str(run)]
                                       + ([runner] if runner else []))
    for folder in sorted({os.path.dirname(os.path.abspath(p)) for p in (out, events) if p}):
        for line in outfiles.clean_stale_partials(folder):
            click.echo(f"downbeat: {line}", err=True)
    prof = load_profile(profile, runner=runner or DEFAULT_RUNNER)
    # As app._plan_settings (not imported: cli.app imports this module); each default lives in the dataclasses.
    es = EngineSettings(samplerate=samplerate, channels=channels, ceiling_dbfs=ceiling_db, volume_db=volume_db,
                        accent_every=accent_every)
    ts = tempo_settings_for(prof, base_cadence, upper_cap)
    fixes = load_track_fixes(run)
    plan = plan_follow(prof, ts, es, cues=not no_cues, voice_pack=voice_pack)
    for w in plan.warnings:
        click.echo(f"downbeat: warning: {w}", err=True)
    warm_kernels(samplerate, channels, for_play=False)
    res, sched = render_follow(plan, fixes, out, events_path=events, blocksize=blocksize, subtype=subtype)
    fol = sched.follower
    kinds = [e.kind for e in fol.events]
    summary = {"output": out, "events": events, "follow": str(run), "duration_s": round(res.frames / samplerate, 3),
               "beats": res.beats, "cues": res.cues, "cues_dropped": res.cues_dropped,
               "peak_dbfs": round(20 * math.log10(max(res.peak, 1e-12)), 2),
               "fixes": len(fixes), "course_km": round(plan.course.total_m / 1000, 3),
               "reached_km": round(sched.steps[-1].distance_m / 1000, 3) if sched.steps else 0.0,
               "off_course": kinds.count("off_course"), "lost_fix": kinds.count("lost_fix"),
               "render_s": round(res.seconds, 3)}
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        click.echo(f"wrote {out}: {summary['duration_s'] / 60:.1f} min following {run.name} "
                   f"({summary['reached_km']:.2f} of {summary['course_km']:.2f} km), {res.beats} steps, "
                   f"{res.cues} cues, off course {summary['off_course']}x, lost fix {summary['lost_fix']}x")
