"""Profile plot: elevation, grade and target cadence against distance (time on the top axis) as a PNG.

Uses matplotlib's Agg backend (no display needed) through the object API, so it never touches pyplot's global
state of whoever imports us.  The PNG is written to a temporary file in the destination folder and moved into
place with :func:`os.replace`, so a failure never leaves a partial image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metronome.errors import InputError
from metronome.tempo import TempoSettings, target_cadence, tempo_map_from_profile

from profiles.schema import Profile

PLOT_SAMPLERATE = 48000  # only to build the tempo map; any valid rate gives the same tempo curve


def cadence_curves(profile: Profile, settings: TempoSettings, samplerate: int = PLOT_SAMPLERATE, tempo_map=None):
    """``(instant_target_spm, metronome_spm)`` at each profile point.

    ``instant_target_spm`` is the model's target for the local grade; ``metronome_spm`` is what the metronome
    plays (plateaus with hysteresis and ramps): ``tempo_map``, the session plan's, or one built from the profile.
    """
    tmap = tempo_map if tempo_map is not None else tempo_map_from_profile(profile, settings, samplerate)
    return target_cadence(profile.grade_pct, settings), tmap.bpm_at(profile.time_s * tmap.samplerate)


def _interp_extrap(v, xp, fp):
    """``np.interp`` that continues the end slopes instead of clamping, so axis ticks beyond the data are not
    all piled up at the edge."""
    v = np.asarray(v, dtype=np.float64)
    out = np.interp(v, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out = np.where(v < xp[0], fp[0] + (v - xp[0]) * lo_slope, out)
    return np.where(v > xp[-1], fp[-1] + (v - xp[-1]) * hi_slope, out)


#: Output size: 1600 x 1000 px, big enough for a README screenshot, labels readable when scaled to 800 px.
FIG_SIZE_IN = (1600 / 120, 1000 / 120)
FIG_DPI = 120
CUE_COLOR = "#1f7a3f"
CUE_FONT_PT = 9.0
MAX_CUE_ROWS = 8
#: Dense plans (labels that would need more than MAX_CUE_ROWS rows, or that cannot fit inside the lane): the lane
#: shows a number per cue, one number per distinct phrase, explained in a numbered list beside the plot.
MAX_BADGE_ROWS = 12
MIN_FONT_PT = 6.0
LEGEND_WIDTH_RATIO = 0.28  # of the plot column; widened if the longest phrase needs it


def _fmt_clock(t_s: float) -> str:
    s = int(round(t_s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def assign_label_rows(starts_px, widths_px, axis_width_px: float, gap_px: float = 12.0,
                      max_rows: int = MAX_CUE_ROWS) -> list[tuple[int, bool]]:
    """Place labels that start at ``starts_px`` into as few rows as possible without overlap.

    Greedy in order of ``starts_px`` (time order): each label goes into the first row whose last label ends
    ``gap_px`` before it starts.  A label that would run past the right edge is flipped to end at its anchor
    instead.  When ``max_rows`` are full the label goes to the row that frees up first (overlap is then
    unavoidable, but stays as small as possible).

    Returns
    -------
    list of (row, flipped) : one per label, in input order.
    """
    row_end = []  # right edge (px) of the last label in each row
    out = []
    for x, w in zip(starts_px, widths_px):
        flipped = x + w > axis_width_px
        lo, hi = (x - w, x) if flipped else (x, x + w)
        row = next((r for r, end in enumerate(row_end) if end + gap_px <= lo), None)
        if row is None:
            if len(row_end) < max_rows:
                row = len(row_end)
                row_end.append(hi)
            else:
                row = int(np.argmin(row_end))
        row_end[row] = max(row_end[row], hi) if row < len(row_end) else hi
        out.append((row, flipped))
    return out


def spread_in_row(xs_px, widths_px, axis_width_px: float, gap_px: float) -> np.ndarray:
    """Left edges for labels wanted at ``xs_px`` (sorted) in one row: no overlap (``gap_px`` apart), all inside
    ``[0, axis_width_px]``, each as close to where it is wanted as possible (least squares).

    With ``q_i = left_i - offset_i`` (``offset_i`` the widths and gaps before label i) the constraints become "q
    non-decreasing" and one common bound, so the answer is the isotonic regression of ``x_i - offset_i`` (pool
    adjacent violators) clipped to that bound.  Needs ``sum(widths) + gaps <= axis_width_px``.
    """
    x = np.asarray(xs_px, dtype=np.float64)
    w = np.asarray(widths_px, dtype=np.float64)
    if x.size == 0:
        return x
    offset = np.concatenate([[0.0], np.cumsum(w[:-1] + gap_px)])
    target = x - offset
    blocks = []  # [sum, count]
    for v in target:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            a, b = blocks.pop(), blocks.pop()
            blocks.append([a[0] + b[0], a[1] + b[1]])
    q = np.concatenate([np.full(n, total / n) for total, n in blocks])
    q = np.clip(q, 0.0, max(0.0, axis_width_px - offset[-1] - w[-1]))
    return q + offset


def render_figure(profile: Profile, settings: TempoSettings, cue_markers=None, tempo_map=None):
    """Build the figure (a :class:`matplotlib.figure.Figure`, not shown, not saved).

    Panels: elevation (time on the top axis), grade, cadence (the model's target and what the metronome plays)
    and, when ``cue_markers`` are given, a cue lane.  Its labels (time + words) are stacked in rows so none
    overlap; where cues are too dense for that (more than :data:`MAX_CUE_ROWS` rows, or a label that cannot fit
    inside the lane) the lane shows a number per cue instead, one per distinct phrase, listed beside the plot.
    Either way no label overlaps another or leaves the figure.

    Parameters
    ----------
    cue_markers : list of (time_s, label), optional
        Spoken cues to mark (e.g. from :func:`metronome.cli.profile.cue_timeline`).
    tempo_map : TempoMap, optional
        What the metronome plays (the session plan's); built from the profile when not given.
    """
    if tempo_map is None:
        tempo_map = tempo_map_from_profile(profile, settings, PLOT_SAMPLERATE)
    fig = _figure(profile, settings, cue_markers, tempo_map, numbered=False)
    if getattr(fig, "_downbeat_labels_fit", True):
        return fig
    return _figure(profile, settings, cue_markers, tempo_map, numbered=True)


def _figure(profile: Profile, settings: TempoSettings, cue_markers, tempo_map, numbered: bool):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    instant, played = cadence_curves(profile, settings, tempo_map=tempo_map)
    by_time = profile.kind == "workout"
    if by_time:
        x = profile.time_s / 60.0
        xlabel = "time (min)"
    else:
        x = profile.distance_m / 1000.0
        xlabel = "distance (km)"
    markers = sorted((float(t), str(label)) for t, label in (cue_markers or ()))

    fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # a canvas to measure text on (the figure is still only drawn by savefig)
    ratios = [1.25, 0.95, 1.15] + ([0.8] if markers else [])
    if numbered:
        gs = fig.add_gridspec(len(ratios), 2, height_ratios=ratios, width_ratios=[1.0, LEGEND_WIDTH_RATIO])
    else:
        gs = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    col = (lambda i: gs[i, 0]) if numbered else (lambda i: gs[i])  # noqa: E731
    ax_e = fig.add_subplot(col(0))
    ax_g = fig.add_subplot(col(1), sharex=ax_e)
    ax_c = fig.add_subplot(col(2), sharex=ax_e)
    ax_q = fig.add_subplot(col(3), sharex=ax_e) if markers else None
    panels = [ax_e, ax_g, ax_c]
    minutes = profile.duration_s / 60.0
    title = (f"{profile.name}: {profile.total_distance_m / 1000:.2f} km, -{profile.total_descent_m:.0f} m / "
             f"+{profile.total_ascent_m:.0f} m, {minutes:.0f} min")
    fig.suptitle(title, fontsize=15, fontweight="bold")
    sub = f"metronome follows the gradient from a base of {settings.base_cadence_spm:.0f} steps/min"
    if markers:
        sub += f"; {len(markers)} spoken technique cues, each starting on a beat"
    ax_e.set_title(sub, fontsize=10, color="#555555", pad=8)

    ax_e.fill_between(x, profile.elevation_m, profile.elevation_m.min() - 5, color="#c9b79c", alpha=0.6, lw=0)
    ax_e.plot(x, profile.elevation_m, color="#6b4f2a", lw=1.8)
    ax_e.set_ylabel("elevation (m)")
    technical = False
    for tag in profile.tags:
        if tag.label == "technical":
            technical = True
            t0, t1 = (profile.time_at_distance([tag.start_m, tag.end_m]) / 60.0 if by_time
                      else (tag.start_m / 1000.0, tag.end_m / 1000.0))
            for ax in panels + ([ax_q] if ax_q is not None else []):
                ax.axvspan(t0, t1, color="#e8a33d", alpha=0.15, lw=0)

    g = profile.grade_pct
    ax_g.fill_between(x, g, 0, where=g < 0, color="#3b7dd8", alpha=0.5, lw=0, interpolate=True, label="descent")
    ax_g.fill_between(x, g, 0, where=g >= 0, color="#d8543b", alpha=0.5, lw=0, interpolate=True, label="climb")
    ax_g.plot(x, g, color="#333333", lw=0.8)
    ax_g.axhline(0, color="#888888", lw=0.6)
    ax_g.set_ylabel("grade (%)")
    g_lo, g_hi = float(g.min()), float(g.max())
    pad = 0.12 * max(g_hi - g_lo, 2.0)
    ax_g.set_ylim(min(g_lo, 0.0) - pad, max(g_hi, 0.0) + pad)
    ax_g.legend(loc="best", fontsize=9, frameon=True, framealpha=0.85, edgecolor="none", ncols=2)

    # Order matters to readers of the figure (tests): lines[0] is the model's target, lines[1] the metronome.
    # The target is drawn under the metronome: it shows only where the two differ (early ramps, hysteresis).
    ax_c.plot(x, instant, color="#e07b39", lw=2.6, alpha=0.8, label="target for the local grade", zorder=2)
    ax_c.plot(x, played, color="#1b3a6b", lw=1.8, label="metronome (ramped, with hysteresis)", zorder=3)
    ax_c.axhline(settings.base_cadence_spm, color="#888888", lw=0.7, ls=":")
    ax_c.set_ylabel("cadence (steps/min)")
    lo = min(instant.min(), played.min())
    hi = max(instant.max(), played.max())
    ax_c.set_ylim(lo - 3, hi + 3)
    ax_c.legend(loc="best", fontsize=9, frameon=True, framealpha=0.85, edgecolor="none")

    if not by_time:
        # Time on the top axis: the pace model (or the recording) maps distance to time monotonically.
        d_km, t_min = profile.distance_m / 1000.0, profile.time_s / 60.0
        top = ax_e.secondary_xaxis("top", functions=(lambda v: _interp_extrap(v, d_km, t_min),
                                                     lambda v: _interp_extrap(v, t_min, d_km)))
        top.set_xlabel("time (min)")
    for ax in panels:
        ax.grid(True, color="#dddddd", lw=0.5)
        ax.set_xlim(x[0], x[-1])
    for ax in (ax_e, ax_g) + ((ax_c,) if markers else ()):
        ax.tick_params(labelbottom=False)

    handles = [Patch(color="#c9b79c", alpha=0.6, label="elevation")]
    if technical:
        handles.append(Patch(color="#e8a33d", alpha=0.3, label="technical terrain"))
    if markers:
        handles.append(Line2D([], [], color=CUE_COLOR, lw=1, ls="--", label="spoken cue"))
    ax_e.legend(handles=handles, loc="upper right", fontsize=9, frameon=True, framealpha=0.85, edgecolor="none")

    if not markers:
        ax_c.set_xlabel(xlabel)
        return fig

    xm = np.array([t / 60.0 if by_time else float(profile.distance_at_time(t)) / 1000.0 for t, _ in markers])
    for ax in panels:
        for v in xm:
            ax.axvline(v, color=CUE_COLOR, lw=0.8, ls="--", alpha=0.55, zorder=1)
    ax_q.set_xlabel(xlabel)
    ax_q.set_ylabel("cues", rotation=0, ha="right", va="center")
    ax_q.set_yticks([])
    ax_q.set_ylim(0, 1)
    ax_q.set_xlim(x[0], x[-1])
    for side in ("left", "right", "top"):
        ax_q.spines[side].set_visible(False)

    # Lay the figure out once to know the lane's width in pixels, then stack the labels so none overlap.
    if numbered:
        _numbered_lane(fig, gs, ratios, ax_q, x, xm, markers)
    else:
        fig._downbeat_labels_fit = _row_lane(fig, gs, ratios, ax_q, x, xm, markers)
    return fig


def _row_lane(fig, gs, ratios, ax_q, x, xm, markers) -> bool:
    """Time + words labels stacked in rows; False (nothing drawn) when they need more than MAX_CUE_ROWS rows or
    one cannot fit inside the lane either way."""
    from matplotlib.transforms import blended_transform_factory, offset_copy

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bbox = ax_q.get_window_extent(renderer)
    to_px = lambda v: (v - x[0]) / (x[-1] - x[0]) * bbox.width  # noqa: E731
    dot_px, gap_px = 7.0, 4.0  # dot radius + pad before the time; pad between the time and the words
    blend = blended_transform_factory(ax_q.transData, ax_q.transAxes)
    items = []
    for (t_s, label), v in zip(markers, xm):
        clock = ax_q.text(v, 0.5, _fmt_clock(t_s), fontsize=CUE_FONT_PT - 0.5, color="#666666", va="center")
        words = ax_q.text(v, 0.5, label, fontsize=CUE_FONT_PT, color=CUE_COLOR, va="center")
        w_clock = clock.get_window_extent(renderer).width
        w_words = words.get_window_extent(renderer).width
        items.append((v, clock, words, w_clock, w_words))
    starts = [to_px(v) for v, *_ in items]
    widths = [dot_px + w_c + gap_px + w_w for _, _, _, w_c, w_w in items]
    rows = assign_label_rows(starts, widths, bbox.width, max_rows=len(items) + 1)
    n_rows = max(r for r, _ in rows) + 1
    # A flipped label must not run out of the lane's left edge (it would be cut off at the figure's edge).
    cut = any(flipped and x0 - w < 0 for x0, w, (_, flipped) in zip(starts, widths, rows))
    if n_rows > MAX_CUE_ROWS or cut:
        for _, clock, words, _, _ in items:
            clock.remove()
            words.remove()
        return False
    # The lane grows with its rows (its width, hence the row assignment, does not change with its height).
    gs.set_height_ratios(ratios[:3] + [0.3 + 0.1 * max(n_rows, 3)])
    ys = np.linspace(0.86, 0.14, n_rows) if n_rows > 1 else np.array([0.5])
    for (v, clock, words, w_clock, w_words), (row, flipped) in zip(items, rows):
        y = float(ys[row])
        ax_q.plot([v], [y], transform=blend, marker="o", ms=5, color=CUE_COLOR, zorder=4, clip_on=False)
        ax_q.plot([v, v], [y, 1.0], transform=blend, color=CUE_COLOR, lw=0.8, ls="--", alpha=0.55, zorder=1)
        if flipped:  # ends at its cue: words first, then the time, then the dot
            words.set_ha("right")
            clock.set_ha("right")
            words.set_transform(offset_copy(blend, fig=fig, x=-(dot_px + w_clock + gap_px), y=0, units="dots"))
            clock.set_transform(offset_copy(blend, fig=fig, x=-dot_px, y=0, units="dots"))
        else:
            clock.set_transform(offset_copy(blend, fig=fig, x=dot_px, y=0, units="dots"))
            words.set_transform(offset_copy(blend, fig=fig, x=dot_px + w_clock + gap_px, y=0, units="dots"))
        for t in (clock, words):
            t.set_position((v, y))
            t.set_in_layout(False)  # labels stay inside the lane: they must not move the layout
            t.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.9})
            t.set_zorder(5)
    return True


def _numbered_lane(fig, gs, ratios, ax_q, x, xm, markers) -> None:
    """Dense cues: a number per cue in the lane (greedy rows; beyond MAX_BADGE_ROWS rows, round-robin rows with
    the numbers spread so none overlap, a leader line to each cue), and the numbered phrases beside the plot."""
    from matplotlib.transforms import blended_transform_factory

    phrases = list(dict.fromkeys(label for _, label in markers))  # distinct, in order of first use
    number = {p: n + 1 for n, p in enumerate(phrases)}
    ax_l = fig.add_subplot(gs[:, 1])
    ax_l.set_axis_off()
    gap_px = 4.0
    font = CUE_FONT_PT
    while True:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        bbox = ax_q.get_window_extent(renderer)
        texts = [ax_q.text(v, 0.5, str(number[label]), fontsize=font, color=CUE_COLOR, ha="left", va="center")
                 for (_, label), v in zip(markers, xm)]
        widths = np.array([t.get_window_extent(renderer).width for t in texts]) + 2 * gap_px
        heights = max(t.get_window_extent(renderer).height for t in texts)
        centre = (xm - x[0]) / (x[-1] - x[0]) * bbox.width
        rows = assign_label_rows(centre - widths / 2, widths, bbox.width + 1e9, gap_px=gap_px,
                                 max_rows=len(texts) + 1)
        n_rows = max(r for r, _ in rows) + 1
        fits = n_rows <= MAX_BADGE_ROWS and all(c - w / 2 >= 0 and c + w / 2 <= bbox.width
                                                for c, w in zip(centre, widths))
        if fits:
            lefts = centre - widths / 2
            row_of = [r for r, _ in rows]
        else:
            # Round-robin into MAX_BADGE_ROWS rows, then spread each row (needs the row's widths to fit): first
            # with a smaller font, and past that (hundreds of cues per lane width) with more rows.
            def row_fits(n):
                return all(widths[r::n].sum() + gap_px * (widths[r::n].size - 1) <= bbox.width for r in range(n))

            n_rows = min(MAX_BADGE_ROWS, len(texts))
            if not row_fits(n_rows) and font > MIN_FONT_PT:
                for t in texts:
                    t.remove()
                font = max(MIN_FONT_PT, font - 1.0)
                continue
            while not row_fits(n_rows) and n_rows < len(texts):
                n_rows += 1
            row_of = [i % n_rows for i in range(len(texts))]
            lefts = np.empty(len(texts))
            for r in range(n_rows):
                idx = np.arange(r, len(texts), n_rows)
                lefts[idx] = spread_in_row(centre[idx] - widths[idx] / 2, widths[idx], bbox.width, gap_px)
        break
    # Rows need their height: the lane grows with them (its width, hence the layout above, stays).
    gs.set_height_ratios(ratios[:3] + [0.3 + 0.1 * max(n_rows, 3) * max(1.0, heights / 14.0)])
    ys = np.linspace(0.84, 0.12, n_rows) if n_rows > 1 else np.array([0.5])
    blend = blended_transform_factory(ax_q.transData, ax_q.transAxes)
    px_to_x = lambda p: x[0] + p / bbox.width * (x[-1] - x[0])  # noqa: E731
    for t, v, left, w, r in zip(texts, xm, lefts, widths, row_of):
        y = float(ys[r])
        cx = px_to_x(left + w / 2)
        t.set_transform(blend)
        t.set_position((px_to_x(left + gap_px), y))
        t.set_in_layout(False)
        t.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.4, "alpha": 0.9})
        t.set_zorder(5)
        ax_q.plot([v, cx], [1.0, y], transform=blend, color=CUE_COLOR, lw=0.6, alpha=0.6, zorder=1)
    # The numbered list: one line per phrase; two columns or a smaller font if the plot's height needs it.
    ax_l.set_title("spoken cues", fontsize=CUE_FONT_PT + 1, loc="left", color="#333333")
    fig.canvas.draw()
    box = ax_l.get_window_extent(renderer)
    cols, size = 1, CUE_FONT_PT
    while len(phrases) / cols * size * 1.45 * fig.dpi / 72 > box.height:
        if cols == 1:
            cols = 2
        elif size > MIN_FONT_PT:
            size -= 0.5
        else:
            break
    line_pt = size * 1.45
    per_col = -(-len(phrases) // cols)
    entries = []
    for n, phrase in enumerate(phrases):
        c, k = divmod(n, per_col)
        entries.append(ax_l.text(c / cols, 1.0 - k * line_pt * fig.dpi / 72 / box.height, f"{n + 1:>2}  {phrase}",
                                 transform=ax_l.transAxes, fontsize=size, va="top", ha="left", color="#333333"))
    # Widen the list's column until its longest line fits inside it (and so inside the figure).
    for _ in range(4):
        fig.canvas.draw()
        widest = max(t.get_window_extent(renderer).width for t in entries)
        have = ax_l.get_window_extent(renderer).width / cols
        if widest <= have - 4:
            break
        ratio = gs.get_width_ratios()[1] * (widest + 8) / have
        gs.set_width_ratios([1.0, ratio])


def write_png(profile: Profile, settings: TempoSettings, path, cue_markers=None, tempo_map=None) -> Path:
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
    fig = render_figure(profile, settings, cue_markers, tempo_map)
    from metronome.atomic import atomic_file

    try:
        with atomic_file(dest, "wb", fsync=False) as f:
            fig.savefig(f, format="png")
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.errno in (13, 30) and not isinstance(exc, FileNotFoundError):
            raise InputError(f"--png: cannot write in {str(folder)!r} ({exc.strerror or exc})") from None
        if isinstance(exc, OSError):  # a full disk: name the file (the bare OSError names nothing)
            from metronome.outfiles import write_error

            err = write_error(path, exc)
            raise type(err)(f"--png: {err}") from None
        raise
    return dest
