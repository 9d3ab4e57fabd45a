"""``downbeat doctor``: check what rendering and live playing need, and say exactly how to fix what is missing.

Two kinds of requirement:

* **render** (``needed_for="render"``): Python packages, libsndfile, the numba kernels and a speech engine
  (festival, flite or espeak-ng: the spoken cues; each missing one is listed with its apt packages).
  A failing render item makes the command exit 1: ``downbeat render`` would not work, or would lose its cues.
* **play** (``needed_for="play"``): PortAudio, an audio output device and an audio server (JACK, PipeWire,
  PulseAudio), plus the caches that only cost start-up time.  These are warnings: a machine without a sound card
  can still render a track for a phone, so they never change the exit status.

Anything that could hang or crash the caller runs in a child process with a timeout: PortAudio's JACK host API
blocks on a dead server, and the first numba compile takes ~10 s.  Every child gets ``JACK_NO_START_SERVER=1`` so
that asking whether a JACK server exists never starts one.

Register with ``cli.add_command(doctor)`` (done in :mod:`metronome.cli`).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import click

#: Kernels that load from numba's cache start in well under a second; a compile takes 5-20 s.  Anything above
#: this means the cache was not used.
CACHED_WARM_MAX_S = 3.0
#: Child processes: the engine probe may compile the kernels on a slow shared machine.
ENGINE_PROBE_TIMEOUT_S = 180.0
PORTAUDIO_PROBE_TIMEOUT_S = 20.0
SERVER_PROBE_TIMEOUT_S = 5.0
#: A short phrase through each speech engine, exactly as the cue voice bank calls it.
SPEECH_TEST_PHRASE = "Quick, light feet."

#: (import name, pip requirement) of every Python package ``render`` needs.
RENDER_PACKAGES = (
    ("numpy", "numpy>=1.24"),
    ("numba", "numba>=0.59"),
    ("soundfile", "soundfile>=0.12"),
    ("yaml", "pyyaml>=6.0"),
    ("click", "click>=8.1"),
    ("gpxpy", "gpxpy>=1.5"),
    ("fitdecode", "fitdecode>=0.10"),
    ("rich", "rich>=13"),
    ("matplotlib", "matplotlib>=3.7"),
)

from metronome.checks import STATUSES, Check, apt as _apt, child_env as _child_env, sudo as _sudo  # noqa: E402,F401


def _run_probe(kind: str, timeout_s: float) -> dict:
    """Run ``python -m metronome.cli.doctor --probe KIND`` and return its JSON, or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "metronome.cli.doctor", kind]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=_child_env(),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {timeout_s:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------------------------------------------
# Probes run in a child process (python -m metronome.cli.doctor KIND): one JSON line on stdout.
# ------------------------------------------------------------------------------------------------------------------
def _probe_engine() -> dict:
    """Time ``warm_kernels()`` (cache hit or compile), then render 2 s to WAV, FLAC and OGG through the kernel."""
    from metronome import _jitcache, kernels

    aot = kernels.status()  # builds the ahead-of-time module if it is missing (as any first run does)
    cache_dir = None
    if aot["backend"] == "jit":
        from metronome import _kernels as K

        try:
            cache_dir = str(K.process_block._cache._cache_path)  # numba internals: best effort, for the report
        except AttributeError:  # caching is off (no writable folder): NullCache
            cache_dir = None
    from metronome.engine import warm_kernels
    from metronome.mix import EngineSettings
    from metronome.render import render
    from metronome.tempo import TempoMap

    from metronome.engine import cache_is_warm

    was_warm = cache_is_warm(True)
    warm_s = warm_kernels(48000, 2, say=None)
    indexed = bool(cache_dir) and any(p.name.startswith("_kernels.process_block") and p.suffix == ".nbi"
                                      for p in Path(cache_dir).glob("*.nbi"))
    rendered = {}
    tm = TempoMap.constant(170.0, 48000, 2.0)
    with tempfile.TemporaryDirectory(prefix="downbeat-doctor-") as tmp:
        for ext in (".wav", ".flac", ".ogg"):
            try:
                res = render(tm, os.path.join(tmp, "probe" + ext), EngineSettings(), tail_s=0.0)
                rendered[ext] = {"ok": res.beats >= 5 and res.frames == tm.end_sample, "beats": res.beats}
            except Exception as exc:  # report, don't crash: the parent turns it into a fix
                rendered[ext] = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    choice = _jitcache.CHOICE
    return {"warm_s": warm_s, "aot": aot, "cache_dir": cache_dir, "cache_index_written": indexed, "render": rendered,
            "was_warm": was_warm, "cache_source": choice.source, "cache_tried": [f"{p}: {why}" for p, why in choice.tried]}


def _probe_portaudio() -> dict:
    """PortAudio version and output devices, as this machine's sounddevice sees them."""
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio2 is not installed
        return {"importable": False, "error": str(exc).splitlines()[0]}
    out = {"importable": True, "version": sd.get_portaudio_version()[1], "outputs": []}
    from metronome.devices import NoOutputDevice, list_devices

    try:
        devices = list_devices()
        apis = sd.query_hostapis()
    except (NoOutputDevice, Exception) as exc:
        out["error"] = str(getattr(exc, "reason", exc)).splitlines()[0]
        return out
    for d in devices:
        if d.outputs > 0:
            out["outputs"].append({"index": d.index, "name": d.name, "hostapi": d.hostapi, "channels": d.outputs,
                                   "default": d.default_output})
    out["hostapis"] = [a["name"] for a in apis]
    return out


# ------------------------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------------------------
def check_packages() -> list[Check]:
    """Every Python package ``render`` imports; libsndfile comes with soundfile's wheel or from Debian."""
    missing, versions = [], []
    for mod, req in RENDER_PACKAGES:
        try:
            m = importlib.import_module(mod)
        except ImportError:
            missing.append(req)
            continue
        except OSError as exc:  # soundfile without libsndfile
            return [Check("python packages", "fail", f"{mod}: {str(exc).splitlines()[0]}", _apt("libsndfile1"))]
        if mod in ("numpy", "numba", "soundfile"):
            versions.append(f"{mod} {getattr(m, '__version__', '?')}")
    if missing:
        pip = f"{sys.executable} -m pip install " + " ".join(f"'{r}'" for r in missing)
        return [Check("python packages", "fail", f"missing: {', '.join(missing)}", f"install: {pip}")]
    import soundfile

    versions.append(f"libsndfile {soundfile.__libsndfile_version__}")
    return [Check("python packages", "ok", ", ".join(versions))]


def check_engine(probe: dict) -> list[Check]:
    """The render path end to end, and whether the numba kernels come from the cache."""
    if "error" in probe:
        return [Check("render", "fail", f"the audio kernel does not run: {probe['error']}",
                      f"reinstall, in Downbeat's source folder: {sys.executable} -m pip install --force-reinstall .")]
    checks = []
    r = probe["render"]
    if not r[".wav"]["ok"]:
        checks.append(Check("render", "fail", f"rendering a 2 s WAV failed: {r['.wav'].get('error', 'no beats')}",
                            _apt("libsndfile1")))
    else:
        checks.append(Check("render", "ok", f"2 s test track rendered through the kernel "
                                            f"({r['.wav']['beats']} steps)"))
    bad = [ext for ext in (".flac", ".ogg") if not r[ext]["ok"]]
    if bad:
        checks.append(Check("output formats", "warn",
                            f"cannot write {', '.join(bad)} ({r[bad[0]].get('error', '?')}); WAV works",
                            f"install: {sys.executable} -m pip install --upgrade 'soundfile>=0.12' "
                            f"(its wheel bundles libsndfile with FLAC and Ogg Vorbis)"))
    else:
        checks.append(Check("output formats", "ok", "WAV, FLAC and OGG"))
    warm_s, cache_dir = probe["warm_s"], probe["cache_dir"]
    aot = probe.get("aot") or {}
    if aot.get("backend") == "aot":
        built = f", built in {aot['built_s']:.1f} s (first run)" if aot.get("built_s") else ""
        checks.append(Check("compiled kernels", "ok", f"compiled ahead of time{built}: {aot['path']}"))
        checks.append(Check("numba cache", "ok", f"not needed: the kernels load without numba ({warm_s:.2f} s)"))
        return checks
    checks.append(Check("compiled kernels", "warn",
                        f"not compiled ahead of time ({aot.get('reason') or 'unknown'}): numba compiles them, "
                        f"which adds ~0.5 s and ~110 MB to every start",
                        "install a C compiler and Python's headers (Debian: sudo apt-get install gcc python3-dev), "
                        "then run any downbeat command once"))
    where = f" ({cache_dir})" if cache_dir else ""
    source, tried = probe.get("cache_source"), "; ".join(probe.get("cache_tried", []))
    # What numba's cache index said before the warm-up, when known; else judged by the time it took.
    was_warm = probe.get("was_warm")
    loaded = was_warm if was_warm is not None else warm_s <= CACHED_WARM_MAX_S
    if source == "none":
        # metronome._jitcache found no folder it could write: every command compiles the kernels again.
        checks.append(Check("numba cache", "warn",
                            f"no writable folder for the compiled kernels ({tried}): every start compiles them "
                            f"({warm_s:.1f} s here)",
                            "set a writable cache: export NUMBA_CACHE_DIR=<a folder you can write to>, e.g. "
                            "mkdir -p /var/tmp/downbeat-numba && export NUMBA_CACHE_DIR=/var/tmp/downbeat-numba",
                            needed_for="play"))
    elif source == "temp":
        home_cache = Path.home() / ".cache" / "downbeat" / "numba"
        checks.append(Check("numba cache", "warn",
                            f"kernels cached in a temporary folder{where}, lost at reboot (not writable: {tried})",
                            f"set a writable cache: export NUMBA_CACHE_DIR={home_cache} (or any folder you can "
                            f"write to that is kept)", needed_for="play"))
    elif loaded:
        if source == "user" and tried:
            where = f" ({cache_dir}; not writable: {tried})"
        checks.append(Check("numba cache", "ok", f"kernels loaded from the cache in {warm_s:.1f} s{where}",
                            needed_for="play"))
    elif probe["cache_index_written"]:
        checks.append(Check("numba cache", "ok", f"kernels compiled in {warm_s:.1f} s (first run) and cached for "
                                                 f"next time{where}", needed_for="play"))
    else:
        home_cache = Path.home() / ".cache" / "downbeat" / "numba"
        checks.append(Check("numba cache", "warn",
                            f"kernels compiled in {warm_s:.1f} s and could not be cached{where}: every start pays it",
                            f"set a writable cache: export NUMBA_CACHE_DIR={home_cache}", needed_for="play"))
    return checks


#: Why each engine is worth installing (what ``doctor`` says about one that is missing).
_ENGINE_ROLE = {"festival": "the most natural voice (HTS, cmu_us_slt_arctic_hts)",
                "flite": "a natural voice (slt), light and fast",
                "espeak-ng": "robotic but always intelligible, the smallest"}


def check_speech() -> list[Check]:
    """One line per speech engine (cues/tts.py), in order of preference: speaks a phrase, or how to install it.

    A missing engine is information while another one speaks; with none at all the cues are lost, so each line
    fails (``render`` would make a clicks-only track).
    """
    from cues import tts
    from cues.voice import DEFAULT_RATE_WPM

    speak = {"espeak-ng": tts.espeak_wav, "festival": tts.festival_wav, "flite": tts.flite_wav}
    found = {e: tts.installed(e) for e in tts.ENGINES}
    try:
        default = tts.parse_voice(None)
    except Exception as exc:  # a bad DOWNBEAT_VOICE: say so on the default engine's line
        default = exc
    checks = []
    for engine in tts.ENGINES:
        apt_fix = _apt(tts.APT_PACKAGES[engine])
        if not found[engine]:
            if any(found.values()):
                checks.append(Check(engine, "info", f"not installed: {_ENGINE_ROLE[engine]} ({apt_fix})", apt_fix))
            else:
                checks.append(Check(engine, "fail", "not found: tracks get clicks only, no spoken cues", apt_fix))
            continue
        voice = tts.DEFAULT_VOICES[engine]
        reinstall = f"reinstall: {_sudo()}apt-get install --reinstall {tts.APT_PACKAGES[engine]}"
        try:
            t0 = time.perf_counter()
            samples, samplerate_hz = speak[engine](SPEECH_TEST_PHRASE, voice, DEFAULT_RATE_WPM)
            took_s = time.perf_counter() - t0
        except Exception as exc:
            checks.append(Check(engine, "fail", f"does not speak: {str(exc).splitlines()[0]}", reinstall))
            continue
        if samples.size == 0:
            checks.append(Check(engine, "fail", "produced no audio", reinstall))
            continue
        role = ""
        if isinstance(default, tts.VoiceSpec) and default.engine == engine:
            role = f", the default voice ({default}{'' if os.environ.get(tts.VOICE_ENV) is None else ' from $' + tts.VOICE_ENV})"
        checks.append(Check(engine, "ok", f"{engine}:{voice} spoke {samples.size / samplerate_hz:.1f} s in "
                                          f"{took_s:.2f} s{role}"))
    return checks


def _writable_dir(path: Path) -> tuple[bool, str]:
    """Can we create files in ``path`` (creating it if needed)?  Tried for real: root ignores mode bits."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return False, exc.strerror or str(exc)
    return True, ""


def check_voice_cache() -> list[Check]:
    """Synthesized cues are cached; without a writable cache every session re-runs the speech engine (slower)."""
    from cues.voice import default_cache_dir

    path = default_cache_dir()
    ok, why = _writable_dir(path)
    if ok:
        n_clips = sum(1 for _ in path.glob("*.npy"))
        return [Check("voice cache", "ok", f"{path} ({n_clips} clips cached)", needed_for="play")]
    return [Check("voice cache", "warn", f"{path} is not writable ({why}): cues are re-synthesized every start",
                  "set a writable cache: export XDG_CACHE_HOME=$HOME/.cache (or fix the folder's permissions)",
                  needed_for="play")]


def _answers(cmd: list[str]) -> tuple[bool, str]:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=SERVER_PROBE_TIMEOUT_S, env=_child_env(),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"no answer within {SERVER_PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return False, exc.strerror or str(exc)
    msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
    return r.returncode == 0, (msg[-1] if msg else f"exit status {r.returncode}")


def _has_sound_card() -> bool:
    try:
        return "no soundcards" not in Path("/proc/asound/cards").read_text()
    except OSError:
        return False


#: (check name, client tool, command that succeeds only if a server answers, Debian package, how to start one)
SERVERS = (
    ("jack server", "jack_lsp", ["jack_lsp"], "jackd2", None),
    ("pipewire server", "pw-cli", ["pw-cli", "info", "0"], "pipewire",
     "start PipeWire: systemctl --user start pipewire pipewire-pulse wireplumber"),
    ("pulseaudio server", "pactl", ["pactl", "info"], "pulseaudio-utils", "start PulseAudio: pulseaudio --start"),
)


def _start_jack() -> str:
    if _has_sound_card():
        return "start a JACK server: jackd -d alsa -r 48000 -p 256 &"
    # No sound card: the dummy backend keeps real-time pace without hardware (useful for tests, silent).
    return "start a JACK server: jackd -d dummy -r 48000 -p 128 &  (silent: this machine has no sound card)"


def check_servers() -> list[Check]:
    """Which audio servers are installed and answering (JACK never autostarted)."""
    found = []
    for name, tool, cmd, package, start in SERVERS:
        exe = shutil.which(tool)
        if exe is None:
            # No client tool: we cannot ask, and a missing tool is no problem by itself (the "audio outputs"
            # check says what to start when nothing can play).
            found.append((name, None, f"not checked ({tool} not installed; {_apt(package)[9:]})", None))
            continue
        ok, msg = _answers(cmd)
        found.append((name, ok, "running" if ok else f"not running ({msg})", start or _start_jack()))
    any_up = any(ok for _, ok, _, _ in found)
    checks = []
    for name, ok, detail, fix in found:
        if ok:
            checks.append(Check(name, "ok", detail, needed_for="play"))
        elif ok is None:
            checks.append(Check(name, "info", detail, needed_for="play"))
        else:
            # One answering server is enough: the others are only worth a note.
            checks.append(Check(name, "info" if any_up else "warn", detail, None if any_up else fix,
                                needed_for="play"))
    return checks


def check_portaudio(probe: dict) -> list[Check]:
    """PortAudio importable through sounddevice, and the output devices it sees."""
    if not probe.get("importable"):
        err = probe.get("error", "unknown error")
        return [Check("portaudio", "warn", f"sounddevice cannot load PortAudio ({err})", _apt("libportaudio2"),
                      needed_for="play"),
                Check("audio outputs", "warn", "unknown (PortAudio missing): 'downbeat render' still works",
                      _apt("libportaudio2"), needed_for="play")]
    version = probe.get("version", "?").split(",")[0]  # "PortAudio V19.6.0-devel, revision <git hash>"
    checks = [Check("portaudio", "ok", f"{version} (libportaudio2 through sounddevice)", needed_for="play")]
    outs = probe.get("outputs", [])
    if outs:
        default = next((o for o in outs if o["default"]), outs[0])
        names = "; ".join(f"{o['index']}: {o['name']} ({o['hostapi']})" for o in outs[:4])
        more = f" and {len(outs) - 4} more" if len(outs) > 4 else ""
        checks.append(Check("audio outputs", "ok", f"{len(outs)} found, default {default['name']!r} "
                                                   f"({default['hostapi']}): {names}{more}", needed_for="play"))
    else:
        why = probe.get("error") or "no sound card, and no JACK, PipeWire or PulseAudio server answering"
        fix = (_start_jack() if shutil.which("jackd") else
               _apt("jackd2") + f", then {_start_jack().replace('start a JACK server: ', '')}")
        checks.append(Check("audio outputs", "warn", f"none ({why}); 'downbeat render' works without one",
                            fix, needed_for="play"))
    return checks


def run_checks() -> list[Check]:
    """Every check, in the order the report prints them (render first, then play)."""
    checks = check_packages()
    if checks[0].status == "ok":
        checks += check_engine(_run_probe("engine", ENGINE_PROBE_TIMEOUT_S))
    checks += check_speech()
    checks += check_voice_cache()
    checks += check_portaudio(_run_probe("portaudio", PORTAUDIO_PROBE_TIMEOUT_S))
    checks += check_servers()
    from metronome.latency.rtchecks import run_rt_checks  # CPU governor, RT limits, audio group, kernel, quantum

    checks += run_rt_checks()
    return checks


def verdict(checks: list[Check]) -> dict:
    """``render_ok``: no failing check; ``play_ok``: also PortAudio and an output device."""
    render_ok = not any(c.status == "fail" for c in checks)
    by_name = {c.name: c for c in checks}
    play_ok = render_ok and all(by_name[n].status == "ok" for n in ("portaudio", "audio outputs") if n in by_name)
    return {"render_ok": render_ok, "play_ok": play_ok}


_MARKS = {"ok": ("ok", "green"), "info": ("--", None), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red")}


def format_report(checks: list[Check]) -> str:
    v = verdict(checks)
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark, color = _MARKS[c.status]
        lines.append(f"{click.style(f'{mark:<4}', fg=color, bold=c.status != 'ok')}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in ("warn", "fail"):
            lines.append(f"{'':<4}  {'':<{width}}  -> {c.fix}")
    lines.append("")
    lines.append("render: " + ("ready (downbeat render demo-descent -o demo.wav)" if v["render_ok"]
                               else "NOT ready: fix the FAIL lines above"))
    lines.append("play:   " + ("ready (downbeat play demo-descent)" if v["play_ok"]
                               else "not ready: see the WARN lines; until then use 'downbeat render'"))
    return "\n".join(lines)


@click.command(name="doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json):
    """Check PortAudio, audio devices and servers, the speech engines and the caches; say what to install or start.

    Exit status 0 when `downbeat render` works (play-related problems are warnings), 1 otherwise.
    """
    checks = run_checks()
    v = verdict(checks)
    if as_json:
        click.echo(json.dumps({**v, "checks": [asdict(c) for c in checks]}))
    else:
        click.echo(format_report(checks))
    if not v["render_ok"]:
        raise click.exceptions.Exit(1)


_PROBES = {"engine": _probe_engine, "portaudio": _probe_portaudio}

if __name__ == "__main__":
    print(json.dumps(_PROBES[sys.argv[1]]()))
