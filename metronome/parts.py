"""The audio output of a render: one file, or consecutive parts that switch files at given samples (``--split``).

:class:`AudioParts` is the sink :func:`metronome.render.render` writes every rendered chunk to; it cuts a chunk
wherever a part ends, so the parts are the single render cut at exactly those samples (concatenated, a PCM split is
sample for sample the unsplit file) whatever the block size.  Every part is written to a temporary beside its target
(:class:`AtomicOutput`, through :mod:`metronome.atomic`) and all are moved into place only after the last one is
complete: a failed or interrupted render leaves no part and no earlier file of those names is touched.
"""

from __future__ import annotations

import os

from . import outfiles
from .atomic import replace_or_remove, temporary_beside
from .errors import InputError
from .outfiles import PARTIAL_SUFFIX, partial_prefix


class AtomicOutput:
    """Write to a temporary file beside ``path``; move it into place only on success.

    So a failed or interrupted render leaves no partial file and never clobbers an existing good one.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise InputError(f"{path}: folder {folder!r} does not exist")
        if os.path.isdir(self.path):
            raise InputError(f"{path}: is a directory")
        # The pid in the name lets the next render remove this file if the process is killed (outfiles).
        self.tmp = temporary_beside(self.path, prefix=partial_prefix(),
                                    suffix=os.path.splitext(path)[1] + PARTIAL_SUFFIX)

    def commit(self):
        replace_or_remove(self.tmp, self.path, True)

    def abort(self):
        replace_or_remove(self.tmp, self.path, False)


#: Bytes between two writeback hints (AudioParts._start_writeback): 8 MiB, ~87 s of mono PCM_16 at 48 kHz.
WRITEBACK_BYTES = 8 << 20


class Writeback:
    """A thread that starts the kernel's writeback of what a render wrote (``POSIX_FADV_DONTNEED`` on each range:
    Linux writes the dirty pages out without waiting and drops them once clean).

    Why: a big render otherwise leaves all its pages dirty until the rename that moves it into place, where ext4
    allocates and submits them all at once, in the renderer's thread (0.1 s for 30 minutes of WAV, a quarter of
    the whole render; benchmarks/README.md section 12).  Here that work runs beside the kernel and the writer, and
    a long render does not fill the page cache with its own output.  Advice only: an error ends the hints, never
    the render.  :meth:`drain` before the descriptor is closed (a hint must never reach a reused descriptor).
    """

    def __init__(self):
        import queue
        import threading

        self._q: "queue.Queue" = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="downbeat-writeback", daemon=True)
        self._thread.start()

    def hint(self, fd: int, offset: int, length: int) -> None:
        self._q.put((fd, offset, length))

    def drain(self) -> None:
        self._q.join()

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join()

    def _run(self) -> None:
        ok = True
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                if ok:
                    try:
                        os.posix_fadvise(item[0], item[1], item[2], os.POSIX_FADV_DONTNEED)
                    except OSError:
                        ok = False
            finally:
                self._q.task_done()


def close_without_fsync(f) -> None:
    """Close a soundfile ``SoundFile`` the way ``sf_close`` does, without the ``fsync`` that soundfile's ``close()``
    adds (its ``flush()`` is libsndfile's ``sf_write_sync``).

    Why: a render is output that can be made again, moved into place by an atomic rename (a crash leaves the old
    file or the new one, never half of one, on ext4, XFS and btrfs, which write a file's data before a rename that
    replaces another is committed).  Forcing 172 MB (30 minutes of WAV) to the disk cost 0.01-0.08 s here, up to
    a fifth of the whole render, and seconds on an SD card; no audio tool (klick, sox, ffmpeg) does it.  The
    runner's own files (history, profiles, settings) are still fsynced (:func:`metronome.atomic.atomic_file`).
    Falls back to ``close()`` if soundfile's internals are not what this expects.
    """
    import soundfile as sf

    handle = getattr(f, "_file", None)
    snd = getattr(sf, "_snd", None)
    if handle is None or snd is None or not hasattr(snd, "sf_close"):
        f.close()
        return
    f._file = None  # soundfile's "closed"
    err = snd.sf_close(handle)
    if err:
        raise sf.LibsndfileError(err, f"Error closing {getattr(f, 'name', '?')!r}: ")


def part_paths(out_path: str, n_parts: int, upto: int | None = None) -> list:
    """``OUT.ogg`` -> ``OUT-01.ogg``, ``OUT-02.ogg``, ... (two digits, more when there are 100 parts or more).

    ``upto``: names up to that number, in the width of ``n_parts`` parts (to look for the leftovers of a longer
    split)."""
    stem, ext = os.path.splitext(str(out_path))
    width = max(2, len(str(int(n_parts))))
    return [f"{stem}-{k:0{width}d}{ext}" for k in range(1, int(upto or n_parts) + 1)]


def sf_detail(f) -> str:
    """libsndfile's full error text for an open file ("System error : No space left on device."): its exception
    only says "System error."."""
    try:
        import soundfile as sf

        return sf._ffi.string(sf._snd.sf_strerror(f._file)).decode("utf-8", "replace")
    except Exception:
        return ""


class AudioParts:
    """Consecutive frames of one render into one file or several.

    Parameters
    ----------
    out_path : str
        The output; with ``split_at`` the parts are named by :func:`part_paths` and ``out_path`` itself is not
        written.
    total : int
        Frames the render writes.
    samplerate, channels : int
    fmt, subtype : str
        From :func:`metronome.render.output_format`.
    split_at : sequence of int, optional
        Samples where a new part starts, strictly increasing inside ``(0, total)``; None: ``out_path`` alone
        (an empty sequence: a single part, ``OUT-01.ext``).
    """

    def __init__(self, out_path: str, total: int, samplerate: int, channels: int, fmt: str, subtype: str,
                 split_at=None):
        cuts = [int(s) for s in split_at or ()]
        if any(not 0 < b < int(total) for b in cuts) or any(b >= c for b, c in zip(cuts, cuts[1:])):
            raise InputError(f"{out_path}: split points {cuts[:5]}... are not increasing inside 0..{total}")
        self.starts = [0, *cuts]
        self.ends = [*cuts, int(total)]
        self.paths = [str(out_path)] if split_at is None else part_paths(out_path, len(self.starts))
        self.samplerate, self.channels, self.fmt, self.subtype = int(samplerate), int(channels), fmt, subtype
        self.outs: list[AtomicOutput] = []
        try:
            for p in self.paths:
                self.outs.append(AtomicOutput(p))
        except BaseException:
            self.abort()
            raise
        self.k = -1
        self.f = None
        self.fd = -1  # the open part's descriptor (libsndfile's own: closed with it)
        self.writeback: Writeback | None = None
        self.flushed = 0  # bytes of the open part handed to writeback so far
        self.pos = 0

    def _container(self, k: int) -> str:
        """WAV, or RF64 for a part over the RIFF size limit (each part on its own, outfiles.estimate)."""
        frames = self.ends[k] - self.starts[k]
        return outfiles.estimate(self.paths[k], self.fmt, self.subtype, frames, self.samplerate,
                                 self.channels).container

    def _open_next(self) -> None:
        import soundfile as sf

        self._close_current()
        self.k += 1
        try:
            # libsndfile is handed a descriptor of the (empty) temporary, not its path: opening by path truncates
            # it (O_TRUNC), and on ext4 a file truncated to zero is written out to the disk when it is closed
            # ("auto_da_alloc": 0.08 s at the close of 30 minutes of WAV, a fifth of the render).  The rename that
            # moves it into place still has ext4 write it first (see close_without_fsync).
            fd = os.open(self.outs[self.k].tmp, os.O_RDWR)
            try:
                self.f = sf.SoundFile(fd, "w", samplerate=self.samplerate, channels=self.channels,
                                      format=self._container(self.k), subtype=self.subtype, closefd=True)
                self.fd, self.flushed = fd, 0
            except BaseException:
                os.close(fd)
                raise
        except (sf.LibsndfileError, OSError) as exc:
            raise outfiles.write_error(self.paths[self.k], exc) from None

    def _close_current(self) -> None:
        import soundfile as sf

        if self.f is None:
            return
        f, self.f = self.f, None
        self.fd = -1
        if self.writeback is not None:
            self.writeback.drain()  # no hint may reach this descriptor once it is closed
        try:
            close_without_fsync(f)  # writes the header (WAV sizes, FLAC STREAMINFO): may fail on a full disk too
        except (sf.LibsndfileError, OSError) as exc:
            raise outfiles.write_error(self.paths[self.k], exc, sf_detail(f)) from None

    def write(self, frames) -> None:
        """Append ``frames`` (int16 or float32, ``[n, channels]``), starting the next part where one ends."""
        import soundfile as sf

        done = 0
        n = len(frames)
        while done < n:
            if self.f is None or self.pos >= self.ends[self.k]:
                if self.k + 1 >= len(self.paths):
                    raise InputError(f"{self.paths[-1]}: more frames than the {self.ends[-1]} planned")
                self._open_next()
            take = min(n - done, self.ends[self.k] - self.pos)
            try:
                self.f.write(frames[done:done + take])
            except (sf.LibsndfileError, OSError) as exc:
                raise outfiles.write_error(self.paths[self.k], exc, sf_detail(self.f)) from None
            done += take
            self.pos += take
        self._start_writeback()

    def _start_writeback(self) -> None:
        """Hand what libsndfile has written since the last hint (every WRITEBACK_BYTES) to the kernel's writeback
        (:class:`Writeback`), without waiting for it."""
        if self.fd < 0 or not hasattr(os, "posix_fadvise"):
            return
        try:
            end = os.lseek(self.fd, 0, os.SEEK_CUR)
        except OSError:
            self.fd = -1
            return
        if end - self.flushed >= WRITEBACK_BYTES:
            if self.writeback is None:
                self.writeback = Writeback()
            self.writeback.hint(self.fd, self.flushed, end - self.flushed)
            self.flushed = end

    def close(self) -> None:
        """Close the last part and read every part's length back: a part shorter than what was rendered for it is
        never reported as written."""
        import soundfile as sf

        self._close_current()
        if self.writeback is not None:
            self.writeback.stop()
            self.writeback = None
        for k, o in enumerate(self.outs):
            want = self.ends[k] - self.starts[k]
            got = sf.info(o.tmp).frames if k <= self.k else 0
            if got != want:
                raise InputError(f"{self.paths[k]}: the file holds {got} of the {want} frames rendered; nothing "
                                 "was written")

    def commit(self) -> None:
        for o in self.outs:
            o.commit()

    def abort(self) -> None:
        """Remove every temporary (never raises for the removal); the targets are untouched."""
        f, self.f = getattr(self, "f", None), None
        wb, self.writeback = getattr(self, "writeback", None), None
        if wb is not None:
            wb.stop()  # before the descriptor is closed
        if f is not None:
            try:
                close_without_fsync(f)  # the temporary is removed next: forcing it to the disk would be wasted
            except Exception:
                pass
        for o in self.outs:
            o.abort()
