"""``downbeat doctor``: real checks on this machine, and real failures made by hiding what it looks for.

Failures are produced the way a user's machine would produce them: an executable missing from ``PATH``, a JACK
server that does not answer, a Python module that cannot be imported in the probe's child process (a stub module
that raises exactly what the real one raises when its shared library is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from metronome.cli import doctor as D

EXPECTED_NAMES = ["python packages", "render", "output formats", "compiled kernels", "numba cache", "festival", "flite", "espeak-ng",
                  "voice cache",
                  "portaudio", "audio outputs", "jack server", "pipewire server", "pulseaudio server"]


RT_NAMES = ["cpu governor", "rtprio limit", "memlock limit", "audio group", "rt kernel"]


def run_doctor(*args):
    r = CliRunner().invoke(D.doctor, list(args), catch_exceptions=False)
    return r


def run_json(monkeypatch=None):
    r = run_doctor("--json")
    report = json.loads(r.output)
    return r.exit_code, report, {c["name"]: c for c in report["checks"]}


def _stub_module(folder: Path, name: str, exc: str, monkeypatch) -> None:
    """Make ``import name`` raise ``exc`` in the probes' child processes (they inherit PYTHONPATH)."""
    (folder / f"{name}.py").write_text(f"raise {exc}\n")
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(folder) + (os.pathsep + old if old else ""))


def test_everything_render_needs_is_found_here():
    code, report, by = run_json()
    assert code == 0
    names = [c["name"] for c in report["checks"]]
    assert names[:len(EXPECTED_NAMES) + len(RT_NAMES)] == EXPECTED_NAMES + RT_NAMES
    # Then one quantum line per answering server (jack, pipewire), or one saying none answers.
    assert names[len(EXPECTED_NAMES) + len(RT_NAMES):] in (
        ["jack quantum"], ["pipewire quantum"], ["jack quantum", "pipewire quantum"], ["audio quantum"])
    assert report["render_ok"] is True
    for name in ("python packages", "render", "output formats", "espeak-ng"):
        assert by[name]["status"] == "ok", by[name]
    assert "spoke" in by["espeak-ng"]["detail"]
    assert by["output formats"]["detail"] == "WAV, FLAC and OGG"
    for c in report["checks"]:
        assert c["status"] in D.STATUSES
        assert c["needed_for"] in ("render", "play")
        if c["status"] in ("warn", "fail"):
            assert c["fix"], c  # every problem comes with the command that fixes it


def test_jack_status_matches_jack_lsp():
    if shutil.which("jack_lsp") is None:
        pytest.skip("jack_lsp is not installed")
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    running = subprocess.run(["jack_lsp"], capture_output=True, env=env, timeout=10).returncode == 0
    _, report, by = run_json()
    assert (by["jack server"]["status"] == "ok") == running
    if running:
        assert by["audio outputs"]["status"] == "ok" and "JACK" in by["audio outputs"]["detail"]
        assert report["play_ok"] is True


def test_unreachable_jack_is_a_warning_with_the_start_command(monkeypatch):
    if shutil.which("jack_lsp") is None or Path("/proc/asound/cards").exists():
        pytest.skip("needs jack tools and no sound card (as on CI)")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "downbeat-doctor-nonexistent")
    code, report, by = run_json()
    assert code == 0  # play problems never fail the doctor: render still works
    assert report["render_ok"] is True and report["play_ok"] is False
    assert by["audio outputs"]["status"] == "warn"
    assert "jackd -d dummy -r 48000 -p 128 &" in by["audio outputs"]["fix"]
    assert by["jack server"]["status"] == "warn" and by["jack server"]["fix"].startswith("start a JACK server: ")
    # JACK_NO_START_SERVER=1 in every probe: asking did not start a server under that name.
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    assert subprocess.run(["jack_lsp"], capture_output=True, env=env, timeout=10).returncode != 0


def test_missing_espeak_fails_render_with_the_apt_command(monkeypatch, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    r = run_doctor()
    assert r.exit_code == 1
    assert "FAIL" in r.output and "render: NOT ready" in r.output
    code, report, by = run_json()
    assert code == 1 and report["render_ok"] is False
    assert by["espeak-ng"]["status"] == "fail"
    assert by["espeak-ng"]["fix"].endswith("apt-get install espeak-ng")
    assert by["festival"]["status"] == "fail" and by["festival"]["fix"].endswith("install festival festvox-us-slt-hts")
    assert by["flite"]["status"] == "fail" and by["flite"]["fix"].endswith("apt-get install flite")
    # Client tools that are not there are reported, not guessed about.
    assert by["pulseaudio server"]["status"] in ("info", "warn")
    assert "not installed" in by["jack server"]["detail"]


def test_speech_engines_found_are_listed_and_the_others_come_with_their_apt_packages(monkeypatch, tmp_path):
    """Only espeak-ng on PATH: it speaks and is the default; festival and flite are listed with how to install."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (tests/run.sh installs it)")
    only = tmp_path / "bin"
    only.mkdir()
    (only / "espeak-ng").symlink_to(shutil.which("espeak-ng"))
    monkeypatch.setenv("PATH", str(only))
    monkeypatch.delenv("DOWNBEAT_VOICE")
    by = {c.name: c for c in D.check_speech()}
    assert list(by) == ["festival", "flite", "espeak-ng"]
    assert by["espeak-ng"].status == "ok" and "spoke" in by["espeak-ng"].detail
    assert "the default voice (espeak-ng:en-us)" in by["espeak-ng"].detail
    assert by["festival"].status == "info" and by["festival"].fix.endswith("apt-get install festival festvox-us-slt-hts")
    assert "apt-get install festival festvox-us-slt-hts" in by["festival"].detail  # info lines print no fix
    assert by["flite"].status == "info" and by["flite"].fix.endswith("apt-get install flite")
    assert D.verdict(list(by.values()))["render_ok"] is True


def test_every_installed_engine_speaks_and_the_best_is_the_default(monkeypatch):
    """Here (and on CI: tests/run.sh installs all three) every engine speaks; festival HTS is the default."""
    monkeypatch.delenv("DOWNBEAT_VOICE")
    by = {c.name: c for c in D.check_speech()}
    assert all(c.status == "ok" and "spoke" in c.detail for c in by.values()), by
    assert "the default voice (festival:cmu_us_slt_arctic_hts)" in by["festival"].detail
    assert "default" not in by["flite"].detail and "default" not in by["espeak-ng"].detail


def test_missing_portaudio_is_a_warning_naming_libportaudio2(monkeypatch, tmp_path):
    # What sounddevice raises when libportaudio2 is not installed.
    _stub_module(tmp_path, "sounddevice", "OSError('PortAudio library not found')", monkeypatch)
    code, report, by = run_json()
    assert code == 0 and report["play_ok"] is False
    assert by["portaudio"]["status"] == "warn"
    assert "PortAudio library not found" in by["portaudio"]["detail"]
    assert by["portaudio"]["fix"].endswith("apt-get install libportaudio2")
    assert by["render"]["status"] == "ok"  # the engine probe never imports sounddevice


def test_broken_engine_fails_render(monkeypatch, tmp_path):
    monkeypatch.setenv("DOWNBEAT_KERNELS", "jit")  # the compiled-ahead kernels would not need numba at all
    _stub_module(tmp_path, "numba", "ImportError('No module named numba')", monkeypatch)
    code, report, by = run_json()
    assert code == 1
    assert by["render"]["status"] == "fail" and "No module named numba" in by["render"]["detail"]
    assert "pip install" in by["render"]["fix"]


def test_cold_numba_cache_compiles_once_then_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("DOWNBEAT_KERNELS", "jit")  # numba's cache is used only by the JIT
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    _, _, first = run_json()
    assert first["numba cache"]["status"] == "ok"
    assert "compiled" in first["numba cache"]["detail"] and "cached for next time" in first["numba cache"]["detail"]
    assert any((tmp_path / "numba").rglob("_kernels.process_block*.nbi"))
    _, _, second = run_json()
    assert "loaded from the cache" in second["numba cache"]["detail"]


def test_compiled_kernels_are_reported_and_their_absence_says_how_to_get_them():
    _, _, by = run_json()  # this checkout: tests/run.sh compiled them
    assert by["compiled kernels"]["status"] == "ok" and "_kernels_aot_" in by["compiled kernels"]["detail"]
    assert by["numba cache"]["status"] == "ok" and "not needed" in by["numba cache"]["detail"]
    probe = {"warm_s": 0.9, "cache_dir": None, "cache_index_written": True, "was_warm": True,
             "aot": {"backend": "jit", "path": None, "reason": "no C compiler ('gcc' not found)", "built_s": None},
             "render": {ext: {"ok": True, "beats": 6} for ext in (".wav", ".flac", ".ogg")}}
    by = {c.name: c for c in D.check_engine(probe)}
    assert by["compiled kernels"].status == "warn" and "no C compiler" in by["compiled kernels"].detail
    assert "apt-get install gcc python3-dev" in by["compiled kernels"].fix
    assert by["numba cache"].status == "ok"  # the JIT's cache is then what matters, and it is fine


def test_uncacheable_kernels_warn_with_numba_cache_dir():
    probe = {"warm_s": 9.0, "cache_dir": "/ro/metronome/__pycache__", "cache_index_written": False,
             "render": {ext: {"ok": True, "beats": 6} for ext in (".wav", ".flac", ".ogg")}}
    by = {c.name: c for c in D.check_engine(probe)}
    assert by["numba cache"].status == "warn"
    assert by["numba cache"].fix.startswith("set a writable cache: export NUMBA_CACHE_DIR=")
    assert by["render"].status == "ok"


def test_unwritable_voice_cache_warns(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # .../file/downbeat/voice can never be created
    (check,) = D.check_voice_cache()
    assert check.status == "warn" and "XDG_CACHE_HOME" in check.fix


def test_registered_on_the_main_cli(capsys):
    from metronome.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--json"])
    assert exc.value.code == 0
    assert json.loads(capsys.readouterr().out)["render_ok"] is True
