"""Benchmark: render speed with and without --music (same run, same session), and live play with music on JACK.

Not a test.  Run::

    python3 benchmarks/bench_music.py                       # render demo-descent (24 min) twice each way
    python3 benchmarks/bench_music.py --play-s 600          # + 10 minutes of play on JACK (JACK_DEFAULT_SERVER)

Render figures are the CLI's own ``render_s`` (the render() call: kernel, ring fills, decoding, file writes),
as multiples of real time; play figures are the session summary (callback p99/max, PortAudio underflows, music
ring underruns).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUSIC = os.path.join(REPO, "tests", "data", "music")


def _cli(args):
    r = subprocess.run([sys.executable, "-m", "metronome.cli", *args], capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="demo-descent")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--play-s", type=float, default=0.0)
    ap.add_argument("--play-only", choices=("plain", "music"), default=None,
                    help="play only this variant (the 10-minute run: --play-only music --play-s 600)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.wav")
        for i in range(a.repeat):
            for label, extra in (("plain", []), ("music", ["--music", MUSIC])):
                s = _cli(["render", a.profile, "-o", out, "--json", "--quiet", *extra])
                print(f"render {label:6s} run {i}: {s['duration_s']:.0f} s audio in {s['render_s']:.2f} s = "
                      f"{s['duration_s'] / s['render_s']:.0f}x real time")
    if a.play_s > 0:
        for label, extra in (("plain", []), ("music", ["--music", MUSIC])):
            if a.play_only is not None and label != a.play_only:
                continue
            s = _cli(["play", a.profile, "--device", "JACK", "--duration", str(a.play_s), "--json", *extra])
            print(f"play {label:6s}: {s['played_s']:.0f} s, underflows {s['underflows']}, callback p99 "
                  f"{s['callback_p99_ms']:.4f} ms, max {s['callback_max_ms']:.3f} ms, period {s['blocksize']} "
                  f"frames, music underruns {s.get('music', {}).get('underruns')}")


if __name__ == "__main__":
    main()
