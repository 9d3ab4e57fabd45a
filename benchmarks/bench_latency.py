"""Benchmark: where a click scheduled at engine sample n appears on the JACK graph's timeline.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_latency.py                 # periods 64/128/256, 4 s each
    python3 benchmarks/bench_latency.py --periods 128 --blocksizes 128 0 64

Method (a loopback inside the JACK graph: the dummy driver has no physical loop from playback to capture)
-----------------------------------------------------------------------------------------------------------
One process, on a private dummy server with period P, holds Downbeat's :class:`~metronome.player.LivePlayer`
(PortAudio's JACK client, port ``PortAudio:out_0``) and a probe JACK client whose input port is connected to
that output.  JACK runs a client only after the clients feeding it have finished the cycle, so the probe sees
each cycle's output in the cycle it was produced.  In its process callback the probe stores, per cycle:

* the cycle's JACK frame time (``jack_last_frame_time``: the frame at which the cycle's block starts);
* the block it received from Downbeat;
* Downbeat's engine position ``st[ST_POS]`` (absolute sample index of the *next* sample the kernel will make),
  read from the engine's state array, which the kernel writes inside the callback of this same cycle.

Offline, the same tempo map is rendered through the same kernel (bit-identical for any block size).  For every
cycle whose block holds a click, the offset ``d`` with ``block == render[ST_POS - P - d : ST_POS - d]`` is the
number of frames Downbeat (its callback, PortAudio's buffering) kept the audio beyond the current cycle: 0 means
the samples the kernel produced in cycle F are what the graph carries in cycle F.  Then every click onset at
engine sample n is located on the JACK timeline: ``frame(n) = F0 + n + d`` with F0 the frame time of the cycle
whose callback produced engine sample 0.  What the server adds after the graph (the period the driver needs to
play the block out, plus its own latency) is the same for any JACK client; it is read from the port's playback
latency range and reported separately.
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
    import jack
    import numpy as np

    from metronome import _kernels as K
    from metronome.devices import find_device
    from metronome.engine import Engine, freeze_kernels, warm_kernels
    from metronome.mix import EngineSettings
    from metronome.player import LivePlayer
    from metronome.tempo import TempoMap

    warm_kernels(SAMPLERATE, 2)
    freeze_kernels()
    tm = TempoMap.constant(170.0, SAMPLERATE, seconds + 30.0)
    settings = EngineSettings(samplerate=SAMPLERATE, channels=2)
    engine = Engine(tm, settings)

    client = jack.Client("dbprobe", no_start_server=True)
    period = client.blocksize
    n_cyc = int((seconds + 5.0) * SAMPLERATE / period) + 16
    rec = np.zeros((n_cyc, period), dtype=np.float32)
    frame_time = np.zeros(n_cyc, dtype=np.int64)
    engine_pos = np.zeros(n_cyc, dtype=np.int64)
    n = np.zeros(1, dtype=np.int64)
    st = engine.st
    port = client.inports.register("in")

    @client.set_process_callback
    def process(frames):
        # Python, but only the probe's thread: Downbeat's callback is a C function and never waits for it.
        k = n[0]
        if k < n_cyc:
            rec[k, :frames] = port.get_array()
            frame_time[k] = client.last_frame_time
            engine_pos[k] = int(st[K.ST_POS])
            n[0] = k + 1

    xruns = [0]

    @client.set_xrun_callback
    def xrun(delay_usecs):
        xruns[0] += 1

    client.activate()
    dev = find_device("JACK")
    player = LivePlayer(engine, device=dev, blocksize=blocksize).start()
    latency = {}
    try:
        out_ports = [p for p in client.get_ports(is_output=True, is_audio=True) if p.name.startswith("PortAudio")]
        client.connect(out_ports[0], port)
        connected_cycle = int(n[0]) + 1  # the first cycle that certainly ran with the connection in place
        time.sleep(seconds)
        # Read once the graph has settled (right after a connection JACK may not have recomputed latencies).
        latency["downbeat_port_playback"] = _latency_range(jack, out_ports[0], playback=True)
        latency["probe_port_capture"] = _latency_range(jack, port, playback=False)
    finally:
        player.stop(fade_s=0.0)
        client.deactivate()
        client.close()
    cyc = int(n[0])
    rec, frame_time, engine_pos = rec[:cyc], frame_time[:cyc], engine_pos[:cyc]

    # Offline reference through the same kernel.
    total = int(engine_pos.max()) + period
    ref_engine = Engine(tm, settings)
    ref = np.zeros((total, 2), dtype=np.float32)
    for i in range(0, total, 4096):
        ref_engine.process(ref[i:i + 4096])
    ref = ref[:, 0]

    # Cycles with a click in them make the alignment unambiguous.  A cycle is "clean" when it and the one
    # before it ran on time (frame time advanced by one period, Downbeat produced one period): around an xrun
    # JACK's ordering and buffers are not those of a normal cycle, and such cycles are reported apart.
    ft_ok = np.concatenate([[False], np.diff(frame_time) == period])
    pos_ok = np.concatenate([[False], np.diff(engine_pos) == period])
    clean = ft_ok & pos_ok & np.concatenate([[False], ft_ok[:-1] & pos_ok[:-1]])
    offsets, offsets_clean = [], []
    for k in range(cyc):
        blk = rec[k]
        if engine_pos[k] < period or not np.any(blk):
            continue
        p = int(engine_pos[k])
        found = None
        for d in range(-2 * period, 8 * period + 1):
            a, b = p - period - d, p - d
            if a < 0 or b > ref.size:
                continue
            if np.array_equal(blk, ref[a:b]):
                found = d
                break
        offsets.append(found)
        if clean[k]:
            offsets_clean.append(found)
    # F0: frame time of the cycle whose callback produced engine sample 0 (the first cycle with pos > 0, minus
    # any frames produced before it in the same cycle).
    first = int(np.argmax(engine_pos > 0))
    f0 = int(frame_time[first]) - (int(engine_pos[first]) - period) if engine_pos[first] >= period else None
    # Click onsets: recorded frame time of each onset vs its engine sample.
    beats = tm.beat_samples()
    stream = rec.reshape(-1)
    frames_tl = (frame_time[:, None] + np.arange(period)[None, :]).reshape(-1)
    nz = np.flatnonzero(stream != 0)
    # An onset: a non-zero sample after at least 64 zeros, recorded once the probe was connected (before that
    # the port reads silence, and the first block after it may start inside a click).
    onset_idx = nz[np.concatenate([[False], np.diff(nz) > 64])] if nz.size else nz
    onset_idx = onset_idx[onset_idx // period > connected_cycle]
    # Slip between the JACK timeline and the engine's sample clock: a cycle in which Downbeat's callback did not
    # run (late/skipped) or a server xrun (frame time jumps) moves every later click by the lost frames; the
    # kernel keeps its own sample count and does not skip ahead, so the click grid stays phase-continuous.
    slip = (frame_time - frame_time[first]) - (engine_pos - engine_pos[first])
    click_rows = []
    for oi in onset_idx[:400]:
        fr = int(frames_tl[oi])
        k = oi // period
        # The engine sample of this onset: the beat nearest to fr - f0 - slip.
        nb = int(beats[np.argmin(np.abs(beats - (fr - f0 - slip[k])))])
        click_rows.append({"jack_frame": fr, "engine_sample": nb, "frames_after_F0_plus_n": fr - f0 - nb,
                           "slip_frames": int(slip[k]), "residual_frames": fr - f0 - nb - int(slip[k])})
    cont = np.diff(frame_time)
    last = int(np.argmax(engine_pos == engine_pos.max()))  # after this the stream was stopped
    produced = np.diff(engine_pos[:last + 1])
    valid = [o for o in offsets if o is not None]
    return {"period_frames": period, "blocksize": blocksize, "cycles": cyc, "probe_xruns": xruns[0],
            "frame_time_gaps": int(np.sum(cont != period)), "cycles_with_click": len(offsets),
            "cycles_matched": len(valid), "offset_frames_values": sorted(set(valid)),
            "unmatched_cycles": len(offsets) - len(valid),
            "clean_cycles_with_click": len(offsets_clean),
            "offset_frames_values_clean": sorted({o for o in offsets_clean if o is not None}),
            "unmatched_clean_cycles": sum(o is None for o in offsets_clean), "F0": f0, "clicks": click_rows[:8],
            "click_offsets_frames": sorted({r["frames_after_F0_plus_n"] for r in click_rows}),
            "click_residual_frames": sorted({r["residual_frames"] for r in click_rows}),
            "clicks_located": len(click_rows), "final_slip_frames": int(slip[-1]),
            "cycles_downbeat_skipped": int(np.sum(produced[first:] == 0)),
            "cycles_odd_size": int(np.sum((produced[first:] != 0) & (produced[first:] != period))),
            "port_latency_frames": latency, "underflows": int(player.stats[K.S_UNDERFLOWS])}


def _latency_range(jack, port, playback: bool):
    """``jack_port_get_latency_range`` through ctypes (JACK-Client 0.5 has no wrapper): [min, max] frames."""
    import ctypes

    try:
        lib = ctypes.CDLL("libjack.so.0")

        class Range(ctypes.Structure):
            _fields_ = [("min", ctypes.c_uint32), ("max", ctypes.c_uint32)]

        rng = Range()
        lib.jack_port_get_latency_range.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(Range)]
        ptr = int(jack._ffi.cast("uintptr_t", port._ptr))
        lib.jack_port_get_latency_range(ptr, 1 if playback else 0, ctypes.byref(rng))  # JackPlaybackLatency = 1
        return [int(rng.min), int(rng.max)]
    except Exception as exc:  # another libjack/wrapper: report, do not fail the benchmark
        return f"unavailable ({exc})"


def bench(periods=(64, 128, 256), blocksizes=None, seconds: float = 4.0, log=print) -> dict:
    out = {"machine": common.machine_info(), "cases": []}
    for p in periods:
        with common.JackServer(p, name=f"dblat{os.getpid()}p{p}") as srv:
            for b in (blocksizes or [p]):
                r = common.run_child([sys.executable, os.path.abspath(__file__), "--child", "--seconds",
                                      str(seconds), "--blocksize", str(b)], env=srv.env(), cwd=REPO,
                                     timeout_s=seconds + 300)
                if r["rc"] != 0:
                    raise RuntimeError(f"latency child failed: {r['stderr'][-1500:]}")
                res = json.loads(r["stdout"].strip().splitlines()[-1])
                out["cases"].append(res)
                log(f"period {p:>3} blocksize {b:>3}: {res['cycles_matched']}/{res['cycles_with_click']} click "
                    f"cycles matched the render, Downbeat offset (frames beyond the cycle) "
                    f"{res['offset_frames_values_clean']} in {res['clean_cycles_with_click']} clean cycles, "
                    f"{res['offset_frames_values']} in all; {res['clicks_located']} click onsets at F0 + n + slip + "
                    f"{res['click_residual_frames']} (slip values {res['click_offsets_frames']}: "
                    f"{res['cycles_downbeat_skipped']} cycles without a Downbeat callback, "
                    f"{res['frame_time_gaps']} frame-time jumps); "
                    f"port playback latency {res['port_latency_frames'].get('downbeat_port_playback')} frames; "
                    f"probe xruns {res['probe_xruns']}, underflows {res['underflows']}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--periods", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--blocksizes", type=int, nargs="+", default=None,
                    help="PortAudio blocksizes to try on each server (default: the period; 0 = host's choice)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--blocksize", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child_main(args.seconds, args.blocksize)))
        return 0
    res = bench(args.periods, args.blocksizes, args.seconds)
    print("wrote", common.save_json("latency", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
