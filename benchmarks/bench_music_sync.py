"""Benchmark: ``--music-sync`` over a whole course: beats of the output music against the step clicks, the
stretch of every track, and render speed with sync beside plain music in the same run (issue 17).

Not a test (tests/test_music_sync.py checks the same on 90 s).  Run::

    python3 benchmarks/bench_music_sync.py            # demo-descent, base cadence 135 spm, the tests' music
    python3 benchmarks/bench_music_sync.py --repeat 0 --no-align --play-s 60   # + play on JACK, music vs sync

Each render goes through the CLI (``downbeat render --json``).  The synced render is made with ``--clicks off
--no-cues``: the file then holds the music alone, librosa's beat tracker is run on it, and every beat it finds
is compared with the nearest click of the events CSV.  Render speeds are the CLI's ``render_s`` (the render()
call); the beat analysis of the tracks is cached by content, so a first run also prints the uncached planning
time (the analysis before the render).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
MUSIC = os.path.join(REPO, "tests", "data", "music")


def _cli(args, env=None):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "metronome.cli", *args], capture_output=True, text=True, cwd=REPO,
                       env=env)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    for line in r.stderr.splitlines():
        print("  " + line)
    return json.loads(r.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo-descent")
    ap.add_argument("--base-cadence", default="135")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-align", action="store_true", help="skip the beat alignment render")
    ap.add_argument("--play-s", type=float, default=0.0, help="then play this long on JACK, music and sync")
    ap.add_argument("--play-only-sync", action="store_true", help="play with --music-sync only")
    a = ap.parse_args()
    from metronome.music.beats import alignment_ms

    common = [a.profile, "--base-cadence", a.base_cadence, "--json", "--quiet", "--music", MUSIC]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))  # first run: beats not cached
        out, ev = os.path.join(tmp, "r.wav"), os.path.join(tmp, "ev.csv")
        for i in range(a.repeat):
            for label, extra in (("music", []), ("sync", ["--music-sync"])):
                s, wall = _cli(["render", *common, "-o", out, *extra], env)
                print(f"render {label:5s} run {i}: {s['duration_s']:.0f} s audio in {s['render_s']:.2f} s = "
                      f"{s['duration_s'] / s['render_s']:.0f}x real time (whole command {wall:.1f} s)")
        if a.play_s > 0:
            log = os.environ.get("DOWNBEAT_JACKD_LOG")  # the server's log: which xruns name our client
            modes = (("music", []), ("sync", ["--music-sync"]))
            for label, extra in modes[1:] if a.play_only_sync else modes:
                at = os.path.getsize(log) if log else 0
                s, _ = _cli(["play", *common, "--device", "JACK", "--duration", str(a.play_s), *extra], env)
                named = ""
                if log:
                    with open(log, errors="replace") as fh:
                        fh.seek(at)
                        lines = [ln for ln in fh.read().splitlines() if "PortAudio was not finished" in ln]
                    named = (f", server log: PortAudio late {sum('Running' in ln for ln in lines)} x while running, "
                             f"{sum('Triggered' in ln for ln in lines)} x not yet scheduled")
                print(f"play {label:5s}: {s['played_s']:.0f} s, underflows {s['underflows']}, callback p99 "
                      f"{s['callback_p99_ms']:.4f} ms, max {s['callback_max_ms']:.3f} ms, period {s['blocksize']} "
                      f"frames, music underruns {s.get('music', {}).get('underruns')}{named}")
        if a.no_align:
            return
        s, _ = _cli(["render", *common, "--music-sync", "--clicks", "off", "--no-cues", "-o", out, "--events", ev],
                    env)
        for t in s["music"]["tracks"]:
            print(f"track {os.path.basename(t['path'])}: {t['tempo_bpm']} bpm, {t['meter']} time, stretch "
                  f"{t['stretch_min']:.4f} .. {t['stretch_max']:.4f}")
        with open(ev, newline="") as fh:
            clicks = np.array([int(r["sample"]) for r in csv.DictReader(fh) if r["kind"] == "beat"])
        audio, sr = sf.read(out, dtype="float32", always_2d=True)
        d = alignment_ms(audio, sr, clicks)
        print(f"{s['duration_s'] / 60:.1f} min, {clicks.size} clicks, {d.size} beats found in the output music: "
              f"|error| median {np.median(np.abs(d)):.1f} ms, p90 {np.percentile(np.abs(d), 90):.1f} ms, "
              f"within 20 ms {100 * np.mean(np.abs(d) <= 20):.1f} %, signed median {np.median(d):+.1f} ms")


if __name__ == "__main__":
    main()
