"""Benchmark: sensor -> audio latency, from a UDP grade step to the first changed beat interval heard.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_sensor.py                    # 5 trials of the first-reading step
    python3 benchmarks/bench_sensor.py --trials 10 --hysteresis   # + one step through the 15 s hysteresis

Each trial starts ``downbeat play --sensor udp://127.0.0.1:PORT --no-cues --device JACK`` (a fresh process, so
the feed has no level yet) on a private JACK dummy server.  A probe JACK client in this process records
Downbeat's output port with the JACK frame time of every cycle.  After ~2 s of 170 spm clicks the probe sends
one datagram ``{"grade_pct": -10}`` and notes ``jack_frame_time()`` at the send: the step and the audio are on
one clock, the JACK timeline.

* ``decision``: the onset of the first beat whose *following* interval is shorter than at 170 spm.  The kernel
  reads the target tempo once per beat (at the beat, to keep the click phase-continuous), so this is the latency
  of network + feed thread + control slot + waiting for the next beat (0..1 interval, 353 ms at 170 spm).
* ``audible``: the next onset, the first click that actually arrives earlier than the old tempo would put it.

The first reading of a fresh feed sets the grade level at once (``GradeFilter``: nothing older to be hysteretic
about), so the first-reading step measures the pipeline.  A step on an established level goes through the
1-point / 15 s hysteresis on purpose (DESIGN.md); ``--hysteresis`` measures one such step.  Slew: -10 % grade
asks for 176.8 spm, the kernel moves at most 0.4 % per beat, so the first changed interval is 0.4 % shorter
(about 68 samples).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import REPO, SAMPLERATE  # noqa: E402

import numpy as np  # noqa: E402

BASE_SPM = 170.0


def free_udp_port() -> int:
    """A free loopback UDP port (47800 may be in use by other engineers' tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Probe(common.JackRecorder):
    """The shared JACK recorder (frame time of every cycle), plus waiting for Downbeat's output port."""

    def __init__(self, seconds_max: float = 60.0):
        super().__init__("dbsensorprobe", seconds_max)

    def wait_port(self, proc, timeout_s: float = 60.0) -> str:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            ports = [p.name for p in self.client.get_ports(is_output=True, is_audio=True)
                     if p.name.startswith("PortAudio") and p.name.endswith("out_0")]
            if ports:
                return ports[0]
            if proc.poll() is not None:
                raise RuntimeError(f"downbeat play exited early: {proc.stderr.read()[-800:]}")
            time.sleep(0.01)
        raise RuntimeError("downbeat's JACK port never appeared")



def onsets(rec, frame_time, period, from_cycle):
    """JACK frame times of click onsets (a non-zero sample after >= 64 zeros) recorded from ``from_cycle`` on."""
    stream = rec.reshape(-1)
    nz = np.flatnonzero(stream != 0)
    if nz.size == 0:
        return np.zeros(0, dtype=np.int64)
    idx = nz[np.concatenate([[False], np.diff(nz) > 64])]
    idx = idx[idx // period >= from_cycle]
    return frame_time[idx // period] + idx % period


def trial(srv: common.JackServer, probe: Probe, hysteresis: bool = False, log=print, rng=None) -> dict:
    udp = free_udp_port()
    # A random wait before the step samples every phase of the beat: the minimum over trials approaches the
    # pipeline latency, the spread is the wait for the next beat.
    jitter_s = (rng or np.random.default_rng()).uniform(0.0, 60.0 / BASE_SPM)
    dur = 40.0 if hysteresis else 8.0
    cmd = [sys.executable, "-m", "metronome.cli", "play", "--sensor", f"udp://127.0.0.1:{udp}", "--no-cues",
           "--quiet", "--json", "--device", "JACK", "--duration", str(dur), "--base-cadence", str(BASE_SPM)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proc = subprocess.Popen(cmd, env=srv.env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        port = probe.wait_port(proc)
        probe.n[0] = 0
        probe.client.connect(port, probe.port)
        start_cycle = int(probe.n[0]) + 1
        time.sleep(2.0 + jitter_s)
        if hysteresis:
            # Establish a level (the first reading sets it at once), then step and keep sending at 10 Hz.
            t_end = time.time() + 3.0
            while time.time() < t_end:
                sock.sendto(b'{"grade_pct": 0}', ("127.0.0.1", udp))
                time.sleep(0.1)
        send_frame = probe.client.frame_time
        sock.sendto(b'{"grade_pct": -10}', ("127.0.0.1", udp))
        if hysteresis:
            t_end = time.time() + 20.0
            while time.time() < t_end:
                sock.sendto(b'{"grade_pct": -10}', ("127.0.0.1", udp))
                time.sleep(0.1)
        else:
            time.sleep(2.5)
        cyc = int(probe.n[0])
        rec, ft = probe.rec[:cyc].copy(), probe.frame_time[:cyc].copy()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: downbeat prints its summary and exits 0
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        common.stop_process(proc)
        sock.close()
    summary = {}
    try:
        out = proc.stdout.read()
        summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except (ValueError, IndexError):
        pass
    on = onsets(rec, ft, probe.period, start_cycle)
    iv = np.diff(on)
    nominal = 60.0 * SAMPLERATE / BASE_SPM
    # Shorter by more than 20 samples (rounding is +-1) for two intervals in a row: the slew keeps shortening
    # them, while a late-detected onset (a cycle lost around an xrun) shortens one interval only.
    cand = (iv < nominal - 20) & (on[:-1] >= send_frame - int(nominal))
    short = np.flatnonzero(cand[:-1] & cand[1:])
    res = {"hysteresis": hysteresis, "period_frames": probe.period, "send_frame": int(send_frame),
           "onsets": int(on.size), "underflows": summary.get("underflows"),
           "sensor_counters": summary.get("sensor", {}).get("counters")}
    if short.size:
        i = int(short[0])
        # An xrun can lengthen the first changed interval (a lost cycle adds a period) so that it is not seen as
        # shorter.  The slew makes the j-th changed interval nominal * 0.996^j: if the first one seen is already
        # j > 1 steps in, the decision was j - 1 beats earlier.
        j = max(1, int(round(np.log(iv[i] / nominal) / np.log(1.0 - 0.004))))
        res["beats_back_corrected"] = min(j - 1, i)
        i -= min(j - 1, i)
        res.update(decision_ms=(on[i] - send_frame) / SAMPLERATE * 1e3,
                   audible_ms=(on[i + 1] - send_frame) / SAMPLERATE * 1e3,
                   first_changed_interval_samples=int(iv[i]), nominal_interval_samples=nominal,
                   interval_change_pct=100.0 * (iv[i] / nominal - 1.0),
                   next_intervals=[int(x) for x in iv[i:i + 4]])
        log(f"{'hysteresis' if hysteresis else 'first reading'} step: decision beat {res['decision_ms']:7.1f} ms, "
            f"first earlier click {res['audible_ms']:7.1f} ms after the datagram (interval {iv[i]} vs "
            f"{nominal:.1f} samples, {res['interval_change_pct']:+.2f} %)")
    else:
        res["error"] = "no shortened interval found"
        log(f"no tempo change seen ({on.size} onsets)")
    return res


def bench(trials: int = 5, hysteresis: bool = False, period: int = 128, log=print) -> dict:
    out = {"machine": common.machine_info(), "base_spm": BASE_SPM, "grade_step_pct": -10.0, "trials": []}
    with common.JackServer(period, name=f"dbsens{os.getpid()}p{period}") as srv:
        os.environ["JACK_DEFAULT_SERVER"] = srv.name  # the probe lives in this process
        probe = Probe(seconds_max=60.0)
        rng = np.random.default_rng(6)
        try:
            for _ in range(trials):
                out["trials"].append(trial(srv, probe, False, log, rng))
            if hysteresis:
                out["hysteresis_trial"] = trial(srv, probe, True, log)
        finally:
            probe.close()
            os.environ.pop("JACK_DEFAULT_SERVER", None)
    ok = [t for t in out["trials"] if "decision_ms" in t]
    if ok:
        for key in ("decision_ms", "audible_ms"):
            v = np.array([t[key] for t in ok])
            out[key] = {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max()), "n": len(v)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--hysteresis", action="store_true", help="also one step through the 15 s hysteresis")
    ap.add_argument("--period", type=int, default=128)
    args = ap.parse_args(argv)
    res = bench(args.trials, args.hysteresis, args.period)
    print("wrote", common.save_json("sensor", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
