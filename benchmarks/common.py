"""Shared plumbing for Downbeat's benchmarks: child processes with peak RSS, private JACK servers, CPU burners.

Not a test module (pytest does not collect it).  Every helper that starts a process is a context manager or
returns only after the process has been reaped, so a benchmark that fails half-way leaves no JACK server, CPU
burner or temporary file behind.  Processes are ended by their own pid, never by name (other engineers run
JACK and Python on the same machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

SAMPLERATE = 48000


# ------------------------------------------------------------------------------------------------------------------
# Child processes
# ------------------------------------------------------------------------------------------------------------------
def run_child(cmd, *, env=None, timeout_s: float = 1800.0, cwd=None) -> dict:
    """Run ``cmd`` to completion; wall time, exit code, output and the child's own peak RSS.

    Peak RSS comes from ``/usr/bin/time -f %M`` when it is installed: Linux carries the *pre-exec* memory of a
    forked child into its ``ru_maxrss``, so ``os.wait4`` on a child of a big benchmark process would report the
    benchmark's own size; ``time`` is a small C process, so what it reports is the command's own peak.  Without
    it, ``os.wait4`` is used and the figure is an upper bound.  Wall time is measured here (``time`` adds ~1 ms).

    Returns
    -------
    dict
        ``wall_s``, ``maxrss_mb``, ``user_s``, ``sys_s``, ``rc``, ``stdout``, ``stderr``.
    """
    timer = shutil.which("time") and os.path.exists("/usr/bin/time")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        full = (["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name] if timer else []) + list(cmd)
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = t0 + timeout_s
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen.__del__ does not try to reap it again
        maxrss_mb, user_s, sys_s = ru.ru_maxrss / 1024.0, ru.ru_utime, ru.ru_stime
        if timer:
            fields = rss.read().split()
            try:  # the last line holds the figures ("Command exited with non-zero status" may precede it)
                maxrss_mb, user_s, sys_s = int(fields[-3]) / 1024.0, float(fields[-2]), float(fields[-1])
            except (IndexError, ValueError):
                pass
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "maxrss_mb": maxrss_mb, "user_s": user_s, "sys_s": sys_s,
                "rc": proc.returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


@contextlib.contextmanager
def child(cmd, *, env=None, **kw):
    """A background child that is always ended (SIGTERM, then SIGKILL) and reaped on exit from the block."""
    proc = subprocess.Popen(cmd, env=env, **kw)
    try:
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc, grace_s: float = 5.0) -> None:
    """End one process we started, by its pid: SIGTERM, wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------------------------------------------------------
# Private JACK servers
# ------------------------------------------------------------------------------------------------------------------
XRUN_TIMER = "JackTimedDriver::Process XRun"  # the dummy driver's timer woke late (server-side, no client needed)
XRUN_CLIENT = "was not finished"  # "... client = NAME was not finished, state = ...": JACK blamed a client


class JackServer:
    """A named JACK dummy server of our own (``jackd -n NAME -d dummy -r RATE -p PERIOD``).

    The machine's default server (other engineers' tests use it) is never touched: clients reach this one through
    ``JACK_DEFAULT_SERVER=NAME`` (libjack reads it; PortAudio's JACK host API goes through libjack).

    Parameters
    ----------
    period_frames : int
        The server's period, i.e. the block every client's process callback gets.
    name : str, optional
        Unique per process and period by default.
    """

    def __init__(self, period_frames: int, samplerate: int = SAMPLERATE, name: str | None = None):
        self.period_frames = int(period_frames)
        self.samplerate = int(samplerate)
        self.name = name or f"dbbench{os.getpid()}p{period_frames}"
        self.proc = None
        self._log = None
        self.log_path = None

    def env(self, **extra) -> dict:
        e = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def __enter__(self):
        if not shutil.which("jackd"):
            raise RuntimeError("jackd is not installed (apt-get install jackd2)")
        fd, self.log_path = tempfile.mkstemp(prefix="dbbench-jackd-", suffix=".log")
        self._log = os.fdopen(fd, "w")
        try:
            err = self._start(self.name)
            if err and "Too many servers" in err:
                # JACK keeps 8 server slots per machine and frees a SIGKILLed server's slot only when a server of
                # the *same name* starts (shm.c, jack_register_server).  Killed servers of other jobs can fill
                # every slot; reclaiming one of those dead names is JACK's own recovery path, and our SIGTERM on
                # exit then frees the slot for good.
                for stale in stale_server_names():
                    self.name = stale
                    err = self._start(stale)
                    if not err:
                        break
            if err:
                raise RuntimeError(f"jackd {self.name} did not start: {err[-400:]}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, name: str):
        """Start jackd as ``name``; None once clients can connect, else the log's tail."""
        self._log.flush()
        offset = os.path.getsize(self.log_path)
        self.proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", str(self.samplerate),
                                      "-p", str(self.period_frames)], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=dict(os.environ, JACK_NO_START_SERVER="1"))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                with open(self.log_path, errors="replace") as f:
                    f.seek(offset)
                    return f.read() or "jackd exited"
            r = subprocess.run(["jack_lsp"], capture_output=True, env=self.env())
            if r.returncode == 0:
                return None
            time.sleep(0.1)
        stop_process(self.proc)
        self.proc = None
        return "jackd did not come up within 20 s"

    def __exit__(self, *exc):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)
        return False

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def log_offset(self) -> int:
        self._log.flush()
        return os.path.getsize(self.log_path)

    def xruns_since(self, offset: int) -> dict:
        """Server-side xruns logged after ``offset``: timer-late (driver) and client-blamed lines."""
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        return {"timer_late": sum(XRUN_TIMER in ln for ln in lines),
                "client_blamed": sum(XRUN_CLIENT in ln for ln in lines),
                "client_blamed_portaudio": sum(XRUN_CLIENT in ln and "PortAudio" in ln for ln in lines)}


def stale_server_names(registry: str = "/dev/shm/jack-shm-registry") -> list[str]:
    """Names of JACK servers registered in the shared-memory registry whose process is gone (read-only).

    Layout (JACK2 shm.h): a 24-byte header, then ``MAX_SERVERS`` = 8 entries of ``pid_t pid`` + 260 bytes of
    ``"jack-UID:NAME:"``.  The default server is never offered.
    """
    import struct

    try:
        with open(registry, "rb") as f:
            data = f.read(24 + 8 * 264)
    except OSError:
        return []
    names = []
    for i in range(8):
        off = 24 + 264 * i
        if off + 264 > len(data):
            break
        pid = struct.unpack("<i", data[off:off + 4])[0]
        label = data[off + 4:off + 264].split(b"\0")[0].decode(errors="replace").split(":")
        if pid > 0 and len(label) >= 2 and label[1] and label[1] != "default" and not os.path.exists(f"/proc/{pid}"):
            names.append(label[1])
    # Random test names first: nobody starts those again, so reclaiming one cannot collide with its owner.
    return sorted(names, key=lambda n: 0 if re.fullmatch(r"downbeat-[0-9a-f]{8}", n) else 1)


# ------------------------------------------------------------------------------------------------------------------
# CPU load
# ------------------------------------------------------------------------------------------------------------------
BURN_SRC = ("import numpy as np\n"
            "a = np.random.default_rng(0).random((256, 256))\n"
            "while True:\n"
            "    a = np.tanh(a @ a * 1e-3)\n")


@contextlib.contextmanager
def cpu_burners(n: int = 2):
    """``n`` processes spinning numpy at normal priority (one BLAS thread each), ended by pid on exit."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", BURN_SRC], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        time.sleep(1.0)  # let them import numpy and reach the loop
        yield procs
    finally:
        for p in procs:
            stop_process(p, grace_s=2.0)


# ------------------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------------------
def machine_info() -> dict:
    """What the numbers were measured on, and how busy it was (other engineers share this machine)."""
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg_1_5_15": os.getloadavg(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    try:  # which code was measured: the tree is shared and other engineers edit the kernel while we run
        git = ["git", "-C", REPO]
        info["git_head"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip()
        info["git_dirty_metronome"] = subprocess.run(git + ["status", "--short", "metronome"], capture_output=True,
                                                     text=True).stdout.split("\n")[:10]
    except OSError:
        pass
    try:
        import numba
        import numpy

        info["numpy"], info["numba"] = numpy.__version__, numba.__version__
    except ImportError:
        pass
    return info


def save_json(name: str, data: dict) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=float)
    return path


def percentiles_ms(durations_s, period_s: float) -> dict:
    """median/p99/p99.9/max of callback durations, in ms and in % of the block period."""
    import numpy as np

    d = np.asarray(durations_s, dtype=np.float64)
    if d.size == 0:
        return {"n": 0}
    q = {"median": float(np.median(d)), "p99": float(np.percentile(d, 99)), "p999": float(np.percentile(d, 99.9)),
         "max": float(d.max())}
    out = {"n": int(d.size)}
    for k, v in q.items():
        out[f"{k}_ms"] = v * 1e3
        out[f"{k}_pct"] = 100.0 * v / period_s
    return out


class JackRecorder:
    """A JACK client recording one input port, stamping every cycle with its JACK frame time and the wall clock.

    Everything is preallocated for ``seconds_max``; the process callback only copies the port buffer and two
    stamps (no allocation beyond what CFFI does).  ``n[0]`` is the number of cycles recorded so far.
    """

    def __init__(self, name: str, seconds_max: float = 60.0):
        import jack
        import numpy as np  # lazily, like the rest of this module

        self.client = jack.Client(name, no_start_server=True)
        self.period = self.client.blocksize
        n = int(seconds_max * SAMPLERATE / self.period) + 16
        self.rec = np.zeros((n, self.period), dtype=np.float32)
        self.frame_time = np.zeros(n, dtype=np.int64)
        self.wall = np.zeros(n, dtype=np.float64)
        self.n = np.zeros(1, dtype=np.int64)
        self.port = self.client.inports.register("in")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        k = self.n[0]
        if k < self.rec.shape[0]:
            self.wall[k] = time.monotonic()
            self.rec[k, :frames] = self.port.get_array()
            self.frame_time[k] = self.client.last_frame_time
            self.n[0] = k + 1

    def close(self):
        self.client.deactivate()
        self.client.close()
