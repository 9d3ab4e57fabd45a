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
            self.f = sf.SoundFile(self.outs[self.k].tmp, "w", samplerate=self.samplerate, channels=self.channels,
                                  format=self._container(self.k), subtype=self.subtype)
        except (sf.LibsndfileError, OSError) as exc:
            raise outfiles.write_error(self.paths[self.k], exc) from None

    def _close_current(self) -> None:
        import soundfile as sf

        if self.f is None:
            return
        f, self.f = self.f, None
        try:
            f.close()  # writes the header (WAV sizes, FLAC STREAMINFO): may fail on a full disk too
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

    def close(self) -> None:
        """Close the last part and read every part's length back: a part shorter than what was rendered for it is
        never reported as written."""
        import soundfile as sf

        self._close_current()
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
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
        for o in self.outs:
            o.abort()
