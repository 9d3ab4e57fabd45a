"""Soak driver shared by tests/test_soak.py (short, in CI) and benchmarks/soak.py (10 minutes).

Runs ``downbeat play --sensor udp://...`` on the current JACK server for ``duration_s`` while a sender thread
plays a scripted run (flat, long descent, steep part, flat, repeated) as UDP JSON at 10 Hz, and samples the
player's RSS from /proc once a second.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def grade_at(t_s, cycle_s=120.0):
    """A repeating run: 20 s flat, 60 s at -8 %, 20 s at -14 %, 20 s flat."""
    u = t_s % cycle_s
    return 0.0 if u < 20 else -8.0 if u < 80 else -14.0 if u < 100 else 0.0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def soak(duration_s, env=None, extra_args=()):
    """Run the soak; return ``(summary dict, [(t_s, rss_kib)], stderr)``."""
    port = free_udp_port()
    cmd = [sys.executable, "-m", "metronome.cli", "play", "--sensor", f"udp://127.0.0.1:{port}", "--device", "JACK",
           "--duration", str(duration_s), "--json", *extra_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stop = threading.Event()
    samples = []

    def sender():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t0 = time.monotonic()
        dist = 0.0
        while not stop.is_set():
            t = time.monotonic() - t0
            dist += 0.1 * 3.5
            msg = {"t": t, "grade_pct": grade_at(t), "speed_mps": 3.5, "distance_m": dist}
            sock.sendto(json.dumps(msg).encode(), ("127.0.0.1", port))
            stop.wait(0.1)
        sock.close()

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < duration_s + 120:
            r = rss_kib(proc.pid) if os.path.exists(f"/proc/{proc.pid}") else None
            if r:
                samples.append((time.monotonic() - t0, r))
            time.sleep(1.0)
        out, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), samples, err
