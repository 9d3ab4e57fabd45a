"""Fuzz the ``downbeat`` command line (issue 7): random flag values, output paths and profiles.

Contract (README, DESIGN.md): every run ends in success (exit 0, a readable audio file) or bad input (exit 2, one
line on stderr, no traceback), never a hang, and never a partial output file: the renderer writes
``.downbeat-*.partial`` beside the output and renames it only on success, so after any failure neither the output
nor a temporary may exist, and a file already at the output path is left untouched.

Most cases run in process through :func:`metronome.cli.main` (fast); a few run as real processes to prove the
exit code, the single stderr line and the clean folder end to end.  The one case kept out of the random loop is
:func:`crashes_the_process` (the OGG segfault this suite found), tested in a real process instead.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from metronome.cli import main

from tests.support.fuzz import Hang, budget, deadline, mutate_bytes, report

TINY_COURSE = "name: tiny\nsegments:\n  - {distance_m: 30, grade_pct: 0}\n  - {distance_m: 40, grade_pct: -12}\n"
SENTINEL = b"an earlier good render: must survive a failed one"


def run_main(argv, capsys) -> tuple[int, str, str]:
    """Run ``downbeat ARGV`` in process; return (exit code, stdout, stderr).

    ``main`` always ends in ``sys.exit``; any other exception escaping it is the bug this suite hunts (the
    console script would print a traceback and exit 1).  ``main`` sets SIGPIPE to its default action for
    ``downbeat ... | head``; that is restored so the test process keeps Python's behaviour.
    """
    old_pipe = signal.getsignal(signal.SIGPIPE)
    try:
        with deadline(60.0):
            main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Hang:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported with the argv that caused it
        out, err = capsys.readouterr()
        raise AssertionError(f"downbeat {' '.join(map(str, argv))}: {type(exc).__name__} escaped main(): "
                             f"{exc!s:.300}") from exc
    finally:
        signal.signal(signal.SIGPIPE, old_pipe)
    out, err = capsys.readouterr()
    return code, out, err


def partials(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".downbeat-*"))


def assert_one_line_exit_2(code, err, argv):
    assert code == 2, (code, err, argv)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("downbeat"), (err, argv)
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------------------------------------
# Random command lines
# ----------------------------------------------------------------------------------------------------------------
def _float_value(rng: random.Random, lo: float, hi: float) -> str:
    pick = rng.random()
    if pick < 0.45:
        return repr(rng.uniform(lo, hi))
    if pick < 0.6:
        return repr(rng.choice([lo, hi, lo - 1e-9, hi + 1e-9, (lo + hi) / 2]))
    return rng.choice(["nan", "NaN", "inf", "-inf", "1e309", "-1e309", "", " ", "abc", "0x10", "1_0", "1e3",
                       "-0", "0", "170.0.0", "١٧٠", "1" * 400, "-" + "9" * 30, "+5", "1e-400"])


def _int_value(rng: random.Random, lo: int, hi: int) -> str:
    pick = rng.random()
    if pick < 0.45:
        return str(rng.randint(lo, hi))
    if pick < 0.6:
        return str(rng.choice([lo, hi, lo - 1, hi + 1, 0, -1]))
    return rng.choice(["1.5", "", "abc", "9" * 30, "-" + "9" * 30, "0x10", "1e3", " 4", "nan", "١", "+3", "1_0"])


FLAGS = {
    "--base-cadence": lambda r: _float_value(r, 60, 240),
    "--samplerate": lambda r: r.choice([_int_value(r, 8000, 384000), "8000", "44100", "48000", "96000", "22050"]),
    "--volume-db": lambda r: _float_value(r, -60, 0),
    "--ceiling-db": lambda r: _float_value(r, -60, 0),
    "--accent-every": lambda r: _int_value(r, 0, 64),
    "--blocksize": lambda r: _int_value(r, 1, 1 << 20) if r.random() < 0.5 else str(r.choice([1, 7, 64, 4096])),
    "--upper-cap": lambda r: _float_value(r, 1.0, 1.10),
    "--channels": lambda r: _int_value(r, 1, 2),
    "--subtype": lambda r: r.choice(["PCM_16", "pcm_24", "FLOAT", "VORBIS", "ULAW", "", "PCM_32", "float"]),
    # issue 16; short finish times only (a valid one renders that long)
    "--finish-time": lambda r: r.choice([f"{r.randint(0, 3)}:{r.randint(0, 59):02d}", "0:00:45", "0:01:00.5", "abc",
                                         "", "1:60", "-1:00", "0:00:0.5", "nan:00", "1:2:3:4", "0:05", "١:٠٠"]),
    "--anchors": lambda r: r.choice(["1km", "100m", "250", "0.1km", "99m", "abc", "", "1mile", "nan", "1e3", "-500",
                                     "1" * 400 + "km"]),
}


def random_argv(rng: random.Random, folder: Path) -> tuple[list, Path, Path | None]:
    """A random ``render`` command line; returns (argv, output path, events path or None)."""
    profile = rng.choices([str(folder / "tiny.yaml"), "demo-descent", str(folder / "missing.yaml"),
                           str(folder / "bad.yaml"), str(folder), ""], weights=[12, 1, 1, 1, 1, 1])[0]
    ext = rng.choice([".wav", ".wav", ".flac", ".ogg", ".mp3", "", ".WAV"])
    where = rng.choices(["here", "missing_dir", "is_dir", "existing", "weird_name"], weights=[10, 1, 1, 2, 1])[0]
    if where == "missing_dir":
        out = folder / "no" / "such" / f"out{ext}"
    elif where == "is_dir":
        out = folder / f"adir{ext}"
        out.mkdir(exist_ok=True)
    elif where == "weird_name":
        out = folder / f"sp ace\u00e9\u202e-{rng.randrange(1000)}{ext}"
    else:
        out = folder / f"out{rng.randrange(10 ** 6)}{ext}"
        if where == "existing":
            out.write_bytes(SENTINEL)
    argv = ["render", profile, "-o", out]
    events = None
    if rng.random() < 0.3:
        events = rng.choice([folder / f"ev{rng.randrange(10 ** 6)}.csv", folder / "evdir"])
        if events.name == "evdir":
            events.mkdir(exist_ok=True)
        argv += ["--events", events]
    for flag in rng.sample(sorted(FLAGS), rng.randint(0, 4)):
        argv += [flag, FLAGS[flag](rng)]
    if rng.random() < 0.7:
        argv.append("--no-cues")
    argv.append(rng.choice(["--quiet", "--json", "--quiet"]))
    if rng.random() < 0.05:
        argv.append(rng.choice(["--bogus", "--samplerate", "-o"]))  # unknown flag / missing value
    return argv, out, events


def _flag(argv, name, default):
    return argv[argv.index(name) + 1] if name in argv[:-1] and argv.index(name) + 1 < len(argv) else default


def crashes_the_process(argv, out: Path) -> bool:
    """OGG above 192 kHz segfaulted inside libvorbis (found by this suite, now refused with exit 2).  It is tested
    in a real process below; in process, a regression would kill the whole test session instead of failing."""
    try:
        return out.suffix == ".ogg" and int(_flag(argv, "--samplerate", "48000")) > 192000
    except ValueError:
        return False


def test_random_render_command_lines(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    (tmp_path / "bad.yaml").write_text("segments: [{distance_m: 100, grade_pct: steep}]\n")
    n = budget(150)
    tally = {"rendered": 0, "exit 2": 0, "left to the subprocess test": 0}
    for i in range(n):
        rng = random.Random(f"cli-{i}")
        argv, out, events = random_argv(rng, tmp_path)
        if crashes_the_process(argv, out):
            tally["left to the subprocess test"] += 1
            continue
        existed = out.is_file()
        code, stdout, err = run_main(argv, capsys)
        where = f"case {i}: downbeat {' '.join(map(str, argv))}"
        assert code in (0, 2), (where, code, err)
        assert partials(tmp_path) == [], (where, partials(tmp_path))
        if code == 2:
            assert_one_line_exit_2(code, err, where)
            if existed:
                assert out.read_bytes() == SENTINEL, where  # a failed render never clobbers a good file
            else:
                assert not out.exists() or out.is_dir(), where
            tally["exit 2"] += 1
            continue
        info = sf.info(str(out))
        assert info.samplerate == int(_flag(argv, "--samplerate", "48000")), where
        assert info.channels == int(_flag(argv, "--channels", "2")), where
        if "--json" in argv:
            summary = json.loads(stdout)
            # Never above the ceiling, whatever the flags (the summary rounds to 0.01 dB).
            assert summary["peak_dbfs"] <= float(_flag(argv, "--ceiling-db", "-6")) + 0.01, where
        if events is not None:
            assert events.read_text().startswith("kind,sample,time_s,bpm,clip"), where
        tally["rendered"] += 1
    report("cli:render flags and paths (in process)", tally)
    assert sum(tally.values()) == n
    assert tally["rendered"] > 0 and tally["exit 2"] > 0, tally


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_every_flag_rejects_garbage_with_exit_2(tmp_path, capsys, flag):
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    bad = {"--subtype": "ULAW"}.get(flag, "nan" if flag in ("--base-cadence", "--volume-db", "--ceiling-db",
                                                            "--upper-cap") else "abc")
    out = tmp_path / "out.wav"
    code, _, err = run_main(["render", tmp_path / "tiny.yaml", "-o", out, flag, bad, "--quiet"], capsys)
    assert_one_line_exit_2(code, err, flag)
    assert flag in err or bad in err
    assert not out.exists() and partials(tmp_path) == []


@pytest.mark.parametrize("value", ["0.0001", "0.5", "6", "inf", "1e309"])
def test_positive_volume_is_refused(tmp_path, capsys, value):
    """Never positive gain on the runner's system: --volume-db above 0 is bad input (exit 2), not clamped."""
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    out = tmp_path / "out.wav"
    code, _, err = run_main(["render", tmp_path / "tiny.yaml", "-o", out, "--volume-db", value, "--quiet"], capsys)
    assert_one_line_exit_2(code, err, value)
    assert "--volume-db" in err and not out.exists()


# ----------------------------------------------------------------------------------------------------------------
# Real processes: exit code, one line, no traceback, no partial file
# ----------------------------------------------------------------------------------------------------------------
def downbeat(*args, cwd, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "metronome.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, **kw)


def _mutated(name: str, i: int) -> bytes:
    data = (Path(__file__).parent / "data" / name).read_bytes()
    return mutate_bytes(data, random.Random(f"proc-{name}-{i}"))[0]


SUBPROCESS_CASES = [
    ("base-cadence", ["--base-cadence", "1e309"]),
    ("samplerate", ["--samplerate", "7999"]),
    ("volume", ["--volume-db", "3"]),
    ("ceiling", ["--ceiling-db", "nan"]),
    ("accent", ["--accent-every", "65"]),
    ("blocksize", ["--blocksize", "0"]),
    ("upper-cap", ["--upper-cap", "1.5"]),
    ("output-ext", ["-o", "out.mp3"]),
    ("output-dir", ["-o", "no/such/dir/out.wav"]),
    ("events-dir", ["--events", "."]),
]


@pytest.mark.parametrize("name,extra", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_bad_flags_in_a_real_process(tmp_path, name, extra):
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    argv = ["render", "tiny.yaml", "-o", "out.wav", "--quiet", "--no-cues", *extra]
    res = downbeat(*argv, cwd=tmp_path)
    assert_one_line_exit_2(res.returncode, res.stderr, argv)
    assert res.stdout == ""
    assert not any(p.suffix in (".wav", ".mp3") for p in tmp_path.rglob("*")), list(tmp_path.rglob("*"))
    assert partials(tmp_path) == []


@pytest.mark.parametrize("name", ["Mojstrovka.gpx", "garmin-fenix-5-run.fit", "cerknicko-jezero.tcx"])
def test_corrupt_profiles_in_a_real_process(tmp_path, name):
    """Mutated real files through the whole CLI: every run is a clean exit 0 or 2 with nothing left behind."""
    outcomes = []
    for i in range(3):
        bad = tmp_path / f"bad{i}{Path(name).suffix}"
        bad.write_bytes(_mutated(name, i))
        res = downbeat("render", bad.name, "-o", f"out{i}.wav", "--quiet", "--no-cues", cwd=tmp_path)
        assert res.returncode in (0, 2), res.stderr
        assert "Traceback" not in res.stderr
        if res.returncode == 2:
            assert len(res.stderr.strip().splitlines()) == 1, res.stderr
            assert not (tmp_path / f"out{i}.wav").exists()
        outcomes.append(res.returncode)
        assert partials(tmp_path) == []
    report(f"cli:corrupt {Path(name).suffix} (subprocess)", {f"exit {c}": outcomes.count(c) for c in set(outcomes)})


def test_ctrl_c_mid_render_leaves_nothing(tmp_path):
    """SIGINT while rendering a long course: exit 130, no output, no temporary file."""
    (tmp_path / "long.yaml").write_text("name: long\nsegments:\n  - {distance_m: 60000, grade_pct: -5}\n")
    proc = subprocess.Popen([sys.executable, "-m", "metronome.cli", "render", "long.yaml", "-o", "long.flac",
                             "--quiet", "--no-cues", "--samplerate", "96000"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until the render has really started (its temporary exists), then interrupt it.
    t0 = time.monotonic()
    while not partials(tmp_path) and proc.poll() is None and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    assert partials(tmp_path), "the render never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert partials(tmp_path) == [] and not (tmp_path / "long.flac").exists()


# ----------------------------------------------------------------------------------------------------------------
# Bugs this suite found in metronome/* (fixed there in a0d6714; these keep them fixed)
# ----------------------------------------------------------------------------------------------------------------
def test_ogg_at_high_samplerate_is_bad_input_not_a_crash(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    res = downbeat("render", "tiny.yaml", "-o", "out.ogg", "--samplerate", "256000", "--quiet", "--no-cues",
                   cwd=tmp_path)
    assert partials(tmp_path) == [], f"exit {res.returncode} left {partials(tmp_path)}"
    assert_one_line_exit_2(res.returncode, res.stderr, "ogg 256 kHz")


def test_bad_events_folder_leaves_no_partial_audio(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    code, _, err = run_main(["render", tmp_path / "tiny.yaml", "-o", tmp_path / "out.wav", "--events",
                             tmp_path / "nope" / "ev.csv", "--quiet", "--no-cues"], capsys)
    assert_one_line_exit_2(code, err, "events in a missing folder")
    assert partials(tmp_path) == []


def test_events_path_equal_to_output_is_refused(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_COURSE)
    out = tmp_path / "out.wav"
    code, _, err = run_main(["render", tmp_path / "tiny.yaml", "-o", out, "--events", out, "--quiet", "--no-cues"],
                            capsys)
    # Either refuse (exit 2) or at least leave an audio file at -o; today it is a CSV named out.wav.
    if code == 0:
        sf.info(str(out))
    else:
        assert_one_line_exit_2(code, err, "--events == -o")


def test_sigterm_mid_render_leaves_nothing(tmp_path):
    (tmp_path / "long.yaml").write_text("name: long\nsegments:\n  - {distance_m: 60000, grade_pct: -5}\n")
    proc = subprocess.Popen([sys.executable, "-m", "metronome.cli", "render", "long.yaml", "-o", "long.flac",
                             "--quiet", "--no-cues", "--samplerate", "96000"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not partials(tmp_path) and proc.poll() is None and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    assert partials(tmp_path), "the render never started"
    proc.terminate()
    proc.communicate(timeout=60)
    assert partials(tmp_path) == [] and not (tmp_path / "long.flac").exists()
