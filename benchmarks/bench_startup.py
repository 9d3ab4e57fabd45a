"""Benchmark: start-up to first audio for ``downbeat play`` and ``downbeat render``: first run and warm.

Not a test (pytest does not collect it).  Run::

    python3 benchmarks/bench_startup.py            # 1 round: each kind of first run + 2 warm runs
    python3 benchmarks/bench_startup.py --cold 2 --warm 3

Every round starts from a fresh copy of the package (``metronome``, ``cues``, ``profiles`` byte-compiled, as
``pip install`` leaves them) run through ``PYTHONPATH``, with a fresh, empty ``NUMBA_CACHE_DIR``:

* ``installed``: the install step ``python -m metronome._aot`` (the README's; timed on its own as ``install_s``)
  compiled the kernels ahead of time; then the first run (``first``) and ``--warm`` more (``warm``).
* ``no-install-step``: nothing compiled: the first run runs numba's JIT and then starts the module's build in the
  background (it says so); ``warm`` runs follow at once (the build may still be running), ``after-build`` once
  the module is in place.
* ``jit``: ``DOWNBEAT_KERNELS=jit`` (no C compiler): numba compiles at the first run and loads its cache after.

* ``play``: ``downbeat play demo-descent --no-cues --device JACK`` on a private JACK dummy server.  A probe JACK
  client in this process polls for Downbeat's port, connects to it at once and stamps every cycle with
  ``time.monotonic()``.  Reported: process start -> port registered (stream opened), and process start -> first
  non-zero sample received (the first click; beat 0 is at sample 0).  The probe connects a few ms after the port
  appears, so if the very first click was missed, ``first_audio`` is the second click and says so
  (``first_click_is_beat0``).
* ``render``: ``downbeat render demo-descent -o out.wav --no-cues``: process start -> first audio frames written
  (the ``.partial`` file grows past its header) and -> process exit (file complete).

Each run also records whether the command said "downbeat: preparing the audio engine (first run only, ~N s)" on
stderr (``notice``): it must on a first run that compiles, and on no other.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import REPO, SAMPLERATE  # noqa: E402

import numpy as np  # noqa: E402


def kernels_mtime() -> float:
    """mtime of the kernel source: an edit by someone else turns a warm run into a compile (the tree is shared);
    such runs are flagged, not hidden."""
    return os.path.getmtime(os.path.join(REPO, "metronome", "_kernels.py"))


def install_copy(tmp: str, aot: bool) -> dict:
    """A fresh byte-compiled copy of the package in ``tmp/install`` (+ the install step's AOT build if ``aot``)."""
    import compileall

    root = os.path.join(tmp, "install")
    shutil.rmtree(root, ignore_errors=True)
    for pkg in ("metronome", "cues", "profiles"):
        shutil.copytree(os.path.join(REPO, pkg), os.path.join(root, pkg),
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    compileall.compile_dir(root, quiet=1)
    res = {"root": root, "install_s": None}
    if aot:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "metronome._aot"], env=dict(os.environ, PYTHONPATH=root),
                           cwd=tmp, capture_output=True, text=True)
        res["install_s"] = time.monotonic() - t0
        if r.returncode != 0 or "compiled the audio kernels ahead of time" not in r.stdout:
            raise RuntimeError(f"install step failed: {r.stdout} {r.stderr}")
    return res


def said_preparing(proc) -> bool:
    """Whether the command said "preparing the audio engine" on stderr (it must on a cold cache, only then)."""
    try:
        return "preparing the audio engine" in (proc.stderr.read() or "")
    except (OSError, ValueError):
        return False


def play_once(srv, probe, cache_dir: str, root: str, extra_env: dict) -> dict:
    cmd = [sys.executable, "-m", "metronome.cli", "play", "demo-descent", "--no-cues", "--quiet", "--device",
           "JACK", "--duration", "3"]
    env = srv.env(NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=root, **extra_env)
    mtime0 = kernels_mtime()
    probe.n[0] = 0
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=os.path.dirname(root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        while port is None:
            names = [p.name for p in probe.client.get_ports(is_output=True, is_audio=True)
                     if p.name.startswith("PortAudio") and p.name.endswith("out_0")]
            if names:
                port = names[0]
                break
            if proc.poll() is not None:
                raise RuntimeError(f"play exited early: {proc.stderr.read()[-800:]}")
            if time.monotonic() - t0 > 300:
                raise RuntimeError("no JACK port after 300 s")
            time.sleep(0.002)
        t_port = time.monotonic()
        probe.client.connect(port, probe.port)
        t_connected = time.monotonic()
        connected_cycle = int(probe.n[0]) + 1
        deadline = time.monotonic() + 5.0
        first = None
        while time.monotonic() < deadline and first is None:
            time.sleep(0.02)
            k = int(probe.n[0])
            nz = np.flatnonzero(np.any(probe.rec[:k] != 0, axis=1))
            if nz.size:
                first = int(nz[0])
        proc.wait(timeout=60)
    finally:
        common.stop_process(proc)
    res = {"port_s": t_port - t0, "connect_s": t_connected - t0, "rc": proc.returncode,
           "kernels_edited_during_run": kernels_mtime() != mtime0, "notice": said_preparing(proc)}
    if first is not None:
        blk = probe.rec[first]
        i = int(np.flatnonzero(blk)[0])
        # Beat 0 is an accent (peak 0.45; normal clicks peak 0.32) starting on the first sample of the first
        # callback.  It was caught if the cycle before it was recorded, connected and silent, the click is an
        # accent and it came within 0.3 s of the port (the next accent, beat 4, is 1.4 s later).
        peak = float(np.abs(probe.rec[first:first + 16]).max())
        first_audio = probe.wall[first] - t0 + i / SAMPLERATE
        res.update(first_audio_s=first_audio,
                   first_click_is_beat0=bool(peak > 0.4 and first > connected_cycle
                                             and first_audio - res["port_s"] < 0.3))
    return res


def render_once(cache_dir: str, tmp: str, root: str, extra_env: dict) -> dict:
    out = os.path.join(tmp, "demo.wav")
    cmd = [sys.executable, "-m", "metronome.cli", "render", "demo-descent", "-o", out, "--no-cues", "--quiet"]
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=root, **extra_env)
    mtime0 = kernels_mtime()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t_first = None
    try:
        while proc.poll() is None:
            if t_first is None:
                for p in glob.glob(os.path.join(tmp, ".downbeat-*.partial")):
                    try:
                        if os.path.getsize(p) > 44:  # past the WAV header: audio frames are on disk
                            t_first = time.monotonic()
                    except OSError:
                        pass
            time.sleep(0.002)
    finally:
        common.stop_process(proc)
    t_done = time.monotonic()
    res = {"first_audio_written_s": None if t_first is None else t_first - t0, "done_s": t_done - t0,
           "rc": proc.returncode, "kernels_edited_during_run": kernels_mtime() != mtime0,
           "notice": said_preparing(proc)}
    if os.path.exists(out):
        import soundfile as sf

        res["audio_s"] = sf.info(out).duration
        os.unlink(out)
    return res


#: (label, AOT module built by the install step, extra environment)
KINDS = (("installed", True, {}), ("no-install-step", False, {}), ("jit", False, {"DOWNBEAT_KERNELS": "jit"}))


def bench(cold: int = 1, warm: int = 2, log=print, kinds=KINDS) -> dict:
    out = {"machine": common.machine_info(), "play": [], "render": [], "install": []}
    with tempfile.TemporaryDirectory(prefix="dbbench-start-") as tmp:
        for command in ("play", "render"):
            srv = common.JackServer(128, name=f"dbstart{os.getpid()}") if command == "play" else None
            if srv is not None:
                srv.__enter__()
                os.environ["JACK_DEFAULT_SERVER"] = srv.name
                probe = common.JackRecorder("dbstartprobe", seconds_max=30.0)  # uses .wall per cycle
            try:
                for _ in range(cold):
                    for kind, aot, extra in kinds:
                        inst = install_copy(tmp, aot)
                        if aot:
                            out["install"].append({"command": command, "install_s": inst["install_s"]})
                            log(f"install step (python -m metronome._aot): {inst['install_s']:.2f} s")
                        cache = tempfile.mkdtemp(prefix="numba-cache-", dir=tmp)
                        cold_mtime = kernels_mtime()
                        rounds = [("first", 1), ("warm", warm)] + ([("after-build", 1)] if kind == "no-install-step" else [])
                        for label, n in rounds:
                            if label == "after-build":  # wait for the first run's background build to finish
                                pyc = os.path.join(inst["root"], "metronome", "__pycache__")
                                t_wait = time.monotonic()
                                while time.monotonic() - t_wait < 300 and (
                                        not glob.glob(os.path.join(pyc, "_kernels_aot_*"))
                                        or glob.glob(os.path.join(pyc, ".aot-build-*"))):
                                    time.sleep(0.2)
                                log(f"(waited {time.monotonic() - t_wait:.1f} s for the background build)")
                            for _ in range(n):
                                if command == "play":
                                    r = play_once(srv, probe, cache, inst["root"], extra)
                                else:
                                    r = render_once(cache, tmp, inst["root"], extra)
                                r.update(kind=kind, run=label, kernels_changed_since_cold=kernels_mtime() != cold_mtime)
                                out[command].append(r)
                                if command == "play":
                                    log(f"play   {kind:>15} {label:>5}: port {r['port_s']:6.2f} s, first audio "
                                        f"{r.get('first_audio_s', float('nan')):6.2f} s (beat 0: "
                                        f"{r.get('first_click_is_beat0')}; notice: {r['notice']})")
                                else:
                                    log(f"render {kind:>15} {label:>5}: first audio written "
                                        f"{r['first_audio_written_s'] or float('nan'):6.2f} s, done {r['done_s']:6.2f} s "
                                        f"({r.get('audio_s', 0):.0f} s of audio; notice: {r['notice']})")
                        shutil.rmtree(cache)
            finally:
                if srv is not None:
                    probe.close()
                    os.environ.pop("JACK_DEFAULT_SERVER", None)
                    srv.__exit__(None, None, None)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=1, help="rounds, each from a fresh copy of the package")
    ap.add_argument("--warm", type=int, default=2, help="warm runs after each cold one")
    args = ap.parse_args(argv)
    res = bench(args.cold, args.warm)
    print("wrote", common.save_json("startup", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
