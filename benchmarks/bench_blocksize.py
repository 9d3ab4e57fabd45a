"""Benchmark: offline render time against ``--blocksize`` (issue 12, item 12).

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_blocksize.py                 # demo-descent, clicks only, block sizes 1 64 65536
    python3 benchmarks/bench_blocksize.py --blocksizes 1 7 64 1024 65536 --repeat 3

Each block size renders the bundled demo descent (22.5 min) through :func:`metronome.render.render` to a PCM_16
WAV in a temporary folder; the best of ``--repeat`` runs is reported (seconds and times real time), and every file
is checked to be byte-identical to the default block size's.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from metronome.engine import warm_kernels
from metronome.mix import EngineSettings
from metronome.render import render  # noqa: E402
from metronome.session import load_profile, plan_session, tempo_settings_for  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocksizes", type=int, nargs="+", default=[1, 64, 65536])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    prof = load_profile("demo-descent")
    es = EngineSettings()
    plan = plan_session(prof, tempo_settings_for(prof), es, cues=False)
    warm_kernels(es.samplerate, es.channels)
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "ref.wav")
        render(plan.tempo_map, ref, es, bank=plan.bank, blocksize=65536)  # also compiles process_blocks
        render(plan.tempo_map, os.path.join(tmp, "warm.wav"), es, bank=plan.bank, blocksize=7)
        print(f"{'blocksize':>9}  {'best s':>8}  {'x real time':>11}  identical")
        for bs in args.blocksizes:
            best = float("inf")
            out = os.path.join(tmp, f"b{bs}.wav")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = render(plan.tempo_map, out, es, bank=plan.bank, blocksize=bs)
                best = min(best, time.perf_counter() - t0)
            audio_s = res.frames / es.samplerate
            print(f"{bs:>9}  {best:>8.2f}  {audio_s / best:>11.0f}  {filecmp.cmp(ref, out, shallow=False)}")


if __name__ == "__main__":
    main()
