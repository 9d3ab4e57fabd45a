"""Benchmark: time inside Downbeat's live audio callback, and xruns, on JACK dummy servers.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_callback.py                       # 15 s per case, periods 64/128/256
    python3 benchmarks/bench_callback.py --seconds 600 --periods 128 --only-loaded   # the README's 10-minute run

For each period P, two private dummy servers run side by side (``jackd -n NAME -d dummy -r 48000 -p P``): one
with ``downbeat``'s :class:`~metronome.player.LivePlayer` (blocksize P) and one with no client at all, the
baseline for the dummy driver's own timer xruns on this VM.  Each pair runs idle, then with two CPU burners
(processes spinning numpy at normal priority, one per core).

Reported per case:

* callback duration (the engine's own ``clock_gettime`` stamps around the kernel, read from its timing ring
  every 0.25 s so that runs longer than the ring are covered in full): median, p99, p99.9 and max, in ms and in %
  of the period (P / 48000 s);
* ``underflows``: PortAudio's output-underflow flags seen by the callback (any late cycle, the client's fault
  or not);
* server log lines: ``JackTimedDriver::Process XRun`` (the dummy driver's timer woke late: server-side) and
  ``client = PortAudio... was not finished`` (JACK blamed Downbeat), for the Downbeat server and the no-client
  server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import REPO, SAMPLERATE  # noqa: E402


def child_main(seconds: float, blocksize: int) -> dict:
    """Play a constant 170 spm click on the JACK server named by ``JACK_DEFAULT_SERVER`` and time the callback."""
    import faulthandler

    import numpy as np

    # If PortAudio/JACK hangs (seen once on the loaded VM), say where before the parent's timeout kills us.
    faulthandler.dump_traceback_later(seconds + 120.0, exit=True)

    from metronome import _kernels as K
    from metronome.devices import find_device
    from metronome.engine import TIMING_RING, Engine, freeze_kernels, warm_kernels
    from metronome.mix import EngineSettings
    from metronome.player import LivePlayer
    from metronome.tempo import TempoMap

    warm_kernels(SAMPLERATE, 2)
    freeze_kernels()
    tm = TempoMap.constant(170.0, SAMPLERATE, seconds + 60.0)
    engine = Engine(tm, EngineSettings(samplerate=SAMPLERATE, channels=2))
    dev = find_device("JACK")
    player = LivePlayer(engine, device=dev, blocksize=blocksize).start()
    chunks, frames, lost = [], [], 0
    seen = 0
    t_end = time.monotonic() + seconds
    try:
        while True:
            time.sleep(0.25)
            now = int(player.stats[K.S_CALLBACKS])
            if now - seen > TIMING_RING:  # ring overrun (never at 0.25 s polling: the ring holds > 80 s)
                lost += now - seen - TIMING_RING
                seen = now - TIMING_RING
            idx = np.arange(seen, now) % TIMING_RING
            chunks.append(player.timing[idx, 0].copy())
            frames.append(player.timing[idx, 1].copy())
            seen = now
            if time.monotonic() >= t_end:
                break
        latency_s = float(player.stream.latency)
    finally:
        player.stop(fade_s=0.0)
    dur_s = np.concatenate(chunks) * 1e-9
    fr = np.concatenate(frames)
    stats = player.callback_stats()
    period_frames = int(np.median(fr)) if fr.size else blocksize
    out = {"callbacks": stats["callbacks"], "underflows": stats["underflows"], "frames_per_callback": period_frames,
           "frames_per_callback_min": int(fr.min()) if fr.size else 0,
           "frames_per_callback_max": int(fr.max()) if fr.size else 0, "ring_lost": lost,
           "stream_latency_s": latency_s, "seconds": seconds}
    out.update(common.percentiles_ms(dur_s, period_frames / SAMPLERATE))
    return out


def run_case(period: int, seconds: float, loaded: bool, log=print) -> dict:
    """One Downbeat run and one no-client baseline, side by side on two private servers."""
    with common.JackServer(period, name=f"dbcb{os.getpid()}p{period}") as srv, \
            common.JackServer(period, name=f"dbcb{os.getpid()}p{period}base") as base:
        ctx = common.cpu_burners(2) if loaded else _null()
        with ctx:
            off, off_base = srv.log_offset(), base.log_offset()
            r = common.run_child([sys.executable, os.path.abspath(__file__), "--child", "--seconds", str(seconds),
                                  "--blocksize", str(period)], env=srv.env(), cwd=REPO,
                                 timeout_s=seconds + 300)
            server = srv.xruns_since(off)
            baseline = base.xruns_since(off_base)
    if r["rc"] != 0:
        # Recorded, not raised: one hung run must not cost the other cases' numbers.
        log(f"period {period} {'loaded' if loaded else 'idle'}: child failed (rc {r['rc']}, "
            f"{r['wall_s']:.0f} s): {r['stderr'][-600:]}")
        return {"period_frames": period, "loaded": loaded, "seconds": seconds, "error": r["stderr"][-2000:],
                "rc": r["rc"], "server_log": server, "no_client_server_log": baseline}
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    res.update(period_frames=period, period_ms=period / SAMPLERATE * 1e3, loaded=loaded, server_log=server,
               no_client_server_log=baseline)
    log(f"period {period:>3} {'loaded' if loaded else 'idle  '} {seconds:5.0f} s: callback median "
        f"{res['median_pct']:.2f} % p99 {res['p99_pct']:.2f} % p99.9 {res['p999_pct']:.2f} % max "
        f"{res['max_pct']:.1f} % of {res['period_ms']:.2f} ms ({res['callbacks']} callbacks, "
        f"{res['frames_per_callback']} frames) | underflows {res['underflows']} | server timer xruns "
        f"{server['timer_late']} (no-client server {baseline['timer_late']}), PortAudio blamed "
        f"{server['client_blamed_portaudio']}")
    return res


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def bench(periods=(64, 128, 256), seconds: float = 15.0, loads=(False, True), log=print) -> dict:
    out = {"machine": common.machine_info(), "seconds": seconds, "cases": []}
    for p in periods:
        for loaded in loads:
            res = run_case(p, seconds, loaded, log)
            if "error" in res:  # one retry: a hang has so far been a one-off of the shared VM
                res = run_case(p, seconds, loaded, log)
            out["cases"].append(res)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each run (600 for the 10-minute run)")
    ap.add_argument("--periods", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--only-loaded", action="store_true", help="skip the idle runs")
    ap.add_argument("--name", default="callback", help="results/NAME.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--blocksize", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child_main(args.seconds, args.blocksize)))
        return 0
    res = bench(args.periods, args.seconds, (True,) if args.only_loaded else (False, True))
    print("wrote", common.save_json(args.name, res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
