"""The writer side of the engine's music ring (single writer: the music worker in play, the renderer offline).

The ring is the engine's ``music`` array (float32 [capacity, 2]) with ``music_idx = [written, read, ended]``
(:data:`metronome._kernels.MI_WRITTEN` ...).  The kernel reads one frame per output sample and advances ``read``;
this side writes rows that are free (``written - read < capacity``) and publishes ``written`` after the rows, so
neither side waits for the other and nothing is allocated while audio runs.
"""

from __future__ import annotations

from .. import _layout as K


class MusicRing:
    """Fill an engine's music ring from a :class:`~metronome.music.source.MusicSource`."""

    def __init__(self, engine, source):
        self.buf = engine.music
        self.idx = engine.music_idx
        self.capacity = self.buf.shape[0]
        self.source = source

    @property
    def written(self) -> int:
        return int(self.idx[K.MI_WRITTEN])

    @property
    def buffered(self) -> int:
        """Frames written and not yet read by the kernel."""
        return int(self.idx[K.MI_WRITTEN]) - int(self.idx[K.MI_READ])

    @property
    def ended(self) -> bool:
        return bool(self.idx[K.MI_ENDED])

    def fill(self, until_written: int | None = None, max_frames: int | None = None) -> int:
        """Write frames while there is room (and ``written < until_written``, at most ``max_frames``).

        Returns the frames written.  At the end of the playlist the end flag is raised, so the kernel plays
        silence there without counting an underrun.
        """
        if self.idx[K.MI_ENDED]:
            return 0
        w = int(self.idx[K.MI_WRITTEN])
        room = self.capacity - (w - int(self.idx[K.MI_READ]))
        want = room if until_written is None else min(room, until_written - w)
        if max_frames is not None:
            want = min(want, max_frames)
        total = 0
        while want > 0:
            row = w % self.capacity
            k = min(want, self.capacity - row)
            got = self.source.read_into(self.buf[row:row + k])
            w += got
            total += got
            want -= got
            self.idx[K.MI_WRITTEN] = w  # publish after the rows are written
            if got < k:
                self.idx[K.MI_ENDED] = 1
                break
        return total
