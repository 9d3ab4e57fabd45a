"""Small GPX/TCX fixtures written from arrays, to rebuild the shape of real files that cannot be shipped."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "data"
T0_UNIX_S = 1_600_000_000.0   # 2020-09-13, any fixed origin works


def iso(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def line_track(n: int, step_m: float, lat0: float = 46.0, lon0: float = 14.0):
    """``n`` points ``step_m`` apart heading east: (lat_deg, lon_deg) arrays."""
    lon_step = step_m / (111_320.0 * np.cos(np.radians(lat0)))
    return np.full(n, lat0), lon0 + lon_step * np.arange(n)


def write_gpx(path: Path, lat, lon, ele, t_s=None) -> Path:
    pts = []
    for i in range(len(lat)):
        time = f"<time>{iso(t_s[i])}</time>" if t_s is not None else ""
        pts.append(f'<trkpt lat="{lat[i]:.7f}" lon="{lon[i]:.7f}"><ele>{ele[i]:.2f}</ele>{time}</trkpt>')
    path.write_text('<?xml version="1.0"?><gpx version="1.1" creator="test" '
                    'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>' + "".join(pts)
                    + "</trkseg></trk></gpx>", encoding="utf-8")
    return path


def edit_track_eles(text: str, edit) -> str:
    """Apply ``edit(list_of_ele_strings)`` to the ``<ele>`` of every track point (waypoints are left alone)."""
    head, sep, body = text.partition("<trk>")
    eles = re.findall(r"<ele>([^<]*)</ele>", body)
    new = edit(list(eles))
    it = iter(new)
    return head + sep + re.sub(r"<ele>[^<]*</ele>", lambda m: f"<ele>{next(it)}</ele>", body)
