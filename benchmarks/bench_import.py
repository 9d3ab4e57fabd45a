"""Benchmark: import a synthetic 100 km GPX track with ``profiles.load_profile``.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_import.py [--km 100] [--repeat 3]

The track is realistic for a long trail run: one fix every 5-10 m (1 s recording at 5-10 m/s would be a bike;
at running speed this is a 2-3 s recording interval), rolling hills plus two long descents, 0.3 m of elevation
jitter and the odd 30 m GPS spike, 1 s timestamps and GPX 1.1 namespaces with a Garmin extension per point (as
watches export).  Prints best-of-N wall times for gpxpy.parse alone (baseline), our fast GPX reader, and the whole
``load_profile`` (read + resample + smooth + timing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def synth_gpx(km: float = 100.0, seed: int = 0) -> str:
    """A synthetic GPX 1.1 track of ``km`` kilometres as a string."""
    rng = np.random.default_rng(seed)
    step = rng.uniform(5.0, 10.0, size=int(km * 1000 / 7.5) + 1)
    d = np.concatenate([[0.0], np.cumsum(step)])
    d = d[d <= km * 1000]
    ele = (800 + 150 * np.sin(d / 3000) + 40 * np.sin(d / 700) - 300 * np.clip((d - 30000) / 8000, 0, 1)
           + 300 * np.clip((d - 60000) / 10000, 0, 1) - 200 * np.clip((d - 80000) / 5000, 0, 1))
    ele = ele + rng.normal(0, 0.3, d.size)
    spikes = rng.choice(d.size, size=max(1, d.size // 2000), replace=False)
    ele[spikes] += 30.0
    # A wandering path: heading changes slowly; metres -> degrees near 46 N.
    heading = np.cumsum(rng.normal(0, 0.05, d.size))
    dx = np.diff(d, prepend=0.0) * np.cos(heading)
    dy = np.diff(d, prepend=0.0) * np.sin(heading)
    lat = 46.0 + np.cumsum(dy) / 111_195.0
    lon = 13.7 + np.cumsum(dx) / (111_195.0 * np.cos(np.radians(46.0)))
    t0 = dt.datetime(2024, 6, 1, 7, 0, 0)
    t = np.round(d / 3.0)  # ~3 m/s
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<gpx version="1.1" creator="bench" xmlns="http://www.topografix.com/GPX/1/1" '
             'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">',
             '<trk><name>synthetic</name><trkseg>']
    for la, lo, e, s in zip(lat, lon, ele, t):
        ts = (t0 + dt.timedelta(seconds=float(s))).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f'<trkpt lat="{la:.7f}" lon="{lo:.7f}"><ele>{e:.1f}</ele><time>{ts}</time>'
                     f'<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>150</gpxtpx:hr>'
                     f'</gpxtpx:TrackPointExtension></extensions></trkpt>')
    lines.append('</trkseg></trk></gpx>')
    return "\n".join(lines)


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--km", type=float, default=100.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import gpxpy

    from profiles import gpx as gpx_reader
    from profiles import load_profile

    text = synth_gpx(args.km)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"synthetic-{args.km:g}km.gpx")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        data = open(path, "rb").read()
        n_pts = text.count("<trkpt")
        rows = [
            ("gpxpy.parse (baseline)", best_of(lambda: gpxpy.parse(data.decode("utf-8")), args.repeat)),
            ("profiles.gpx fast reader", best_of(lambda: gpx_reader.read_gpx_fast(data, path), args.repeat)),
            ("profiles.gpx via gpxpy", best_of(lambda: gpx_reader.read_gpx_gpxpy(data, path), args.repeat)),
            ("load_profile (total)", best_of(lambda: load_profile(path), args.repeat)),
        ]
        prof = load_profile(path)
    print(f"{args.km:g} km synthetic GPX: {n_pts} points, {len(data) / 1e6:.1f} MB; "
          f"profile: {prof.distance_m.size} grid points, {prof.total_distance_m / 1000:.1f} km, "
          f"descent {prof.total_descent_m:.0f} m, {prof.duration_s / 3600:.2f} h ({prof.kind})")
    print(f"{'step':<28}{'best of ' + str(args.repeat):>12}")
    for label, secs in rows:
        print(f"{label:<28}{secs:>10.3f} s")
    total = rows[-1][1]
    print(f"target < 2 s for 100 km: {'OK' if total < 2.0 * args.km / 100.0 else 'SLOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
