"""``downbeat profile ...`` commands (registered by :mod:`metronome.cli`).

Errors are raised as :class:`~metronome.errors.InputError`/``ProfileError``; the top-level CLI prints them on one
line and exits with status 2.
"""

from __future__ import annotations

import click
import numpy as np

from metronome.errors import InputError
from metronome.tempo import TempoSettings

from . import pace
from .loader import bundled_names, load_profile
from .schema import Profile


def _fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def summarize(profile: Profile, settings: TempoSettings) -> dict:
    """Numbers of the terminal summary (also handy for tests and scripts)."""
    from .plot import cadence_curves

    instant, played = cadence_curves(profile, settings)
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
    }


def format_summary(s: dict) -> str:
    dist = s["distance_m"]
    rows = [
        ("profile", f"{s['name']}  ({s['kind']}, {s['source']})"),
        ("distance", f"{dist / 1000:.2f} km"),
        ("descent / ascent", f"-{s['descent_m']:.0f} m / +{s['ascent_m']:.0f} m"),
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


@profile.command(name="show")
@click.argument("profile_spec", metavar="PROFILE")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None,
              help="Also write a plot (elevation, grade, target cadence) to this PNG file.")
@click.option("--base-cadence", type=float, default=None,
              help="Your cadence on the flat, steps per minute (default: the profile's, else 170).")
@click.option("--flat-pace", default=None, metavar="MM:SS",
              help="Your pace on the flat in min/km for the pace model (default: the profile's, else 5:30).")
def show(profile_spec, png, base_cadence, flat_pace):
    """Summarise PROFILE (a file or a bundled name) and optionally plot it.

    Bundled profiles: see `downbeat profile list`.
    """
    flat = pace.parse_pace(flat_pace) if flat_pace is not None else None
    prof = load_profile(profile_spec, flat_pace_s_per_km=flat)
    base = base_cadence if base_cadence is not None else (prof.base_cadence_spm or 170.0)
    if not np.isfinite(base):
        raise InputError(f"--base-cadence: {base_cadence!r} is not a number")
    settings = TempoSettings(base_cadence_spm=float(base))
    click.echo(format_summary(summarize(prof, settings)))
    if png:
        from .plot import write_png
        out = write_png(prof, settings, png)
        click.echo(f"plot written to {out}")


@profile.command(name="list")
def list_bundled():
    """List the bundled profiles."""
    for name in bundled_names():
        p = load_profile(name)
        click.echo(f"{name:<20} {p.kind:<8} {p.total_distance_m / 1000:6.2f} km  -{p.total_descent_m:4.0f} m  "
                   f"{_fmt_duration(p.duration_s):>7}  {p.name}")
