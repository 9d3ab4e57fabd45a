"""The README's set-up commands, run as written.

``README.md`` has two fenced set-up commands: the first installs Downbeat into a fresh venv and plays the bundled
demo descent (or renders it to ``demo-descent.wav`` without an audio device); the second runs the tests.

* The first is parsed from README.md and run for real, in a copy of the repository, in a fresh ``python3 -m venv``
  (``test_first_setup_command_installs_and_renders_the_demo``, marked ``slow``: deselect locally with
  ``-m "not slow"``; CI runs it, since ``tests/run.sh`` is plain pytest).
* The second is *not* run (the suite would run itself): its wiring is checked instead, i.e. ``.ci/run`` calls
  exactly that command and the script it names exists and is executable.

Only what a test cannot avoid is adapted; each adaptation is listed in :func:`adapt_setup_command` and
:func:`setup_env`.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The apt-get prefix: ``S`` is ``sudo`` for a user and empty for root (a root-only container has no sudo).
SUDO_PREFIX = 'S=$(test "$(id -u)" = 0 || echo sudo); '
APT_RE = re.compile(re.escape(SUDO_PREFIX)
                    + r"\$S apt-get update && \$S apt-get install -y (?P<pkgs>[a-z0-9.+\- ]+?) && ")
#: The whole first command, README to finished render, must stay well inside a CI run.
SETUP_TIMEOUT_S = 600


def setup_commands(text: str | None = None) -> list[str]:
    """The fenced ``sh`` blocks of the README's "Set up" section, each one command on one line."""
    text = README.read_text() if text is None else text
    m = re.search(r"^## Set up.*?$(.*?)^## ", text, re.M | re.S)
    assert m, "README.md has no '## Set up' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", m.group(1), re.M | re.S)
    return [b.strip() for b in blocks]


def test_readme_has_exactly_the_two_setup_commands():
    install, tests = setup_commands()  # exactly two
    for cmd in (install, tests):
        assert "\n" not in cmd, "each set-up command is one line, to paste as is"
    assert "python3 -m venv ~/.downbeat" in install and "pip install ." in install
    assert install.endswith("downbeat play demo-descent --fallback-render demo-descent.wav")
    assert tests == "bash tests/run.sh"
    # The picture and the paragraph come first: the set-up section follows them.
    text = README.read_text()
    assert text.index("docs/demo-descent.png") < text.index("## Set up")


def test_ci_runs_exactly_the_readme_test_command():
    """Not recursing into the suite: .ci/run's one real command is the README's, and its script is there."""
    _, test_cmd = setup_commands()
    ci = ROOT / ".ci" / "run"
    lines = [ln.strip() for ln in ci.read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#") and not ln.startswith("set -")]
    # `cd` to the repository root, then exactly the README command (exec'ed, so its exit status is CI's).
    assert lines == ['cd "$(dirname "$0")/.."', f"exec {test_cmd}"]
    interpreter, script = shlex.split(test_cmd)
    assert interpreter == "bash"
    assert (ROOT / script).is_file() and os.access(ROOT / script, os.X_OK)
    assert os.access(ci, os.X_OK)
    # And the script ends by running pytest over this very suite (with any arguments passed through).
    assert re.search(r"^\.venv/bin/python -m pytest -q \"\$@\"$", (ROOT / script).read_text(), re.M)


# ------------------------------------------------------------------------------------------------------------------
# The first command, for real
# ------------------------------------------------------------------------------------------------------------------
def _installed(pkgs: list[str]) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\\n", *pkgs], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.count("ok installed") == len(pkgs)


def adapt_setup_command(cmd: str) -> tuple[str, list[str]]:
    """The README command with only the unavoidable changes; returns (command, list of what was changed).

    1. The ``S=...; $S apt-get update && $S apt-get install`` prefix is skipped when every package it names is
       already installed: it would only re-download the package lists (slow, and needs the network to Debian).
    2. When it does run as a user (not root), ``sudo`` becomes ``sudo -n``: never wait for a password.
    Root needs no change: the command itself leaves ``sudo`` out for root (root containers have none).
    Nothing else is touched: the venv, ``pip install .`` and the ``downbeat`` command run as written.
    """
    notes = []
    m = APT_RE.match(cmd)
    assert m, f"the first set-up command no longer starts with the sudo-if-not-root apt-get prefix: {cmd!r}"
    pkgs = m["pkgs"].split()
    if _installed(pkgs):
        cmd = cmd[m.end():]
        notes.append(f"skipped apt-get: {' '.join(pkgs)} already installed")
    elif os.geteuid() != 0:
        cmd = cmd.replace("|| echo sudo)", "|| echo sudo -n)", 1)
        notes.append("sudo -n: never wait for a password")
    return cmd, notes


def _fake_bin(folder: Path, with_sudo: bool) -> None:
    """apt-get (and sudo) that only print how they were called; ``id`` is the real one."""
    folder.mkdir(mode=0o755)
    names = ["apt-get"] + (["sudo"] if with_sudo else [])
    for name in names:
        tool = folder / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*"\n' + ('exec "$@"\n' if name == "sudo" else ""))
        tool.chmod(0o755)
    (folder / "id").symlink_to(shutil.which("id"))


def _run_apt_prefix(cmd: str, folder: Path, as_nobody: bool) -> subprocess.CompletedProcess:
    prefix = cmd[:APT_RE.match(cmd).end()] + "echo done"
    argv = ["/bin/sh", "-c", prefix]
    if as_nobody:
        argv = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env={"PATH": str(folder)}, cwd="/", timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_first_command_runs_apt_get_without_sudo_as_root_and_with_it_as_a_user():
    """As root with no sudo installed (a container): apt-get directly.  As a user: through sudo."""
    install, _ = setup_commands()
    m = APT_RE.match(install)
    assert m, f"the first command must start with {SUDO_PREFIX!r} (root has no sudo): {install!r}"
    pkgs = m["pkgs"]
    base = Path(tempfile.mkdtemp(prefix="downbeat-readme-"))
    try:
        base.chmod(0o755)  # the unprivileged run must reach the fake tools
        _fake_bin(base / "root", with_sudo=False)
        r = _run_apt_prefix(install, base / "root", as_nobody=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["apt-get update", f"apt-get install -y {pkgs}", "done"], r.stdout
        _fake_bin(base / "user", with_sudo=True)
        r = _run_apt_prefix(install, base / "user", as_nobody=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["sudo apt-get update", "apt-get update",
                                         f"sudo apt-get install -y {pkgs}", f"apt-get install -y {pkgs}",
                                         "done"], r.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


def setup_env(home: Path) -> dict:
    """The environment of the run; each difference from the caller's is one a test cannot avoid.

    * ``HOME`` is a temporary folder, so ``~/.downbeat`` is a fresh venv and the user's real one is untouched
      (the voice cache, ``~/.cache/downbeat``, is fresh too).
    * ``PIP_CACHE_DIR`` / ``PIP_CONFIG_FILE`` keep the machine's pip download cache and pip configuration, which
      moving ``HOME`` would otherwise hide: without them every run downloads numba and matplotlib again.
    * No audio device, so that ``play`` takes its documented no-device path (render ``demo-descent.wav``)
      instead of playing 24 minutes to a real device: ``JACK_DEFAULT_SERVER`` names a server that does not exist
      and ``JACK_NO_START_SERVER=1`` stops libjack from starting one; ``PULSE_SERVER`` points nowhere.  Sound
      cards cannot be hidden this way (an empty ``ALSA_CONFIG_PATH`` makes libasound abort), so on a machine
      with one the test is skipped; CI machines have none.
    * ``PYTHONPATH`` and virtualenv variables of the test run are removed: the new venv must stand alone.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    real_home = Path.home()
    pip_cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    if pip_cache.returncode == 0 and pip_cache.stdout.strip():
        env["PIP_CACHE_DIR"] = pip_cache.stdout.strip()
    user_conf = next((p for p in (real_home / ".config" / "pip" / "pip.conf", real_home / ".pip" / "pip.conf")
                      if p.is_file()), None)
    if user_conf is not None and "PIP_CONFIG_FILE" not in env:
        env["PIP_CONFIG_FILE"] = str(user_conf)
    env["HOME"] = str(home)
    env["JACK_DEFAULT_SERVER"] = "downbeat-readme-test-no-such-server"
    env["JACK_NO_START_SERVER"] = "1"
    env["PULSE_SERVER"] = f"unix:{home}/no-pulse-server"
    # The venv's console scripts must not be shadowed by this test run's (e.g. pyenv shims are fine, .venv not).
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def _has_sound_card() -> bool:
    try:
        return "no soundcards" not in Path("/proc/asound/cards").read_text()
    except OSError:
        return False


def copy_repo(dest: Path) -> None:
    """The files git tracks (as in a fresh clone, without .venv, caches or build output), from the work tree."""
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if r.returncode != 0:  # not a git checkout (a source archive): copy everything but the obvious leftovers
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", ".git",
                                                                  ".pytest_cache", ".hypothesis", "*.wav"))
        return
    for rel in r.stdout.decode().split("\0"):
        if not rel:
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(ROOT / rel, dest / rel)
        except FileNotFoundError:
            continue  # deleted in the work tree (and not yet committed): a fresh clone would not have it either


@pytest.mark.slow
def test_first_setup_command_installs_and_renders_the_demo(tmp_path):
    if _has_sound_card():
        pytest.skip("this machine has a sound card: `play` would play the whole 24-minute demo on it")
    install, _ = setup_commands()
    cmd, notes = adapt_setup_command(install)
    if "sudo -n" in cmd and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("Debian packages are missing and sudo needs a password")
    repo, home = tmp_path / "downbeat", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    copy_repo(repo)
    env = setup_env(home)

    try:
        _run_and_check(cmd, notes, repo, home, env)
    finally:
        # ~250 MB of WAV and ~400 MB of venv: pytest keeps its last three temp folders, so clean up here.
        shutil.rmtree(repo, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def _run_and_check(cmd, notes, repo, home, env):
    import soundfile as sf

    from profiles import load_profile

    t0 = time.monotonic()
    r = subprocess.run(["sh", "-c", cmd], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=SETUP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    took_s = time.monotonic() - t0
    report = f"adaptations: {notes}\n$ {cmd}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode == 0, report

    # A fresh venv in the (temporary) home, with the console script, and a real (non-editable) install.
    venv = home / ".downbeat"
    assert os.access(venv / "bin" / "downbeat", os.X_OK), report
    site = list(venv.glob("lib/python3*/site-packages/metronome/engine.py"))
    assert site, "Downbeat is not installed into the venv's site-packages"
    # The documented no-device path, said on one line, then the render's own summary.
    assert "no audio output device found" in r.stderr, report
    assert "rendering demo-descent to demo-descent.wav instead" in r.stderr, report
    assert re.search(r"^wrote demo-descent\.wav: 23\.\d min, \d+ steps at 170-17\d spm, \d+ cues", r.stdout, re.M), \
        report

    wav = repo / "demo-descent.wav"
    prof = load_profile("demo-descent")
    with sf.SoundFile(wav) as f:
        assert (f.format, f.subtype, f.samplerate, f.channels) == ("WAV", "PCM_16", 48000, 2)
        assert f.frames / f.samplerate == pytest.approx(prof.duration_s + 1.0, abs=1.0)
        first = f.read(5 * 48000, dtype="float32")
        f.seek(int(prof.duration_s * 0.5 * 48000))
        middle = f.read(5 * 48000, dtype="float32")
    for block in (first, middle):
        peak_dbfs = 20 * math.log10(float(np.max(np.abs(block))))
        assert -20.0 < peak_dbfs <= -6.0 + 0.05  # clicks are there, under the -6 dBFS ceiling
    # One click per step: 170 spm on the flat start -> ~14 clicks in 5 s (onsets where the envelope jumps).
    env_l = np.abs(first[:, 0]) > 0.05
    onsets = np.flatnonzero(env_l[1:] & ~env_l[:-1])
    onsets = onsets[np.concatenate([[True], np.diff(onsets) > 4800])]  # one onset per click (>= 0.1 s apart)
    assert len(onsets) == pytest.approx(5 * 170 / 60, abs=1)
    print(f"first set-up command: {took_s:.0f} s; {'; '.join(notes)}")


# ------------------------------------------------------------------------------------------------------------------
# The usage sections: every `downbeat ...` line is a valid command line, the YAML example is a valid workout
# ------------------------------------------------------------------------------------------------------------------
#: Placeholder files in the README -> real files, so the options can be parsed against existing paths.
PLACEHOLDERS = {"my-trail.gpx": str(ROOT / "profiles" / "bundled" / "mojstrovka.gpx"),
                "my-workout.yaml": str(ROOT / "examples" / "treadmill-decline-pyramid.yaml")}


def usage_command_lines() -> list[list[str]]:
    """argv (without ``downbeat``) of every ``downbeat`` line in the README's ``sh`` blocks after "Set up"."""
    text = README.read_text()
    after = text[text.index("## Everyday use"):]
    out = []
    for block in re.findall(r"^```sh\n(.*?)^```", after, re.M | re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("downbeat"):
                out.append([PLACEHOLDERS.get(a, a) for a in shlex.split(line)[1:]])
            elif line.startswith("bash examples/"):
                assert (ROOT / shlex.split(line)[1]).is_file(), line
    return out


def _command(argv):
    import click

    from metronome.cli import cli

    if not argv:
        return cli, "downbeat", []
    cmd, rest, name = cli.get_command(None, argv[0]), argv[1:], argv[0]
    if isinstance(cmd, click.Group):
        cmd, rest, name = cmd.commands[rest[0]], rest[1:], rest[0]
    return cmd, name, rest


def test_every_usage_line_parses():
    lines = usage_command_lines()
    assert len(lines) >= 15
    seen = set()
    for argv in lines:
        cmd, name, rest = _command(argv)
        cmd.make_context(name, list(rest))  # raises click.UsageError for an unknown option or a bad value
        seen.add(argv[0] if argv else "")
    assert {"", "doctor", "play", "render", "profile", "devices", "cues"} <= seen


def _readme_yaml() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), re.M | re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_workout_yaml_loads(tmp_path):
    from profiles import load_profile

    path = tmp_path / "my-workout.yaml"
    path.write_text(_readme_yaml())
    p = load_profile(str(path))
    assert p.kind == "workout" and p.base_cadence_spm == 176
    assert p.duration_s == pytest.approx(360 + 180 + 90 + 150 + 150)
    assert float(p.grade_pct.min()) == pytest.approx(-8.0)


def test_readme_workout_typo_message_is_the_documented_one(tmp_path, capsys):
    from metronome.cli import main

    path = tmp_path / "my-workout.yaml"
    path.write_text(_readme_yaml().replace("incline_pct: -4,", "incline_pct: steep,"))
    with pytest.raises(SystemExit) as exc:
        main(["profile", "show", str(path)])
    assert exc.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1
    documented = re.search(r"\(`(my-workout\.yaml: [^`]+)`, exit 2\)", README.read_text())[1]
    assert message[0].endswith(documented)
