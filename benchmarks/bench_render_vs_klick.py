"""Benchmark (issue 19): whole-process ``downbeat render`` of a flat session vs ``klick -W`` for the same tempo.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_render_vs_klick.py --minutes 30 --repeat 5

A flat course (``--minutes`` at 5:00/km, so exactly that long) is rendered mono, 48 kHz, PCM_16, no cues
(``downbeat render C.yaml -o out.wav --channels 1 --no-cues --quiet --base-cadence 170 --flat-pace 5:00``), and to
OGG Vorbis (same flags, ``-o out.ogg``); klick renders ``N 4/4 170`` bars (``klick -f map.txt -W out.wav``).  The
runs alternate (klick, wav, ogg, klick, ...); each child's wall time and peak RSS (``wait4``) are recorded and the
medians printed, with the ratios to klick (a shared machine: only ratios mean something).
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
    """(wall seconds, peak RSS MiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: {err}")
    return wall, usage.ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bpm", type=int, default=170)
    ap.add_argument("--no-ogg", action="store_true")
    args = ap.parse_args()
    if shutil.which("klick") is None:
        raise SystemExit("klick is not installed: apt-get install klick")
    downbeat = [sys.executable, "-m", "metronome.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-klick-") as tmp:
        course = os.path.join(tmp, "flat.yaml")
        with open(course, "w") as f:
            f.write(f"segments: [{{distance_m: {args.minutes * 200:.3f}, grade_pct: 0}}]\n")  # 5:00/km
        bars = int(round(args.minutes * args.bpm / 4))
        tmap = os.path.join(tmp, "map.txt")
        with open(tmap, "w") as f:
            f.write(f"{bars} 4/4 {args.bpm}\n")
        common = ["--channels", "1", "--no-cues", "--quiet", "--base-cadence", str(args.bpm), "--flat-pace", "5:00"]
        cmds = {"klick": ["klick", "-f", tmap, "-W", os.path.join(tmp, "k.wav")],
                "downbeat_wav": downbeat + ["render", course, "-o", os.path.join(tmp, "d.wav")] + common}
        if not args.no_ogg:
            cmds["downbeat_ogg"] = downbeat + ["render", course, "-o", os.path.join(tmp, "d.ogg")] + common
        env = dict(os.environ, PYTHONPATH=ROOT)
        for argv in cmds.values():  # one warm-up each (page cache, numba cache)
            timed(argv, env)
        runs = {k: [] for k in cmds}
        for _ in range(args.repeat):
            for k, argv in cmds.items():
                runs[k].append(timed(argv, env))
        med = {k: {"wall_s": statistics.median(w for w, _ in v), "rss_mib": statistics.median(r for _, r in v)}
               for k, v in runs.items()}
        audio_s = args.minutes * 60.0
        for k, m in med.items():
            m["x_real_time"] = audio_s / m["wall_s"]
            m["wall_vs_klick"] = m["wall_s"] / med["klick"]["wall_s"]
        print(json.dumps({"minutes": args.minutes, "repeat": args.repeat, "medians": med}, indent=1))


if __name__ == "__main__":
    main()
