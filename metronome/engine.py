"""Audio engine driver: owns the preallocated arrays the kernel works on, renders offline and plays live.

Layers (stumpy style): :mod:`metronome._kernels` (numba, arrays in/out) <- this driver (allocation, threads,
files, devices) <- :mod:`metronome.session` / :mod:`metronome.cli` (public API).

Real-time contract: the PortAudio callback is :func:`metronome._kernels.pa_callback`, a compiled C function
(numba ``cfunc``) that views the arrays allocated in :class:`Engine` through a pointer table and runs the same
:func:`~metronome._kernels.process_block` that :meth:`Engine.process` runs offline.  It allocates nothing, takes
no lock (not even the GIL), does no I/O or logging and never compiles: every kernel is compiled or loaded from the
numba cache by :func:`warm_kernels` before a stream opens.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import _kernels as K
from .errors import AudioDeviceError, InputError
from .tempo import TempoMap

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT", "VORBIS")


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


@dataclass(frozen=True)
class EngineSettings:
    """Output and mixing parameters.

    Attributes
    ----------
    samplerate : int
    channels : int
        The mono mix is copied to every channel (headphones want 2).
    ceiling_dbfs : float
        Output peak never exceeds this (default -6 dBFS), whatever clicks and cues are mixed.
    volume_db : float
        Master volume, <= 0 dB: Downbeat never applies positive gain to the user's system.
    duck_db : float
        Click level while speech plays (-6 dB).
    accent_every : int
        Accent every N steps (0: no accent).
    n_voices : int
        Size of the fixed voice pool.
    """

    samplerate: int = 48000
    channels: int = 2
    ceiling_dbfs: float = -6.0
    volume_db: float = 0.0
    duck_db: float = -6.0
    accent_every: int = 4
    n_voices: int = 8

    def __post_init__(self):
        if not (isinstance(self.samplerate, (int, np.integer)) and 8000 <= self.samplerate <= 384000):
            raise InputError(f"--samplerate: {self.samplerate!r} is not an integer in 8000..384000")
        if self.channels not in (1, 2):
            raise InputError(f"--channels: {self.channels!r} is not 1 or 2")
        if not (math.isfinite(self.ceiling_dbfs) and -60.0 <= self.ceiling_dbfs <= 0.0):
            raise InputError(f"--ceiling-db: {self.ceiling_dbfs!r} is outside -60..0 dBFS")
        if not (math.isfinite(self.volume_db) and -60.0 <= self.volume_db <= 0.0):
            raise InputError(f"--volume-db: {self.volume_db!r} is outside -60..0 dB (never positive gain)")
        if not (math.isfinite(self.duck_db) and -40.0 <= self.duck_db <= 0.0):
            raise InputError(f"--duck-db: {self.duck_db!r} is outside -40..0 dB")
        if not (0 <= self.accent_every <= 64):
            raise InputError(f"--accent-every: {self.accent_every!r} is outside 0..64")
        if not (2 <= self.n_voices <= 64):
            raise InputError(f"n_voices: {self.n_voices!r} is outside 2..64")


# ------------------------------------------------------------------------------------------------------------------
# Clicks and the clip bank
# ------------------------------------------------------------------------------------------------------------------
def synth_click(samplerate: int, freq_hz: float, duration_s: float, peak: float) -> np.ndarray:
    """A short, bright, woodblock-like click.

    Cosine phase and a 0.5 ms linear attack: the first sample is small but non-zero, so the click's onset is
    exactly its first sample (tests and latency measurements find it without guessing), and there is no step
    large enough to be heard as a pop.  An exponential decay ends in a 2 ms fade so the tail is exactly zero.
    """
    n = int(round(duration_s * samplerate))
    i = np.arange(n, dtype=np.float64)
    attack = max(1, int(round(0.0005 * samplerate)))
    env = np.minimum(1.0, (i + 1.0) / attack) * np.exp(-i / (0.25 * n))
    fade = max(1, int(round(0.002 * samplerate)))
    env[-fade:] *= np.linspace(1.0, 0.0, fade + 1)[1:]
    tone = np.cos(2 * np.pi * freq_hz * i / samplerate) + 0.3 * np.cos(2 * np.pi * 2.0 * freq_hz * i / samplerate)
    x = env * tone
    x *= peak / np.max(np.abs(x))
    return x.astype(np.float32)


ACCENT_REL = 0.9  # accent click peak, relative to the ceiling
NORMAL_REL = 0.64  # normal click peak (-3 dB under the accent)
SPEECH_MARGIN = 0.95


def mix_levels(settings: "EngineSettings") -> dict:
    """Peak levels (linear, before the master volume) that keep every mix under the ceiling *without* the limiter.

    Clicks sit just under the ceiling; speech is scaled so that speech plus a ducked accent stays under it too.
    The limiter is then a safety net that normal sessions never engage (no pumping on clicks under speech).
    """
    ceiling = db_to_gain(settings.ceiling_dbfs)
    accent = ACCENT_REL * ceiling
    speech = SPEECH_MARGIN * (ceiling - accent * db_to_gain(settings.duck_db))
    return {"ceiling": ceiling, "accent": accent, "normal": NORMAL_REL * ceiling, "speech": speech}


def default_clicks(samplerate: int, accent_peak: float | None = None, normal_peak: float | None = None):
    """(accent, normal) clicks: a bright accent and a lower, softer normal step (default: default-ceiling levels)."""
    if accent_peak is None or normal_peak is None:
        lv = mix_levels(EngineSettings(samplerate=samplerate))
        accent_peak = lv["accent"] if accent_peak is None else accent_peak
        normal_peak = lv["normal"] if normal_peak is None else normal_peak
    accent = synth_click(samplerate, 1760.0, 0.030, accent_peak)
    normal = synth_click(samplerate, 1320.0, 0.025, normal_peak)
    return accent, normal


@dataclass(frozen=True)
class ClipBank:
    """All clips concatenated into one read-only float32 array (clip 0 accent, clip 1 normal, then cues)."""

    data: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    names: tuple

    @classmethod
    def build(cls, clips: list[tuple[str, np.ndarray]]) -> "ClipBank":
        names, arrays = zip(*clips)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        if np.any(lengths <= 0):
            raise InputError(f"clip {names[int(np.argmin(lengths))]!r} is empty")
        for name, a in zip(names, arrays):
            if not np.all(np.isfinite(a)):
                raise InputError(f"clip {name!r}: contains NaN or infinite samples")
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        data = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays]).astype(np.float32)
        for arr in (data, offsets, lengths):
            arr.flags.writeable = False
        return cls(data, offsets, lengths, tuple(names))

    def index(self, name: str) -> int:
        return self.names.index(name)


def click_bank(samplerate: int, cue_clips=(), settings: "EngineSettings | None" = None) -> ClipBank:
    """Clicks + cue clips at the levels of :func:`mix_levels` (cue clips are rescaled to the speech peak)."""
    lv = mix_levels(settings if settings is not None else EngineSettings(samplerate=samplerate))
    accent, normal = default_clicks(samplerate, lv["accent"], lv["normal"])
    scaled = []
    for name, clip in cue_clips:
        clip = np.asarray(clip, dtype=np.float32)
        peak = float(np.max(np.abs(clip))) if clip.size else 0.0
        scaled.append((name, (clip * np.float32(lv["speech"] / peak)) if peak > 0 else clip))
    return ClipBank.build([("accent", accent), ("normal", normal), *scaled])


# ------------------------------------------------------------------------------------------------------------------
# Engine
# ------------------------------------------------------------------------------------------------------------------
EVENT_RING = 4096
CUE_RING = 256
CUE_GRACE_S = 1.5  # a cue may start at most this late (more than any beat interval at running cadences)
TIMING_RING = 1 << 16


@dataclass(frozen=True)
class Event:
    kind: str  # beat | cue | cue_dropped
    sample: int
    time_s: float
    bpm: float
    clip: str


class Engine:
    """Owns every array the kernel touches; one instance per stream or render.

    Parameters
    ----------
    tempo_map : TempoMap
    settings : EngineSettings
    bank : ClipBank, optional
        Clicks (+ cue clips). Defaults to the synthesized clicks.
    live : bool
        Follow ``ctl[CT_TARGET_BPM]`` (slewed per beat) instead of the tempo map.
    max_change_per_beat : float
        Live-mode slew limit.
    min_bpm, max_bpm : float
        Live-mode bounds for the tempo.
    """

    def __init__(self, tempo_map: TempoMap, settings: EngineSettings = EngineSettings(), bank: ClipBank | None = None,
                 *, live: bool = False, max_change_per_beat: float = 0.004, min_bpm: float = 30.0,
                 max_bpm: float = 300.0, stop_beats_at: int | None = None):
        if tempo_map.samplerate != settings.samplerate:
            raise InputError(f"tempo map samplerate {tempo_map.samplerate} != output samplerate {settings.samplerate}")
        self.tempo_map = tempo_map
        self.settings = settings
        self.bank = bank if bank is not None else click_bank(settings.samplerate, settings=settings)
        sr = float(settings.samplerate)
        self.samplerate = settings.samplerate
        self.st = np.zeros(K.ST_N, dtype=np.float64)
        self.ctl = np.zeros(K.CT_N, dtype=np.float64)
        self.voices = np.full((settings.n_voices, 3), -1, dtype=np.int64)
        self.cue_q = np.zeros((CUE_RING, 3), dtype=np.int64)
        self.cue_idx = np.zeros(2, dtype=np.int64)
        self.events = np.zeros((EVENT_RING, 4), dtype=np.float64)
        self.ev_idx = np.zeros(2, dtype=np.int64)
        gain = db_to_gain(settings.volume_db)
        self.ctl[K.CT_GAIN] = gain
        self.ctl[K.CT_LIVE] = 1.0 if live else 0.0
        self.ctl[K.CT_SLEW] = max_change_per_beat
        self.ctl[K.CT_MIN_BPM] = min_bpm
        self.ctl[K.CT_MAX_BPM] = max_bpm
        self.ctl[K.CT_TARGET_BPM] = float(tempo_map.bpm[0])
        self.ctl[K.CT_BEAT_END] = -1.0 if stop_beats_at is None else float(stop_beats_at)
        self.ctl[K.CT_CEILING] = db_to_gain(settings.ceiling_dbfs)
        self.ctl[K.CT_DUCK] = db_to_gain(settings.duck_db)
        self.ctl[K.CT_ACCENT_EVERY] = settings.accent_every
        self.st[K.ST_BPM] = float(tempo_map.bpm[0])
        self.st[K.ST_DUCK] = 1.0
        self.st[K.ST_LIMIT] = 1.0
        # Start at the target gain: the first click already has its own soft attack, a fade-in would only
        # attenuate it.  Gain *changes* (volume, stop) are smoothed by the kernel.
        self.st[K.ST_MASTER] = gain
        self.st[K.ST_LAST_BEAT] = -1.0
        # Time constants -> per-sample one-pole coefficients (same sound at any samplerate).
        self.duck_coef = 1.0 - math.exp(-1.0 / (0.010 * sr))
        self.release_coef = 1.0 - math.exp(-1.0 / (0.050 * sr))
        self.gain_coef = 1.0 - math.exp(-1.0 / (0.005 * sr))
        self._map = (tempo_map.sample, tempo_map.bpm, tempo_map.phase)
        # The argument tuple is built once: the callback does no per-call packing beyond the output array.
        self._args = (self.st, self.ctl, *self._map, sr, self.bank.data, self.bank.offsets, self.bank.lengths,
                      self.voices, self.cue_q, self.cue_idx, self.events, self.ev_idx,
                      self.duck_coef, self.release_coef, self.gain_coef)

    def seek(self, position: int, bpm: float | None = None) -> None:
        """Start producing at sample ``position`` (before any audio), e.g. to resume a session in a new process.

        Map mode: the next beat is the first beat of the tempo map at or after ``position``, so the clicks
        land exactly where an uninterrupted session would have put them.  Live mode: the beat grid restarts at
        ``position`` with tempo ``bpm`` (the tempo the session had reached).
        """
        if position < 0:
            raise InputError(f"resume position: {position!r} is negative")
        self.st[K.ST_POS] = float(position)
        if self.ctl[K.CT_LIVE] > 0.5:
            b = float(bpm if bpm is not None else self.st[K.ST_BPM])
            self.st[K.ST_BPM] = min(max(b, self.ctl[K.CT_MIN_BPM]), self.ctl[K.CT_MAX_BPM])
            self.st[K.ST_NEXT_BEAT] = float(position)
            self.st[K.ST_BEAT_INDEX] = 0.0
            return
        tm = self.tempo_map
        times = tm.beat_times(max(position + int(60 * self.samplerate), tm.end_sample))
        k = int(np.searchsorted(np.floor(times + 0.5), position, side="left"))
        if k >= times.size:  # past the last beat: nothing more to play
            self.st[K.ST_NEXT_BEAT] = float(position) + 1e12
            return
        self.st[K.ST_BEAT_INDEX] = float(k)
        self.st[K.ST_NEXT_BEAT] = times[k]
        self.st[K.ST_SEG] = float(max(0, np.searchsorted(tm.sample, times[k], side="right") - 1))
        self.st[K.ST_BPM] = float(tm.bpm_at(times[k]))

    # -- audio thread -----------------------------------------------------------------------------------------
    def process(self, out: np.ndarray) -> None:
        """Fill ``out`` (float32 [frames, channels]) through the kernel the live callback runs (offline renders)."""
        K.process_block(out, *self._args)

    # -- control (one writer: the thread that owns the session) ----------------------------------------------
    def request_cue(self, clip: int, not_before_sample: int, deadline_sample: int | None = None) -> bool:
        """Queue a cue clip to start on the first beat at or after ``not_before_sample``.

        Requests must be queued in time order (the kernel serves the ring head first).  If that beat comes after
        ``deadline_sample`` (default: ``CUE_GRACE_S`` later) the cue is dropped, not played late.
        Returns False if the ring is full.
        """
        w, r = int(self.cue_idx[0]), int(self.cue_idx[1])
        if w - r >= self.cue_q.shape[0]:
            return False
        if deadline_sample is None:
            deadline_sample = int(not_before_sample) + int(CUE_GRACE_S * self.samplerate)
        row = w % self.cue_q.shape[0]
        self.cue_q[row, 0] = clip
        self.cue_q[row, 1] = not_before_sample
        self.cue_q[row, 2] = deadline_sample
        self.cue_idx[0] = w + 1  # publish after the row is complete
        return True

    def queue_cues(self, requests, start: int, until_sample: int) -> int:
        """Queue ``requests[start:]`` (``(clip, sample)``, in time order) whose sample is before ``until_sample``.

        Stops early if the ring is full (the rest wait for the next call).  Returns the index of the first request
        not yet queued.  Render and live play both feed the ring this way, a block or a few seconds ahead.
        """
        i = start
        while i < len(requests) and requests[i][1] < until_sample:
            if not self.request_cue(*requests[i]):
                break
            i += 1
        return i

    def set_target_bpm(self, bpm: float) -> None:
        self.ctl[K.CT_TARGET_BPM] = bpm

    def set_gain(self, gain: float) -> None:
        self.ctl[K.CT_GAIN] = min(max(gain, 0.0), 1.0)

    # -- polling (main thread) --------------------------------------------------------------------------------
    def drain_events(self) -> list[Event]:
        """Events the kernel logged since the last call (beats, cues), oldest first."""
        w, r = int(self.ev_idx[0]), int(self.ev_idx[1])
        out = []
        sr = self.samplerate
        n = self.events.shape[0]
        for j in range(r, w):
            kind, sample, bpm, clip = self.events[j % n]
            out.append(Event(("beat", "cue", "cue_dropped")[int(kind)], int(sample), sample / sr, float(bpm),
                             self.bank.names[int(clip)] if 0 <= clip < len(self.bank.names) else str(int(clip))))
        self.ev_idx[1] = w
        return out

    @property
    def position(self) -> int:
        return int(self.st[K.ST_POS])

    @property
    def peak(self) -> float:
        return float(self.st[K.ST_PEAK])

    @property
    def current_bpm(self) -> float:
        return float(self.st[K.ST_BPM])


#: Seconds a cold numba cache costs before the first sound or file (benchmarks/README.md, start-up: median of cold
#: runs on the 2-core test VM), said on the first run so that the wait is not silent.
COLD_COMPILE_S = {"render": 3, "play": 4}


def _say(line: str) -> None:
    import sys

    print(f"downbeat: {line}", file=sys.stderr, flush=True)


def warm_kernels(samplerate: int = 48000, channels: int = 2, for_play: bool = True, say=_say) -> float:
    """Compile (or load from the numba cache) every kernel the command needs, for the exact run-time types.

    Returns the seconds it took.  Called before any stream opens, so the audio callback never compiles.
    ``for_play=False`` (render) leaves out the PortAudio C callback.  On a cold cache (a first run, or an edit of
    the kernels) ``say`` gets one line saying what the wait is; a cache that cannot be written gets a warning
    (``say=None``: silent).  The helpers are then bound to one signature each first (see
    :func:`metronome._kernels.bind_helpers`), so nothing compiles twice.
    """
    t0 = time.perf_counter()
    warm = K.cache_is_warm(for_play)
    if say is not None:
        if K.CACHE_CHOICE.warning:
            say(f"warning: {K.CACHE_CHOICE.warning}")
        if warm is False:
            est = COLD_COMPILE_S["play" if for_play else "render"]
            when = "first run only" if K.CACHE else "no cache: every run"
            say(f"preparing the audio engine ({when}, ~{est} s)")
    release = K.bind_helpers() if warm is False else (lambda: None)
    try:
        tm = TempoMap([0.0, 1000.0], [120.0, 121.0], samplerate)
        tm.beat_times()
        for live in (False, True):
            eng = Engine(tm, EngineSettings(samplerate=samplerate, channels=channels), live=live)
            buf = np.zeros((64, channels), dtype=np.float32)
            eng.request_cue(0, 0)
            eng.process(buf)
        pcm = np.zeros((64, channels), dtype=np.int16)
        K.to_pcm16(buf, pcm)  # the WAV/FLAC writer's PCM_16 conversion
        if for_play:
            # The C callback, called once exactly as PortAudio will call it (into a scratch buffer).
            import ctypes

            player = LivePlayer(Engine(tm, EngineSettings(samplerate=samplerate, channels=channels)))
            cb = K.pa_callback()
            fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                                  ctypes.c_ulong, ctypes.c_void_p)(cb.address)
            buf = np.zeros((64, channels), dtype=np.float32)
            fn(None, buf.ctypes.data, 64, None, 0, player.table.ctypes.data)
    finally:
        release()
    return time.perf_counter() - t0


def freeze_kernels() -> None:
    """Forbid any further JIT compilation of the audio kernel (a new type signature would raise, not stall)."""
    K.process_block.disable_compile()


# ------------------------------------------------------------------------------------------------------------------
# Offline render
# ------------------------------------------------------------------------------------------------------------------
MAX_VORBIS_SAMPLERATE = 192000  # libvorbis refuses more, and libsndfile crashes trying


def output_format(path: str, subtype: str | None = None, samplerate: int | None = None) -> tuple[str, str]:
    """(format, subtype) for an output path; InputError for anything libsndfile cannot write."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise InputError(f"{path}: unsupported output format {ext or '(none)'!r}; use .wav, .flac or .ogg")
    fmt, default = FORMATS[ext]
    sub = (subtype or default).upper()
    if sub not in SUBTYPES:
        raise InputError(f"--subtype: {subtype!r} is not one of {', '.join(SUBTYPES)}")
    if (fmt == "OGG") != (sub == "VORBIS") or (fmt == "FLAC" and sub == "FLOAT"):
        raise InputError(f"--subtype: {sub} cannot be written to a {ext} file")
    if fmt == "OGG" and samplerate is not None and samplerate > MAX_VORBIS_SAMPLERATE:
        raise InputError(f"--samplerate: {samplerate} is above {MAX_VORBIS_SAMPLERATE} Hz, the most an .ogg "
                         "(Vorbis) file can hold; use .wav or .flac")
    return fmt, sub


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
        fd, self.tmp = tempfile.mkstemp(prefix=".downbeat-", suffix=os.path.splitext(path)[1] + ".partial",
                                        dir=folder)
        os.close(fd)

    def commit(self):
        # mkstemp makes the file owner-only; a finished track should get the usual permissions (umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@dataclass
class RenderResult:
    path: str
    frames: int
    beats: int
    cues: int
    cues_dropped: int
    peak: float
    seconds: float
    events_path: str | None = None
    events: list = field(default_factory=list)


def render(tempo_map: TempoMap, out_path: str, settings: EngineSettings = EngineSettings(), *,
           bank: ClipBank | None = None, cue_requests=(), events_path: str | None = None,
           blocksize: int = 65536, tail_s: float = 1.0, subtype: str | None = None, progress=None,
           keep_events: bool = False) -> RenderResult:
    """Render a tempo map (and cues) to WAV/FLAC/OGG through the live kernel, streaming to disk.

    Memory is constant in the session length: one block buffer, the event ring and the output file handle.

    Parameters
    ----------
    cue_requests : iterable of (clip_index, not_before_sample)
        Sorted by sample. Each starts on the first beat at or after its sample.
    events_path : str, optional
        CSV with one row per event: kind, sample, time_s, bpm, clip.
    progress : callable(frames_done, frames_total), optional
    """
    import soundfile as sf

    fmt, sub = output_format(out_path, subtype, settings.samplerate)
    if not (1 <= blocksize <= 1 << 20):
        raise InputError(f"--blocksize: {blocksize!r} is outside 1..1048576")
    if events_path and os.path.abspath(events_path) == os.path.abspath(out_path):
        raise InputError(f"--events: {events_path!r} is the audio output file; give the events CSV its own name")
    total = tempo_map.end_sample + int(round(tail_s * settings.samplerate))
    engine = Engine(tempo_map, settings, bank, stop_beats_at=tempo_map.end_sample)
    # Time order: the kernel serves the ring head first, so an out-of-order request would hold back the others.
    requests = sorted(((int(c), int(s)) for c, s in cue_requests), key=lambda r: r[1])
    outs = []
    try:
        outs.append(AtomicOutput(out_path))
        if events_path:
            outs.append(AtomicOutput(events_path))
    except BaseException:
        for o in outs:  # the events folder may be bad after the audio temporary was made
            o.abort()
        raise
    t0 = time.perf_counter()
    beats = cues = dropped = 0
    kept = []
    try:
        buf = np.zeros((blocksize, settings.channels), dtype=np.float32)
        # PCM_16: convert in the kernel layer and give libsndfile shorts (identical bytes, several times faster).
        pcm = np.zeros((blocksize, settings.channels), dtype=np.int16) if sub == "PCM_16" else None
        with sf.SoundFile(outs[0].tmp, "w", samplerate=settings.samplerate, channels=settings.channels,
                          format=fmt, subtype=sub) as f, \
                (open(outs[1].tmp, "w", newline="") if events_path else contextlib.nullcontext()) as ef:
            writer = csv.writer(ef) if events_path else None
            if writer:
                writer.writerow(["kind", "sample", "time_s", "bpm", "clip"])
            done = 0
            ri = 0
            while done < total:
                n = min(blocksize, total - done)
                # Queue every cue that could start in this block (it waits in the ring for its beat otherwise).
                ri = engine.queue_cues(requests, ri, done + n)
                view = buf[:n]
                engine.process(view)
                if pcm is not None:
                    K.to_pcm16(view, pcm[:n])
                    f.write(pcm[:n])
                else:
                    f.write(view)
                for ev in engine.drain_events():
                    if ev.kind == "beat":
                        beats += 1
                    elif ev.kind == "cue":
                        cues += 1
                    else:
                        dropped += 1
                    if writer:
                        writer.writerow([ev.kind, ev.sample, f"{ev.time_s:.6f}", f"{ev.bpm:.4f}", ev.clip])
                    if keep_events:
                        kept.append(ev)
                done += n
                if progress is not None:
                    progress(done, total)
        for o in outs:
            o.commit()
    except BaseException:
        for o in outs:
            o.abort()
        raise
    return RenderResult(out_path, total, beats, cues, dropped, engine.peak, time.perf_counter() - t0,
                        events_path, kept)


# ------------------------------------------------------------------------------------------------------------------
# Live play
# ------------------------------------------------------------------------------------------------------------------
class NoOutputDevice(AudioDeviceError):
    """No audio output at all (as opposed to a bad ``--device`` value)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"{reason}; use 'downbeat render PROFILE -o out.wav' to make a track instead "
                         "('downbeat doctor' says what to install or start)")


def find_device(name: str | None):
    """Resolve ``--device`` (index or case-insensitive substring) to an output device index."""
    try:
        import sounddevice as sd  # raises OSError when libportaudio2 is missing

        devices = sd.query_devices()
    except Exception as exc:  # PortAudio missing or broken: say what to install
        raise NoOutputDevice(f"PortAudio is not usable ({exc}); install it with 'apt-get install libportaudio2'")
    outputs = [i for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outputs:
        raise NoOutputDevice("no audio output device found (no sound card, JACK or PulseAudio server)")
    if name is None:
        default = sd.default.device[1]
        return default if default in outputs else outputs[0]
    if name.isdigit():
        if int(name) in outputs:
            return int(name)
        raise InputError(f"--device: {name!r} is not an output device index (outputs: {outputs})")
    apis = sd.query_hostapis()
    # "JACK", "pulse" or "USB": match the device name or its host API's name.
    label = {i: f"{devices[i]['name']} ({apis[devices[i]['hostapi']]['name']})" for i in outputs}
    matches = [i for i in outputs if name.lower() in label[i].lower()]
    if not matches:
        names = ", ".join(repr(label[i]) for i in outputs)
        raise InputError(f"--device: no output device matches {name!r} (have: {names})")
    return matches[0]


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
        self.stats = np.zeros(K.S_N, dtype=np.int64)
        self.timing = np.zeros((TIMING_RING, 2), dtype=np.int64)  # ns inside the callback, frames
        self.params = np.array([engine.samplerate, engine.duck_coef, engine.release_coef, engine.gain_coef],
                               dtype=np.float64)
        e, b = engine, engine.bank
        table = np.zeros(K.P_N, dtype=np.int64)
        for slot, arr in ((K.P_ST, e.st), (K.P_CTL, e.ctl), (K.P_MAP_S, e._map[0]), (K.P_MAP_B, e._map[1]),
                          (K.P_MAP_P, e._map[2]), (K.P_BANK, b.data), (K.P_CLIP_OFF, b.offsets),
                          (K.P_CLIP_LEN, b.lengths), (K.P_VOICES, e.voices), (K.P_CUEQ, e.cue_q),
                          (K.P_CUEIDX, e.cue_idx), (K.P_EVENTS, e.events), (K.P_EVIDX, e.ev_idx),
                          (K.P_PARAMS, self.params), (K.P_STATS, self.stats), (K.P_TIMING, self.timing)):
            assert arr.flags.c_contiguous
            table[slot] = arr.ctypes.data
        table[K.P_MAP_N] = e._map[0].size
        table[K.P_BANK_N] = b.data.size
        table[K.P_NCLIPS] = b.offsets.size
        table[K.P_NVOICES] = e.voices.shape[0]
        table[K.P_NCUEQ] = e.cue_q.shape[0]
        table[K.P_NEVENTS] = e.events.shape[0]
        table[K.P_CHANNELS] = engine.settings.channels
        table[K.P_NTIMING] = TIMING_RING
        self.table = table  # kept alive (with the engine's arrays) for the stream's lifetime
        self.stream = None
        self.lost = False  # set by the owner when the device/server is gone
        self.wedged = False

    def start(self):
        import sounddevice as sd

        s = self.engine.settings
        callback = K.pa_callback()  # compiled at warm-up; loading is a dictionary hit here
        try:
            # sounddevice's documented extension point for library authors: a C function pointer + userdata.
            self.stream = sd._StreamBase(kind="output", samplerate=s.samplerate, blocksize=self.blocksize,
                                         device=self.device, channels=s.channels, dtype="float32",
                                         latency=self.latency, callback=callback.address,
                                         userdata=sd._ffi.cast("void *", self.table.ctypes.data),
                                         wrap_callback=None)
            self.stream.start()
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
