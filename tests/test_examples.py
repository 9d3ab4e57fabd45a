"""Every file in ``examples/`` runs as its README says and does what it claims.

* the treadmill YAML loads, and a render clicks at the workout's cadence (176 spm flat, faster on the decline);
* the GPX script renders a real recording to Ogg + events + PNG;
* the UDP sender drives a real :class:`~metronome.sensors.SensorFeed` over loopback to the descent's cadence.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from metronome import _kernels as K
from metronome.cli import main
from metronome.sensors import SensorFeed, parse_sensor_url
from metronome.tempo import TempoSettings, target_cadence
from profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PYRAMID = EXAMPLES / "treadmill-decline-pyramid.yaml"


def run_cli(*argv) -> int:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code


def read_events(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_examples_readme_lists_every_example_and_they_exist():
    text = (EXAMPLES / "README.md").read_text()
    files = sorted(p.name for p in EXAMPLES.iterdir() if p.name != "README.md" and not p.name.startswith("."))
    linked = sorted(set(re.findall(r"\]\(([^)#/]+)\)", text)))
    assert linked == files
    for script in ("trail-descent-gpx.sh", "udp_feed.py"):
        assert os.access(EXAMPLES / script, os.X_OK), script


def test_treadmill_yaml_is_the_workout_it_describes():
    p = load_profile(str(PYRAMID))
    assert p.kind == "workout" and p.name == "Decline pyramid"
    assert p.duration_s == pytest.approx(32 * 60)
    assert p.base_cadence_spm == 176
    assert float(p.grade_pct.min()) == pytest.approx(-8.0)
    assert float(p.grade_pct.max()) == pytest.approx(0.0)


def test_treadmill_yaml_renders_at_its_cadence(tmp_path):
    events = tmp_path / "pyramid.csv"
    assert run_cli("render", PYRAMID, "-o", tmp_path / "pyramid.flac", "--events", events, "--quiet") == 0
    rows = read_events(events)
    beats = np.array([float(r["time_s"]) for r in rows if r["kind"] == "beat"])
    # Warm-up (0..6 min, flat): one click per step at the file's base cadence.
    warm = np.diff(beats[(beats > 10) & (beats < 350)])
    assert 60.0 / warm.mean() == pytest.approx(176.0, abs=0.05)
    # The top of the pyramid (-8 %, 16:30..19:00; the ramp is done well within 20 s): the model's -8 % cadence.
    top = np.diff(beats[(beats > 16 * 60 + 50) & (beats < 18 * 60 + 50)])
    want = float(target_cadence(np.array([-8.0]), TempoSettings(base_cadence_spm=176.0))[0])
    assert want > 180.0
    assert 60.0 / top.mean() == pytest.approx(want, abs=0.1)
    cues = [r for r in rows if r["kind"] == "cue"]
    assert len(cues) >= 10  # every descent interval is announced and coached


def test_treadmill_yaml_typo_gives_the_documented_one_line_error(tmp_path, capsys):
    bad = tmp_path / "pyramid.yaml"
    bad.write_text(PYRAMID.read_text().replace("incline_pct: -4, speed_kmh: 10.5}", "incline_pct: steep, speed_kmh: 10.5}", 1))
    assert run_cli("profile", "show", bad) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("pyramid.yaml: segments[2].incline_pct: 'steep' is not a number")
    assert "segments[2].incline_pct: 'steep' is not a number" in (EXAMPLES / "README.md").read_text()


def test_gpx_script_renders_a_real_recording(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, DOWNBEAT=f"{sys.executable} -m metronome.cli")
    r = subprocess.run(["bash", str(EXAMPLES / "trail-descent-gpx.sh"), "", str(out)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "cue timeline" in r.stdout and "wrote " in r.stdout
    prof = load_profile("mojstrovka")
    with sf.SoundFile(out / "mojstrovka.ogg") as f:
        assert f.format == "OGG" and f.samplerate == 48000 and f.channels == 2
        assert f.frames / f.samplerate == pytest.approx(prof.duration_s + 1.0, abs=1.0)  # + the 1 s tail
    rows = read_events(out / "mojstrovka-events.csv")
    bpm = np.array([float(r["bpm"]) for r in rows if r["kind"] == "beat"])
    assert bpm.min() < 170 < bpm.max()  # slower on the climb, quicker on the descent
    assert sum(r["kind"] == "cue" for r in rows) >= 3
    assert (out / "mojstrovka.png").read_bytes()[:4] == b"\x89PNG"


def test_udp_sender_drives_the_live_tempo():
    settings = TempoSettings(base_cadence_spm=170.0)
    ctl = np.zeros(K.CT_N, dtype=np.float64)
    feed = SensorFeed(parse_sensor_url("udp://127.0.0.1:0"), ctl, settings)
    feed.start()
    try:
        host, port = feed.address
        # 60x: the 6-minute script in 6 s; the feed's 60 m hysteresis follows the sender's distance_m.
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "udp_feed.py"), f"{host}:{port}", "60"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        targets = []
        while proc.poll() is None:
            targets.append(float(ctl[K.CT_TARGET_BPM]))
            time.sleep(0.02)
        assert proc.returncode == 0, proc.stderr.read()
        time.sleep(0.3)
        counters = feed.stats_dict()
    finally:
        feed.stop()
    assert counters["received"] >= 20 and counters["accepted"] == counters["received"]
    # At 60x the feed's 3 s smoothing spans 3 scripted minutes, so the -12 % plateau is seen blended with the
    # -8 % stretch: the tempo must reach at least the -8 % cadence and never exceed the -12 % one.
    lo, hi = (float(target_cadence(np.array([g]), settings)[0]) for g in (-8.0, -12.0))
    assert lo - 0.5 <= max(targets) <= hi + 1e-9
    assert targets[0] == pytest.approx(170.0)  # flat start: the base cadence


def test_udp_sender_is_short_and_stdlib_only():
    src = (EXAMPLES / "udp_feed.py").read_text()
    code = [ln for ln in src.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    docstring_lines = src.split('"""')[1].count("\n") + 1
    assert len(code) - docstring_lines <= 25
    imported = set(re.findall(r"^import (.+)$", src, re.M)[0].replace(" ", "").split(","))
    assert imported <= set(sys.stdlib_module_names)
    assert "from " not in "\n".join(ln for ln in code if ln.startswith("from "))
