"""``downbeat export``: the plan as FIT files for a watch (a course with cue points, a cadence workout).

The command is a plain :class:`click.Command`; the main ``downbeat`` group registers it
(``cli.add_command(export)``).  Exit codes follow the CLI contract (metronome/cli.py): 0 ok, 2 bad input (a bad
file, flag or output path: one line, no traceback), 1 when the optional ``fit`` extra is missing (nothing is wrong
with the command; the installation lacks fit-tool, and the message says how to install it).
"""

from __future__ import annotations

import json
import os

import click

from metronome.errors import InputError
from metronome.settings import TempoSettings

from .app import voice_spec


def _check_out(path: str | None, flag: str) -> None:
    if path is None:
        return
    if os.path.splitext(path)[1].lower() != ".fit":
        raise InputError(f"{flag}: {path!r} must end in .fit (watches only pick up .fit files)")
    from metronome.export._fit import check_output_path

    check_output_path(path, flag)


def _plan_cues(profile, tempo_settings, samplerate: int, voice_pack, voice=None):
    """The session's planned cues, as ``render`` would place them; without espeak-ng, the unvoiced plan."""
    from cues.session import plan_profile_cues_unvoiced
    from metronome.mix import EngineSettings
    from metronome.session import plan_session

    es = EngineSettings(samplerate=samplerate)
    plan = plan_session(profile, tempo_settings, es, cues=True, voice_pack=voice_pack, voice=voice)
    warnings = list(plan.warnings)
    cues = plan.planned_cues
    if not cues and warnings:
        # No speech engine: plan with the longest clip every phrasing may have (cue positions may differ from a
        # voiced render by a few seconds).
        cues = tuple(plan_profile_cues_unvoiced(profile, plan.tempo_map, samplerate))
        warnings.append("cue points planned without speech: positions may differ slightly from a voiced render")
    return cues, warnings


@click.command("export")
@click.argument("course")
@click.option("--fit-course", "fit_course", type=click.Path(dir_okay=False), default=None, metavar="OUT.fit",
              help="Write a FIT course: the track plus a course point at every planned cue.")
@click.option("--fit-workout", "fit_workout", type=click.Path(dir_okay=False), default=None, metavar="OUT.fit",
              help="Write a FIT workout: one distance step per tempo plateau with a cadence target.")
@click.option("--base-cadence", type=float, default=None, metavar="SPM",
              help="Your cadence on the flat, steps per minute (default: the profile's, else 170).")
@click.option("--upper-cap", type=float, default=TempoSettings.upper_cap, show_default=True,
              help="Largest cadence factor on steep descents (at most 1.10).")
@click.option("--flat-pace", default=None, metavar="MM:SS",
              help="Your pace on the flat per km, for courses without timing (default 5:30).")
@click.option("--samplerate", type=int, default=48000, show_default=True,
              help="Sample rate of the plan the cue points come from (as for render).")
@click.option("--no-cues", is_flag=True, help="Course without cue points.")
@click.option("--voice-pack", type=click.Path(), default=None,
              help="Voice pack folder, as for render (its clip lengths move cues a little).")
@click.option("--voice", default=None, metavar="ENGINE[:VOICE]", help="Speech engine and voice, as for render.")
@click.option("--name", default=None, help="Course/workout name shown on the watch (default: the profile's).")
@click.option("--cadence-unit", type=click.Choice(["rpm", "spm"]), default="rpm", show_default=True,
              help="Unit of the workout's cadence targets: rpm = strides/min, the FIT unit (half your steps/min); "
                   "spm if your watch shows the targets halved.")
@click.option("--cadence-band", type=float, default=4.0, show_default=True, metavar="SPM",
              help="Half-width of each cadence target band, steps per minute.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@click.option("--quiet", is_flag=True, help="No summary.")
def export(course, fit_course, fit_workout, base_cadence, upper_cap, flat_pace, samplerate, no_cues, voice_pack,
           voice, name, cadence_unit, cadence_band, as_json, quiet):
    """Export COURSE (a file or a bundled name) for a GPS watch: --fit-course and/or --fit-workout."""
    from metronome.export import _fit

    if fit_course is None and fit_workout is None:
        raise click.UsageError("nothing to do: give --fit-course OUT.fit and/or --fit-workout OUT.fit")
    _check_out(fit_course, "--fit-course")
    _check_out(fit_workout, "--fit-workout")
    if fit_course and fit_workout and os.path.abspath(fit_course) == os.path.abspath(fit_workout):
        raise InputError(f"--fit-workout: {fit_workout!r} is the --fit-course file; give each its own name")
    if not (0 < cadence_band <= 30):
        raise InputError(f"--cadence-band: {cadence_band!r} is outside (0, 30] steps per minute")
    _fit.fit_tool()  # before any work: a missing extra is one line, exit 1

    from metronome.session import load_profile, tempo_settings_for

    from metronome.export.fit_course import build_course
    from metronome.export.fit_workout import build_workout

    profile = load_profile(course, flat_pace=flat_pace)
    ts = tempo_settings_for(profile, base_cadence, upper_cap)
    warnings = []
    summary = {"course": profile.source, "distance_m": round(profile.total_distance_m, 1),
               "duration_s": round(profile.duration_s, 1)}
    results = []
    if fit_course:
        cues, w = ((), []) if no_cues else _plan_cues(profile, ts, samplerate, voice_pack, voice_spec(voice))
        warnings += w
        ex = build_course(profile, cues, samplerate, name=name)
        warnings += list(ex.warnings)
        results.append((fit_course, ex.data))
        summary["fit_course"] = {"path": fit_course, "records": int(ex.track.distance_m.size),
                                 "course_points": [{"distance_m": round(p.distance_m, 1), "name": p.name,
                                                    "type": p.point_type} for p in ex.points]}
    if fit_workout:
        wk = build_workout(profile, ts, name=name, cadence_unit=cadence_unit, band_spm=cadence_band)
        results.append((fit_workout, wk.data))
        summary["fit_workout"] = {"path": fit_workout, "cadence_unit": cadence_unit,
                                  "steps": [{"distance_m": s.distance_m, "name": s.name, "target_spm":
                                             round(s.target_spm, 2), "low": s.low, "high": s.high}
                                            for s in wk.steps]}
    # Everything is encoded before anything is written: a failure leaves no half-exported pair.
    for path, data in results:
        _fit.write_atomic(path, data)
    for w in warnings:
        click.echo(f"downbeat: warning: {w}", err=True)
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        if fit_course:
            c = summary["fit_course"]
            click.echo(f"wrote {fit_course}: {profile.total_distance_m / 1000:.2f} km course, {c['records']} "
                       f"points, {len(c['course_points'])} cue points")
        if fit_workout:
            s = summary["fit_workout"]["steps"]
            click.echo(f"wrote {fit_workout}: {len(s)} steps, cadence targets in {cadence_unit}")
