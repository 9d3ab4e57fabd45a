"""The kernels compiled ahead of time (metronome._aot, metronome.kernels) against numba's JIT: the same bits.

The compiled module is what render and play run (no numba in the process); the JIT is the fallback.  Both are
built from the same functions of metronome._kernels, so every output here must be identical, sample for sample,
including the live C callback's.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metronome import _aot, _kernels as JK, _layout as L, kernels
from metronome.engine import Engine
from metronome.errors import DownbeatError, InputError
from metronome.mix import EngineSettings, click_bank
from metronome.settings import MusicSettings
from metronome.tempo import TempoMap

ROOT = Path(__file__).resolve().parent.parent
SR = 48000
BLOCK_SIZES = [1, 64, 65, 128, 8192, 8193]
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                      ctypes.c_ulong, ctypes.c_void_p)


@pytest.fixture(scope="module")
def aot():
    """The compiled module for the current sources (built here if missing: CI has gcc and Python's headers, and
    a machine that cannot build it must fail this file, not skip it)."""
    path = _aot.find() or _aot.build()
    return _aot.load(path), path


def _map():
    # Constant, a ramp up, a step down and a ramp down: every branch of beat_time.
    return TempoMap([0, 2 * SR, 5 * SR, 5 * SR + 1, 9 * SR], [170.0, 170.0, 184.0, 160.0, 176.0], SR)


def _bank(settings):
    """Clicks plus two cue clips (a 0.4 s and a 0.9 s tone burst standing in for speech)."""
    t = np.arange(int(0.9 * SR)) / SR
    tone = (0.5 * np.sin(2 * np.pi * 300 * t) * np.hanning(t.size)).astype(np.float32)
    return click_bank(SR, [("short", tone[: int(0.4 * SR)].copy()), ("long", tone)], settings)


def _engine(live=False, music=False, channels=2):
    es = EngineSettings(samplerate=SR, channels=channels)
    eng = Engine(_map(), es, _bank(es), live=live, music=MusicSettings() if music else None,
                 music_frames=SR if music else 0)
    for clip, at in ((2, SR // 2), (2, 3 * SR), (3, 3 * SR + 100), (2, 7 * SR)):
        eng.request_cue(clip, at)
    if music:  # a second of a sine in the music ring, so the duck and the mix both run
        t = np.arange(SR) / SR
        eng.music[:SR, 0] = eng.music[:SR, 1] = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        eng.music_idx[L.MI_WRITTEN] = SR
    return eng


def _run(process_blocks, eng, frames, blocksize, live_steps=()):
    """The engine's output in chunks of ``blocksize`` (the target tempo changed between chunks in live mode)."""
    out = np.zeros((frames, eng.settings.channels), dtype=np.float32)
    steps = dict(live_steps)
    done = 0
    while done < frames:
        n = min(blocksize, frames - done)
        for at in [s for s in steps if done <= s < done + n]:
            eng.set_target_bpm(steps.pop(at))
        process_blocks(out[done:done + n], n, *eng._args)
        done += n
    return out


@pytest.mark.parametrize("blocksize", BLOCK_SIZES)
@pytest.mark.parametrize("mode", ["map", "live", "music"])
def test_compiled_and_jit_kernels_write_the_same_bits(aot, mode, blocksize):
    mod, _ = aot
    frames = 10 * SR if blocksize >= 64 else 3 * SR  # 1-frame blocks: Python calls per frame, keep it short
    steps = [(SR, 180.0), (2 * SR + 7, 150.0)] if mode == "live" else []
    outs, states = [], []
    for fn in (mod.process_blocks, JK.process_blocks):
        eng = _engine(live=mode == "live", music=mode == "music")
        outs.append(_run(fn, eng, frames, blocksize, steps))
        states.append((eng.st.copy(), eng.voices.copy(), eng.events.copy(), eng.ev_idx.copy(), eng.music_idx.copy()))
    assert np.abs(outs[0]).max() > 0.1  # clicks, cues (and music) are there
    assert np.array_equal(outs[0], outs[1]), np.flatnonzero((outs[0] != outs[1]).any(axis=1))[:5]
    for a, b in zip(*states):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("blocksize", BLOCK_SIZES)
def test_straight_to_pcm16_is_the_float_kernel_then_the_conversion(aot, blocksize):
    """process_blocks_pcm16 (what a WAV/FLAC render runs) against process_blocks + to_pcm16, on both backends."""
    mod, _ = aot
    frames = 6 * SR if blocksize >= 64 else SR
    eng = _engine()
    ref_f = np.zeros((frames, 2), dtype=np.float32)
    JK.process_blocks(ref_f, blocksize, *eng._args)
    ref = np.zeros((frames, 2), dtype=np.int16)
    JK._to_pcm16_flat(ref_f.reshape(-1), ref.reshape(-1))
    assert np.abs(ref).max() > 3000
    for fn in (mod.process_blocks_pcm16, JK.process_blocks_pcm16):
        e = _engine()
        out = np.zeros((frames, 2), dtype=np.int16)
        fn(out, blocksize, np.zeros((blocksize, 2), dtype=np.float32), *e._args)
        assert np.array_equal(out, ref)
        assert np.array_equal(e.st, eng.st)


def test_the_c_callbacks_play_the_same_bits(aot):
    """PortAudio's callback from the compiled module (dlsym'd) and numba's cfunc, called as PortAudio calls them."""
    mod, path = aot
    lib = ctypes.CDLL(path)
    addresses = (ctypes.cast(getattr(lib, _aot.CALLBACK_SYMBOL), ctypes.c_void_p).value, JK.pa_callback().address)
    outs, stats = [], []
    for address in addresses:
        eng = _engine(live=True)
        arrays = eng.callback_arrays()
        fn = CB(address)
        out = np.zeros((4 * SR, 2), dtype=np.float32)
        done = 0
        for k, n in enumerate([128, 256, 441, 1024] * 200):
            if done + n > out.shape[0]:
                break
            if k == 300:
                eng.set_target_bpm(183.0)
            block = np.zeros((n, 2), dtype=np.float32)
            assert fn(None, block.ctypes.data, n, None, 4 if k == 7 else 0, arrays.table.ctypes.data) == 0
            out[done:done + n] = block
            done += n
        outs.append(out[:done])
        stats.append(arrays.stats[[L.S_UNDERFLOWS, L.S_CALLBACKS, L.S_FRAMES]].copy())
    assert np.abs(outs[0]).max() > 0.1
    assert np.array_equal(outs[0], outs[1])
    assert np.array_equal(stats[0], stats[1]) and stats[0][0] == 1  # the one underflow flag was counted


def test_pcm16_conversion_is_libsndfiles_floor_on_both_backends(aot):
    mod, _ = aot
    k = (np.arange(-32769, 32770, dtype=np.float64) / 32768.0).astype(np.float32)
    x = np.concatenate([k, np.nextafter(k, np.float32(2)), np.nextafter(k, np.float32(-2)),
                        np.random.default_rng(7).uniform(-1.2, 1.2, 2_000_000).astype(np.float32),
                        np.array([0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0], np.float32)])
    ref = np.clip(np.floor(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    for fn in (mod.to_pcm16_flat, JK._to_pcm16_flat):
        got = np.empty_like(ref)
        fn(x, got)
        assert np.array_equal(got, ref)


def test_tempo_kernels_agree(aot):
    mod, _ = aot
    tm = _map()
    for m in (mod, JK):
        phase = np.zeros_like(tm.sample)
        m.map_phase_at_breakpoints(tm.sample, tm.bpm, float(SR), phase)
        assert np.array_equal(phase, tm.phase)
        out = np.zeros(100)
        n = m.beat_times(tm.sample, tm.bpm, tm.phase, float(SR), float(tm.end_sample), out)
        assert np.array_equal(out[:n], tm.beat_times())


def test_arguments_are_checked_before_the_compiled_module_sees_them(aot):
    """Its wrappers check nothing (a float32 array would be read as float64): metronome.kernels does."""
    tm = _map()
    with pytest.raises(ValueError, match="'out'.*float32"):
        kernels.beat_times(tm.sample, tm.bpm, tm.phase, SR, tm.end_sample, np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match="'out'.*C-contiguous"):
        kernels.beat_times(tm.sample, tm.bpm, tm.phase, SR, tm.end_sample, np.zeros(20)[::2])
    frozen = np.zeros(10)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is read-only"):
        kernels.beat_times(tm.sample, tm.bpm, tm.phase, SR, tm.end_sample, frozen)
    eng = _engine()
    with pytest.raises(ValueError, match="'out'.*float32"):
        kernels.process(np.zeros((64, 2)), 64, eng._args)
    with pytest.raises(ValueError, match="'blocksize': 0"):  # the compiled loop would never end
        kernels.process(np.zeros((64, 2), dtype=np.float32), 0, eng._args)
    with pytest.raises(ValueError, match="'scratch'"):
        kernels.process_pcm16(np.zeros((64, 2), dtype=np.int16), 64, np.zeros((32, 2), dtype=np.float32), eng._args)
    bad = list(eng._args)
    bad[[n for n, _, _ in L.BLOCK_ARGS].index("voices")] = eng.voices.astype(np.int32)
    with pytest.raises(ValueError, match="'voices'"):
        kernels.check_block_args(tuple(bad))
    # A strided output (a channel view of a caller's array) goes through a contiguous copy: the same samples.
    wide = np.zeros((SR, 4), dtype=np.float32)
    _engine().process(wide[:, 1:3])
    ref = np.zeros((SR, 2), dtype=np.float32)
    _engine().process(ref)
    assert np.array_equal(wide[:, 1:3], ref) and not wide[:, [0, 3]].any()


def test_a_module_is_only_ever_loaded_for_the_sources_it_was_built_from(tmp_path):
    for name in _aot.SOURCES:
        shutil.copy(ROOT / "metronome" / name, tmp_path / name)
    same = _aot.source_hash(folder=str(tmp_path))
    assert same == _aot.source_hash()
    with open(tmp_path / "_kernels.py", "a") as f:
        f.write("\n# an edit\n")
    assert _aot.source_hash(folder=str(tmp_path)) != same
    assert _aot.find(_aot.module_name("0" * 16)) is None


def test_without_a_compiler_the_jit_runs_and_says_why(monkeypatch):
    monkeypatch.setattr(kernels, "_R", kernels._Resolved())
    monkeypatch.setattr(_aot, "find", lambda name=None: None)
    monkeypatch.setattr(_aot, "toolchain_problem", lambda: "no C compiler ('gcc' not found)")
    said = []
    r = kernels.resolve(say=said.append)
    assert r.backend == "jit" and r.module is JK and "no C compiler" in r.reason and not r.build_later
    assert said == []  # nothing to wait for: numba's own first-run notice comes from warm_kernels
    assert kernels.build_in_background(say=said.append) is False and said == []
    # ... and the kernels still work through it
    out = np.zeros((SR, 2), dtype=np.float32)
    _engine().process(out)
    assert np.abs(out).max() > 0.1
    monkeypatch.setattr(kernels, "_R", kernels._Resolved())
    monkeypatch.setenv(kernels.MODE_ENV, "aot")
    with pytest.raises(DownbeatError, match="DOWNBEAT_KERNELS=aot: .*no C compiler"):
        kernels.resolve(say=None)
    monkeypatch.setenv(kernels.MODE_ENV, "fast")
    with pytest.raises(InputError, match="DOWNBEAT_KERNELS: 'fast' is not one of auto, aot, jit"):
        kernels.mode()


def test_a_missing_module_runs_the_jit_now_and_is_built_in_the_background_once(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_R", kernels._Resolved())
    monkeypatch.setattr(_aot, "folders", lambda: [str(tmp_path)])  # no module there
    r = kernels.resolve(say=None)
    assert r.backend == "jit" and r.build_later and "built in the background" in r.reason
    started, said = [], []

    class FakePopen:
        def __init__(self, argv, **kw):
            started.append((argv, kw))

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    assert kernels.build_in_background(say=said.append) is True
    (argv, kw), = started
    assert argv == [sys.executable, "-m", "metronome._aot"] and kw["start_new_session"] is True
    assert kw["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)  # the same package, wherever it lives
    assert said == ["compiling the audio engine ahead of time in the background (once): later starts take ~0.2 s"]
    assert kernels.build_in_background(say=said.append) is False and len(started) == 1  # once per process
    # A build already under way (its folder is fresh) is not started twice, by this process or the next one.
    monkeypatch.setattr(kernels, "_R", kernels._Resolved())
    (tmp_path / ".aot-build-x").mkdir()
    r = kernels.resolve(say=None)
    assert r.backend == "jit" and not r.build_later and "another process" in r.reason


def test_build_goes_to_the_first_writable_folder_and_loads(tmp_path, monkeypatch):
    ro = tmp_path / "install-pycache"
    ro.write_text("a file: nothing can be created below it")  # unwritable even for root
    cache = tmp_path / "cache"
    monkeypatch.setattr(_aot, "folders", lambda: [str(ro), str(cache)])
    path = _aot.build()
    assert Path(path).parent == cache and Path(path).name.startswith(_aot.module_name())
    assert _aot.find() == path and not [p for p in cache.iterdir() if p.name.startswith(".aot-build-")]
    mod = _aot.load(path)
    out = np.zeros((SR, 2), dtype=np.float32)
    eng = _engine()
    mod.process_blocks(out, 4096, *eng._args)
    ref = np.zeros((SR, 2), dtype=np.float32)
    JK.process_blocks(ref, 4096, *_engine()._args)
    assert np.array_equal(out, ref)


CHILD = r"""
import atexit, json, sys
def report():
    print(json.dumps({"numba": "numba" in sys.modules, "llvmlite": "llvmlite" in sys.modules}), file=sys.stderr)
atexit.register(report)
import os
_exit = os._exit
os._exit = lambda code: (report(), sys.stderr.flush(), _exit(code))  # a finished render skips the teardown
if sys.argv[1] == "play-warm":
    from metronome import kernels
    from metronome.engine import warm_kernels
    warm_kernels(48000, 2)  # everything play needs before its stream opens, the C callback included
    print(json.dumps(kernels.status()))
else:
    sys.argv[0] = "downbeat"
    from metronome.entry import main
    main()
"""


def _child(*args, env_extra=None, cwd=None):
    env = dict(os.environ, **(env_extra or {}))
    r = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env,
                       cwd=cwd or ROOT, timeout=600)
    return r, json.loads(r.stderr.strip().splitlines()[-1])


def test_render_and_play_warm_up_never_import_numba_and_the_jit_renders_the_same_file(aot, tmp_path):
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 300, grade_pct: 0}, {distance_m: 300, grade_pct: -12}]\n")
    r, mods = _child("render", str(course), "-o", str(tmp_path / "aot.wav"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert mods == {"numba": False, "llvmlite": False}
    r, mods = _child("render", str(course), "-o", str(tmp_path / "jit.wav"), "--quiet",
                     env_extra={kernels.MODE_ENV: "jit"})
    assert r.returncode == 0, r.stderr
    assert mods["numba"] is True  # the fallback really is the JIT
    assert (tmp_path / "aot.wav").read_bytes() == (tmp_path / "jit.wav").read_bytes()
    r, mods = _child("play-warm")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backend"] == "aot" and mods == {"numba": False, "llvmlite": False}


def test_a_first_run_without_the_install_step_plays_through_the_jit_then_starts_compiled(tmp_path):
    """A plain ``pip install`` (no ``python -m metronome._aot``): the first command runs the JIT (a first run of
    ~3.5 s, not ~9 s of building), builds the module in the background once it is done; the next loads it."""
    root = tmp_path / "install"
    for pkg in ("metronome", "cues", "profiles"):
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 200, grade_pct: 0}, {distance_m: 200, grade_pct: -12}]\n")
    env = {"PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(tmp_path / "numba"), kernels.MODE_ENV: "auto"}
    r, mods = _child("render", str(course), "-o", str(tmp_path / "first.wav"), "--quiet", env_extra=env,
                     cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert mods["numba"] is True and "ahead of time in the background" in r.stderr, r.stderr
    pycache = root / "metronome" / "__pycache__"
    deadline = time.monotonic() + 300
    while not list(pycache.glob("_kernels_aot_*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(pycache.glob("_kernels_aot_*")), "the background build wrote no module"
    while list(pycache.glob(".aot-build-*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # its temporary folder goes once the module is in place
    r, mods = _child("render", str(course), "-o", str(tmp_path / "second.wav"), "--quiet", env_extra=env,
                     cwd=tmp_path)
    assert r.returncode == 0 and "background" not in r.stderr, r.stderr
    assert mods == {"numba": False, "llvmlite": False}
    assert (tmp_path / "first.wav").read_bytes() == (tmp_path / "second.wav").read_bytes()


def test_a_bad_backend_name_is_bad_input_exit_2_one_line(tmp_path):
    course = tmp_path / "c.yaml"
    course.write_text("segments: [{distance_m: 200, grade_pct: 0}]\n")
    r, _ = _child("render", str(course), "-o", str(tmp_path / "x.wav"), "--quiet",
                  env_extra={kernels.MODE_ENV: "fast"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[0] == "downbeat: error: DOWNBEAT_KERNELS: 'fast' is not one of auto, aot, jit"
    assert "Traceback" not in r.stderr and not list(tmp_path.glob("*.wav")) and not list(tmp_path.glob(".*partial"))
