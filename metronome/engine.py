"""The engine: owns every preallocated array the kernel works on (one instance per stream or render).

Layers (stumpy style): the kernels (:mod:`metronome.kernels`: the functions of :mod:`metronome._kernels`, compiled
ahead of time or by numba's JIT; arrays in/out) <- this driver (allocation) <- :mod:`metronome.render` (files) and
:mod:`metronome.player` (the device stream) <- :mod:`metronome.session`.

Real-time contract: the PortAudio callback is :func:`metronome._kernels._pa_callback` compiled to a C function (the
ahead-of-time module's ``downbeat_pa_callback``, or a numba ``cfunc``) that views the arrays allocated in
:class:`Engine` through a pointer table and runs the same :func:`~metronome._kernels.process_block` that
:meth:`Engine.process` runs offline.  It allocates nothing, takes no lock (not even the GIL), does no I/O or
logging and never compiles: :func:`warm_kernels` loads (or compiles) every kernel and calls it once before a
stream opens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from . import _layout as K
from . import kernels
from .errors import InputError
from .tempo import TempoMap
from .mix import ClipBank, EngineSettings, click_bank, db_to_gain
from .settings import MusicSettings


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


@dataclass(frozen=True)
class CallbackArrays:
    """What the C callback reads besides the engine's own arrays: its counters (int64 [K.S_N]), its timing ring
    (int64 [TIMING_RING, 2]: ns inside the callback, frames), the kernel's scalar parameters and the pointer table
    (int64 [K.P_N]) that PortAudio hands it as ``userData``.  Keep this object alive as long as the stream: it also
    holds the engine, whose arrays the table points into."""

    stats: np.ndarray
    timing: np.ndarray
    params: np.ndarray
    table: np.ndarray
    engine: "Engine"


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
    music : MusicSettings, optional
        Mix the music ring under the clicks and cues (its writer is :class:`metronome.music.ring.MusicRing`).
    music_frames : int
        Capacity of the music ring in frames (with ``music``; at least one render chunk).
    """

    def __init__(self, tempo_map: TempoMap, settings: EngineSettings = EngineSettings(), bank: ClipBank | None = None,
                 *, live: bool = False, max_change_per_beat: float = 0.004, min_bpm: float = 30.0,
                 max_bpm: float = 300.0, stop_beats_at: int | None = None, music: MusicSettings | None = None,
                 music_frames: int = 0):
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
        # The music ring exists in every engine (the kernel's argument layout is fixed); without music it is one
        # frame that is never read (ctl[CT_MUSIC] = 0).
        self.music_settings = music
        self.music = np.zeros((max(1, int(music_frames)) if music is not None else 1, 2), dtype=np.float32)
        self.music_idx = np.zeros(3, dtype=np.int64)
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
        self.ctl[K.CT_MUSIC] = 1.0 if music is not None else 0.0
        self.ctl[K.CT_MUSIC_DUCK] = db_to_gain(music.duck_db) if music is not None else 1.0
        self.ctl[K.CT_COACH_GAIN] = db_to_gain(music.coach_gain_db) if music is not None else 1.0
        self.st[K.ST_MUSIC_DUCK] = 1.0
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
        ms = music if music is not None else MusicSettings()
        self.music_attack_coef = 1.0 - math.exp(-1.0 / (ms.attack_s * sr))
        self.music_release_coef = 1.0 - math.exp(-1.0 / (ms.release_s * sr))
        self._map = (tempo_map.sample, tempo_map.bpm, tempo_map.phase)
        #: Every argument of :func:`~metronome._kernels.process_block` after ``out``, by the names of
        #: :data:`~metronome._kernels.BLOCK_ARGS` (the live player builds its pointer table from this too).
        self.block_values = {
            "st": self.st, "ctl": self.ctl, "map_sample": tempo_map.sample, "map_bpm": tempo_map.bpm,
            "map_phase": tempo_map.phase, "samplerate": sr, "bank": self.bank.data, "clip_off": self.bank.offsets,
            "clip_len": self.bank.lengths, "voices": self.voices, "cue_q": self.cue_q, "cue_idx": self.cue_idx,
            "events": self.events, "ev_idx": self.ev_idx, "duck_coef": self.duck_coef,
            "release_coef": self.release_coef, "gain_coef": self.gain_coef, "music": self.music,
            "music_idx": self.music_idx, "music_attack_coef": self.music_attack_coef,
            "music_release_coef": self.music_release_coef}
        # The argument tuple is built once: the callback does no per-call packing beyond the output array.
        self._args = tuple(self.block_values[name] for name, _, _ in K.BLOCK_ARGS)
        kernels.check_block_args(self._args)  # the compiled kernels trust their arguments: checked once, here
        self._scratch = None  # float block of process_pcm16 (offline only), made on first use

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

    def callback_arrays(self) -> CallbackArrays:
        """The C callback's pointer table, built from :data:`~metronome._kernels.BLOCK_ARGS` like :attr:`_args`."""
        stats = np.zeros(K.S_N, dtype=np.int64)
        timing = np.zeros((TIMING_RING, 2), dtype=np.int64)
        params = np.zeros(K.N_PARAMS, dtype=np.float64)
        table = np.zeros(K.P_N, dtype=np.int64)
        for name, dtype, ndim in K.BLOCK_ARGS:
            v = self.block_values[name]
            if dtype is None:
                params[K.BLOCK_PARAMS[name]] = v
                continue
            assert v.dtype == dtype and v.ndim == ndim and v.flags.c_contiguous, name
            slot = K.BLOCK_SLOTS[name]
            table[slot] = v.ctypes.data
            table[slot + 1:slot + 1 + ndim] = v.shape
        table[K.P_PARAMS] = params.ctypes.data
        table[K.P_STATS] = stats.ctypes.data
        table[K.P_TIMING] = timing.ctypes.data
        table[K.P_TIMING + 1] = TIMING_RING
        table[K.P_CHANNELS] = self.settings.channels
        return CallbackArrays(stats, timing, params, table, self)

    # -- audio thread -----------------------------------------------------------------------------------------
    def process(self, out: np.ndarray, blocksize: int | None = None) -> None:
        """Fill ``out`` (float32 [frames, channels]) through the kernel the live callback runs (offline renders).

        ``blocksize``: run the kernel on consecutive blocks of this many frames, as a device with that block size
        would, in one compiled loop (see :func:`metronome._kernels.process_blocks`); default one block.
        """
        n = out.shape[0] if blocksize is None else int(blocksize)
        if isinstance(out, np.ndarray) and out.dtype == np.float32 and not out.flags.c_contiguous and out.ndim == 2:
            tmp = np.ascontiguousarray(out)  # the kernels write C-contiguous blocks (a strided view of a caller's)
            kernels.process(tmp, n, self._args)
            out[...] = tmp
            return
        kernels.process(out, n, self._args)

    def process_pcm16(self, out: np.ndarray, blocksize: int) -> None:
        """Fill ``out`` (int16 [frames, channels], C order) with what :meth:`process` then libsndfile's PCM_16
        conversion (:func:`metronome._kernels.to_pcm16`) would give, block by block through a cache-sized float
        scratch (offline renders to PCM_16; :func:`metronome._kernels.process_blocks_pcm16`)."""
        n = min(int(blocksize), out.shape[0])
        if self._scratch is None or self._scratch.shape[0] < n:
            self._scratch = np.zeros((max(n, 1), self.settings.channels), dtype=np.float32)
        kernels.process_pcm16(out, int(blocksize), self._scratch, self._args)

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

    def drain_counts(self) -> list[int]:
        """``[beats, cues, cues_dropped]`` logged since the last drain, without building :class:`Event` objects (a
        render that writes no events CSV: 1320 drains per 30 minutes)."""
        w, r = int(self.ev_idx[0]), int(self.ev_idx[1])
        counts = [0, 0, 0]
        if w != r:
            ev, n = self.events, self.events.shape[0]
            for j in range(r, w):
                counts[int(ev[j % n, 0])] += 1
            self.ev_idx[1] = w
        return counts

    @property
    def position(self) -> int:
        return int(self.st[K.ST_POS])

    @property
    def peak(self) -> float:
        return float(self.st[K.ST_PEAK])

    @property
    def current_bpm(self) -> float:
        return float(self.st[K.ST_BPM])

    @property
    def music_underruns(self) -> int:
        """Samples on which the music ring was empty before the playlist's end (live play fell behind)."""
        return int(self.st[K.ST_MUSIC_UNDERRUNS])


#: Seconds a cold numba cache costs before the first sound or file (benchmarks/README.md, start-up: median of cold
#: runs on the 2-core test VM), said on the first run so that the wait is not silent (JIT backend only).
COLD_COMPILE_S = {"render": 3, "play": 4}


def _say(line: str) -> None:
    import sys

    print(f"downbeat: {line}", file=sys.stderr, flush=True)


def cache_is_warm(live: bool = True):
    """True if the kernels load without compiling (the ahead-of-time module is built for these sources, or numba's
    cache holds them), False if they will compile, None if unknown.

    Cheap (looks for one file, or reads one small index file per kernel; compiles nothing): used to say what a
    cold first run is doing.
    """
    from . import _aot

    if kernels.mode() != "jit" and _aot.find() is not None:
        return True
    if kernels._R.backend == "aot":
        return True
    from . import _kernels as JK

    if not JK.CACHE:
        return False
    try:
        from numba.core.caching import FunctionCache

        funcs = [JK.process_block, JK.beat_times, JK.map_phase_at_breakpoints, JK.process_blocks_pcm16]
        caches = [f._cache for f in funcs] + ([FunctionCache(JK._pa_callback)] if live else [])
        return all(bool(c._cache_file._load_index()) for c in caches)  # numba internals: best effort
    except Exception:
        return None


def warm_kernels(samplerate: int = 48000, channels: int = 2, for_play: bool = True, say=_say) -> float:
    """Load (or build, or JIT-compile) every kernel the command needs, for the exact run-time types.

    Returns the seconds it took.  Called before any stream opens, so the audio callback never compiles.
    ``for_play=False`` (render) leaves out the PortAudio C callback.  The backend (:mod:`metronome.kernels`) is
    picked first: the ahead-of-time module, built on the first run (``say`` gets one line saying what the wait
    is), or numba's JIT, whose cold cache gets the same line and a cache that cannot be written a warning
    (``say=None``: silent).  Under the JIT the helpers are bound to one signature each first (see
    :func:`metronome._kernels.bind_helpers`), so nothing compiles twice.
    """
    t0 = time.perf_counter()
    r = kernels.resolve(say=say)
    release = lambda: None  # noqa: E731
    if r.backend == "jit":
        JK = r.module
        warm = cache_is_warm(for_play)
        if say is not None:
            if JK.CACHE_CHOICE.warning:
                say(f"warning: {JK.CACHE_CHOICE.warning}")
            if r.reason and not r.build_later and r.reason != f"{kernels.MODE_ENV}=jit":
                say(f"note: {r.reason}: the audio engine is compiled by numba instead (slower start)")
            if warm is False:
                est = COLD_COMPILE_S["play" if for_play else "render"]
                when = "first run only" if JK.CACHE else "no cache: every run"
                say(f"preparing the audio engine ({when}, ~{est} s)")
        if warm is False:
            release = JK.bind_helpers()
    try:
        tm = TempoMap([0.0, 1000.0], [120.0, 121.0], samplerate)
        tm.beat_times()
        for live in (False, True):
            eng = Engine(tm, EngineSettings(samplerate=samplerate, channels=channels), live=live,
                         music=MusicSettings() if live else None, music_frames=64)
            buf = np.zeros((64, channels), dtype=np.float32)
            eng.request_cue(0, 0)
            eng.process(buf)
        eng.process_pcm16(np.zeros((64, channels), dtype=np.int16), 64)  # what a WAV/FLAC render runs
        if for_play:
            # The C callback, called once exactly as PortAudio will call it (into a scratch buffer).
            import ctypes

            arrays = Engine(tm, EngineSettings(samplerate=samplerate, channels=channels)).callback_arrays()
            fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                                  ctypes.c_ulong, ctypes.c_void_p)(kernels.pa_callback_address())
            buf = np.zeros((64, channels), dtype=np.float32)
            fn(None, buf.ctypes.data, 64, None, 0, arrays.table.ctypes.data)
    finally:
        release()
    return time.perf_counter() - t0


def freeze_kernels() -> None:
    """Forbid any further JIT compilation of the audio kernel (a new type signature would raise, not stall); the
    ahead-of-time module never compiles."""
    if kernels.resolve().backend == "jit":
        kernels.resolve().module.process_block.disable_compile()
