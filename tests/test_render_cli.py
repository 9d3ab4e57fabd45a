"""`downbeat render` end to end: onsets == events CSV == analytic beat times; block sizes; bad input; memory."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from metronome.session import load_profile
from metronome.tempo import TempoSettings, tempo_map_from_profile

from tests.support import naive

SR = 48000
COURSE = """\
name: test-descent
kind: course
segments:
  - {distance_m: 300, grade_pct: 0}
  - {distance_m: 500, grade_pct: -10}
  - {distance_m: 150, grade_pct: 3}
  - {distance_m: 200, grade_pct: -6}
"""


def downbeat(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "metronome.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def assert_clean_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.fixture()
def course(tmp_path):
    p = tmp_path / "course.yaml"
    p.write_text(COURSE)
    return p


def read_events(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_render_onsets_equal_events_and_analytic_beats(course, tmp_path):
    out, ev = tmp_path / "out.wav", tmp_path / "ev.csv"
    res = downbeat("render", course, "-o", out, "--events", ev, "--subtype", "FLOAT", "--no-cues", "--quiet")
    assert res.returncode == 0, res.stderr
    x, sr = sf.read(out, dtype="float32")
    assert sr == SR and x.shape[1] == 2
    rows = read_events(ev)
    assert list(rows[0]) == ["kind", "sample", "time_s", "bpm", "clip", "distance_m"]
    beats = np.array([int(r["sample"]) for r in rows if r["kind"] == "beat"])
    # Analytic: the tempo map's integral, solved independently by bisection.
    tm = tempo_map_from_profile(load_profile(str(course)), TempoSettings(), SR)
    naive.assert_rounded(beats, naive.beat_times(tm.sample, tm.bpm, SR, tm.end_sample))
    assert np.array_equal(naive.onsets(x), beats)
    # The course really changes tempo: 170 on the flat, 176.8 at -10 %, ramps within 0.4 %/beat.
    bpms = np.array([float(r["bpm"]) for r in rows if r["kind"] == "beat"])
    assert bpms.min() == pytest.approx(170.0) and bpms.max() == pytest.approx(176.8)
    assert tm.max_change_per_beat() <= 0.004 + 1e-9
    assert [r["clip"] for r in rows[:5]] == ["accent", "normal", "normal", "normal", "accent"]


def test_render_bit_identical_across_cli_block_sizes(course, tmp_path):
    digests = []
    for bs in [64, 65, 128, 8192, 8193]:
        out = tmp_path / f"b{bs}.flac"
        res = downbeat("render", course, "-o", out, "--blocksize", bs, "--no-cues", "--quiet")
        assert res.returncode == 0, res.stderr
        digests.append(sf.read(out, dtype="int32")[0])
    for d in digests[1:]:
        assert np.array_equal(digests[0], d)


def test_render_bundled_default_profile_by_name(tmp_path):
    out = tmp_path / "demo.flac"
    res = downbeat("render", "-o", out, "--quiet", "--no-cues", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = sf.info(out)
    assert info.duration > 300  # the demo descent is a real run, not a toy


@pytest.mark.parametrize("content,needles", [
    ("segments: [{distance_m: 100, grade_pct: steep}]", ["grade_pct", "steep"]),
    ("segments: []", ["segments"]),
    ("name: [unclosed", ["course.yaml"]),
    ("segments: [{distance_m: -5, grade_pct: 0}]", ["distance_m"]),
])
def test_bad_profile_is_one_line_exit_2_and_leaves_no_file(tmp_path, content, needles):
    p = tmp_path / "course.yaml"
    p.write_text(content)
    out = tmp_path / "out.wav"
    res = downbeat("render", p, "-o", out, "--quiet")
    assert_clean_error(res, "course.yaml", *needles)
    assert sorted(os.listdir(tmp_path)) == ["course.yaml"]


@pytest.mark.parametrize("args,needles", [
    (["-o", "x.mp3"], ["x.mp3", ".mp3"]),
    (["-o", "x.wav", "--samplerate", "1000"], ["--samplerate", "1000"]),
    (["-o", "x.wav", "--base-cadence", "900"], ["--base-cadence", "900"]),
    (["-o", "x.wav", "--volume-db", "6"], ["--volume-db", "6"]),
    (["-o", "x.wav", "--blocksize", "0"], ["--blocksize", "0"]),
    (["-o", "x.wav", "--upper-cap", "1.5"], ["--upper-cap", "1.5"]),
    (["-o", "x.wav", "--base-cadence", "abc"], ["--base-cadence", "abc"]),
    (["-o", "no/such/dir/x.wav"], ["no/such/dir"]),
    (["-o", "x.flac", "--subtype", "FLOAT"], ["--subtype", "FLOAT"]),
])
def test_bad_flags_are_one_line_exit_2(course, tmp_path, args, needles):
    res = downbeat("render", course, *args, "--quiet", cwd=tmp_path)
    assert_clean_error(res, *needles)
    assert sorted(os.listdir(tmp_path)) == ["course.yaml"]


def test_missing_profile_names_it(tmp_path):
    res = downbeat("render", tmp_path / "nope.gpx", "-o", tmp_path / "x.wav")
    assert_clean_error(res, "nope.gpx")


def test_failed_render_keeps_existing_output_intact(course, tmp_path):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments: [{distance_m: 100, grade_pct: 99}]")
    res = downbeat("render", bad, "-o", out, "--quiet")
    assert_clean_error(res, "bad.yaml", "99")
    assert out.read_bytes() == b"precious"


def test_interrupted_render_leaves_no_partial_file(course, tmp_path):
    """A render killed mid-way (SIGINT) leaves neither the output nor its temporary file."""
    import signal
    import time

    long_course = tmp_path / "long.yaml"
    long_course.write_text("segments: [{distance_m: 40000, grade_pct: -5}]")
    out = tmp_path / "out.wav"
    proc = subprocess.Popen([sys.executable, "-m", "metronome.cli", "render", str(long_course), "-o", str(out),
                             "--quiet", "--blocksize", "64"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(n.endswith(".partial") for n in os.listdir(tmp_path)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["course.yaml", "long.yaml"]


def test_no_arguments_prints_guide():
    res = downbeat()
    assert res.returncode == 0
    assert "downbeat play demo-descent" in res.stdout and "render" in res.stdout


def peak_rss_kib(args):
    code = ("import resource, sys; from metronome.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip().splitlines()[-1])


def test_render_memory_does_not_grow_with_session_length(tmp_path):
    """6 min vs 60 min of audio: the render streams to disk, so peak RSS is the same within a few MB."""
    short = tmp_path / "short.yaml"
    short.write_text("segments: [{distance_m: 1100, grade_pct: -6}]")  # ~6 min
    long = tmp_path / "long.yaml"
    long.write_text("segments: [{distance_m: 12500, grade_pct: -6}]")  # ~60 min
    rss_short = peak_rss_kib(["render", short, "-o", tmp_path / "s.flac", "--quiet", "--no-cues"])
    rss_long = peak_rss_kib(["render", long, "-o", tmp_path / "l.flac", "--quiet", "--no-cues"])
    assert sf.info(tmp_path / "l.flac").duration > 55 * 60
    assert rss_long - rss_short < 16 * 1024, (rss_short, rss_long)
