"""Cost per fix of the course follower on a 100 km course (issue 14).

A synthetic 100 km trail (a random walk of headings on a 5 m grid, like a Profile's) is followed by a runner at
3 m/s with 1 Hz fixes and 10 m GPS noise; every ``CourseFollower.update`` is timed with ``perf_counter_ns``.
Prints the median, p99 and max in microseconds, and the first fix (a whole-course scan) separately.

    .venv/bin/python benchmarks/bench_follower.py [--km 100] [--fixes 20000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metronome.follower import CourseFollower, CoursePath  # noqa: E402
from metronome.sensors.position import Fix  # noqa: E402

M_PER_DEG = 6371008.8 * math.pi / 180.0


def course(km: float, seed: int = 1) -> CoursePath:
    rng = np.random.default_rng(seed)
    n = int(km * 1000 / 5.0) + 1
    heading = np.cumsum(rng.normal(0.0, 0.15, n))  # a winding trail
    x = np.concatenate([[0.0], np.cumsum(5.0 * np.cos(heading[:-1]))])
    y = np.concatenate([[0.0], np.cumsum(5.0 * np.sin(heading[:-1]))])
    lat = 46.0 + y / M_PER_DEG
    lon = 14.0 + x / (M_PER_DEG * math.cos(math.radians(46.0)))
    return CoursePath(np.arange(n) * 5.0, lat, lon)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--km", type=float, default=100.0)
    ap.add_argument("--fixes", type=int, default=20000)
    a = ap.parse_args(argv)
    c = course(a.km)
    f = CourseFollower(c)
    rng = np.random.default_rng(2)
    # spread the fixes over the whole course (so the cost is measured at every distance, not only the start)
    v = min(c.total_m / a.fixes, 10.0)
    ns = np.empty(a.fixes, dtype=np.int64)
    worst_err = 0.0
    for k in range(a.fixes):
        d = k * v
        lat, lon = c.point_at(d)
        nx, ny = rng.normal(0.0, 10.0, 2)
        fix = Fix(float(k), lat + ny / M_PER_DEG, lon + nx / (M_PER_DEG * math.cos(math.radians(lat))),
                  accuracy_m=10.0)
        t0 = time.perf_counter_ns()
        st = f.update(fix, float(k))
        ns[k] = time.perf_counter_ns() - t0
        worst_err = max(worst_err, abs(st.distance_m - d))
    us = ns[1:] / 1000.0
    print(f"course {c.total_m / 1000:.0f} km, {c.n_segments} segments; {a.fixes} fixes at {v:.1f} m/s, 10 m noise")
    print(f"first fix (whole-course scan): {ns[0] / 1000:.0f} us")
    print(f"per fix: median {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us, max {us.max():.0f} us")
    print(f"largest distance error: {worst_err:.1f} m; final state {st.state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
