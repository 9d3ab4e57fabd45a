"""Click commands ``learn``, ``review`` and ``progress`` for the ``downbeat`` group.

Register them with ``cli.add_command(learn)`` etc.  Each command handles its own input errors (one line on stderr,
``downbeat: error: FILE: ...``, exit 2; warnings ``downbeat: warning: ...``), so it behaves the same whether it is
run under ``downbeat`` or on its own (tests use :class:`click.testing.CliRunner`).
"""

from __future__ import annotations

import functools
import json

import click

from metronome.errors import DownbeatError
from profiles import pace


def _guard(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DownbeatError as exc:
            from .app import error_line

            click.echo(f"downbeat: error: {error_line(exc)}", err=True)
            raise click.exceptions.Exit(exc.exit_code)
        except OSError as exc:
            name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            click.echo(f"downbeat: error: {name}{exc.strerror or exc}", err=True)
            raise click.exceptions.Exit(2)
    return wrapper


def _warn(lines):
    for w in lines:
        click.echo(f"downbeat: warning: {w}", err=True)


_runner_option = click.option("--runner", "runner_path", type=click.Path(dir_okay=False), default=None,
                              help="Runner profile (default: $XDG_CONFIG_HOME/downbeat/runner.yaml if it exists).")
_base_option = click.option("--base-cadence", type=float, default=None,
                            help="Base cadence (steps/min); default: the runner profile's, else the run's own.")


@click.command("learn")
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to save the runner profile (default: $XDG_CONFIG_HOME/downbeat/runner.yaml).")
@click.option("--name", default="runner", show_default=True, help="Name stored in the profile.")
@_guard
def learn(runs, output, name):
    """Learn flat pace, grade -> pace curve and cadence from recorded RUNS (GPX, FIT, TCX with times)."""
    from metronome.history.learn import learn_runs
    from metronome.history.runner import default_runner_path, save_runner

    res = learn_runs(runs, name=name)
    _warn(res.warnings)
    r = res.runner
    out = save_runner(r, output or default_runner_path())
    click.echo(f"learned from {len(res.runs)} run{'s' if len(res.runs) != 1 else ''}: flat pace "
               f"{pace.format_pace(r.flat_pace_s_per_km)} min/km, base cadence "
               f"{'none (no cadence data)' if r.base_cadence_spm is None else f'{r.base_cadence_spm:.0f} spm'}")
    for g, f, d in r.pace_curve:
        cad = next((c for gg, c, _ in r.cadence_curve if gg == g), None)
        click.echo(f"  {g:+6.1f} %  {pace.format_pace(r.flat_pace_s_per_km * f):>6} min/km  x{f:4.2f}  "
                   f"{'' if cad is None else f'{cad:5.0f} spm'}  ({d / 1000:.2f} km)")
    click.echo(f"wrote {out}")


@click.command("review")
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None, help="Write a PNG of the review.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@_base_option
@_runner_option
@_guard
def review(run, png, as_json, base_cadence, runner_path):
    """Review RUN's descents: target vs actual cadence, share within +-3 %, speed."""
    from metronome.history.review import review_file
    from metronome.history.runner import load_runner_or_default

    if base_cadence is not None:
        from metronome.tempo import TempoSettings
        TempoSettings(base_cadence_spm=base_cadence)        # validates: one-line error naming --base-cadence
    runner = load_runner_or_default(runner_path)
    rv = review_file(run, base_cadence=base_cadence, runner=runner)
    if png:
        from .history_plot import write_review_png
        write_review_png(rv, png)
    if as_json:
        doc = rv.to_dict()
        doc["png"] = png
        click.echo(json.dumps(doc))
        return
    click.echo(f"{rv.display}: {rv.distance_m / 1000:.2f} km, base cadence {rv.base_cadence_spm:.0f} spm "
               f"({rv.base_source})")
    if rv.descents:
        click.echo("   start     end  length   grade  target  actual  in band   speed")
    for d in rv.descents:
        act = "     -" if d.actual_spm is None else f"{d.actual_spm:6.0f}"
        band = "      -" if d.in_band_pct is None else f"{d.in_band_pct:5.0f} %"
        spd = "     -" if d.speed_mps is None else f"{d.speed_mps * 3.6:4.1f} km/h"
        click.echo(f"{d.start_m / 1000:6.2f}  {d.end_m / 1000:6.2f}  {d.length_m:5.0f} m  {d.grade_pct:5.1f} %"
                   f"  {d.target_spm:6.0f}  {act}  {band}  {spd}")
    click.echo(rv.summary())
    if png:
        click.echo(f"plot written to {png}")


@click.command("progress")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--workout", type=click.Path(dir_okay=False), default=None,
              help="Write the next session as a treadmill workout YAML (plays with `downbeat play`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@_base_option
@_runner_option
@_guard
def progress(runs, workout, as_json, base_cadence, runner_path):
    """Descents and cadence run by run (RUN... or a FOLDER), the trend and the next session."""
    from metronome.history.progress import progress as run_progress
    from metronome.history.progress import write_workout
    from metronome.history.runner import load_runner_or_default

    runner = load_runner_or_default(runner_path)
    pr = run_progress(runs, base_cadence=base_cadence, runner=runner)
    _warn(pr.warnings)
    if workout:
        write_workout(pr.next_session, workout)
    if as_json:
        ns = pr.next_session
        click.echo(json.dumps({"runs": [r.to_dict() for r in pr.rows], "trend": pr.trend,
                               "next": {"decision": ns.decision, "reason": ns.reason, "grade_pct": ns.grade_pct,
                                        "interval_s": ns.interval_s, "speed_kmh": ns.speed_kmh},
                               "workout": workout}))
        return
    click.echo("date        descents  steepest  cadence  in band  run")
    for row in pr.rows:
        d = row.to_dict()
        steep = "      -" if d["steepest_grade_pct"] is None else f"{d['steepest_grade_pct']:5.1f} %"
        cad = "     -" if d["cadence_spm"] is None else f"{d['cadence_spm']:6.0f}"
        band = "      -" if d["in_band_pct"] is None else f"{d['in_band_pct']:5.0f} %"
        click.echo(f"{d['date'] or '?':10s}  {d['descents']:8d}  {steep:>8}  {cad:>7}  {band:>7}  {d['run']}")
    click.echo(pr.trend)
    click.echo(f"next session: {pr.next_session.decision}: {pr.next_session.reason}")
    if workout:
        click.echo(f"wrote {workout}")
