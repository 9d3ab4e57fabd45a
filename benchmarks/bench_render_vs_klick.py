"""Benchmark (issue 19): whole-process ``downbeat render`` against ``klick -W``, three kinds of tempo map.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_render_vs_klick.py --minutes 30 --repeat 5
    python3 benchmarks/bench_render_vs_klick.py --minutes 120 --repeat 3 --no-ogg

Maps (``--maps``, default all three), Downbeat from a course, klick from a tempo-map file:

* **constant**: a flat course at 5:00/km (170 spm); klick ``N 4/4 170``.
* **steps**: 200 m plateaus cycling grades 0, -10, -18, -10, 0, +12 % (170, 176.8, 183.6, 176.8, 170, 166.6 spm,
  ~1 minute each); klick one-minute bars cycling the same tempi.
* **ramps**: the grade changes by 1 % every 40 m, 0 -> -18 -> 0 % (a tempo ramp 170 <-> 183.6 spm and back, ~4
  minutes each way); klick ``N 4/4 170-183.6`` / ``183.6-170`` lines of the same length.

Downbeat: ``downbeat render C.yaml -o out.wav --channels 1 --no-cues --quiet --base-cadence 170 --flat-pace 5:00``
(mono, 48 kHz, PCM_16, no cues: what klick writes), and to OGG Vorbis (``-o out.ogg``).  The runs alternate (klick,
wav, ogg, klick, ...) after one warm-up each, with ``sync`` before each run; each child's wall time and peak RSS
(GNU ``time``) are recorded.  The
two tools' files differ a little in length (a course's time comes from the pace model), so the ratio is of wall
seconds per audio second (each file's length read back): ``wall_vs_klick`` < 1 means Downbeat is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(argv: list, env=None) -> tuple:
    """(wall seconds, peak RSS MiB) of one child process.

    ``os.sync()`` first, outside the timed window: a run must not inherit the previous run's writeback (690 MB
    for 120 minutes of WAV), which made either tool 1.5-2x slower at random.  Peak RSS from GNU time's ``%M``
    (``wait4`` of a child forked from this Python would count the parent's pages too: 30 MiB for klick)."""
    os.sync()
    gnu_time = shutil.which("time") if os.path.exists("/usr/bin/time") else None
    if gnu_time:
        argv = ["/usr/bin/time", "-f", "%M", *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: {err}")
    if gnu_time:
        return wall, int(err.strip().splitlines()[-1]) / 1024.0
    return wall, usage.ru_maxrss / 1024.0


STEP_GRADES = (0, -10, -18, -10, 0, 12)
STEP_BPM = (170, 176.8, 183.6, 176.8, 170, 166.6)


def course_yaml(kind: str, minutes: float) -> str:
    """A course of about ``minutes`` at 5:00/km flat pace (200 m per minute on the flat)."""
    if kind == "constant":
        return f"segments: [{{distance_m: {minutes * 200:.3f}, grade_pct: 0}}]\n"
    if kind == "steps":
        segs = [(200.0, STEP_GRADES[i % len(STEP_GRADES)]) for i in range(int(round(minutes)))]
    else:  # ramps: 0 -> -18 -> 0 % in 1 % steps of 40 m (~12 s each)
        cycle = [-g for g in range(0, 18)] + [-g for g in range(18, 0, -1)]
        segs = [(40.0, cycle[i % len(cycle)]) for i in range(int(round(minutes * 5)))]
    return "segments:\n" + "".join(f"  - {{distance_m: {d}, grade_pct: {g}}}\n" for d, g in segs)


def klick_map(kind: str, minutes: float) -> str:
    if kind == "constant":
        return f"{int(round(minutes * 170 / 4))} 4/4 170\n"
    if kind == "steps":
        return "".join(f"{int(round(b / 4))} 4/4 {b}\n" for i in range(int(round(minutes)))
                       for b in [STEP_BPM[i % len(STEP_BPM)]])
    lines = []
    for i in range(int(round(minutes / 4))):
        a, b = (170, 183.6) if i % 2 == 0 else (183.6, 170)
        lines.append(f"{int(round(4 * (a + b) / 2 / 4))} 4/4 {a}-{b}\n")
    return "".join(lines)


def audio_seconds(path: str) -> float:
    import soundfile as sf

    info = sf.info(path)
    return info.frames / info.samplerate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--maps", nargs="+", default=["constant", "steps", "ramps"])
    ap.add_argument("--no-ogg", action="store_true")
    args = ap.parse_args()
    if shutil.which("klick") is None:
        raise SystemExit("klick is not installed: apt-get install klick")
    downbeat = [sys.executable, "-m", "metronome.cli"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    report = {"minutes": args.minutes, "repeat": args.repeat, "loadavg": os.getloadavg(), "maps": {}}
    with tempfile.TemporaryDirectory(prefix="bench-klick-") as tmp:
        for kind in args.maps:
            course = os.path.join(tmp, f"{kind}.yaml")
            with open(course, "w") as f:
                f.write(course_yaml(kind, args.minutes))
            tmap = os.path.join(tmp, f"{kind}.txt")
            with open(tmap, "w") as f:
                f.write(klick_map(kind, args.minutes))
            common = ["--channels", "1", "--no-cues", "--quiet", "--base-cadence", "170", "--flat-pace", "5:00"]
            outs = {"klick": os.path.join(tmp, "k.wav"), "downbeat_wav": os.path.join(tmp, "d.wav"),
                    "downbeat_ogg": os.path.join(tmp, "d.ogg")}
            cmds = {"klick": ["klick", "-f", tmap, "-W", outs["klick"]],
                    "downbeat_wav": downbeat + ["render", course, "-o", outs["downbeat_wav"]] + common}
            if not args.no_ogg:
                cmds["downbeat_ogg"] = downbeat + ["render", course, "-o", outs["downbeat_ogg"]] + common
            for argv in cmds.values():  # one warm-up each (page cache, compiled kernels)
                timed(argv, env)
            audio = {k: audio_seconds(outs[k]) for k in cmds}
            runs = {k: [] for k in cmds}
            for _ in range(args.repeat):
                for k, argv in cmds.items():
                    runs[k].append(timed(argv, env))
            med = {k: {"wall_s": statistics.median(w for w, _ in v), "rss_mib": max(r for _, r in v),
                       "audio_s": audio[k], "walls_s": [round(w, 3) for w, _ in v]} for k, v in runs.items()}
            for k, m in med.items():
                m["x_real_time"] = m["audio_s"] / m["wall_s"]
                m["wall_vs_klick"] = (m["wall_s"] / m["audio_s"]) / (med["klick"]["wall_s"] / med["klick"]["audio_s"])
            report["maps"][kind] = med
            print(f"{kind:>8} {args.minutes:g} min: " + " | ".join(
                f"{k} {m['wall_s']:.3f} s ({m['x_real_time']:.0f}x, {m['wall_vs_klick']:.2f}x klick, "
                f"{m['rss_mib']:.0f} MiB)" for k, m in med.items()), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
