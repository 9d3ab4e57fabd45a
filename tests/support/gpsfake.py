"""``gpsfake`` (Debian gpsd-clients) for the tests: it starts its own gpsd on a port and replays an NMEA log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(log, port: int, errlog, cycle_s: float):
    """``gpsfake -P PORT -1 -c CYCLE -q LOG`` in its own process group (-1: play the log once; -c: seconds
    between sentences).  Stop it with :func:`stop`."""
    return subprocess.Popen(["gpsfake", "-P", str(port), "-1", "-c", str(cycle_s), "-q", str(log)],
                            stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, start_new_session=True)


def stop(proc) -> None:
    """Stop the group gpsfake leads (gpsfake and its gpsd), by our pid.  gpsfake may sit on SIGTERM while its
    gpsd is gone (seen with gpsd 3.22): then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
