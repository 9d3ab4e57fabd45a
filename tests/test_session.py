"""metronome.session: one plan per run; a runner profile (downbeat learn) times courses for render, play and show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metronome.history.runner import RunnerProfile, predict_time_s, save_runner
from metronome.session import DEFAULT_RUNNER, load_profile

ROOT = Path(__file__).resolve().parent.parent


def _runner(tmp_path, name="r.yaml"):
    r = RunnerProfile(flat_pace_s_per_km=300.0, base_cadence_spm=182.0, name="test runner")
    return save_runner(r, tmp_path / name), r


def _show(*args, env=None):
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "profile", "show", "demo-descent", "--no-cues",
                        "--json", *args], capture_output=True, text=True, timeout=120, env=env, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_runner_profile_times_a_course_and_sets_the_base_cadence(tmp_path):
    path, runner = _runner(tmp_path)
    plain = load_profile("demo-descent", runner=None)
    mine = load_profile("demo-descent", runner=str(path))
    assert mine.duration_s == pytest.approx(predict_time_s(plain, runner), rel=1e-9)
    assert mine.duration_s < plain.duration_s  # 5:00 min/km beats the default 5:30
    assert mine.base_cadence_spm == 182.0


def test_flat_pace_flag_wins_over_the_default_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "downbeat").mkdir()
    _runner(tmp_path / "downbeat", "runner.yaml")
    with_default = load_profile("demo-descent", runner=DEFAULT_RUNNER)
    flagged = load_profile("demo-descent", flat_pace="5:30", runner=DEFAULT_RUNNER)
    assert with_default.duration_s != flagged.duration_s
    assert flagged.duration_s == pytest.approx(load_profile("demo-descent", runner=None).duration_s)


def test_cli_uses_runner_flag_and_default_location(tmp_path):
    path, runner = _runner(tmp_path)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "empty")}
    base = _show(env=env)
    flagged = _show("--runner", str(path), env=env)
    assert flagged["duration_s"] == pytest.approx(predict_time_s(load_profile("demo-descent", runner=None), runner))
    assert flagged["duration_s"] < base["duration_s"] and flagged["base_cadence_spm"] == 182.0
    (tmp_path / "cfg" / "downbeat").mkdir(parents=True)
    _runner(tmp_path / "cfg" / "downbeat", "runner.yaml")
    default = _show(env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert default["duration_s"] == pytest.approx(flagged["duration_s"])


def test_profile_show_png_builds_the_tempo_map_once(tmp_path, monkeypatch):
    """One session plan serves the summary, the cue timeline and the plot (issue 13: it was built three times)."""
    from click.testing import CliRunner

    import metronome.cli.plot as plot
    import metronome.session as session
    import metronome.tempo as tempo
    from metronome.cli.profile import profile

    calls = []
    real = tempo.tempo_map_from_profile

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for module in (tempo, session, plot):
        monkeypatch.setattr(module, "tempo_map_from_profile", counting)
    r = CliRunner().invoke(profile, ["show", "demo-descent", "--png", str(tmp_path / "p.png"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.png").stat().st_size > 10000
    assert len(calls) == 1
