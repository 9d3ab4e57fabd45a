"""`downbeat render --finish-time / --anchors / --split` end to end (metronome/cli/travel.py, issue 16)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from cues.anchors import AnchorRules
from metronome.export.finish import parse_finish_time
from metronome.session import load_profile

from tests.support.cli import run_main

SR = 16000  # a lower rate keeps the renders quick; nothing here depends on it


def _events(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _render(capsys, *args):
    code, out, err = run_main(["render", *args, "--samplerate", SR, "--json"], capsys)
    assert code == 0, err
    return json.loads(out), err


@pytest.mark.parametrize("text, seconds", [("1:45:00", 6300.0), ("25:30", 1530.0), ("90:00", 5400.0),
                                           ("0:20:00.5", 1200.5)])
def test_finish_time_parses(text, seconds):
    assert parse_finish_time(text) == seconds


@pytest.mark.parametrize("finish", ["0:20:00", "27:45", "1:02:03"])
def test_a_track_with_a_finish_time_ends_at_it(tmp_path, capsys, finish):
    out, ev = tmp_path / "run.flac", tmp_path / "ev.csv"
    summary, _ = _render(capsys, "demo-descent", "-o", out, "--events", ev, "--finish-time", finish)
    target = parse_finish_time(finish)
    length_s = sf.info(str(out)).frames / SR
    assert abs(length_s - target) <= 1.0 / SR  # the file lasts the finish time, to the sample
    assert summary["duration_s"] == pytest.approx(target, abs=1e-3) and summary["finish_time_s"] == target
    beats = [int(r["sample"]) / SR for r in _events(ev) if r["kind"] == "beat"]
    assert target - 1.0 - 0.5 <= beats[-1] <= target - 1.0  # the course (last step) ends 1 s before: the tail
    dist = [float(r["distance_m"]) for r in _events(ev) if r["kind"] == "beat"]
    assert dist[-1] == pytest.approx(load_profile("demo-descent").total_distance_m, abs=5.0)


@pytest.mark.parametrize("args, needle", [
    (["--finish-time", "abc"], "--finish-time"), (["--finish-time", "1:60:00"], "--finish-time"),
    (["--finish-time", "0:00"], "--finish-time"), (["--finish-time", "-5:00"], "--finish-time"),
    (["--finish-time", "600"], "--finish-time"), (["--finish-time", "1:2:3:4"], "--finish-time"),
    (["--finish-time", "0:01"], "--finish-time"), (["--finish-time", "0:00:30"], "mean speed"),
    (["--anchors", "1mile"], "--anchors"), (["--anchors", "50m"], "--anchors"), (["--anchors", "0"], "--anchors"),
    (["--anchors", "1km", "--no-cues"], "--no-cues"),
    (["--split", "--follow", "replay:run.gpx"], "--follow"),
    (["--finish-time", "20:00", "--follow", "replay:run.gpx"], "--follow"),
])
def test_bad_travel_flags_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args, needle):
    code, out, err = run_main(["render", "demo-descent", "-o", tmp_path / "x.wav", *args], capsys)
    assert code == 2, (code, err)
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def _anchor_rows(rows):
    out = []
    for r in rows:
        if r["kind"] == "cue" and r["clip"].split("-")[0] in ("distance_mark", "descent_in"):
            out.append((r["clip"].split("-")[0], int(r["clip"].split("@")[1]), float(r["distance_m"]),
                        int(r["sample"])))
    return out


@pytest.mark.parametrize("finish", [None, "0:30:00"])
def test_anchors_fall_at_the_course_distances_in_the_events_csv(tmp_path, capsys, finish):
    out, ev = tmp_path / "run.wav", tmp_path / "ev.csv"
    extra = ["--finish-time", finish] if finish else []
    summary, err = _render(capsys, "demo-descent", "-o", out, "--events", ev, "--anchors", "1km", *extra)
    assert "dropped" not in err
    rows = _events(ev)
    anchors = _anchor_rows(rows)
    marks = [(fill, d) for kind, fill, d, _ in anchors if kind == "distance_mark"]
    assert [m for m, _ in marks] == [1000, 2000, 3000, 4000]  # every kilometre of the 4.4 km course
    errors = [abs(d - m) for m, d in marks]
    assert max(errors) <= AnchorRules().tolerance_m
    # Most sit on the beat nearest the mark (one beat is ~1 m at this pace); the others moved off a cue.
    assert sum(e <= 2.0 for e in errors) >= len(errors) // 2, errors
    # "Descent in 300 metres" 300 m before the first descent (700 m); the second one starts 250 m after the first
    # ends (3000 m), so its anchor is there and says 250.
    descents = [(fill, d) for kind, fill, d, _ in anchors if kind == "descent_in"]
    assert [f for f, _ in descents] == [300, 250]
    assert abs(descents[0][1] - 400.0) <= AnchorRules().tolerance_m
    assert abs(descents[1][1] - 3000.0) <= AnchorRules().tolerance_m
    assert summary["anchors"] == len(anchors) == 6
    # Never over another cue: every cue row ends before the next starts.
    cues = sorted(int(r["sample"]) for r in rows if r["kind"] == "cue")
    assert len(cues) == len(set(cues)) and summary["cues_dropped"] == 0
    if finish:  # the anchors follow the scaled clock: 1 km at about 1000/4400 of the way
        t1 = [s for kind, fill, _, s in anchors if fill == 1000 and kind == "distance_mark"][0] / SR
        assert abs(t1 - 1000 / 4400 * 1799.0) <= 30.0


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_split_parts_are_the_single_render(tmp_path, capsys, ext):
    one, ev = tmp_path / f"one{ext}", tmp_path / "ev.csv"
    _render(capsys, "demo-descent", "-o", one, "--anchors", "1km", "--events", ev)
    leftover = tmp_path / f"run-40{ext}"  # from an earlier, longer split: named, never deleted
    leftover.write_bytes(b"old part")
    summary, err = _render(capsys, "demo-descent", "-o", tmp_path / f"run{ext}", "--anchors", "1km", "--split")
    assert f"run-40{ext} from an earlier render is not part of this one" in err
    assert leftover.read_bytes() == b"old part"
    parts = summary["parts"]
    assert len(parts) >= 5 and not (tmp_path / f"run{ext}").exists()
    assert [p["path"] for p in parts] == [str(tmp_path / f"run-{k:02d}{ext}") for k in range(1, len(parts) + 1)]
    data = [sf.read(p["path"], dtype="int16")[0] for p in parts]
    ref = sf.read(str(one), dtype="int16")[0]
    assert np.array_equal(np.concatenate(data), ref)  # bit-identical, sample for sample
    starts = np.cumsum([0] + [len(x) for x in data[:-1]])
    assert list(starts) == [p["start_sample"] for p in parts]  # the planned boundaries
    # Each part starts with what it says: an announcement or a distance anchor spoken on that very sample.
    cue_at = {int(r["sample"]): r["clip"] for r in _events(ev) if r["kind"] == "cue"}
    for p in parts[1:]:
        clip = cue_at.get(p["start_sample"], "")
        assert clip.startswith(("descent_ahead", "steep_ahead", "distance_mark")), (p, clip)
    labels = [p["starts_with"] for p in parts]
    assert "descent ahead" in labels or "steep descent coming up" in labels
    assert "2 km" in labels
