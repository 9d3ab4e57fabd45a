"""metronome.settings: each default lives once, errors name the field; the CLI names its option instead."""

from __future__ import annotations

import subprocess
import sys

import pytest

from metronome.errors import InputError
from metronome.settings import EngineSettings, TempoSettings


@pytest.mark.parametrize("cls, kwargs, field", [
    (EngineSettings, {"samplerate": 5}, "samplerate"),
    (EngineSettings, {"channels": 3}, "channels"),
    (EngineSettings, {"volume_db": 3.0}, "volume_db"),
    (EngineSettings, {"accent_every": 99}, "accent_every"),
    (TempoSettings, {"base_cadence_spm": 20.0}, "base_cadence_spm"),
    (TempoSettings, {"upper_cap": 1.5}, "upper_cap"),
])
def test_library_errors_name_the_field_not_a_flag(cls, kwargs, field):
    with pytest.raises(InputError) as exc:
        cls(**kwargs)
    assert str(exc.value).startswith(f"{field}: ") and "--" not in str(exc.value)
    assert exc.value.field == field


@pytest.mark.parametrize("args, flag", [
    (["--samplerate", "5"], "--samplerate: 5 "),
    (["--upper-cap", "1.5"], "--upper-cap: 1.5 "),
    (["--base-cadence", "20"], "--base-cadence: 20.0 "),
    (["--volume-db", "3"], "--volume-db: 3.0 "),
])
def test_the_cli_names_its_option(tmp_path, args, flag):
    r = subprocess.run([sys.executable, "-m", "metronome.cli", "render", "demo-descent", "-o", str(tmp_path / "o.wav"),
                        "--no-cues", "--quiet", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"downbeat: error: {flag}"), r.stderr
    assert not (tmp_path / "o.wav").exists()


def test_cli_defaults_are_the_settings_defaults():
    from metronome.cli.app import cli

    ctx = cli.get_command(None, "render").make_context("render", ["demo-descent", "-o", "x.wav"])
    assert ctx.params["samplerate"] == EngineSettings().samplerate
    assert ctx.params["volume_db"] == EngineSettings().volume_db
    assert ctx.params["ceiling_db"] == EngineSettings().ceiling_dbfs
    assert ctx.params["accent_every"] == EngineSettings().accent_every
    assert ctx.params["upper_cap"] == TempoSettings().upper_cap
