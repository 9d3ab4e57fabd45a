"""``downbeat profile ...`` commands (registered by :mod:`metronome.cli`).

Errors are raised as :class:`~metronome.errors.InputError`/``ProfileError``; the top-level CLI prints them on one
line and exits with status 2.
"""

from __future__ import annotations

import json

import click
import numpy as np

from metronome.errors import InputError
from metronome.session import tempo_settings_for
from metronome.tempo import TempoSettings

from profiles.loader import bundled_names, load_profile
from profiles.schema import Profile


def _fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _signed_m(x: float) -> str:
    """``-12 m``, ``+40 m``, and ``0 m`` (not ``-0 m``) when the rounded value is zero."""
    return f"{x:+.0f} m" if round(x) != 0 else "0 m"


def summarize(profile: Profile, settings: TempoSettings, tempo_map=None) -> dict:
    """Numbers of the terminal summary (also handy for tests and scripts); ``tempo_map``: the session plan's."""
    from .plot import cadence_curves

    instant, played = cadence_curves(profile, settings, tempo_map=tempo_map)
    return {
        "name": profile.name,
        "source": profile.source,
        "kind": profile.kind,
        "distance_m": profile.total_distance_m,
        "descent_m": profile.total_descent_m,
        "ascent_m": profile.total_ascent_m,
        "duration_s": profile.duration_s,
        "grade_min_pct": float(profile.grade_pct.min()),
        "grade_max_pct": float(profile.grade_pct.max()),
        "cadence_min_spm": float(played.min()),
        "cadence_max_spm": float(played.max()),
        "base_cadence_spm": settings.base_cadence_spm,
        "notes": list(profile.notes),
        "warnings": list(profile.warnings),
    }


def format_summary(s: dict) -> str:
    dist = s["distance_m"]
    rows = [
        ("profile", f"{s['name']}  ({s['kind']}, {s['source']})"),
        ("distance", f"{dist / 1000:.2f} km"),
        ("descent / ascent", f"{_signed_m(-s['descent_m'])} / {_signed_m(s['ascent_m'])}"),
        ("estimated time", _fmt_duration(s["duration_s"])),
        ("grade range", f"{s['grade_min_pct']:+.1f} % .. {s['grade_max_pct']:+.1f} %"),
        ("target cadence", f"{s['cadence_min_spm']:.0f} .. {s['cadence_max_spm']:.0f} steps/min "
                           f"(base {s['base_cadence_spm']:.0f})"),
    ]
    if s["notes"]:
        rows.append(("derived with", "; ".join(s["notes"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@click.group(name="profile")
def profile():
    """Inspect course, workout and activity profiles."""


def cue_timeline(profile: Profile, settings: TempoSettings, *, voice_pack=None,
                 samplerate: int = 48000, plan=None) -> tuple[list[dict], list[str]]:
    """The cues a session of ``profile`` would speak, as rows for the summary and the plot.

    The plan is the one ``render``/``play`` use (:func:`metronome.session.plan_session`), so what the summary lists
    is what the runner hears.

    Returns
    -------
    (cues, warnings) : (list of dict, list of str)
        One dict per cue in time order: ``time_s``, ``distance_m``, ``cue_id``, ``text``, ``trigger``;
        ``warnings``: the profile's own (``Profile.warnings``), then why there are no cues (e.g. espeak-ng
        missing).
    """
    from metronome.mix import EngineSettings
    from metronome.session import plan_session

    if plan is None:
        plan = plan_session(profile, settings, EngineSettings(samplerate=samplerate), cues=True,
                            voice_pack=voice_pack)
    samplerate = plan.engine_settings.samplerate
    rows = []
    for c in plan.planned_cues:
        t_s = c.start_sample / samplerate
        rows.append({"time_s": round(t_s, 3), "distance_m": round(float(profile.distance_at_time(t_s)), 1),
                     "cue_id": c.cue_id, "text": c.text or c.cue_id, "trigger": c.trigger})
    return rows, list(plan.warnings)


def format_cues(cues: list[dict]) -> str:
    """The cue timeline block of the terminal summary: time, distance and the words spoken."""
    if not cues:
        return "cue timeline      (no cues)"
    lines = [f"cue timeline      {len(cues)} spoken cues"]
    for c in cues:
        lines.append(f"  {_fmt_duration(c['time_s']):>7}  {c['distance_m'] / 1000:5.2f} km  {c['text']}")
    return "\n".join(lines)


@profile.command(name="show")
@click.argument("profile_spec", metavar="PROFILE")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None,
              help="Also write a plot (elevation, grade, target cadence, cues) to this PNG file.")
@click.option("--base-cadence", type=float, default=None,
              help="Your cadence on the flat, steps per minute (default: the profile's, else 170).")
@click.option("--flat-pace", default=None, metavar="MM:SS",
              help="Your pace on the flat in min/km for the pace model (default: the profile's, else 5:30).")
@click.option("--runner", "runner", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Runner profile from `downbeat learn` (default: ~/.config/downbeat/runner.yaml if it exists).")
@click.option("--no-cues", is_flag=True, help="Leave out the cue plan (no speech synthesis needed).")
@click.option("--voice-pack", type=click.Path(), default=None, help="Folder of WAV files overriding cue voices.")
@click.option("--voice", default=None, metavar="ENGINE[:VOICE]", help="Speech engine and voice, as for render.")
@click.option("--quiet", is_flag=True, help="Print nothing (with --png: just write the plot).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and cue timeline as JSON.")
def show(profile_spec, png, base_cadence, flat_pace, runner, no_cues, voice_pack, voice, quiet, as_json):
    """Summarise PROFILE (a file or a bundled name): grade, target cadence and the cue timeline; optionally plot it.

    Bundled profiles: see `downbeat profile list`.
    """
    if png:
        from metronome.outfiles import input_files, refuse_overwriting_inputs

        refuse_overwriting_inputs([("--png", png)], input_files(profile_spec, voice_pack) + ([runner] if runner else []))
    from metronome.session import DEFAULT_RUNNER, load_profile as load_session_profile

    prof = load_session_profile(profile_spec, flat_pace=flat_pace, runner=runner or DEFAULT_RUNNER)
    if base_cadence is not None and not np.isfinite(base_cadence):
        raise InputError(f"--base-cadence: {base_cadence!r} is not a number")
    settings = tempo_settings_for(prof, base_cadence)
    # One plan, the one render and play would use: its tempo map feeds the summary, the cue rows and the plot.
    from metronome.mix import EngineSettings
    from metronome.session import plan_session

    from .app import voice_spec

    plan = plan_session(prof, settings, EngineSettings(), cues=not no_cues, voice_pack=voice_pack,
                        voice=voice_spec(voice))
    summary = summarize(prof, settings, plan.tempo_map)
    cues, warnings = ([], list(plan.warnings)) if no_cues else cue_timeline(prof, settings, plan=plan)
    for w in warnings:
        click.echo(f"downbeat: warning: {w}", err=True)
    out = None
    if png:
        from .plot import write_png

        markers = [(c["time_s"], c["text"]) for c in cues]
        out = write_png(prof, settings, png, cue_markers=markers, tempo_map=plan.tempo_map)
    if as_json:
        click.echo(json.dumps({**summary, "cues": None if no_cues else cues,
                               "png": str(out) if out is not None else None}))
    elif not quiet:
        click.echo(format_summary(summary))
        if not no_cues:
            click.echo(format_cues(cues))
        if out is not None:
            click.echo(f"plot written to {out}")


@profile.command(name="list")
def list_bundled():
    """List the bundled profiles."""
    for name in bundled_names():
        p = load_profile(name)
        click.echo(f"{name:<20} {p.kind:<8} {p.total_distance_m / 1000:6.2f} km  -{p.total_descent_m:4.0f} m  "
                   f"{_fmt_duration(p.duration_s):>7}  {p.name}")
