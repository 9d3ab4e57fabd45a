"""The "plans that travel" options of ``render`` (issue 16): ``--finish-time``, ``--anchors``, ``--split``.

Flags and their checks only; the work is :mod:`metronome.export.finish` (scaling), :mod:`cues.anchors` (spoken
distance anchors, planned by :func:`metronome.session.plan_session`), :mod:`metronome.export.split` (where the
parts start) and :class:`metronome.parts.AudioParts` (writing them).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import click

from metronome.errors import InputError

TRAVEL_OPTIONS = [
    click.option("--finish-time", "finish_time", default=None, metavar="H:MM:SS",
                 help="Scale the plan so the track lasts exactly this long (H:MM:SS or MM:SS): your target time."),
    click.option("--anchors", "anchors", default=None, metavar="DIST",
                 help="Say the course distance every DIST (1km, 500m, or metres: 1000; at least 100 m) and "
                      "'descent in 300 metres' before each descent, where the plan puts you (default: off)."),
    click.option("--split", "split", is_flag=True,
                 help="Write one file per section: OUT-01.ext, OUT-02.ext ... starting at each descent "
                      "announcement and every kilometre (or --anchors interval); concatenated they are the track."),
]


def travel_options(f):
    for opt in reversed(TRAVEL_OPTIONS):
        f = opt(f)
    return f


_DIST_RE = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>km|m)?\s*$", re.IGNORECASE)


def parse_anchor_interval(text) -> float:
    """``--anchors`` value -> metres: ``1km``, ``0.5km``, ``500m``, ``1000`` (metres); InputError naming it."""
    from cues.anchors import AnchorRules

    m = _DIST_RE.match(str(text))
    if not m:
        raise InputError(f"--anchors: {text!r} is not a distance (e.g. 1km, 500m or 1000 for metres)")
    d = float(m.group("n")) * (1000.0 if (m.group("unit") or "m").lower() == "km" else 1.0)
    least = AnchorRules().min_interval_m
    if not (math.isfinite(d) and d >= least):
        raise InputError(f"--anchors: {text!r} is less than {least:g} m between anchors")
    return d


@dataclass(frozen=True)
class Travel:
    """The checked travel flags of one render."""

    finish_time_s: float | None = None
    anchor_every_m: float | None = None
    split: bool = False

    def cuts(self, plan, out: str):
        """``(split_at, cuts, part paths)`` of this render: ``(None, [], [])`` without ``--split``."""
        if not self.split:
            return None, [], []
        from metronome.export.split import split_cuts
        from metronome.parts import part_paths
        from metronome.render import TAIL_S

        total = plan.tempo_map.end_sample + int(round(TAIL_S * plan.engine_settings.samplerate))
        cuts = split_cuts(plan, total, self.anchor_every_m)
        split_at = [c.sample for c in cuts[1:]]
        paths = part_paths(out, len(cuts))
        # Parts of an earlier, longer split of the same name would play after this one: say so (never delete).
        more = part_paths(out, len(cuts), len(cuts) + 200)[len(cuts):]
        stale = [p for p in more if os.path.exists(p)]
        if stale:
            click.echo(f"downbeat: note: {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''} from an earlier "
                       f"render {'is' if len(stale) == 1 else 'are'} not part of this one (left untouched)",
                       err=True)
        return split_at, cuts, paths

    def summary(self, plan, cuts, paths) -> dict:
        """The JSON summary's travel keys (none without the flags)."""
        out = {}
        if self.finish_time_s is not None:
            out["finish_time_s"] = self.finish_time_s
        if self.anchor_every_m is not None:
            out["anchors"] = sum(1 for c in plan.planned_cues if c.trigger in ("distance_anchor", "descent_anchor"))
        if self.split:
            sr = plan.engine_settings.samplerate
            out["parts"] = [{"path": p, "start_sample": c.sample, "start_s": round(c.sample / sr, 3),
                             "distance_m": round(float(c.distance_m), 1), "starts_with": c.label}
                            for p, c in zip(paths, cuts)]
        return out


def travel_spec(finish_time, anchors, split, *, no_cues=False, follow=None) -> Travel:
    """The travel flags checked before any work: exit 2 naming the flag."""
    given = [name for name, v in (("--finish-time", finish_time), ("--anchors", anchors), ("--split", split)) if v]
    if follow is not None and given:
        raise InputError(f"{given[0]}: not with --follow (a followed render is timed by the run itself)")
    if anchors is not None and no_cues:
        raise InputError("--anchors: the anchors are spoken cues; leave out --no-cues")
    ft = None
    if finish_time is not None:
        from metronome.export.finish import parse_finish_time

        ft = parse_finish_time(finish_time)
    every = parse_anchor_interval(anchors) if anchors is not None else None
    return Travel(ft, every, bool(split))
