"""Review PNG: grade along the run, and target vs actual cadence, descents shaded (matplotlib, Agg, lazy import)."""

from __future__ import annotations

import os

import numpy as np

from metronome.errors import InputError


def write_review_png(review, path, width_px: int = 1600, height_px: int = 900) -> None:
    """Draw ``review`` (a :class:`~.review.RunReview`) to ``path``; :class:`InputError` if it cannot be written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    p = review.profile
    km = p.distance_m / 1000.0
    fig, (ax_g, ax_c) = plt.subplots(2, 1, sharex=True, figsize=(width_px / 100, height_px / 100), dpi=100,
                                     gridspec_kw={"height_ratios": [1, 1.4]})
    try:
        ax_g.plot(km, p.grade_pct, color="0.3", lw=1.0)
        ax_g.axhline(0, color="0.7", lw=0.6)
        ax_g.set_ylabel("grade (%)")
        ax_c.plot(km, review.target_spm, color="tab:blue", lw=1.5, label="target cadence")
        s = review.samples
        if review.has_cadence:
            m = s.cadence_spm > 0
            ax_c.plot(s.distance_m[m] / 1000.0, s.cadence_spm[m], ".", ms=1.5, color="tab:orange", alpha=0.5,
                      label="actual cadence")
            ax_c.fill_between(km, review.target_spm * 0.97, review.target_spm * 1.03, color="tab:blue", alpha=0.12,
                              label="+-3 %")
        else:
            ax_c.text(0.5, 0.5, "no cadence data in this file", transform=ax_c.transAxes, ha="center", va="center")
        for d in review.descents:
            for ax in (ax_g, ax_c):
                ax.axvspan(d.start_m / 1000, d.end_m / 1000, color="tab:green", alpha=0.12, lw=0)
        ax_c.set_ylabel("steps / min")
        ax_c.set_xlabel("distance (km)")
        lo, hi = float(np.min(review.target_spm)) * 0.9, float(np.max(review.target_spm)) * 1.1
        if review.has_cadence:
            c = s.cadence_spm[s.cadence_spm > 0]
            # The bulk of the recorded cadence (1st..99th percentile), so a few sensor glitches do not squash it.
            lo, hi = min(lo, float(np.percentile(c, 1)) - 5), max(hi, float(np.percentile(c, 99)) + 5)
        ax_c.set_ylim(lo, hi)
        ax_c.legend(loc="lower right")
        ax_g.set_title(f"{os.path.basename(review.display)}: {review.summary()}", fontsize=10)
        fig.tight_layout()
        try:
            fig.savefig(os.fspath(path), format="png")
        except OSError as exc:
            raise InputError(f"{os.fspath(path)}: cannot write the plot ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
