"""Compiling the kernels: what a cold numba cache costs, where the cache goes, and a read-only install.

* A cold cache compiles each kernel once (one signature each, the C callback reusing the renderer's
  process_block), render leaves the C callback out, and the wait is said in one line; a warm run says nothing.
* The cache folder (metronome._jitcache): beside the source, else ``~/.cache/downbeat/numba``, else a private
  temporary folder, else none with a one-line warning; never a crash at import.
* A read-only install (a read-only bind mount in a private mount namespace: root ignores file modes, so a
  chmod would prove nothing) with a read-only home: ``--help``, ``render`` and ``doctor`` work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "downbeat: preparing the audio engine (first run only, ~"

COMPILE_SCRIPT = """
import json, sys
from metronome import _kernels as K
from metronome.engine import warm_kernels
warm_kernels(48000, 2, for_play=False)
after_render = {n: len(getattr(K, n).signatures) for n in ("process_block", "beat_times",
    "map_phase_at_breakpoints", "beat_time", "bpm_at", "_advance_beat", "_start_voice", "_log_event", "_smooth")}
callback_compiled_for_render = K._PA_CALLBACK is not None
warm_kernels(48000, 2)
print(json.dumps({"after_render": after_render, "callback_for_render": callback_compiled_for_render,
                  "process_block_after_play": len(K.process_block.signatures),
                  "beat_time_after_play": len(K.beat_time.signatures)}))
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "DOWNBEAT_NUMBA_CACHE_CHOSEN")}
    env["DOWNBEAT_KERNELS"] = "jit"  # numba's cache is what these tests are about (tests/test_aot.py: the other path)
    env.update(extra)
    return env


def test_cold_cache_compiles_each_kernel_once_and_says_so_then_warm_is_silent(tmp_path):
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    r = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    # One compiled signature per kernel and helper (numba would otherwise add one per literal int and per
    # read-only/writable variant of the arrays: beat_time had 3, process_block 2 once the callback was built).
    assert got["after_render"] == dict.fromkeys(got["after_render"], 1), got
    assert got["callback_for_render"] is False  # render does not build the PortAudio callback
    assert got["process_block_after_play"] == 1 and got["beat_time_after_play"] == 1, got
    lines = r.stderr.strip().splitlines()
    # One line per warm-up that had something to compile: render's kernels, then the play callback.
    assert lines and all(ln.startswith(NOTICE) and ln.endswith(" s)") for ln in lines), r.stderr
    # Warm: nothing compiles, nothing is said.
    r = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_cache_folder_falls_back_in_order_and_never_raises(tmp_path, monkeypatch):
    from metronome import _jitcache as J

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # anything below a file can never be created, even by root
    monkeypatch.setattr(J, "KERNELS_SOURCE", str(blocker / "metronome" / "_kernels.py"))
    # 1. A writable NUMBA_CACHE_DIR the user set is used as it is.
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    c = J.choose(env)
    assert (c.source, c.path, c.warning) == ("NUMBA_CACHE_DIR", str(tmp_path / "mine"), None)
    # 2. Read-only install: ~/.cache/downbeat/numba (XDG_CACHE_HOME), exported for child processes.
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    c = J.choose(env)
    assert c.source == "user" and c.path == str(tmp_path / "xdg" / "downbeat" / "numba") and c.warning is None
    assert env["NUMBA_CACHE_DIR"] == c.path and J.choose(env).tried == c.tried  # a child redoes the same choice
    # 3. ... and an unwritable user cache too: a private temporary folder.
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    env = {"XDG_CACHE_HOME": str(blocker)}
    c = J.choose(env)
    assert c.source == "temp" and c.path == str(tmp_path / "tmp" / f"downbeat-numba-{os.getuid()}")
    assert os.stat(c.path).st_mode & 0o777 == 0o700
    # ... but never a folder others can write to (numba's cache holds code that is loaded and run).
    os.chmod(c.path, 0o777)
    c = J.choose({"XDG_CACHE_HOME": str(blocker)})
    assert c.source == "none" and "not a private folder" in c.warning
    # 4. Nothing writable: no cache, one line naming every folder tried and the fix; a user-set unwritable
    #    NUMBA_CACHE_DIR is dropped (numba would refuse it).
    monkeypatch.setattr("tempfile.tempdir", str(blocker))
    env = {"XDG_CACHE_HOME": str(blocker), "NUMBA_CACHE_DIR": str(blocker / "numba")}
    c = J.choose(env)
    assert c.enabled is False and c.source == "none" and "NUMBA_CACHE_DIR" not in env
    assert "\n" not in c.warning and c.warning.endswith("set NUMBA_CACHE_DIR to a writable folder")
    assert len(c.tried) == 4 and str(blocker / "numba") in c.warning


def test_doctor_says_what_to_fix_when_nothing_can_be_cached():
    from metronome.cli import doctor as D

    probe = {"warm_s": 3.2, "cache_dir": None, "cache_index_written": False, "was_warm": False,
             "cache_source": "none", "cache_tried": ["/ro/metronome/__pycache__: Read-only file system"],
             "render": {ext: {"ok": True, "beats": 6} for ext in (".wav", ".flac", ".ogg")}}
    by = {c.name: c for c in D.check_engine(probe)}
    assert by["numba cache"].status == "warn" and "/ro/metronome/__pycache__" in by["numba cache"].detail
    assert by["numba cache"].fix.startswith("set a writable cache: export NUMBA_CACHE_DIR=")
    assert by["render"].status == "ok"


# ------------------------------------------------------------------------------------------------------------------
# A read-only install, for real
# ------------------------------------------------------------------------------------------------------------------
def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


RO_MOUNTS = 'for d in "$RO_INSTALL" "$RO_HOME"; do mount --bind "$d" "$d" && mount -o remount,ro,bind "$d" "$d" ' \
            '|| exit 97; done; exec "$@"'


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m (a private mount namespace)")
def test_read_only_install_with_read_only_home_runs_help_render_and_doctor(tmp_path):
    install, home, tmp, out = (tmp_path / d for d in ("install", "home", "tmp", "out"))
    for d in (home, tmp, out):
        d.mkdir()
    for pkg in ("metronome", "cues", "profiles"):
        shutil.copytree(ROOT / pkg, install / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    course = out / "c.yaml"
    course.write_text("segments: [{distance_m: 100, grade_pct: 0}, {distance_m: 100, grade_pct: -10}]")
    env = {k: v for k, v in _env().items() if k not in ("XDG_CACHE_HOME", "PYTHONPATH", "TMPDIR")}
    env.update(PYTHONPATH=str(install), HOME=str(home), TMPDIR=str(tmp), RO_INSTALL=str(install),
               RO_HOME=str(home))

    def run(*args, pre=""):
        code = pre + "import runpy, sys; sys.argv[0] = 'downbeat'; runpy.run_module('metronome.cli', " \
                     "run_name='__main__')"
        r = subprocess.run(["unshare", "-m", "sh", "-c", RO_MOUNTS, "sh", sys.executable, "-c", code, *args],
                           capture_output=True, text=True, env=env, cwd=out, timeout=600)
        assert r.returncode != 97, "could not bind-mount read-only"
        assert "Traceback" not in r.stderr, r.stderr
        return r

    r = run("--help")
    assert r.returncode == 0 and "render" in r.stdout, r.stderr
    # First render: the kernels cannot be cached in the install nor in ~/.cache: a private temporary folder.
    r = run("render", str(course), "-o", "a.wav", "--no-cues", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(NOTICE), r.stderr
    cache = tmp / f"downbeat-numba-{os.getuid()}"
    assert any(cache.rglob("_kernels.process_block*.nbi")), "nothing was cached"
    assert not any(install.rglob("*.nbi")) and not any(home.rglob("*"))
    r = run("render", str(course), "-o", "b.wav", "--no-cues", "--quiet")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # warm: silent
    assert (out / "a.wav").read_bytes() == (out / "b.wav").read_bytes()
    r = run("doctor", "--json")
    by = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert by["render"]["status"] == "ok"
    assert by["numba cache"]["status"] == "warn" and "Read-only file system" in by["numba cache"]["detail"]
    assert by["numba cache"]["fix"].startswith("set a writable cache: export NUMBA_CACHE_DIR=")
    # No folder at all (the temporary one is unusable too): compiled every run, one warning, still renders.
    r = run("render", str(course), "-o", "c.wav", "--no-cues", "--quiet",
            pre=f"import tempfile; tempfile.tempdir = {str(course)!r}; ")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("downbeat: warning: no writable folder for the compiled audio "
                                                   "engine") and "preparing the audio engine (no cache" in lines[1]
    assert (out / "c.wav").read_bytes() == (out / "a.wav").read_bytes()
