"""Encode on the second core: the renderer's audio sink run by a worker thread over rotating buffers (issue 19).

Ogg Vorbis encoding costs several times the kernel (benchmarks/README.md, section 12: 5.1 of a 6.6 s render of
30 minutes), and both release the GIL (numba ``nogil`` kernels; libsndfile through cffi), so the render runs the
kernel for chunk ``k + 1`` while the worker encodes chunk ``k``.  The buffers rotate (no copy): the renderer
fills a free slot, hands it over, and takes the next free one, waiting only when the encoder is behind.  The bytes
written are the same as a single-threaded render's: the chunks reach the sink in order, unchanged.

Offline only (the live callback never sees this).  A sink error is raised in the renderer's thread at its next
call, so the render fails and aborts its temporaries as before.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

#: Chunks in flight: one being filled, one being encoded, one spare so neither waits on a short stall.
SLOTS = 3


class EncoderThread:
    """Write filled buffers to ``sink`` (anything with ``write(array)``) from a worker thread.

    Use: ``i, buf = enc.slot()`` -> fill ``buf[:n]`` -> ``enc.submit(i, n)``; at the end ``finish()`` (waits,
    raises the sink's error if any); on an error path ``stop()`` (waits, discards).
    """

    def __init__(self, sink, shape, dtype, slots: int = SLOTS):
        self.sink = sink
        self._bufs = [np.zeros(shape, dtype=dtype) for _ in range(slots)]
        self._free: queue.Queue = queue.Queue()
        for i in range(slots):
            self._free.put(i)
        self._full: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="downbeat-encoder", daemon=True)
        self._thread.start()

    def slot(self):
        """A free buffer ``(index, array)``; waits for the encoder if all are in flight."""
        i = self._free.get()
        self._raise()
        return i, self._bufs[i]

    def submit(self, i: int, n: int) -> None:
        self._full.put((i, n))

    def finish(self) -> None:
        self.stop()
        self._raise()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._full.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _run(self) -> None:
        while True:
            item = self._full.get()
            if item is None:
                return
            i, n = item
            if self._error is None:
                try:
                    self.sink.write(self._bufs[i][:n])
                except BaseException as exc:  # handed to the renderer's thread
                    self._error = exc
            self._free.put(i)
