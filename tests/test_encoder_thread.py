"""The renderer's second-core encoder (metronome.encoder_thread): order, errors, and the same audio as writing
from the render thread."""

import numpy as np
import pytest
import soundfile as sf

from metronome import render as R
from metronome.encoder_thread import EncoderThread
from metronome.mix import EngineSettings
from metronome.tempo import TempoMap


class _Sink:
    def __init__(self, fail_at=None):
        self.chunks, self.fail_at = [], fail_at

    def write(self, a):
        if self.fail_at is not None and len(self.chunks) == self.fail_at:
            raise OSError(28, "No space left on device")
        self.chunks.append(a.copy())


def test_chunks_reach_the_sink_in_order_unchanged():
    sink = _Sink()
    enc = EncoderThread(sink, (100, 2), np.float32)
    for k in range(50):
        i, buf = enc.slot()
        buf[:] = k
        enc.submit(i, 10 + k)
    enc.finish()
    assert [c.shape[0] for c in sink.chunks] == [10 + k for k in range(50)]
    assert all(np.all(c == k) for k, c in enumerate(sink.chunks))


def test_a_sink_error_is_raised_in_the_caller_and_the_worker_ends():
    enc = EncoderThread(_Sink(fail_at=3), (8, 1), np.float32)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):
            i, _buf = enc.slot()
            enc.submit(i, 8)
        enc.finish()
    enc.stop()
    assert not enc._thread.is_alive()


@pytest.mark.parametrize("ext", ["ogg", "flac"])
def test_threaded_render_decodes_to_the_same_samples(tmp_path, monkeypatch, ext):
    tm = TempoMap.constant(170.0, 48000, 40.0)
    es = EngineSettings(channels=2)
    R.render(tm, str(tmp_path / f"a.{ext}"), es, blocksize=4096)
    monkeypatch.setattr(R, "THREADED_FORMATS", ())
    R.render(tm, str(tmp_path / f"b.{ext}"), es, blocksize=4096)
    a, _ = sf.read(tmp_path / f"a.{ext}", dtype="float32")
    b, _ = sf.read(tmp_path / f"b.{ext}", dtype="float32")
    assert a.shape == b.shape == (41 * 48000, 2) and np.array_equal(a, b)


def test_a_failing_compressed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import metronome.parts as P

    calls = {"n": 0}
    real = P.AudioParts.write

    def flaky(self, frames):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(self, frames)

    monkeypatch.setattr(P.AudioParts, "write", flaky)
    out = tmp_path / "x.ogg"
    out.write_bytes(b"an earlier render")
    with pytest.raises(Exception):
        R.render(TempoMap.constant(170.0, 48000, 10.0), str(out), EngineSettings(), blocksize=4096)
    assert out.read_bytes() == b"an earlier render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ogg"]
