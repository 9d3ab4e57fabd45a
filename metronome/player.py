"""Live play: a PortAudio output stream whose callback is the compiled C function of :mod:`metronome._kernels`."""

from __future__ import annotations

import threading
import time

import numpy as np

from . import _layout as K
from . import kernels
from .errors import AudioDeviceError
from .engine import TIMING_RING, Engine


_WEDGED_STREAMS = []


def any_stream_wedged() -> bool:
    """True if a stream could not be closed (dead audio server): exit with os._exit, skipping PortAudio's atexit."""
    return bool(_WEDGED_STREAMS)


class LivePlayer:
    """A PortAudio output stream whose callback is the compiled C function :func:`metronome._kernels.pa_callback`.

    The callback never enters Python (no GIL, so no priority inversion against the main thread).  It counts
    PortAudio's underflow flags and records its own duration into preallocated rings; the main thread polls them.
    """

    def __init__(self, engine: Engine, device=None, blocksize: int = 0, latency="low"):
        self.engine = engine
        self.device = device
        self.blocksize = blocksize
        self.latency = latency
        self.cb = engine.callback_arrays()  # stats, timing, params and the pointer table, owned here
        self.stats, self.timing, self.table = self.cb.stats, self.cb.timing, self.cb.table
        self.stream = None
        self.reported_latency_s = None
        self.lost = False  # set by the owner when the device/server is gone
        self.wedged = False

    def start(self):
        import sounddevice as sd

        s = self.engine.settings
        callback = kernels.pa_callback_address()  # loaded or compiled at warm-up: a dictionary hit here
        try:
            # sounddevice's documented extension point for library authors: a C function pointer + userdata.
            self.stream = sd._StreamBase(kind="output", samplerate=s.samplerate, blocksize=self.blocksize,
                                         device=self.device, channels=s.channels, dtype="float32",
                                         latency=self.latency, callback=callback,
                                         userdata=sd._ffi.cast("void *", self.table.ctypes.data),
                                         wrap_callback=None)
            self.stream.start()
            self.reported_latency_s = float(self.stream.latency)  # PortAudio's output latency for this stream
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open audio output: {exc}") from None
        return self

    @property
    def active(self) -> bool:
        return self.stream is not None and self.stream.active

    def stop(self, fade_s: float = 0.03, timeout_s: float = 3.0) -> bool:
        """Fade out (no pop), then stop and close the stream.

        Returns False if PortAudio did not return within ``timeout_s`` (it can block forever on a server that
        died mid-stream); the stream is then abandoned and :attr:`wedged` is set so the caller can exit without
        PortAudio's own teardown, which would block the same way.
        """
        stream, self.stream = self.stream, None
        if stream is None:
            return True
        if stream.active and not self.lost:
            self.engine.set_gain(0.0)
            time.sleep(fade_s + 2 * stream.latency)

        def close():
            try:
                if self.lost:
                    stream.abort()
                else:
                    stream.stop()
            except Exception:
                pass
            try:
                stream.close()
            except Exception:
                pass

        t = threading.Thread(target=close, name="downbeat-stream-close", daemon=True)
        t.start()
        t.join(timeout_s)
        if t.is_alive():
            self.wedged = True
            _WEDGED_STREAMS.append(stream)  # never garbage-collected: its finalizer would block too
            return False
        return True

    def callback_stats(self) -> dict:
        """Callback count, underflows and time inside the callback (last TIMING_RING callbacks)."""
        calls = int(self.stats[K.S_CALLBACKS])
        n = min(calls, TIMING_RING)
        t = self.timing[:n, 0] * 1e-9 if n else np.zeros(1)
        frames = self.timing[:n, 1] if n else np.ones(1)
        return {"callbacks": calls, "underflows": int(self.stats[K.S_UNDERFLOWS]),
                "frames": int(self.stats[K.S_FRAMES]), "median_frames": int(np.median(frames)),
                "median_s": float(np.median(t)), "p99_s": float(np.percentile(t, 99)),
                "p999_s": float(np.percentile(t, 99.9)), "max_s": float(t.max())}
