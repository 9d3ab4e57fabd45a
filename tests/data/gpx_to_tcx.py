"""Make the TCX test files from real GPX tracks (run once; the outputs are committed).

    python3 tests/data/gpx_to_tcx.py /work/shared/data/gpxpy/cerknicko-jezero.gpx tests/data/cerknicko-jezero.tcx

Each GPX track segment becomes a TCX Lap (so the pauses between them are kept), DistanceMeters is the cumulative
2-D distance (gpxpy), and a constant RunCadence extension (85 strides/min) is added to exercise cadence parsing.
"""

import sys

import gpxpy


def convert(src: str, dst: str) -> None:
    gpx = gpxpy.parse(open(src, encoding="utf-8"))
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2" '
           'xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">',
           '<Activities><Activity Sport="Running">']
    segs = [s for t in gpx.tracks for s in t.segments if s.points]
    out.append(f"<Id>{segs[0].points[0].time.strftime('%Y-%m-%dT%H:%M:%SZ')}</Id>")
    dist = 0.0
    prev = None
    for seg in segs:
        out.append(f'<Lap StartTime="{seg.points[0].time.strftime("%Y-%m-%dT%H:%M:%SZ")}"><Track>')
        prev = None
        for p in seg.points:
            if prev is not None:
                dist += p.distance_2d(prev)
            prev = p
            out.append(f"<Trackpoint><Time>{p.time.strftime('%Y-%m-%dT%H:%M:%SZ')}</Time>"
                       f"<Position><LatitudeDegrees>{p.latitude}</LatitudeDegrees>"
                       f"<LongitudeDegrees>{p.longitude}</LongitudeDegrees></Position>"
                       f"<AltitudeMeters>{p.elevation}</AltitudeMeters><DistanceMeters>{dist:.2f}</DistanceMeters>"
                       f"<Extensions><ns3:TPX><ns3:RunCadence>85</ns3:RunCadence></ns3:TPX></Extensions>"
                       f"</Trackpoint>")
        out.append("</Track></Lap>")
    out.append("</Activity></Activities></TrainingCenterDatabase>")
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
