#!/usr/bin/env python3
"""Send a scripted 6-minute descent to `downbeat play --sensor udp://127.0.0.1:47800` (stdlib only).

Five JSON datagrams a second, as in DESIGN.md "Sensor protocol": {"t": s, "grade_pct": %, "distance_m": m}.
Usage: python3 examples/udp_feed.py [HOST:PORT] [SPEEDUP]    (SPEEDUP 10 plays the script in 36 s)
"""
import json, socket, sys, time

SCRIPT = [(0, 0.0), (60, 0.0), (90, -8.0), (180, -8.0), (200, -12.0), (270, -12.0), (290, 3.0), (320, 0.0), (360, 0.0)]
SPEED_MPS = 3.0  # the scripted runner's speed, for the distance the feed uses for its 60 m hysteresis


def grade_at(t_s):
    """Grade (percent, negative downhill) at script time ``t_s``, linear between the SCRIPT points."""
    for (t0, g0), (t1, g1) in zip(SCRIPT, SCRIPT[1:]):
        if t_s <= t1:
            return g0 + (g1 - g0) * (t_s - t0) / (t1 - t0)
    return SCRIPT[-1][1]


host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:47800").rpartition(":")
speedup = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
sock, start = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), time.monotonic()
while (t_s := (time.monotonic() - start) * speedup) <= SCRIPT[-1][0]:
    msg = {"t": round(t_s, 2), "grade_pct": round(grade_at(t_s), 2), "distance_m": round(t_s * SPEED_MPS, 1)}
    sock.sendto(json.dumps(msg).encode(), (host, int(port)))
    print(f"\r{t_s:6.1f} s  grade {msg['grade_pct']:+6.2f} %", end="", file=sys.stderr, flush=True)
    time.sleep(0.2)
print(file=sys.stderr)
