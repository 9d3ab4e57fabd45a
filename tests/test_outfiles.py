"""What `render` and `profile show --png` write (metronome/outfiles.py): WAV over 4 GiB, size and free-space checks,
a full disk, outputs that are inputs, and the temporaries of killed renders (issue 12, items 1, 4, 5, 11)."""

import collections
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

import metronome.outfiles as outfiles

from tests.support.cli import run_main

COURSE = "name: t\nsegments:\n  - {distance_m: 300, grade_pct: 0}\n  - {distance_m: 400, grade_pct: -8}\n"
LONG = "name: long\nsegments:\n  - {distance_m: 40000, grade_pct: -5}\n"
SENTINEL = b"an earlier good file: must survive"


def one_line_exit_2(code, err, *needles):
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def partials(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".downbeat-") or p.suffix == ".tmp")


@pytest.fixture()
def course(tmp_path):
    p = tmp_path / "course.yaml"
    p.write_text(COURSE)
    return p


# ----------------------------------------------------------------------------------------------------------------
# Item 1: WAV over 4 GiB -> RF64; size/time note; refuse what the disk cannot hold
# ----------------------------------------------------------------------------------------------------------------
def test_wav_over_the_riff_limit_is_written_as_rf64_whole(course, tmp_path, capsys, monkeypatch):
    """With the 4 GiB limit lowered to 100 kB, a 4-minute WAV must come back whole, as RF64, with a warning."""
    plain = tmp_path / "plain.wav"
    code, _, err = run_main(["render", course, "-o", plain, "--no-cues", "--quiet"], capsys)
    assert code == 0, err
    assert sf.info(str(plain)).format == "WAV" and "RF64" not in err
    monkeypatch.setattr(outfiles, "WAV_MAX_DATA_BYTES", 100_000)
    big = tmp_path / "big.wav"
    code, _, err = run_main(["render", course, "-o", big, "--no-cues", "--quiet"], capsys)
    assert code == 0, err
    info = sf.info(str(big))
    assert info.format == "RF64"
    assert info.frames == sf.info(str(plain)).frames
    assert np.array_equal(sf.read(str(big), dtype="int16")[0], sf.read(str(plain), dtype="int16")[0])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("downbeat: warning:") and "RF64" in lines[0], err


def test_a_long_render_says_how_big_and_how_long_first():
    est = outfiles.estimate("ultra.wav", "WAV", "PCM_16", frames=92 * 3600 * 48000, samplerate=48000, channels=2)
    assert est.container == "RF64" and est.large
    assert 63e9 < est.audio_bytes < 64e9
    note = est.note("ultra.wav")
    assert "92.0 h" in note and "63.6 GB" in note and "\n" not in note
    small = outfiles.estimate("s.flac", "FLAC", "PCM_16", frames=20 * 60 * 48000, samplerate=48000, channels=2)
    assert small.container == "FLAC" and not small.large and small.warnings == ()


def test_a_render_the_disk_cannot_hold_is_refused_before_writing(course, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: collections.namedtuple("U", "total used free")(
        10 ** 9, 10 ** 9 - 1000, 1000))
    out = tmp_path / "out.wav"
    out.write_bytes(SENTINEL)
    code, _, err = run_main(["render", course, "-o", out, "--no-cues", "--quiet"], capsys)
    one_line_exit_2(code, err, str(out), "free", "1.0 kB")
    assert out.read_bytes() == SENTINEL and partials(tmp_path) == []


def test_the_note_before_a_large_render_is_one_line(course, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outfiles, "LARGE_AUDIO_S", 60.0)
    code, _, err = run_main(["render", course, "-o", tmp_path / "o.flac", "--no-cues"], capsys)
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("downbeat: note:")]
    assert len(notes) == 1 and "o.flac" in notes[0] and "min of audio" in notes[0], err


# ----------------------------------------------------------------------------------------------------------------
# Item 4: a full disk (a 2 MB tmpfs in a private mount namespace)
# ----------------------------------------------------------------------------------------------------------------
def _tmpfs_ok(folder):
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs -o size=1m tmpfs '{folder}'"], capture_output=True)
    return r.returncode == 0


@pytest.fixture()
def full_disk(tmp_path):
    """Run a command with ``DISK`` a 2 MB tmpfs (gone when the command ends); ``prepare`` runs first inside."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _tmpfs_ok(disk):
        pytest.skip("unshare -m / mount -t tmpfs not permitted here (needs root or user namespaces)")

    def run(args, prepare="", python_prelude=""):
        # The free-space check before rendering would refuse most of these renders up front; it is switched off so
        # that the write itself meets the full disk (another program can fill the disk after the check).
        code = ("import sys, metronome.outfiles as o\n" + python_prelude +
                "from metronome.cli import main\nmain(sys.argv[1:])")
        script = (f"mount -t tmpfs -o size=2m tmpfs '{disk}' && {prepare} code=\"$1\"; shift; "
                  "exec \"$0\" -c \"$code\" \"$@\"")
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable, code,
               *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)

    return disk, run


NO_PREFLIGHT = "o.check_free_space = lambda needs: None\n"


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
def test_full_disk_audio_is_one_line_naming_the_file(tmp_path, full_disk, ext):
    disk, run = full_disk
    (tmp_path / "long.yaml").write_text(LONG)
    out = disk / f"out{ext}"
    # The old file, and what the test sees after the namespace is gone, both live on the tmpfs: report them from
    # inside with a second command after the render.
    res = run(["render", "long.yaml", "-o", out, "--no-cues", "--quiet"],
              prepare=f"printf '%s' '{SENTINEL.decode()}' > '{out}' &&", python_prelude=NO_PREFLIGHT)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(out) in err and "no space left" in err, err


def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, full_disk):
    disk, run = full_disk
    (tmp_path / "long.yaml").write_text(LONG)
    out = disk / "out.wav"
    check = (f"import os; d='{disk}'; print(sorted(os.listdir(d))); print(open('{out}','rb').read().decode())")
    prelude = NO_PREFLIGHT + "import atexit\natexit.register(lambda: exec(%r))\n" % check
    res = run(["render", "long.yaml", "-o", out, "--no-cues", "--quiet"],
              prepare=f"printf '%s' '{SENTINEL.decode()}' > '{out}' &&", python_prelude=prelude)
    assert res.returncode == 2, res.stderr[-2000:]
    listing, content = res.stdout.strip().splitlines()
    assert listing == "['out.wav']" and content == SENTINEL.decode(), res.stdout


def test_full_disk_on_the_events_csv_names_it(tmp_path, full_disk):
    disk, run = full_disk
    (tmp_path / "course.yaml").write_text(COURSE)
    ev = disk / "ev.csv"
    res = run(["render", "course.yaml", "-o", tmp_path / "out.ogg", "--events", ev, "--no-cues", "--quiet"],
              prepare=f"head -c 2097152 /dev/zero > '{disk}/fill' 2>/dev/null;", python_prelude=NO_PREFLIGHT)
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and str(ev) in err and "no space left" in err, err
    assert not (tmp_path / "out.ogg").exists() and partials(tmp_path) == []


def test_full_disk_on_the_png_names_it(tmp_path, full_disk):
    disk, run = full_disk
    png = disk / "plot.png"
    res = run(["profile", "show", "demo-descent", "--no-cues", "--quiet", "--png", png],
              prepare=f"head -c 2097152 /dev/zero > '{disk}/fill' 2>/dev/null;")
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and str(png) in err and "no space left" in err, err


def test_free_space_is_checked_for_real_before_writing(tmp_path, full_disk):
    """No monkeypatching: a 15-minute WAV (~170 MB) into a 2 MB disk is refused up front."""
    disk, run = full_disk
    (tmp_path / "c.yaml").write_text("segments: [{distance_m: 3000, grade_pct: -5}]\n")
    res = run(["render", "c.yaml", "-o", disk / "o.wav", "--no-cues", "--quiet"])
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "needs about" in err and "free" in err and "o.wav" in err, err


# ----------------------------------------------------------------------------------------------------------------
# Item 5: an output that is an input
# ----------------------------------------------------------------------------------------------------------------
def test_events_over_the_course_is_refused_and_the_course_kept(course, tmp_path, capsys):
    code, _, err = run_main(["render", course, "-o", tmp_path / "o.wav", "--events", course, "--quiet"], capsys)
    one_line_exit_2(code, err, "--events", "course.yaml")
    assert course.read_text() == COURSE and not (tmp_path / "o.wav").exists() and partials(tmp_path) == []


def test_hard_and_symbolic_links_to_an_input_are_refused(course, tmp_path, capsys):
    hard = tmp_path / "course-link.wav"
    os.link(course, hard)
    code, _, err = run_main(["render", course, "-o", hard, "--quiet"], capsys)
    one_line_exit_2(code, err, "--output", "course-link.wav")
    sym = tmp_path / "ev.csv"
    sym.symlink_to(course)
    code, _, err = run_main(["render", course, "-o", tmp_path / "o.wav", "--events", sym, "--quiet"], capsys)
    one_line_exit_2(code, err, "--events")
    assert course.read_text() == COURSE and hard.read_text() == COURSE


def test_events_over_a_voice_pack_file_is_refused(course, tmp_path, capsys):
    pack = tmp_path / "pack"
    pack.mkdir()
    wav = pack / "pick_line.wav"
    wav.write_bytes(SENTINEL)
    code, _, err = run_main(["render", course, "-o", tmp_path / "o.wav", "--events", wav, "--voice-pack", pack,
                             "--quiet"], capsys)
    one_line_exit_2(code, err, "--events", "pick_line.wav")
    assert wav.read_bytes() == SENTINEL


def test_png_over_the_profile_is_refused(course, tmp_path, capsys):
    png = tmp_path / "course.png"
    os.link(course, png)
    code, _, err = run_main(["profile", "show", course, "--no-cues", "--png", png], capsys)
    one_line_exit_2(code, err, "--png", "course.png")
    assert course.read_text() == COURSE


# ----------------------------------------------------------------------------------------------------------------
# Item 11: temporaries of killed renders
# ----------------------------------------------------------------------------------------------------------------
def test_partials_of_killed_renders_are_removed_by_the_next_render(tmp_path):
    (tmp_path / "long.yaml").write_text(LONG)
    (tmp_path / "course.yaml").write_text(COURSE)
    proc = subprocess.Popen([sys.executable, "-m", "metronome.cli", "render", "long.yaml", "-o", "long.wav",
                             "--quiet", "--no-cues", "--blocksize", "1"], cwd=tmp_path, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while not partials(tmp_path) and proc.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.02)
    left = partials(tmp_path)
    assert left and all(n.startswith(f".downbeat-{proc.pid}-") for n in left), left  # the writer's pid
    proc.kill()
    proc.wait()
    assert partials(tmp_path) == left  # SIGKILL: nothing could clean up
    live = tmp_path / f".downbeat-{os.getpid()}-abcd1234.wav.partial"  # a render still running (this process)
    live.write_bytes(b"x")
    res = subprocess.run([sys.executable, "-m", "metronome.cli", "render", "course.yaml", "-o", "out.wav",
                          "--quiet", "--no-cues"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "removed 1 temporary file" in lines[0] and left[0] in lines[0], res.stderr
    assert partials(tmp_path) == [live.name]


def test_an_old_style_partial_is_removed_only_when_untouched_for_an_hour(tmp_path):
    old = tmp_path / ".downbeat-k2j4_x9a.wav.partial"
    fresh = tmp_path / ".downbeat-zz81qq0p.wav.partial"
    for p in (old, fresh):
        p.write_bytes(b"x" * 10)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    lines = outfiles.clean_stale_partials(str(tmp_path))
    assert len(lines) == 1 and old.name in lines[0]
    assert not old.exists() and fresh.exists()
    assert outfiles.clean_stale_partials(str(tmp_path)) == []
