"""Run Downbeat's benchmark set, write ``benchmarks/results/*.json`` and the plot ``benchmarks/results.png``.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/run.py            # --quick (default): 30-minute renders, 15 s callback runs, ~8 minutes
    python3 benchmarks/run.py --full     # + 120-minute renders, a 10-minute xrun run, more trials (~35 minutes)
    python3 benchmarks/run.py --only render callback     # a subset
    python3 benchmarks/run.py --plot-only                # redraw the PNG from the JSON already there

Needs: jackd2, klick, libportaudio2 (Debian) and JACK-Client (``pip install JACK-Client``) for the probes.  Every
JACK server it uses is its own (named, dummy backend) and is stopped on exit; the machine's default server is not
touched.  The machine is shared: ``machine.loadavg_1_5_15`` in every JSON says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import REPO, RESULTS_DIR  # noqa: E402

SUITES = ("render", "callback", "latency", "sensor", "startup", "import")
PLOT_PATH = os.path.join(REPO, "benchmarks", "results.png")


def run_suite(name: str, full: bool, log) -> dict:
    if name == "render":
        import bench_render

        return bench_render.bench((30.0, 120.0) if full else (30.0,), repeat=3 if full else 2, log=log)
    if name == "callback":
        import bench_callback

        res = bench_callback.bench((64, 128, 256), 15.0, log=log)
        if full:
            # The README's 10-minute xrun run: period 128 with both cores loaded, beside a no-client server.
            res["long_run"] = bench_callback.run_case(128, 600.0, True, log)
        return res
    if name == "latency":
        import bench_latency

        return bench_latency.bench((64, 128, 256), None, 4.0, log=log)
    if name == "sensor":
        import bench_sensor

        return bench_sensor.bench(10 if full else 5, hysteresis=full, log=log)
    if name == "startup":
        import bench_startup

        return bench_startup.bench(2 if full else 1, 3 if full else 2, log=log)
    if name == "import":
        # Another engineer's benchmark (profiles import); its text output is kept as it is.
        r = common.run_child([sys.executable, os.path.join(REPO, "benchmarks", "bench_import.py")], cwd=REPO)
        log(r["stdout"].rstrip())
        return {"stdout": r["stdout"], "rc": r["rc"], "wall_s": r["wall_s"], "maxrss_mb": r["maxrss_mb"]}
    raise ValueError(name)


def plot(path: str = PLOT_PATH) -> str | None:
    """Four panels from whatever JSON is in results/: render speed, callback budget, sensor latency, start-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def load(name):
        p = os.path.join(RESULTS_DIR, f"{name}.json")
        return json.load(open(p)) if os.path.exists(p) else None

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    render = load("render")
    ax = axes[0, 0]
    if render:
        series = [("klick", "klick", "process_xrt"), ("downbeat process", "downbeat-file", "process_xrt"),
                  ("downbeat render()", "downbeat-file", "work_xrt"),
                  ("prototype int16 writer", "downbeat-fast-file", "work_xrt"),
                  ("downbeat kernel (mono)", "downbeat-kernel", "work_xrt"),
                  ("numpy kernel", "numpy-kernel", "work_xrt")]
        cases = render["cases"]
        x = np.arange(len(cases))
        w = 0.8 / len(series)
        for i, (label, key, field) in enumerate(series):
            ax.bar(x + i * w, [c[key][field] for c in cases], w, label=label)
        ax.axhline(1000, color="k", ls="--", lw=0.8)
        ax.set_xticks(x + 0.4 - w / 2, [f"{c['kind']}\n{c['minutes']:g} min" for c in cases])
        ax.set_ylabel("x real time (higher is faster)")
        ax.set_title("Render, 48 kHz mono PCM_16 WAV (best of repeats)")
        ax.legend(fontsize=7)
    cb = load("callback")
    ax = axes[0, 1]
    if cb:
        cases = [c for c in cb["cases"] + ([cb["long_run"]] if "long_run" in cb else []) if "error" not in c]
        labels = [f"{c['period_frames']}{' load' if c['loaded'] else ''}{' 10min' if c['seconds'] >= 600 else ''}"
                  for c in cases]
        x = np.arange(len(cases))
        for i, q in enumerate(("median", "p99", "p999", "max")):
            ax.bar(x + i * 0.2, [c[f"{q}_pct"] for c in cases], 0.2, label=q)
        ax.set_yscale("log")
        ax.set_xticks(x + 0.3, labels, fontsize=8)
        ax.set_ylabel("% of the period")
        ax.set_title("Time inside the audio callback (JACK dummy)")
        ax.legend(fontsize=7)
    sensor = load("sensor")
    ax = axes[1, 0]
    if sensor and sensor.get("trials"):
        ok = [t for t in sensor["trials"] if "decision_ms" in t]
        ax.plot([t["decision_ms"] for t in ok], "o", label="decision beat")
        ax.plot([t["audible_ms"] for t in ok], "s", label="first earlier click")
        ax.axhline(60e3 / sensor["base_spm"], color="k", ls=":", lw=0.8, label="one beat at 170 spm")
        ax.set_xlabel("trial")
        ax.set_ylabel("ms after the UDP datagram")
        ax.set_title("Sensor -> audio (grade step 0 -> -10 %)")
        ax.legend(fontsize=7)
    st = load("startup")
    ax = axes[1, 1]
    if st:
        rows = [(f"play {r['cache']}", r.get("first_audio_s")) for r in st["play"]] + \
               [(f"render {r['cache']}", r.get("first_audio_written_s")) for r in st["render"]]
        ax.barh(range(len(rows)), [v or 0 for _, v in rows])
        ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
        ax.set_xlabel("s from process start to first audio")
        ax.set_title("Start-up (cold = empty numba cache)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the default: a few minutes")
    mode.add_argument("--full", action="store_true", help="120-minute renders and the 10-minute xrun run")
    ap.add_argument("--only", nargs="+", choices=SUITES, default=list(SUITES))
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args(argv)
    if not args.plot_only:
        t0 = time.time()

        def log(msg):
            print(f"[{time.time() - t0:7.1f} s] {msg}", flush=True)

        summary = {"mode": "full" if args.full else "quick", "machine": common.machine_info(), "suites": {}}
        for name in args.only:
            log(f"--- {name}")
            try:
                res = run_suite(name, args.full, log)
                common.save_json(name, res)
                summary["suites"][name] = "ok"
            except Exception as exc:  # one broken suite must not cost the others' numbers
                log(f"{name} FAILED: {type(exc).__name__}: {exc}")
                summary["suites"][name] = f"failed: {exc}"
        summary["total_s"] = time.time() - t0
        common.save_json("run", summary)
        log(f"done in {summary['total_s']:.0f} s; JSON in {RESULTS_DIR}")
    print("plot:", plot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
