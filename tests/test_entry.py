"""The console entry point (metronome/entry.py): Ctrl-C during start-up (imports) is a clean exit 130 (issue 12,
item 11)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

LONG = "segments: [{distance_m: 40000, grade_pct: -5}]\n"
# Start-up takes ~0.7 s (click, numpy, numba, the profile, the plan) before the render writes anything; signals
# at these offsets land in the imports, in planning and in the render itself.
DELAYS_S = [0.08, 0.15, 0.25, 0.4, 0.6, 0.9, 1.5]


def _interrupt_after(cmd, delay_s, cwd):
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("how", ["module", "console-script"])
def test_ctrl_c_at_any_early_point_is_exit_130_without_traceback(tmp_path, how):
    (tmp_path / "long.yaml").write_text(LONG)
    if how == "module":
        cmd = [sys.executable, "-m", "metronome.cli"]
    else:
        script = shutil.which("downbeat", path=os.path.dirname(sys.executable))
        if script is None:
            pytest.skip("the downbeat console script is not installed next to this interpreter")
        cmd = [script]
    for delay in DELAYS_S:
        code, err = _interrupt_after([*cmd, "render", "long.yaml", "-o", "out.wav", "--no-cues", "--quiet"],
                                     delay, tmp_path)
        assert "Traceback" not in err, (delay, err)
        assert code == 130, (delay, code, err)
        assert len(err.strip().splitlines()) == 1, (delay, err)
        assert not any(p.name.startswith(".downbeat-") for p in tmp_path.iterdir()), delay
        assert not (tmp_path / "out.wav").exists()
