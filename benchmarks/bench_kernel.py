"""Issue 19: the kernel alone against a memset of the same blocks, side by side in one run (ratios only).

In process, kernels warm: ``Engine.process`` over 65536-frame blocks of a 30-minute map (mono, 48 kHz, no cues,
the event ring drained every block as the renderer does), against ``out[:] = 0`` on the same blocks (the floor:
most of a click track is silence).  Three maps: constant 170 spm, steps (170/178 spm alternating every minute) and
ramps (170 -> 185 -> 170 spm over each 4 minutes, linear).  Alternating runs, medians.

    .venv/bin/python benchmarks/bench_kernel.py --minutes 30 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from metronome.engine import Engine, warm_kernels
from metronome.mix import EngineSettings, click_bank
from metronome.tempo import TempoMap

SR = 48000
BLOCK = 65536


def maps(minutes: float) -> dict:
    end = int(minutes * 60 * SR)
    steps_s = np.arange(0, end, 60 * SR)
    # A step is a pair of breakpoints one sample apart (the map is linear between breakpoints).
    step_s = np.unique(np.concatenate([steps_s, steps_s[1:] + 1]))
    step_b = np.array([178.0 if (int(max(s - 1, 0) // (60 * SR)) % 2) else 170.0 for s in step_s])
    ramp_s = np.arange(0, end, 120 * SR)
    ramp_b = np.where(np.arange(ramp_s.size) % 2, 185.0, 170.0)
    return {"constant": TempoMap.constant(170.0, SR, minutes * 60),
            "steps": TempoMap(step_s, step_b, SR, end_sample=end),
            "ramps": TempoMap(ramp_s, ramp_b, SR, end_sample=end)}


def run_kernel(tm, es, bank) -> float:
    eng = Engine(tm, es, bank, stop_beats_at=tm.end_sample)
    out = np.zeros((BLOCK, 1), np.float32)
    t = time.perf_counter()
    for _ in range(tm.end_sample // BLOCK):
        eng.process(out)
        eng.drain_events()
    return time.perf_counter() - t


def run_memset(tm) -> float:
    out = np.zeros((BLOCK, 1), np.float32)
    t = time.perf_counter()
    for _ in range(tm.end_sample // BLOCK):
        out[:] = 0.0
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    es = EngineSettings(channels=1)
    warm_kernels(SR, 1, for_play=False)
    bank = click_bank(SR, settings=es)
    audio_s = (int(a.minutes * 60 * SR) // BLOCK) * BLOCK / SR
    print(f"| map | kernel (median of {a.repeat}) | x real time | memset | x real time | kernel / memset |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, tm in maps(a.minutes).items():
        k, m = [], []
        for _ in range(a.repeat):
            k.append(run_kernel(tm, es, bank))
            m.append(run_memset(tm))
        ks, ms = statistics.median(k), statistics.median(m)
        print(f"| {name} | {ks:.4f} s | {audio_s / ks:,.0f}x | {ms:.4f} s | {audio_s / ms:,.0f}x | {ks / ms:.1f} |")


if __name__ == "__main__":
    main()
