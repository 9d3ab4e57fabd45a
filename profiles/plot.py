"""Profile plot: elevation, grade and target cadence against distance (time on the top axis) as a PNG.

Uses matplotlib's Agg backend (no display needed) through the object API, so it never touches pyplot's global
state of whoever imports us.  The PNG is written to a temporary file in the destination folder and moved into
place with :func:`os.replace`, so a failure never leaves a partial image.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from metronome.errors import InputError
from metronome.tempo import TempoSettings, target_cadence, tempo_map_from_profile

from .schema import Profile

PLOT_SAMPLERATE = 48000  # only to build the tempo map; any valid rate gives the same tempo curve


def cadence_curves(profile: Profile, settings: TempoSettings, samplerate: int = PLOT_SAMPLERATE):
    """``(instant_target_spm, metronome_spm)`` at each profile point.

    ``instant_target_spm`` is the model's target for the local grade; ``metronome_spm`` is what the metronome
    plays (plateaus with hysteresis and ramps, from :func:`metronome.tempo.tempo_map_from_profile`).
    """
    tmap = tempo_map_from_profile(profile, settings, samplerate)
    return target_cadence(profile.grade_pct, settings), tmap.bpm_at(profile.time_s * samplerate)


def _interp_extrap(v, xp, fp):
    """``np.interp`` that continues the end slopes instead of clamping, so axis ticks beyond the data are not
    all piled up at the edge."""
    v = np.asarray(v, dtype=np.float64)
    out = np.interp(v, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out = np.where(v < xp[0], fp[0] + (v - xp[0]) * lo_slope, out)
    return np.where(v > xp[-1], fp[-1] + (v - xp[-1]) * hi_slope, out)


def render_figure(profile: Profile, settings: TempoSettings, cue_markers=None):
    """Build the figure (a :class:`matplotlib.figure.Figure`, not shown, not saved)."""
    from matplotlib.figure import Figure

    instant, played = cadence_curves(profile, settings)
    by_time = profile.kind == "workout"
    if by_time:
        x = profile.time_s / 60.0
        xlabel = "time (min)"
    else:
        x = profile.distance_m / 1000.0
        xlabel = "distance (km)"

    fig = Figure(figsize=(11, 7.5), dpi=120, layout="constrained")
    ax_e, ax_g, ax_c = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, 1, 1.2]})
    title = f"{profile.name}: {profile.total_distance_m / 1000:.2f} km, -{profile.total_descent_m:.0f} m / " \
            f"+{profile.total_ascent_m:.0f} m, {profile.duration_s / 60:.0f} min"
    fig.suptitle(title, fontsize=13, fontweight="bold")

    ax_e.fill_between(x, profile.elevation_m, profile.elevation_m.min() - 5, color="#c9b79c", alpha=0.6, lw=0)
    ax_e.plot(x, profile.elevation_m, color="#6b4f2a", lw=1.5)
    ax_e.set_ylabel("elevation (m)")
    for tag in profile.tags:
        if tag.label == "technical":
            t0, t1 = (profile.time_at_distance([tag.start_m, tag.end_m]) / 60.0 if by_time
                      else (tag.start_m / 1000.0, tag.end_m / 1000.0))
            for ax in (ax_e, ax_g, ax_c):
                ax.axvspan(t0, t1, color="#e8a33d", alpha=0.15, lw=0)
            ax_e.text((t0 + t1) / 2, 0.95, "technical", transform=ax_e.get_xaxis_transform(), ha="center",
                      va="top", fontsize=8, color="#a0600a")

    g = profile.grade_pct
    ax_g.fill_between(x, g, 0, where=g < 0, color="#3b7dd8", alpha=0.5, lw=0, interpolate=True, label="descent")
    ax_g.fill_between(x, g, 0, where=g >= 0, color="#d8543b", alpha=0.5, lw=0, interpolate=True, label="climb")
    ax_g.plot(x, g, color="#333333", lw=0.8)
    ax_g.axhline(0, color="#888888", lw=0.6)
    ax_g.set_ylabel("grade (%)")
    ax_g.legend(loc="lower right", fontsize=8, frameon=False, ncols=2)

    ax_c.plot(x, instant, color="#9aa7b8", lw=1, label="target for the local grade")
    ax_c.plot(x, played, color="#1b3a6b", lw=2, label="metronome (ramped, with hysteresis)")
    ax_c.axhline(settings.base_cadence_spm, color="#888888", lw=0.6, ls=":")
    ax_c.set_ylabel("cadence (steps/min)")
    ax_c.set_xlabel(xlabel)
    lo = min(instant.min(), played.min())
    hi = max(instant.max(), played.max())
    ax_c.set_ylim(lo - 4, hi + 6)
    ax_c.legend(loc="lower right", fontsize=8, frameon=False)

    for t_s, label in cue_markers or ():
        xm = t_s / 60.0 if by_time else float(profile.distance_at_time(t_s)) / 1000.0
        for ax in (ax_e, ax_g, ax_c):
            ax.axvline(xm, color="#2a8a4a", lw=0.8, ls="--", alpha=0.8)
        ax_c.text(xm, 0.98, f" {label}", transform=ax_c.get_xaxis_transform(), rotation=90, va="top",
                  ha="left", fontsize=7, color="#2a8a4a")

    if not by_time:
        # Time on the top axis: the pace model (or the recording) maps distance to time monotonically.
        d_km, t_min = profile.distance_m / 1000.0, profile.time_s / 60.0
        top = ax_e.secondary_xaxis("top", functions=(lambda v: _interp_extrap(v, d_km, t_min),
                                                     lambda v: _interp_extrap(v, t_min, d_km)))
        top.set_xlabel("time (min)")
    for ax in (ax_e, ax_g, ax_c):
        ax.grid(True, color="#dddddd", lw=0.5)
        ax.set_xlim(x[0], x[-1])
    return fig


def write_png(profile: Profile, settings: TempoSettings, path, cue_markers=None) -> Path:
    """Plot ``profile`` to a PNG at ``path`` atomically; return the path.

    Parameters
    ----------
    cue_markers : list of (time_s, label), optional
        Cue events to overlay (e.g. from the cue planner).
    """
    dest = Path(path)
    if dest.suffix.lower() != ".png":
        raise InputError(f"--png: {str(path)!r} must end in .png")
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"--png: folder {str(folder)!r} does not exist")
    if dest.is_dir():
        raise InputError(f"--png: {str(path)!r} is a directory")
    fig = render_figure(profile, settings, cue_markers)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"--png: cannot write in {str(folder)!r} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dest
