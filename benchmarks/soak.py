"""10-minute soak of a live session (sensor feed + cues) on the running JACK server.

    DOWNBEAT_JACKD_LOG=/path/to/jackd.log python benchmarks/soak.py [--minutes 10]

Prints the session summary, RSS at start/end of the steady state and the underflow count; the short version of
the same soak runs in CI as tests/test_soak.py.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.support.soak import soak  # noqa: E402  (the soak driver is test infrastructure)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    # With DOWNBEAT_JACKD_LOG (the running server's log, as tests/run.sh exports it), count what the server itself
    # logged in the window: timer xruns happen on this VM even with no client (see benchmarks/README.md, section 2).
    log = os.environ.get("DOWNBEAT_JACKD_LOG")
    offset = os.path.getsize(log) if log and os.path.exists(log) else None
    summary, rss, _ = soak(args.minutes * 60.0)
    server = {}
    if offset is not None:
        with open(log, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        server = {"server_timer_xruns": sum("JackTimedDriver::Process XRun" in ln for ln in lines),
                  "server_blamed_portaudio": sum("client = PortAudio" in ln for ln in lines)}
    steady = [r for t, r in rss if t > 15.0]
    result = {"minutes": args.minutes, "rss_start_kib": steady[0], "rss_end_kib": steady[-1],
              "rss_max_kib": max(steady), **{k: summary[k] for k in
              ("played_s", "beats", "cues", "underflows", "callbacks", "callback_p99_ms", "callback_max_ms",
               "bpm_min", "bpm_max", "bpm_bounds")}, **server}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
