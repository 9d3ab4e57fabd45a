"""JACK test plumbing: the server the tests run on, and a recorder whose lost periods are known.

The recorder (:class:`JackRecorder`) stamps every process cycle with the server's frame time, so on a loaded
machine the cycles it missed are known exactly.  What the player did is then judged without tolerance: every
recorded period must be the offline render (:func:`match_render`) or the kernel's own beat log
(:func:`match_beats`) at its place on the server's clock.  The player itself may fall behind the server's clock by a
whole period in a cycle the server did not run it (on this VM: "client = PortAudio was not finished, state =
Triggered", the thread not yet scheduled); PortAudio reports each such cycle as an underflow and the server logs it
as an xrun, so the callers bound those steps by the player's underflow count and the server's log.  A wrong sample,
a click moved by one frame, a dropped or repeated block matches at no allowed position and fails.
"""

import os
import shutil
import subprocess
import time

import numpy as np
import pytest


def start_server(name, attempts=3):
    """Start a named JACK dummy server; retry if jackd dies on start (a loaded machine, a stale shm segment)."""
    log = ""
    for _ in range(attempts):
        proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        r = subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], capture_output=True, text=True)
        if r.returncode == 0:
            return proc
        proc.terminate()
        log = proc.communicate()[0]
        time.sleep(1.0)
    raise AssertionError(f"jackd -n {name} did not start: {log[-800:]}")


# ------------------------------------------------------------------------------------------------------------------
# The server the tests run on (tests/run.sh starts it; DOWNBEAT_JACKD_LOG is its log)
# ------------------------------------------------------------------------------------------------------------------
def jack_running():
    if not shutil.which("jack_lsp"):
        return False
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    return subprocess.run(["jack_lsp"], capture_output=True, env=env).returncode == 0


def require_jack():
    if not jack_running():
        if os.environ.get("CI"):
            pytest.fail("CI must run a JACK server (tests/run.sh starts jackd -d dummy)")
        pytest.skip("no JACK server running (start one: jackd -d dummy -r 48000 -p 128 &)")


def jack_ports():
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    return set(subprocess.run(["jack_lsp"], capture_output=True, text=True, env=env).stdout.split())


def own_port(before, timeout=10.0):
    """The first (left) output port an in-process player just opened, polled for (``jack_lsp`` can lag on a loaded
    machine).  PortAudio keeps one JACK client per process and numbers each new stream's ports on
    (``PortAudio:out_0``, ``out_1``, then ``out_2``, ...), so the new port is the lowest-numbered ``out_N`` not in
    ``before``."""
    import re

    deadline = time.time() + timeout
    while True:
        now = jack_ports()
        new = [p for p in now - before if re.search(r":out_\d+$", p) and not p.startswith("system:")]
        if new:
            return min(new, key=lambda p: int(p.rsplit("_", 1)[1]))
        assert time.time() < deadline, f"no new output port among {sorted(now)}"
        time.sleep(0.1)


def wait_new_port(before, suffix, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = sorted(p for p in jack_ports() - before if p.endswith(suffix))
        if new:
            return new[0]
        if proc.poll() is not None:
            raise AssertionError(f"downbeat exited early: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("downbeat's JACK port never appeared")


def play_and_record(play_args, record_s, path, cwd=None):
    """Run ``downbeat play PLAY_ARGS`` (``--json``, on JACK) and record its first output port for ``record_s``.

    Returns ``(recording, returncode, stdout, stderr)``; the player and the recorder are killed if a check fails
    on the way (so a broken run never leaves a JACK client behind).
    """
    import sys

    before = jack_ports()
    play = subprocess.Popen([sys.executable, "-m", "metronome.cli", "play", *map(str, play_args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=dict(os.environ, JACK_NO_START_SERVER="1"))
    recorder = None
    try:
        port = wait_new_port(before, ":out_0", play)
        recorder = JackRecorder(port, record_s, path)
        rec = recorder.result(timeout=60)
        out, err = play.communicate(timeout=60)
    finally:
        if recorder is not None:
            recorder.kill()
        if play.poll() is None:
            play.kill()
    return rec, play.returncode, out, err


def jack_log_size():
    path = os.environ.get("DOWNBEAT_JACKD_LOG")
    return os.path.getsize(path) if path and os.path.exists(path) else None


def jack_log_since(offset):
    with open(os.environ["DOWNBEAT_JACKD_LOG"], errors="replace") as f:
        f.seek(offset)
        return f.read().splitlines()


def xruns_logged(offset):
    """XRun lines the server logged since ``offset`` (None without a server log)."""
    return None if offset is None else sum("XRun" in ln for ln in jack_log_since(offset))


def assert_underflows_explained(underflows, log_lines):
    """Every underflow PortAudio reported must be an xrun the JACK server logged in the same window.

    On this kind of VM the server logs late cycles with no fault of the client's ("JackTimedDriver::Process XRun",
    or "client = ... was not finished, state = Triggered": the thread had not even been scheduled), while the
    callback's own compute time (asserted separately by the callers) is microseconds.  So: with no server xrun
    logged, there must be no underflow at all; otherwise no more underflows than logged xrun lines.
    """
    xruns = [ln for ln in log_lines if "XRun" in ln]
    if not xruns:
        assert underflows == 0, f"{underflows} underflows while the server logged no xrun"
    else:
        assert underflows <= len(xruns), (underflows, len(xruns))


def named_jack_server(period_frames, samplerate=48000, attempts=3):
    """Context manager: a private JACK dummy server ``jackd -n NAME -d dummy -r RATE -p PERIOD``, stopped by its pid.

    Yields ``(name, env)`` where ``env`` points libjack (and so PortAudio) at it and never autostarts a server.
    Retries when jackd dies on start (a loaded machine, a stale shm segment); SIGTERM on exit, because a SIGKILLed
    jackd leaves its entry in JACK's shared-memory registry.
    """
    import contextlib
    import os
    import subprocess
    import tempfile
    import time
    import uuid

    @contextlib.contextmanager
    def cm():
        name = f"downbeat-{uuid.uuid4().hex[:8]}"
        log = tempfile.TemporaryFile()
        proc = None
        try:
            for _ in range(attempts):
                proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", str(samplerate),
                                         "-p", str(period_frames)], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=dict(os.environ, JACK_NO_START_SERVER="1"))
                r = subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], capture_output=True)
                if r.returncode == 0:
                    break
                proc.terminate()
                proc.wait(timeout=10)
                proc = None
                time.sleep(1.0)
            if proc is None:
                log.seek(0)
                raise AssertionError(f"jackd -n {name} did not start: {log.read().decode(errors='replace')[-800:]}")
            yield name, dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()

    return cm()

# ------------------------------------------------------------------------------------------------------------------
# A recorder whose lost periods are known
# ------------------------------------------------------------------------------------------------------------------
# jack_rec writes what it got and says nothing about the cycles it missed, so a gap in its file could only be
# guessed from the click intervals.  This recorder stamps every process cycle it runs with the server's frame time
# of that cycle (jack_last_frame_time: "the precise time at the start of the current process cycle"), so a cycle
# it missed is a jump of two periods between stamps: the missing frames are known exactly, not estimated.  It runs
# in its own process (python tests/support/jackutil.py record ...), so the test's Python threads cannot hold the GIL
# through its deadline.
READY = "recording"


class Recording:
    """Cycles recorded from one JACK port: ``data[k]`` holds the period that started at server frame ``frame[k]``.

    ``frame`` is unwrapped (jack_nframes_t wraps at 2**32) and relative to the first recorded cycle.
    """

    def __init__(self, data, frame, period, samplerate):
        self.data = np.asarray(data, dtype=np.float32)
        self.period = int(period)
        self.samplerate = int(samplerate)
        raw = np.asarray(frame, dtype=np.int64)
        steps = np.diff(raw) % (1 << 32)
        self.frame = np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)
        assert np.all(self.frame % self.period == 0), "server frame times that are not whole periods apart"

    @property
    def missed_cycles(self) -> int:
        """Cycles of server time between the first and last recorded cycle that this recorder did not run."""
        return int(self.frame[-1] // self.period + 1 - len(self.frame)) if len(self.frame) else 0

    @property
    def span_frames(self) -> int:
        return int(self.frame[-1] + self.period) if len(self.frame) else 0

    def timeline(self):
        """``(x, present)``: the recording laid on server time, and which frames the recorder really saw."""
        x = np.zeros(self.span_frames, dtype=np.float32)
        present = np.zeros(self.span_frames, dtype=bool)
        idx = self.frame[:, None] + np.arange(self.period)[None, :]
        x[idx] = self.data
        present[idx] = True
        return x, present


class JackRecorder:
    """Record ``port`` for ``seconds`` of server time in a child process; :meth:`result` waits and loads it."""

    def __init__(self, port, seconds, path, env=None):
        import sys

        self.path = str(path)
        self.proc = subprocess.Popen([sys.executable, __file__, "record", port, str(seconds), self.path],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        if line != READY:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError(f"the JACK recorder did not start: {line} {err[-800:]}")

    def result(self, timeout=120) -> Recording:
        _, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err[-800:]
        with np.load(self.path) as z:
            return Recording(z["data"], z["frame"], int(z["period"]), int(z["samplerate"]))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _record_main(port, seconds, path):
    import threading

    import jack

    client = jack.Client(f"dbrec{os.getpid()}", no_start_server=True)
    period, sr = client.blocksize, client.samplerate
    span = int(float(seconds) * sr)
    n_max = span // period + 2
    data = np.zeros((n_max, period), dtype=np.float32)
    frame = np.zeros(n_max, dtype=np.int64)
    count = [0]
    armed = [-1]  # first server frame to keep: set once the connection is in place
    done = threading.Event()
    inport = client.inports.register("in")
    wrap = 1 << 32

    @client.set_process_callback
    def process(frames):
        k = count[0]
        if armed[0] < 0 or k >= n_max or done.is_set():
            if k >= n_max:
                done.set()
            return
        t = client.last_frame_time
        # Cycles before the connection took effect read an unconnected (silent) port, which would pass for
        # recorded silence: a click the connection cut in half would look like a click starting there.
        if (t - armed[0]) % wrap >= wrap // 2:
            return
        frame[k] = t
        data[k, :frames] = inport.get_array()
        count[0] = k + 1
        if (frame[k] - frame[0]) % wrap + period >= span:
            done.set()

    with client:
        client.connect(port, inport)  # synchronous: the server has the new graph when this returns
        # A cycle that starts a period from now surely started after the graph changed (frame_time is the
        # server's current time in frames, usable from any thread; at worst one good cycle is skipped).
        armed[0] = (client.frame_time + period) % wrap
        print(READY, flush=True)
        if not done.wait(float(seconds) * 4 + 30):
            raise SystemExit(f"recorded only {count[0]} cycles")
        client.deactivate()
    k = count[0]
    np.savez(path, data=data[:k], frame=frame[:k], period=period, samplerate=sr)


#: Recorded cycles right after a recorder gap that may hold a torn block (see match_render).
TORN_AFTER_GAP = 2


def match_render(rec: Recording, ref, max_shift_periods: int):
    """Check every recorded cycle against the offline render ``ref`` (one channel) at its server-frame position.

    Recorded cycle ``k`` must equal ``ref[frame[k] - lag : ... + period]`` exactly (same kernel, same float32
    bits; past the render's end the player plays silence).  ``lag`` (where the player's sample 0 fell on server
    time) is tried at every click of the render that could be the first one recorded.

    What a late player does to the recording, and what is therefore accepted: when the server does not run the
    player in a cycle (an xrun: "client = PortAudio was not finished"), the recorder, whose input is the player's
    output, is not run in that cycle either, so a player delay always sits at a *gap* of the recording (in every
    loaded run measured, the lag steps were at recorder gaps).  So ``lag`` may change by whole periods only at the
    first cycle after a gap that shows it (silence matching both lags cannot; it is re-checked under the new lag), in
    all by at most ``max_shift_periods`` periods (callers pass the player's underflow count, bounded by the
    server's xrun log); and the first ``TORN_AFTER_GAP`` cycles after a gap may hold a block torn by the late
    player's buffer (counted as ``torn``, also within ``max_shift_periods``).  Everywhere else: exact.  Cycles the
    recorder missed are known from its stamps and simply absent.

    Returns a dict: ``cycles`` compared, ``sounding`` cycles among them (not all zero), ``lag_steps`` (whole
    periods the lag changed by), ``torn``, ``lag0`` and ``clicks`` (onsets seen whole, on cycles the recorder ran).
    Raises AssertionError naming the first cycle that matches the render at no allowed lag.
    """
    ref = np.asarray(ref, dtype=np.float32)
    x, present = rec.timeline()
    on = onsets_seen(x, present)
    assert len(on), "the recording is silent"
    best = None
    for o in onsets_of(ref):
        res = _walk(rec, ref, int(on[0] - o), max_shift_periods)
        if res["failed_at"] is None:
            res.update(clicks=len(on), cycles=len(rec.frame))
            del res["failed_at"]
            return res
        if best is None or res["failed_at"] > best["failed_at"]:
            best = res
    k, p = best["failed_at"], rec.period
    start = int(rec.frame[k] - best["lag"])
    seg = _ref_block(ref, start, p)
    bad = [] if seg is None else list(np.flatnonzero(rec.data[k] != seg)[:5])
    # Where this block does occur in the render near the expected place, to tell a shift from a torn block.
    near = [(o - start) for o in range(max(0, start - 40 * p), min(len(ref) - p, start + 40 * p) + 1)
            if rec.data[k].any() and np.array_equal(rec.data[k], ref[o:o + p])]
    gaps = [int(rec.frame[j] - rec.frame[j - 1]) // p - 1 for j in range(max(1, k - 5), min(len(rec.frame), k + 3))]
    raise AssertionError(f"recorded cycle {k} of {len(rec.frame)} (server frame {rec.frame[k]}) is not the render "
                         f"at sample {start} (best alignment; lag changed by {best['lag_steps']} periods, "
                         f"{best['torn']} torn, of {max_shift_periods} allowed); first differing frames {bad}; "
                         f"it is the render at offsets {near[:6]} from there; cycles missed before cycles "
                         f"{max(1, k - 5)}..: {gaps}")


def _ref_block(ref, start, period):
    """``ref[start:start + period]``, silence past the end (the player plays silence after the course)."""
    if start < 0:
        return None
    if start + period <= len(ref):
        return ref[start:start + period]
    seg = np.zeros(period, dtype=np.float32)
    if start < len(ref):
        seg[:len(ref) - start] = ref[start:]
    return seg


def _matches(rec, ref, k, lag):
    seg = _ref_block(ref, int(rec.frame[k] - lag), rec.period)
    return seg is not None and np.array_equal(rec.data[k], seg)


def _walk(rec, ref, lag, budget):
    p, steps, torn, sounding = rec.period, 0, 0, 0
    lag0 = lag
    open_since = None  # first cycle after the latest gap whose lag change is not yet seen (silence so far)
    after_gap = TORN_AFTER_GAP  # cycles since the latest gap
    for k in range(len(rec.frame)):
        block = rec.data[k]
        if k and rec.frame[k] - rec.frame[k - 1] > p:
            open_since, after_gap = k, 0
        else:
            after_gap += 1
        if _matches(rec, ref, k, lag):
            if block.any():
                open_since = None
            sounding += bool(block.any())
            continue
        moved = False
        if open_since is not None:  # a gap came before, and this cycle shows the lag did change
            left = budget - steps - torn
            for e in sorted(range(-left, left + 1), key=abs):
                if e and _matches(rec, ref, k, lag + e * p) and \
                        all(_matches(rec, ref, j, lag + e * p) for j in range(open_since, k)):
                    lag, steps, moved = lag + e * p, steps + abs(e), True
                    break
        if moved:
            open_since = None
            sounding += bool(block.any())
            continue
        if after_gap < TORN_AFTER_GAP and steps + torn < budget:
            torn += 1
            continue
        return {"failed_at": k, "lag": lag, "lag_steps": steps, "torn": torn}
    return {"failed_at": None, "lag": lag, "lag0": lag0, "lag_steps": steps, "torn": torn, "sounding": sounding}


def match_beats(rec: Recording, beat_samples, max_shift_periods: int):
    """Check the clicks of a live recording against the kernel's own beat log (engine sample of every beat).

    Every click seen whole must start exactly at a logged beat's sample + ``lag`` on server time, with ``lag``
    growing by whole periods only (cycles in which the server did not run the player), at most
    ``max_shift_periods`` in all; every logged beat that falls on frames the recorder saw must be there as a
    click (a beat may be unseen only where its onset fell into a cycle the recorder missed).  No tolerance.

    Returns a dict: ``clicks`` (onsets seen), ``beats`` (index into ``beat_samples`` of each), ``lag_steps``.
    """
    beats = np.asarray(beat_samples, dtype=np.int64)
    x, present = rec.timeline()
    on = onsets_seen(x, present)
    assert len(on), "the recording is silent"
    best = None
    for j0 in range(len(beats)):
        res = _walk_beats(rec, present, on, beats, j0, int(on[0] - beats[j0]), max_shift_periods)
        if res["failed_at"] is None:
            del res["failed_at"]
            return res
        if best is None or res["failed_at"] > best["failed_at"]:
            best = res
    raise AssertionError(f"recorded click {best['failed_at']} of {len(on)} (server frame {on[best['failed_at']]}) "
                         f"starts at no logged beat, or a logged beat on recorded frames has no click "
                         f"({best['lag_steps']} skipped player cycles used of {max_shift_periods} allowed)")


def _walk_beats(rec, present, on, beats, j0, lag, max_steps):
    p, steps, idx = rec.period, 0, [j0]

    def seeable(f):  # an onset at server frame f would have been seen (see onsets_seen)
        return 1 <= f < len(present) and present[f - 1:f + 1].all()

    for j in range(j0):  # beats before the first click seen lie before the recording or in a hole
        if seeable(int(beats[j] + lag)) and seeable(int(beats[j] + lag - max_steps * p)):
            return {"failed_at": 0, "lag_steps": steps}
    for i in range(1, len(on)):
        j, found = idx[-1] + 1, None
        while j < len(beats) and found is None:
            for extra in range(max_steps - steps + 1):
                # A lag step is a cycle the server did not run the player, which the recorder then misses too
                # (see match_render): only across a gap of the recording.
                if beats[j] + lag + extra * p == on[i] and (extra == 0 or not present[on[i - 1]:on[i]].all()):
                    found = extra
                    break
            else:
                # Not this beat: then its click must have fallen where the recorder could not see it.
                if seeable(int(beats[j] + lag)) and seeable(int(beats[j] + lag + (max_steps - steps) * p)):
                    return {"failed_at": i, "lag_steps": steps}
                j += 1
        if found is None:
            return {"failed_at": i, "lag_steps": steps}
        lag += found * p
        steps += found
        idx.append(j)
    # Beats after the last click seen must lie past the recording or in a hole.
    for j in range(idx[-1] + 1, len(beats)):
        if seeable(int(beats[j] + lag)):
            return {"failed_at": len(on) - 1, "lag_steps": steps}
    return {"failed_at": None, "clicks": len(on), "beats": np.asarray(idx), "lag_steps": steps}


def onsets_of(x):
    """Samples where sound starts after exact silence (the clips start non-zero and end in exact zeros)."""
    nz = np.flatnonzero(np.asarray(x) != 0)
    if nz.size == 0:
        return nz
    return nz[np.concatenate([[True], np.diff(nz) > 1])]


def onsets_seen(x, present, guard=1):
    """Onsets in a timeline with holes: only those whose ``guard`` preceding frames the recorder really saw
    (a click's start that fell into a missed cycle is not a click starting later)."""
    on = onsets_of(x)
    ok = [o for o in on if o >= guard and present[o - guard:o + 1].all()]
    return np.asarray(ok, dtype=np.int64)


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 5 and sys.argv[1] == "record":
        _record_main(*sys.argv[2:])
    else:
        raise SystemExit("usage: python tests/support/jackutil.py record PORT SECONDS OUT.npz")
