"""Live play's music worker: one thread decodes, resamples and normalises ahead into the engine's ring.

The audio callback only mixes from the ring.  The worker tops the ring up every :data:`POLL_S`; decoding the
next track (~1 s for 5 minutes of Ogg Vorbis on the test VM) happens while the ring still holds
``MusicSettings.ring_s`` seconds, so the callback never waits for it.  If the worker falls behind anyway the
kernel plays silence for the music and counts the samples (``Engine.music_underruns``); clicks are untouched.
"""

from __future__ import annotations

import threading

from .ring import MusicRing

POLL_S = 0.02
STEP_S = 0.5  # frames written per top-up, so a stop request is seen promptly


class MusicFeeder:
    """Owns the worker thread that keeps a :class:`MusicRing` full."""

    def __init__(self, ring: MusicRing, samplerate: int):
        self.ring = ring
        self.samplerate = samplerate
        self._stop = threading.Event()
        self._thread = None
        self.error: str | None = None

    def prime(self) -> int:
        """Fill the whole ring before the stream opens (so the first seconds never underrun)."""
        return self.ring.fill()

    def start(self) -> "MusicFeeder":
        self._thread = threading.Thread(target=self._run, name="downbeat-music", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        step = int(STEP_S * self.samplerate)
        try:
            while not self._stop.is_set() and not self.ring.ended:
                if self.ring.fill(max_frames=step) == 0:
                    self._stop.wait(POLL_S)
        except Exception as exc:  # never take the session down: the music stops, the coach goes on
            self.error = f"music stopped: {' '.join(str(exc).split())[:200]}"

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
