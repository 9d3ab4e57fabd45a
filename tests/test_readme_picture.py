"""The README's picture and the command that makes it: ``downbeat profile show PROFILE --png FILE``.

Checks that the cue timeline the summary lists is what a render actually speaks, that the plot's labels never
overlap, and that the committed ``docs/demo-descent.png`` is the picture the README shows.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from metronome.tempo import TempoSettings
from profiles import bundled_names, load_profile
from metronome.cli.profile import cue_timeline, profile
from metronome.cli.plot import assign_label_rows, render_figure

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args, **kwargs):
    return CliRunner().invoke(profile, list(args), catch_exceptions=False, **kwargs)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_summary_lists_the_cue_timeline():
    r = invoke("show", "demo-descent")
    assert r.exit_code == 0
    cues, _ = cue_timeline(load_profile("demo-descent"), TempoSettings(170.0))
    assert len(cues) >= 5
    assert f"cue timeline      {len(cues)} spoken cues" in r.output
    block = r.output.split("cue timeline", 1)[1].splitlines()[1:]
    assert len(block) == len(cues)
    for line, cue in zip(block, cues):
        m = re.fullmatch(r"\s+(\d+):(\d\d)\s+(\d+\.\d\d) km  (.+)", line)
        assert m, line
        assert int(m[1]) * 60 + int(m[2]) == pytest.approx(cue["time_s"], abs=0.5)
        assert float(m[3]) == pytest.approx(cue["distance_m"] / 1000, abs=0.005)
        assert m[4] == cue["text"]


def test_json_cue_times_are_where_the_render_speaks(tmp_path):
    """The timeline is not a separate model: the rendered track's cue events fall on the listed times."""
    from metronome.cli import main

    r = invoke("show", "hill-repeats", "--json")
    summary = json.loads(r.output)
    assert summary["name"] == "Hill repeats" and summary["png"] is None
    listed = [c["time_s"] for c in summary["cues"]]
    assert listed == sorted(listed) and listed
    events = tmp_path / "events.csv"
    with pytest.raises(SystemExit) as exc:
        main(["render", "hill-repeats", "-o", str(tmp_path / "t.wav"), "--events", str(events), "--quiet"])
    assert exc.value.code == 0
    with open(events, newline="") as f:
        spoken = [float(row["time_s"]) for row in csv.DictReader(f) if row["kind"] == "cue"]
    assert spoken == pytest.approx(listed, abs=1e-3)


def test_no_cues_needs_no_speech_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng anywhere
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # and nothing cached
    r = invoke("show", "demo-descent", "--no-cues")
    assert r.exit_code == 0 and "cue timeline" not in r.output and "4.40 km" in r.output
    assert json.loads(invoke("show", "demo-descent", "--no-cues", "--json").output)["cues"] is None


def test_missing_speech_engine_is_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = CliRunner(mix_stderr=False).invoke(profile, ["show", "demo-descent"]) if _mix_stderr_supported() else \
        CliRunner().invoke(profile, ["show", "demo-descent"])
    assert r.exit_code == 0
    assert "cue timeline      (no cues)" in r.stdout
    assert "espeak-ng" in (r.stderr if _mix_stderr_supported() else r.output)


def _mix_stderr_supported() -> bool:
    import inspect

    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def test_quiet_png_writes_only_the_file(tmp_path):
    out = tmp_path / "p.png"
    r = invoke("show", "treadmill-decline", "--png", str(out), "--quiet")
    assert r.exit_code == 0 and r.output == ""
    assert png_size(out) == (1600, 1000)
    assert out.stat().st_mode & 0o044  # readable by others: mkstemp's private mode is not kept


def _lane_label_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    lane = fig.axes[3]
    return lane, [t.get_window_extent(renderer) for t in lane.texts]


@pytest.mark.parametrize("name", bundled_names())
def test_cue_labels_never_overlap_and_stay_in_the_figure(name):
    p = load_profile(name)
    settings = TempoSettings(p.base_cadence_spm or 170.0)
    cues, _ = cue_timeline(p, settings)
    fig = render_figure(p, settings, [(c["time_s"], c["text"]) for c in cues])
    lane, _ = _lane_label_boxes(fig)
    assert lane.get_ylabel() == "cues"
    # Every label of the figure (the lane's, or the numbered list beside it when cues are dense) is inside it and
    # overlaps no other; every cue's words are readable in full somewhere.
    texts = [t for t, _ in _assert_readable(fig, name)]
    for c in cues:
        assert any(c["text"] in t for t in texts), (name, c["text"])


def test_label_rows_are_packed_without_overlap():
    rng = random.Random(8)
    for _ in range(200):
        n = rng.randint(1, 30)
        starts = sorted(rng.uniform(0, 1500) for _ in range(n))
        widths = [rng.uniform(20, 300) for _ in range(n)]
        rows = assign_label_rows(starts, widths, 1500.0, gap_px=10.0, max_rows=1000)
        spans = {}
        for (x, w), (row, flipped) in zip(zip(starts, widths), rows):
            lo, hi = (x - w, x) if flipped else (x, x + w)
            assert flipped == (x + w > 1500.0)
            for a, b in spans.get(row, []):
                assert hi + 10.0 <= a or lo >= b + 10.0 - 1e-9
            spans.setdefault(row, []).append((lo, hi))
        # Greedy packing never opens a row it does not need: every row's first label overlaps one row above.
        assert max(r for r, _ in rows) < n


def test_figure_without_cues_has_three_panels():
    p = load_profile("hill-repeats")
    fig = render_figure(p, TempoSettings(170.0), None)
    assert [a.get_ylabel() for a in fig.axes if a.get_ylabel()] == \
        ["elevation (m)", "grade (%)", "cadence (steps/min)"]
    assert fig.axes[2].get_xlabel() == "distance (km)"


def test_readme_shows_the_committed_picture():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"!\[[^\]]+\]\((docs/[^)]+\.png)\)", readme)
    assert m and m[1] == "docs/demo-descent.png"
    # The picture precedes the set-up commands: it is the first thing a visitor sees.
    assert readme.index(m[0]) < readme.index("```sh")
    assert png_size(ROOT / m[1]) == (1600, 1000)


def test_committed_picture_is_what_the_command_draws(tmp_path):
    """Redraw with the README's command and compare: same size, nearly the same pixels (fonts may differ)."""
    from PIL import Image

    out = tmp_path / "demo.png"
    assert invoke("show", "demo-descent", "--png", str(out), "--quiet").exit_code == 0
    new = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    old = np.asarray(Image.open(ROOT / "docs" / "demo-descent.png").convert("L"), dtype=np.float64)
    assert new.shape == old.shape == (1000, 1600)
    assert np.mean(np.abs(new - old)) < 3.0, "docs/demo-descent.png is stale: regenerate it (see docs/README.md)"


def _all_label_boxes(fig):
    """Every text label of the figure (cue lane and the numbered list beside it) with its window extent."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for ax in fig.axes for t in ax.texts if t.get_text()]


def _assert_readable(fig, what):
    width, height = fig.canvas.get_width_height()
    boxes = _all_label_boxes(fig)
    for i, (ta, a) in enumerate(boxes):
        assert a.x0 >= 0 and a.x1 <= width and a.y0 >= 0 and a.y1 <= height, (what, ta, a)
        for tb, b in boxes[i + 1:]:
            overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_w <= 0.5 or overlap_h <= 0.5, (what, ta, a, tb, b)
    return boxes


PHRASES = ["Lean slightly forward from the ankles.", "Eyes a few metres ahead.", "Arms wide for balance.",
           "Technical ground. Pick your line.", "Relax your shoulders and hands.", "Descent ahead, get ready.",
           "Decline 12.5 percent in 10 seconds.", "Nice work. Back to your rhythm."]


@pytest.mark.parametrize("n_cues", [40, 150, 400])
def test_dense_cue_labels_never_overlap_and_stay_in_the_figure(n_cues):
    """Where cues are dense (issue 11: labels overlapped and were cut off) every label stays readable: numbers in
    the lane, one per distinct phrase, and the numbered phrases beside the plot."""
    p = load_profile("demo-descent")
    rng = np.random.default_rng(n_cues)
    times = np.sort(rng.uniform(0.0, p.duration_s, n_cues))
    markers = [(float(t), PHRASES[int(rng.integers(len(PHRASES)))]) for t in times]
    fig = render_figure(p, TempoSettings(170.0), markers)
    boxes = _assert_readable(fig, n_cues)
    texts = [t for t, _ in boxes]
    # Every cue is marked and every phrase is readable in full somewhere.
    lane = fig.axes[3]
    assert len(lane.texts) == n_cues
    for phrase in {m[1] for m in markers}:
        assert any(phrase in t for t in texts), phrase


def test_cue_labels_of_a_long_day_plan_never_overlap():
    """A real 3 h plan (the planner on a random mountain course) laid out in the figure."""
    from cues.library import load_library
    from cues.planner import plan_cues
    from cues.terrain import cue_events
    from metronome.tempo import tempo_map_from_profile
    from profiles.schema import Profile

    rng = np.random.default_rng(5)
    parts = [np.full(int(rng.integers(20, 300)), float(rng.choice([rng.uniform(-18, -5), rng.uniform(0, 10)])))
             for _ in range(60)]
    g = np.concatenate(parts)
    d = np.arange(g.size) * 10.0
    v = np.full(g.size, 3.0)
    t = d / 3.0
    e = np.concatenate([[0.0], np.cumsum(g[1:] / 10.0)])
    p = Profile("long day", "test", "course", d, e, g, t, v, ())
    lib, sr = load_library(), 8000
    tm = tempo_map_from_profile(p, TempoSettings(170.0), sr)
    lengths = {(c.id, i): 2 * sr for c in lib for i in range(len(c.phrasings))}
    plan = plan_cues(cue_events(p), tm.beat_samples(), tm.ramps(), lengths, sr, lib)
    assert len(plan) > 60
    fig = render_figure(p, TempoSettings(170.0), [(c.start_sample / sr, c.text) for c in plan])
    _assert_readable(fig, "long day")
