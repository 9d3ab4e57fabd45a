"""Benchmark: huge but valid tracks (issue 12.7): 1M points per format, time and peak memory of ``load_profile``.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_huge_tracks.py [--points 1000000] [--gpxpy-points 60000]

The files are generated at run time into a temporary directory (never committed): a 1 Hz recording at 0.8 m/s
(a steep hike; 1M points = 800 km, under the 1000 km distance limit) with rolling hills, 0.3 m of elevation
jitter, 1 s timestamps.  Each load runs in its own child process, which reports its wall time and peak RSS
(``VmHWM``, the whole process: Python, numpy and the file's bytes included).  Formats:

* ``fit``: records with timestamp, position, enhanced_altitude, distance, cadence (our decoder, profiles/fit.py);
* ``gpx``: GPX 1.1, the fast reader;
* ``tcx``: one Activity, one Lap, every Trackpoint with Time, Position, AltitudeMeters, DistanceMeters;
* ``gpx-gpxpy``: the gpxpy fallback at its limit (``profiles.gpx.GPXPY_MAX_POINTS``) and the refusal above it;
* ``over-limit``: ``MAX_POINTS + 1`` points in each format, refused before the slow work;
* for GPX and TCX, whose per-format limits (``GPX_MAX_POINTS``, ``TCX_MAX_POINTS``) are below 1M, a file at the
  limit (the biggest load each accepts).

Goal: 1M points in under 5 s and 500 MB on every path, or a clear early refusal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

T0_UNIX_S = 1_600_000_000
FIT_EPOCH_UNIX_S = 631065600
SPEED_MPS = 0.8


def _track(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    d = np.arange(n) * SPEED_MPS
    ele = 800 + 150 * np.sin(d / 3000) + 40 * np.sin(d / 700) + rng.normal(0, 0.3, n)
    lat = 46.0 + d / 111_320.0 * 0.6
    lon = 14.0 + d / (111_320.0 * np.cos(np.radians(46.0))) * 0.8
    t = T0_UNIX_S + np.arange(n)
    return lat, lon, ele, t, d


def _iso(t) -> list:
    base = dt.datetime.fromtimestamp(T0_UNIX_S, dt.timezone.utc)
    return [(base + dt.timedelta(seconds=int(s - T0_UNIX_S))).strftime("%Y-%m-%dT%H:%M:%SZ") for s in t]


def write_gpx(path: str, n: int) -> None:
    lat, lon, ele, t, _ = _track(n)
    times = _iso(t)
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="bench" '
                'xmlns="http://www.topografix.com/GPX/1/1"><trk><name>huge</name><trkseg>\n')
        f.writelines(f'<trkpt lat="{a:.7f}" lon="{o:.7f}"><ele>{e:.1f}</ele><time>{s}</time></trkpt>\n'
                     for a, o, e, s in zip(lat.tolist(), lon.tolist(), ele.tolist(), times))
        f.write("</trkseg></trk></gpx>\n")


def write_tcx(path: str, n: int) -> None:
    lat, lon, ele, t, d = _track(n)
    times = _iso(t)
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<TrainingCenterDatabase xmlns="http://www.garmin.com/'
                f'xmlschemas/TrainingCenterDatabase/v2"><Activities><Activity Sport="Running"><Id>{times[0]}</Id>'
                f'<Lap StartTime="{times[0]}"><Track>\n')
        f.writelines(f"<Trackpoint><Time>{s}</Time><Position><LatitudeDegrees>{a:.7f}</LatitudeDegrees>"
                     f"<LongitudeDegrees>{o:.7f}</LongitudeDegrees></Position><AltitudeMeters>{e:.1f}"
                     f"</AltitudeMeters><DistanceMeters>{dd:.1f}</DistanceMeters></Trackpoint>\n"
                     for a, o, e, s, dd in zip(lat.tolist(), lon.tolist(), ele.tolist(), times, d.tolist()))
        f.write("</Track></Lap></Activity></Activities></TrainingCenterDatabase>\n")


def write_fit(path: str, n: int) -> None:
    from profiles.fit import fit_crc

    lat, lon, ele, t, d = _track(n)
    semi = 2 ** 31 / 180.0
    # file_id (local 1: type=activity), then the record definition (local 0) and n record data messages.
    head = struct.pack("<BBBHB", 0x41, 0, 0, 0, 1) + struct.pack("<BBB", 0, 1, 0x00) + bytes([1, 4])
    fields = ((253, 4, 0x86), (0, 4, 0x85), (1, 4, 0x85), (78, 4, 0x86), (5, 4, 0x86), (4, 1, 0x02))
    head += struct.pack("<BBBHB", 0x40, 0, 0, 20, len(fields)) + b"".join(struct.pack("<BBB", *f) for f in fields)
    rec = np.zeros(n, dtype=np.dtype([("h", "u1"), ("ts", "<u4"), ("lat", "<i4"), ("lon", "<i4"), ("alt", "<u4"),
                                      ("dist", "<u4"), ("cad", "u1")]))
    rec["ts"] = t - FIT_EPOCH_UNIX_S
    rec["lat"] = np.round(lat * semi)
    rec["lon"] = np.round(lon * semi)
    rec["alt"] = np.round((ele + 500.0) * 5)
    rec["dist"] = np.round(d * 100)
    rec["cad"] = 85
    body = head + rec.tobytes()
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
    header += struct.pack("<H", fit_crc(header))
    data = header + body
    with open(path, "wb") as f:
        f.write(data + struct.pack("<H", fit_crc(data)))


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy, profiles.track, profiles.gpx, profiles.fit, profiles.tcx
from profiles import load_profile
from metronome.errors import ProfileError
mode = {mode!r}
if mode == "gpxpy":
    def declines(data, display):
        raise profiles.gpx._Unusual("benchmark: gpxpy path")
    profiles.gpx.read_gpx_fast = declines
def hwm_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec() from the forking parent (which generated the file).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
rss0 = hwm_mb()
t0 = time.perf_counter()
try:
    p = load_profile({path!r})
    out = dict(result="loaded", km=round(p.total_distance_m / 1000, 1), grid=int(p.distance_m.size), kind=p.kind,
               warnings=len(p.warnings))
except ProfileError as exc:
    out = dict(result="refused", message=str(exc))
out["wall_s"] = round(time.perf_counter() - t0, 2)
out["peak_rss_mb"] = hwm_mb()
out["rss_after_imports_mb"] = rss0
print(json.dumps(out))
"""


def measure(path: str, mode: str = "") -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT, path=path, mode=mode)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        return {"result": "crashed", "stderr": r.stderr.strip().splitlines()[-1:]}
    return json.loads(r.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--gpxpy-points", type=int, default=None, help="default: profiles.gpx.GPXPY_MAX_POINTS")
    ap.add_argument("--only", nargs="*", default=None, help="fit gpx tcx gpx-gpxpy over-limit")
    args = ap.parse_args(argv)
    from profiles.gpx import GPX_MAX_POINTS, GPXPY_MAX_POINTS
    from profiles.tcx import TCX_MAX_POINTS
    from profiles.track import MAX_POINTS

    gpxpy_n = args.gpxpy_points or GPXPY_MAX_POINTS
    want = set(args.only or ["fit", "gpx", "tcx", "gpx-gpxpy", "over-limit"])
    writers = {"fit": write_fit, "gpx": write_gpx, "tcx": write_tcx}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-huge-") as tmp:
        def case(label, fmt, n, mode=""):
            path = os.path.join(tmp, f"huge-{n}.{fmt}")
            if not os.path.exists(path):
                writers[fmt](path, n)
            res = measure(path, mode)
            res.update(case=label, points=n, file_mb=round(os.path.getsize(path) / 2 ** 20, 1))
            rows.append(res)
            print(json.dumps(res), flush=True)
        for fmt in ("fit", "gpx", "tcx"):
            if fmt in want:
                case(fmt, fmt, args.points)
        limits = {"fit": MAX_POINTS, "gpx": GPX_MAX_POINTS, "tcx": TCX_MAX_POINTS}
        for fmt in ("gpx", "tcx"):    # the biggest files each XML reader accepts
            if fmt in want and limits[fmt] < args.points:
                case(f"{fmt} at its limit", fmt, limits[fmt])
        if "gpx-gpxpy" in want:
            case("gpx via gpxpy (at its limit)", "gpx", gpxpy_n, "gpxpy")
            case("gpx via gpxpy (over it)", "gpx", gpxpy_n + 1, "gpxpy")
            case(f"gpx via gpxpy ({args.points})", "gpx", args.points, "gpxpy")
        if "over-limit" in want:
            for fmt in ("fit", "gpx", "tcx"):
                case(f"{fmt} over MAX_POINTS", fmt, MAX_POINTS + 1)
    print()
    print(f"{'case':<30} {'points':>9} {'file MB':>8} {'result':>8} {'wall s':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['case']:<30} {r['points']:>9} {r['file_mb']:>8} {r['result']:>8} {r.get('wall_s', '-'):>7} "
              f"{r.get('peak_rss_mb', '-'):>12}")
    for r in rows:
        if r["result"] == "refused":
            print(f"  {r['case']}: {r['message']}")
    ok = all(r["result"] != "crashed" and r.get("wall_s", 99) < 5.0 and r.get("peak_rss_mb", 9999) < 500
             for r in rows)
    print(f"goal: every case under 5 s and 500 MB: {'OK' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
