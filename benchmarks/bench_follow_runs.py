"""Coaching at the descents of real recorded runs: follow mode vs the time-based plan, side by side (issue 14).

For each run (tests/support/runs.py: the real files and the kinds the data lacks built from real tracks), the
course is the run's own track.  For every descent of 150 m or more: when the runner reached it (the run's own
timestamps) and whether any cue started within 20 s before to 10 s after that, in

* ``follow``: ``render COURSE --follow replay:RUN`` (follower + FollowController, as ``play`` would),
* ``time (recorded)``: the plain render of the course timed by the run's recorded moving time (pauses squeezed),
* ``time (pace model)``: the plain render timed by the default pace model, as for a course file without times.

Run: ``.venv/bin/python benchmarks/bench_follow_runs.py`` (about a minute).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metronome.engine import warm_kernels  # noqa: E402
from tests.support import runs  # noqa: E402


def _fmt(report) -> str:
    hits = sum(ok for _, ok in report)
    worst = max((abs(o) for o, ok in report if o is not None), default=None)
    offs = ", ".join("-" if o is None else f"{o:+.0f}" for o, _ in report)
    return f"{hits}/{len(report)} ({offs})" if report else "-"


def main() -> int:
    warm_kernels(48000, 2, for_play=False, say=None)
    tmp = Path(tempfile.mkdtemp(prefix="downbeat-follow-"))
    print("| run | km | duration | descents >= 150 m | follow | time (recorded) | time (pace model) |")
    print("| --- | ---: | ---: | ---: | --- | --- | --- |")
    tot = [0, 0, 0, 0]
    for name, path in runs.build_runs(tmp).items():
        res, sched, plan = runs.follow_render(path, path, tmp / "o.wav")
        ds = runs.descents_of(plan)
        arr = runs.arrival_times(path, [d.start_m for d in ds])
        f = runs.window_report([e.time_s for e in res.events if e.kind == "cue"], arr)
        tr = runs.window_report(runs.time_plan_cue_times(path), arr)
        tp = runs.window_report(runs.time_plan_cue_times(path, recorded=False), arr)
        dur = sched.end_s
        print(f"| {name} | {plan.course.total_m / 1000:.1f} | {int(dur // 60)}:{int(dur % 60):02d} | {len(ds)} | "
              f"{_fmt(f)} | {_fmt(tr)} | {_fmt(tp)} |")
        tot[0] += len(ds)
        for i, rep in enumerate((f, tr, tp), 1):
            tot[i] += sum(ok for _, ok in rep)
    print(f"| **all** | | | {tot[0]} | {tot[1]}/{tot[0]} | {tot[2]}/{tot[0]} | {tot[3]}/{tot[0]} |")
    print("\n(n/m: descents with a cue in the window; in brackets the cue offset from arrival in s: the first cue in "
          "the window, else the nearest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
