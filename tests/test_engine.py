"""Offline render driver (metronome/engine.py): any --blocksize renders the same bits at the same speed (issue 12,
item 12).  Speed is not timed here (benchmarks/bench_blocksize.py measures it); what makes it fast is checked
instead: Python hands the kernel large chunks whatever the block size, and the kernel still runs the blocks."""

import numpy as np
import pytest
import soundfile as sf

from metronome import engine as E, kernels, render as R
from metronome.mix import EngineSettings, click_bank
from metronome.render import render
from metronome.tempo import TempoMap

SR = 48000


def _map():
    return TempoMap([0, SR * 3, SR * 6, SR * 9], [170, 185, 185, 160], SR)


def _bank():
    return click_bank(SR, [("cue", (0.3 * np.sin(np.arange(20000) / 9.0)).astype(np.float32))])


@pytest.mark.parametrize("blocksize", [1, 7, 64, 65537])
def test_render_is_bit_identical_for_any_block_size_with_cues(tmp_path, blocksize):
    tm, bank = _map(), _bank()
    requests = [(2, 30000), (2, 150000), (2, 300000)]
    ref = render(tm, str(tmp_path / "ref.wav"), EngineSettings(), bank=bank, cue_requests=requests,
                 subtype="FLOAT", events_path=str(tmp_path / "ref.csv"))
    res = render(tm, str(tmp_path / "b.wav"), EngineSettings(), bank=bank, cue_requests=requests,
                 blocksize=blocksize, subtype="FLOAT", events_path=str(tmp_path / "b.csv"))
    assert res.cues == ref.cues == 3 and res.beats == ref.beats
    a, b = sf.read(str(tmp_path / "ref.wav"), dtype="float32")[0], sf.read(str(tmp_path / "b.wav"), dtype="float32")[0]
    assert np.array_equal(a, b)
    assert (tmp_path / "ref.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_a_tiny_block_size_costs_no_python_round_trip_per_block(tmp_path, monkeypatch):
    """--blocksize 1 used to mean one Python call (and one libsndfile write) per frame: ~45 min for 22 min of
    audio.  Now Python makes one call per RENDER_CHUNK frames; the kernel runs RENDER_MIN_BLOCK-frame blocks
    (the same bits: tests/test_kernels.py runs the kernel in 1-frame blocks through Engine.process)."""
    tm = _map()
    calls, kernel_blocks = [], []
    real_process = E.Engine.process_pcm16  # a WAV is PCM_16: kernel and conversion in one call per chunk
    real_blocks = kernels.process_pcm16

    def counting_process(self, out, blocksize):
        calls.append(out.shape[0])
        return real_process(self, out, blocksize)

    def counting_blocks(out, blocksize, scratch, args):
        kernel_blocks.append(blocksize)
        return real_blocks(out, blocksize, scratch, args)

    monkeypatch.setattr(E.Engine, "process_pcm16", counting_process)
    monkeypatch.setattr(kernels, "process_pcm16", counting_blocks)
    res = render(tm, str(tmp_path / "o.wav"), EngineSettings(), blocksize=1)
    assert len(calls) == -(-res.frames // R.RENDER_CHUNK), len(calls)
    assert set(kernel_blocks) == {R.RENDER_MIN_BLOCK}
    kernel_blocks.clear()
    render(tm, str(tmp_path / "o.wav"), EngineSettings(), blocksize=8193)
    assert set(kernel_blocks) == {8193}  # a device-sized block is run as given
