"""``downbeat latency``: measure your own audio path (register with ``cli.add_command(latency)``).

``--loopback`` measures the round trip through a device whose output is wired to its input
(:mod:`metronome.latency.loopback`); ``--tap`` calibrates a device no cable can loop (headphones, Bluetooth:
:mod:`metronome.latency.tap`).  Both store the result for the device (:mod:`metronome.latency.offsets`).

``--json`` prints one object.  For ``--loopback`` its top-level keys are those of the *first* blocksize's run
(``device``, ``hostapi``, ``samplerate``, ``blocksize``, ``period_frames``, ``server_period_frames``,
``round_trip_frames``, ``round_trip_ms``, ``jitter_p50_ms``, ``jitter_p99_ms``, ``drift_ppm``, ``xruns``,
``bursts``, ``bursts_missing``, ``seconds``, ``portaudio_latency_ms``, ``jack_connected``, ``notes``) plus
``runs``: one such object per ``--blocksize`` entry, in the order given (a single blocksize gives a one-entry list),
and ``stored`` (the offsets file written, or null with ``--no-store``).
"""

from __future__ import annotations

import json
import os

import click

from metronome.errors import InputError

#: Default run lengths: 10 s of loopback bursts (~29 bursts at 48 kHz) gives a p99 from a few dozen values;
#: 30 s of tapping at 100 bpm is 50 taps, enough for a median after warm-up and outliers.
DEFAULT_LOOPBACK_S = 10.0
DEFAULT_TAP_S = 30.0
MAX_MINUTES = 60.0
MAX_BLOCKSIZE = 8192


def parse_blocksizes(text: str) -> list[int]:
    """``"64,128,256"`` -> [64, 128, 256]; 0 lets the host API choose."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) > MAX_BLOCKSIZE:
            raise InputError(f"--blocksize: {part[:20]!r} is not an integer in 0..{MAX_BLOCKSIZE} "
                             "(comma-separated list, e.g. 64,128,256)")
        out.append(int(part))
    if len(out) > 16:
        raise InputError("--blocksize: at most 16 blocksizes per run")
    return out


def _seconds(minutes, default_s):
    if minutes is None:
        return default_s
    if not (0 < minutes <= MAX_MINUTES):
        raise InputError(f"--minutes: {minutes!r} is outside 0..{MAX_MINUTES:g}")
    return minutes * 60.0


def _note(msg):
    click.echo(f"downbeat: {msg}", err=True)


def write_png(path: str, results) -> None:
    """Lag of every burst over time, one line per blocksize (written beside ``path``, then moved into place)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for r in results:
        ms = [v * 1000.0 / r.samplerate for v in r.lags_frames]
        ax.plot(r.lag_times_s, ms, marker=".", label=f"blocksize {r.blocksize or 'auto'} "
                                                      f"(callbacks of {r.period_frames}): {r.round_trip_frames} frames")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("round trip (ms)")
    ax.set_title(f"{results[0].device}: loopback round trip")
    ax.legend(fontsize="small", loc="best")
    ax.grid(alpha=0.3)
    from metronome.atomic import atomic_file

    try:
        with atomic_file(path, "wb", prefix=".latency-", suffix=".png") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)


def _text_report(results) -> str:
    r0 = results[0]
    lines = [f"{r0.device}: host API {r0.hostapi}, {r0.samplerate} Hz"
             + (f", JACK period {r0.server_period_frames} frames" if r0.server_period_frames else "")]
    for r in results:
        if r.round_trip_frames is None:
            lines.append(f"  blocksize {r.blocksize or 'auto'}: no signal came back")
            continue
        lines.append(f"  blocksize {r.blocksize or 'auto'} (callbacks of {r.period_frames} frames): round trip "
                     f"{r.round_trip_frames} frames = {r.round_trip_ms:.3f} ms; jitter p50 {r.jitter_p50_ms:.3f} / "
                     f"p99 {r.jitter_p99_ms:.3f} ms; drift {r.drift_ppm:.3f} ppm; xruns {r.xruns}; "
                     f"{r.bursts} bursts over {r.seconds:.1f} s")
    return "\n".join(lines)


@click.command(name="latency")
@click.option("--device", default=None, metavar="NAME", help="Device index or part of its name (default: default).")
@click.option("--loopback", is_flag=True, help="Round trip through an output wired to an input.")
@click.option("--tap", is_flag=True, help="Tap a key along with clicks (headphones, Bluetooth).")
@click.option("--blocksize", "blocksize_text", default="0", show_default=True, metavar="N[,N...]",
              help="Frames per callback; several compare them in one run (0: the host API's choice).")
@click.option("--minutes", type=float, default=None,
              help=f"Length of each run (default {DEFAULT_LOOPBACK_S:g} s loopback, {DEFAULT_TAP_S:g} s tap).")
@click.option("--samplerate", type=int, default=None, help="Default: the device's.")
@click.option("--bpm", type=float, default=100.0, show_default=True, help="--tap: click tempo.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="--loopback: plot of the lag over time.")
@click.option("--no-store", is_flag=True, help="Do not store the result for the device.")
def latency(device, loopback, tap, blocksize_text, minutes, samplerate, bpm, as_json, png, no_store):
    """Measure your audio path: round trip through a loopback, or your output offset by tapping along."""
    from metronome.latency import offsets

    if loopback == tap:
        raise InputError("choose one of --loopback or --tap")
    if samplerate is not None and not (8000 <= samplerate <= 384000):
        raise InputError(f"--samplerate: {samplerate!r} is outside 8000..384000")
    if tap:
        if png:
            raise InputError("--png: only with --loopback")
        if not (30.0 <= bpm <= 240.0):
            raise InputError(f"--bpm: {bpm!r} is outside 30..240")
        from metronome.latency.tap import run_tap_session, tap_offset

        _note(f"tap any key on every click ({bpm:g} per minute; the first few are warm-up); q stops")
        label, clicks, taps = run_tap_session(device, bpm=bpm, seconds=_seconds(minutes, DEFAULT_TAP_S),
                                              samplerate=samplerate or 48000)
        res = tap_offset(clicks, taps)
        for w in res.warnings:
            click.echo(f"downbeat: warning: {w}", err=True)
        stored = None if no_store else str(offsets.store(label, "tap", res.record()))
        if as_json:
            click.echo(json.dumps({"device": label, "offset_ms": round(res.offset_s * 1000.0, 2), **res.record(),
                                   "stored": stored}))
        else:
            click.echo(f"{label}: output offset {res.offset_s * 1000.0:+.1f} ms "
                       f"(median of {res.taps_used} taps, MAD {res.mad_s * 1000.0:.1f} ms, {res.taps_dropped} dropped)")
        return
    blocksizes = parse_blocksizes(blocksize_text)
    seconds = _seconds(minutes, DEFAULT_LOOPBACK_S)
    if png and not png.lower().endswith(".png"):
        raise InputError(f"--png: {png!r} does not end in .png")
    if png and not os.path.isdir(os.path.dirname(os.path.abspath(png))):
        raise InputError(f"--png: folder of {png!r} does not exist")
    from metronome.latency.loopback import measure

    results = []
    for bs in blocksizes:
        results.append(measure(device, bs, seconds, samplerate=samplerate, on_note=_note))
    r0 = results[0]
    stored = None
    if not no_store and r0.round_trip_frames is not None:
        stored = str(offsets.store(r0.device, "loopback", {
            "round_trip_s": r0.round_trip_frames / r0.samplerate, "round_trip_frames": r0.round_trip_frames,
            "samplerate": r0.samplerate, "period_frames": r0.period_frames, "blocksize": r0.blocksize,
            "hostapi": r0.hostapi}))
    if png:
        write_png(png, results)
    if as_json:
        click.echo(json.dumps({**r0.summary(), "runs": [r.summary() for r in results], "stored": stored}))
    else:
        click.echo(_text_report(results))
        if stored:
            click.echo(f"stored for {r0.device} in {stored}")
