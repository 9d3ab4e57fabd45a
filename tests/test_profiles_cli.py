"""``downbeat profile show/list`` and the PNG plot."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from metronome.errors import InputError, ProfileError
from metronome.tempo import TempoSettings
from profiles import load_profile
from metronome.cli.profile import profile, summarize
from metronome.cli.plot import render_figure, write_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(profile, list(args), catch_exceptions=True)


def test_show_prints_a_summary():
    r = invoke("show", "demo-descent")
    assert r.exit_code == 0, r.output
    for label in ("distance", "descent / ascent", "estimated time", "grade range", "target cadence"):
        assert label in r.output
    assert "4.40 km" in r.output and "-12.0 %" in r.output


def test_summary_numbers_follow_the_tempo_model():
    p = load_profile("demo-descent")
    s = summarize(p, TempoSettings(base_cadence_spm=170))
    assert s["cadence_min_spm"] == pytest.approx(170.0)
    # -12 % -> 1 + 0.005 * (12 - 2) = 1.05
    assert s["cadence_max_spm"] == pytest.approx(170 * 1.05, abs=0.01)
    assert s["descent_m"] == pytest.approx(p.total_descent_m)
    s180 = summarize(p, TempoSettings(base_cadence_spm=180))
    assert s180["cadence_max_spm"] == pytest.approx(180 * 1.05, abs=0.01)


def test_flat_pace_and_base_cadence_options():
    slow = invoke("show", "hill-repeats", "--flat-pace", "6:30", "--base-cadence", "160")
    fast = invoke("show", "hill-repeats", "--flat-pace", "4:30")
    assert slow.exit_code == 0 and fast.exit_code == 0
    assert "base 160" in slow.output and "6:30 min/km" in slow.output and "4:30 min/km" in fast.output


@pytest.mark.parametrize("args, exc_type, message", [
    (["show", "no-such"], ProfileError, "no such file or bundled profile"),
    (["show", "demo-descent", "--flat-pace", "fast"], InputError, "--flat-pace: 'fast'"),
    (["show", "demo-descent", "--base-cadence", "20"], InputError, "base_cadence_spm: 20.0"),  # main() says --base-cadence
    (["show", "demo-descent", "--png", "/no/such/dir/p.png"], InputError, "does not exist"),
    (["show", "demo-descent", "--png", "plot.jpg"], InputError, "must end in .png"),
])
def test_errors_are_raised_for_the_top_level_cli(args, exc_type, message):
    r = invoke(*args)
    assert isinstance(r.exception, exc_type)
    assert message in str(r.exception)


def test_top_level_cli_turns_errors_into_exit_2(capsys):
    from metronome.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["profile", "show", "no-such"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such: no such file" in err


def test_png_is_written_atomically(tmp_path):
    out = tmp_path / "demo.png"
    r = invoke("show", "demo-descent", "--png", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]    # no temp file left behind


def test_failed_plot_leaves_no_file(tmp_path, monkeypatch):
    import matplotlib.figure

    def boom(self, *a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    out = tmp_path / "p.png"
    with pytest.raises(RuntimeError):
        write_png(load_profile("hill-repeats"), TempoSettings(), out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["demo-descent", "treadmill-decline", "mojstrovka"])
def test_figure_panels_and_cue_markers(name):
    p = load_profile(name)
    fig = render_figure(p, TempoSettings(), cue_markers=[(60.0, "descent ahead"), (300.0, "quick feet")])
    axes = [a for a in fig.axes if a.get_ylabel()]
    labels = [a.get_ylabel() for a in axes]
    assert labels[:3] == ["elevation (m)", "grade (%)", "cadence (steps/min)"]
    texts = [t.get_text().strip() for ax in fig.axes for t in ax.texts]  # cue labels live in their own lane
    assert "descent ahead" in texts and "quick feet" in texts
    assert p.name in fig._suptitle.get_text()
    # The cadence panel plots the metronome's tempo at each profile point.
    line = fig.axes[2].lines[1]
    assert np.min(line.get_ydata()) >= 170 * 0.94 - 1e-9


def test_list():
    r = invoke("list")
    assert r.exit_code == 0
    assert "demo-descent" in r.output and "treadmill-decline" in r.output
