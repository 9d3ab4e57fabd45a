"""Benchmark: ``downbeat latency --loopback`` on JACK dummy servers, against jack_iodelay in the same run.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_loopback.py                          # periods 64/128/256, blocksizes 0,64,128,256
    python3 benchmarks/bench_loopback.py --periods 128 --minutes 1

Per period: a private dummy server (``common.JackServer``), jack_iodelay with its own out -> in connected (the
independent measurement), and the command itself (``python -c "from metronome.latency.command import main;
main()" --loopback --device JACK --blocksize ... --json``), which connects its own ports.  Nothing is wired by hand
for Downbeat's stream.  Prints one Markdown row per (period, blocksize) and writes the JSON to
benchmarks/results/loopback.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import REPO  # noqa: E402

COMMAND = [sys.executable, "-c", "from metronome.latency.command import main; main()"]


def iodelay_frames(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"([\d.]+) frames\s+[\d.]+ ms total roundtrip latency",
                                         text.replace("\r", "\n"))]


def run_period(period: int, blocksizes: str, minutes: float) -> dict:
    with common.JackServer(period) as srv, tempfile.TemporaryDirectory(prefix="dbloop-") as tmp:
        env = srv.env(XDG_CONFIG_HOME=tmp)
        out_path = os.path.join(tmp, "iodelay.txt")
        with open(out_path, "w") as f, common.child(["stdbuf", "-o0", "jack_iodelay"], env=env, stdout=f,
                                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL):
            deadline = time.time() + 20
            while time.time() < deadline:
                if "jack_delay:in" in subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env).stdout:
                    break
                time.sleep(0.05)
            subprocess.run(["jack_connect", "jack_delay:out", "jack_delay:in"], check=True, env=env)
            off = srv.log_offset()
            r = common.run_child(COMMAND + ["--loopback", "--device", "JACK", "--blocksize", blocksizes,
                                            "--minutes", str(minutes), "--json", "--no-store"], env=env, cwd=REPO)
            server_xruns = srv.xruns_since(off)
        with open(out_path, errors="replace") as f:
            iod = iodelay_frames(f.read())
    if r["rc"] != 0:
        raise RuntimeError(f"period {period}: {r['stderr'][-400:]}")
    rep = json.loads(r["stdout"])
    iod_sorted = sorted(iod)
    return {"period": period, "report": rep, "stderr": r["stderr"], "wall_s": r["wall_s"],
            "server_xruns": server_xruns,
            "iodelay_median_frames": iod_sorted[len(iod_sorted) // 2] if iod else None, "iodelay_n": len(iod)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--periods", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--blocksizes", default="0,64,128,256")
    ap.add_argument("--minutes", type=float, default=0.25)
    a = ap.parse_args()
    rows = [run_period(p, a.blocksizes, a.minutes) for p in a.periods]
    os.makedirs(common.RESULTS_DIR, exist_ok=True)
    with open(os.path.join(common.RESULTS_DIR, "loopback.json"), "w") as f:
        json.dump({"machine": common.machine_info(), "args": vars(a), "rows": rows}, f, indent=1)
    print(f"<!-- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} load {list(os.getloadavg())} -->")
    print("| JACK period | --blocksize | callbacks of | round trip (frames / ms) | jack_iodelay (frames) | "
          "jitter p50 / p99 (ms) | drift (ppm) | PortAudio xrun callbacks (this run) | "
          "server timer xruns (all runs of this period) | bursts |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for run in row["report"]["runs"]:
            print(f"| {row['period']} | {run['blocksize'] or '0 (auto)'} | {run['period_frames']} | "
                  f"{run['round_trip_frames']} / {run['round_trip_ms']:.3f} | "
                  f"{row['iodelay_median_frames']:.3f} ({row['iodelay_n']} readings) | "
                  f"{run['jitter_p50_ms']:.3f} / {run['jitter_p99_ms']:.3f} | {run['drift_ppm']:.3f} | "
                  f"{run['xruns']} | {row['server_xruns']['timer_late']} | {run['bursts']} |")


if __name__ == "__main__":
    main()
