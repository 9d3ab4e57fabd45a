"""Offline voice: a speech engine (festival, flite or espeak-ng, :mod:`cues.tts`) or a user voice pack -> trimmed,
resampled, normalised float32 clips, cached on disk.

Everything here runs before the audio starts (never in the audio callback), so clarity wins over speed: the
resampler is a plain windowed-sinc interpolator evaluated at the exact rational output positions.

Clip contract (what the kernel's clip bank receives)
----------------------------------------------------
* mono float32 at the session sample rate;
* leading/trailing silence trimmed (a cue must start on the beat, not 80 ms after it);
* peak exactly :data:`PEAK_LEVEL` (0.35 linear, about -9 dBFS): speech sits above the ducked clicks and the
  limiter rarely has to act;
* 5 ms raised-cosine fades at both ends, so trimming never leaves a step that clicks;
* at most :data:`MAX_CLIP_S` (2.5 s) long: a phrasing that is longer at the requested speech rate is re-spoken
  faster (up to :data:`MAX_RATE_WPM`), and if it still does not fit, :class:`CueError` says which phrasing to
  shorten.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil  # noqa: F401  (tests patch ``cues.voice.shutil.which`` to hide every engine)
import subprocess  # noqa: F401  (tests patch ``cues.voice.subprocess.run`` to prove a cache hit runs nothing)
from pathlib import Path

import numpy as np

from metronome.errors import CueError

from . import tts
from .library import CueLibrary, load_voice_pack
from .tts import VoiceSpec, VoiceUnavailableError, _read_audio, espeak_wav, festival_wav, flite_wav, parse_voice

__all__ = ["VoiceBank", "VoiceSpec", "VoiceUnavailableError", "synthesize", "resample", "trim_silence",
           "finish_clip", "cache_key", "default_cache_dir", "load_recording", "check_recording", "parse_voice",
           "espeak_wav", "festival_wav", "flite_wav"]

#: Bump when anything that changes the produced samples changes: old cache entries are then simply not found.
ENGINE_VERSION = "downbeat-voice-1"
PEAK_LEVEL = 0.35
MAX_CLIP_S = 2.5
DEFAULT_RATE_WPM = 175
MAX_RATE_WPM = 260  # beyond ~260 wpm synthesized speech stops being intelligible while running
FADE_S = 0.005
TRIM_THRESHOLD_DB = -40.0  # relative to the clip's peak
TRIM_PAD_S = 0.010
# A voice-pack recording is checked before it is read (it is read whole, as float64): cues are at most 2.5 s once
# trimmed, so 10 s leaves room for silence around the words, and 32 MiB holds 10 s of 8-channel 96 kHz 32-bit audio
# (issue 12.10: a 400 MB WAV was read whole, 3.4 GB RSS, and accepted).
MAX_RECORDING_S = 10.0
MAX_RECORDING_BYTES = 32 * 1024 * 1024
MAX_RECORDING_CHANNELS = 8

#: The value a ``{grade}`` phrasing is spoken with when no value is given: the longest to say of the values a
#: treadmill shows (two digits and a half, "twelve point five").
TEMPLATE_EXAMPLE_FILL = "12.5"
#: The same for a ``{distance}`` phrasing (whole metres): "42.5 kilometres", a marathon's longest mark to say.
TEMPLATE_EXAMPLE_DISTANCE = "42500"


# ------------------------------------------------------------------------------------------------------------------
# DSP helpers
# ------------------------------------------------------------------------------------------------------------------
def resample(x, samplerate_in: int, samplerate_out: int, zero_crossings: int = 32, kaiser_beta: float = 9.0,
             rolloff: float = 0.94) -> np.ndarray:
    """Band-limited resampling by windowed-sinc interpolation at exact rational positions.

    Output sample ``n`` sits at input time ``n * samplerate_in / samplerate_out``, computed in integers (quotient
    and remainder), so there is no drift however long the clip.  The low-pass cutoff is ``rolloff`` times the
    lower of the two Nyquist frequencies; when downsampling the kernel is widened accordingly so that content
    above the new Nyquist is removed rather than folded back (aliasing).

    Parameters
    ----------
    x : array_like
        1-D signal.
    samplerate_in, samplerate_out : int
    zero_crossings : int
        Half-width of the sinc kernel in zero crossings (of the cutoff); 32 with a Kaiser(9) window gives a
        stop band around -90 dB.
    kaiser_beta : float
    rolloff : float
        Cutoff as a fraction of the lower Nyquist frequency (transition band just below it).

    Returns
    -------
    ndarray of float64, length ``ceil(len(x) * samplerate_out / samplerate_in)``
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample: expected a 1-D signal, got shape {x.shape}")
    sr_in, sr_out = int(samplerate_in), int(samplerate_out)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {sr_in} and {sr_out}")
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    scale = min(1.0, sr_out / sr_in)
    fc = 0.5 * scale * rolloff  # cutoff in cycles per input sample
    half_width = zero_crossings / (2.0 * fc)  # kernel half-width in input samples
    reach = int(math.ceil(half_width))
    offsets = np.arange(-reach + 1, reach + 1)  # taps around floor(position)
    n_out = -(-x.size * up // down)
    padded = np.concatenate([np.zeros(reach + 1), x, np.zeros(reach + 1)])
    i0_beta = np.i0(kaiser_beta)

    def kernel(frac):
        d = frac[:, None] - offsets[None, :]  # distance from the output position to each tap, input samples
        u = d / half_width
        win = np.i0(kaiser_beta * np.sqrt(np.clip(1.0 - u * u, 0.0, None))) / i0_beta
        return 2.0 * fc * np.sinc(2.0 * fc * d) * np.where(np.abs(u) < 1.0, win, 0.0)

    # Output positions have only ``up`` distinct fractional parts: precompute one kernel per phase (polyphase)
    # unless the ratio is so odd that the table would be larger than computing kernels on the fly.
    table = kernel(np.arange(up) / up) if up <= 8192 else None
    y = np.empty(n_out, dtype=np.float64)
    chunk = max(1, (1 << 20) // offsets.size)  # bound the temporary [chunk, taps] arrays to ~8 MB each
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(n_out, start + chunk), dtype=np.int64)
        num = n * down
        base = num // up
        rem = num % up
        h = table[rem] if table is not None else kernel(rem / up)
        y[start:start + n.size] = np.einsum("ij,ij->i", h, padded[base[:, None] + offsets[None, :] + reach + 1])
    return y


def trim_silence(x: np.ndarray, samplerate: int, threshold_db: float = TRIM_THRESHOLD_DB,
                 pad_s: float = TRIM_PAD_S) -> np.ndarray:
    """Drop leading/trailing samples quieter than ``threshold_db`` below the peak, keeping ``pad_s`` around."""
    x = np.asarray(x, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x[:0]
    loud = np.nonzero(np.abs(x) >= peak * 10.0 ** (threshold_db / 20.0))[0]
    pad = int(round(pad_s * samplerate))
    return x[max(0, loud[0] - pad):min(x.size, loud[-1] + 1 + pad)]


def finish_clip(x: np.ndarray, samplerate: int, peak: float = PEAK_LEVEL, fade_s: float = FADE_S) -> np.ndarray:
    """Raised-cosine fades at both ends, then scale so that ``max|x| == peak``; float32."""
    y = np.array(x, dtype=np.float64)
    nf = min(int(round(fade_s * samplerate)), y.size // 2)
    if nf > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(nf) + 0.5) / nf)
        y[:nf] *= ramp
        y[-nf:] *= ramp[::-1]
    m = float(np.max(np.abs(y))) if y.size else 0.0
    if m > 0.0:
        y *= peak / m
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/downbeat/voice`` (``~/.cache/downbeat/voice`` when unset), per the XDG base dir spec."""
    base = os.environ.get("XDG_CACHE_HOME")
    # The spec says relative values are invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "downbeat" / "voice"


def cache_key(text: str, voice, rate_wpm: int, samplerate: int) -> str:
    """sha256 over everything that determines the clip's samples (``voice``: a spec, ``ENGINE[:VOICE]``)."""
    vs = voice if isinstance(voice, VoiceSpec) else parse_voice(voice)
    blob = json.dumps({"engine": ENGINE_VERSION, "tts": vs.engine, "text": text, "voice": vs.voice,
                       "rate_wpm": int(rate_wpm),
                       "samplerate": int(samplerate), "max_clip_s": MAX_CLIP_S, "peak": PEAK_LEVEL},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _cache_read(path: Path):
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # missing or corrupt: resynthesize
    if arr.dtype != np.float32 or arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    return arr


def _cache_write(path: Path, arr: np.ndarray) -> None:
    """Atomic: write a temp file in the same folder and ``os.replace`` it, so readers never see half a file."""
    from metronome.atomic import atomic_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb", prefix=".tmp-", suffix=".npy", fsync=False) as f:
            np.save(f, arr, allow_pickle=False)
    except OSError:
        return  # a read-only or full cache only costs time


# ------------------------------------------------------------------------------------------------------------------
# Synthesis
# ------------------------------------------------------------------------------------------------------------------
#: The engines' speak functions, looked up by name at call time (tests replace them with fakes).
_SPEAKERS = {"espeak-ng": "espeak_wav", "festival": "festival_wav", "flite": "flite_wav"}


def _speak(vs: VoiceSpec, text: str, rate_wpm: int):
    """Raw speech of ``text`` by ``vs``; a missing engine is an error if it was asked for, else clicks only."""
    try:
        return globals()[_SPEAKERS[vs.engine]](text, vs.voice, rate_wpm)
    except VoiceUnavailableError:
        if vs.explicit:
            raise CueError(f"--voice: {tts.missing_message(vs.engine)}") from None
        if tts.best_installed() is None:
            raise VoiceUnavailableError(tts.none_installed_message()) from None
        raise


def synthesize(text: str, samplerate: int, voice=None, rate_wpm: int = DEFAULT_RATE_WPM,
               cache_dir=None, what: str | None = None) -> np.ndarray:
    """A finished clip (see the module docstring) for ``text``, from the cache when possible.

    Parameters
    ----------
    text : str
    samplerate : int
        Session sample rate of the returned clip.
    voice : str or VoiceSpec, optional
        ``ENGINE[:VOICE]`` (:func:`cues.tts.parse_voice`); default the best installed engine.
    rate_wpm : int
        Requested speech rate, words per minute; raised automatically (up to :data:`MAX_RATE_WPM`) if the
        phrasing would be longer than :data:`MAX_CLIP_S`.
    cache_dir : path, optional
        Default :func:`default_cache_dir`.
    what : str, optional
        Name of the phrasing for error messages (e.g. ``cue 'lean_forward' phrasing 2``).

    Raises
    ------
    VoiceUnavailableError
        No engine chosen by default is installed (and the clip is not cached).
    CueError
        The phrasing cannot be spoken within 2.5 s, the engine failed, or an engine asked for is missing.
    """
    vs = voice if isinstance(voice, VoiceSpec) else parse_voice(voice)
    if not (isinstance(rate_wpm, (int, np.integer)) and 80 <= rate_wpm <= MAX_RATE_WPM):
        raise CueError(f"--rate: {rate_wpm!r} is not an integer in 80..{MAX_RATE_WPM} words per minute")
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cdir / f"{cache_key(text, vs, rate_wpm, samplerate)}.npy"
    cached = _cache_read(path)
    if cached is not None:
        return cached
    rate = int(rate_wpm)
    max_samples = int(MAX_CLIP_S * samplerate)
    while True:
        raw, sr = _speak(vs, text, rate)
        trimmed = trim_silence(raw, sr)
        if trimmed.size == 0:
            raise CueError(f"{what or repr(text)}: {vs.engine} produced silence")
        clip = finish_clip(resample(trimmed, sr, samplerate), samplerate)
        if clip.size <= max_samples:
            break
        if rate >= MAX_RATE_WPM:
            raise CueError(f"{what or 'phrasing'}: {text!r} takes {clip.size / samplerate:.2f} s even at "
                           f"{MAX_RATE_WPM} words per minute; cues must be at most {MAX_CLIP_S} s: shorten it")
        # Speech time scales roughly inversely with the rate; aim 3 % under the limit.
        rate = min(MAX_RATE_WPM, max(rate + 5, int(math.ceil(rate * clip.size / (0.97 * max_samples)))))
    _cache_write(path, clip)
    return clip


def check_recording(path) -> None:
    """Refuse a recording too big to be a cue before reading any samples: one line naming the file.

    Checks the file size (``stat``) and the header's length and channel count (``soundfile.info``), so a huge or
    sparse file costs neither time nor memory.
    """
    import soundfile as sf

    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise CueError(f"{path}: cannot read audio: {exc.strerror or exc}") from None
    if size > MAX_RECORDING_BYTES:
        raise CueError(f"{path}: {size / 2**20:.0f} MiB is too big for a cue recording (at most "
                       f"{MAX_RECORDING_BYTES // 2**20} MiB; cues are at most {MAX_CLIP_S} s)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise CueError(f"{path}: cannot read audio: {exc}") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise CueError(f"{path}: cannot read audio: samplerate {info.samplerate}, {info.channels} channels")
    if info.channels > MAX_RECORDING_CHANNELS:
        raise CueError(f"{path}: {info.channels} channels; a cue recording has at most {MAX_RECORDING_CHANNELS}")
    length_s = info.frames / info.samplerate
    if length_s > MAX_RECORDING_S:
        raise CueError(f"{path}: {length_s:.1f} s long; a cue recording must be at most {MAX_RECORDING_S:g} s "
                       f"(the words at most {MAX_CLIP_S} s)")


def load_recording(path, samplerate: int, what: str) -> np.ndarray:
    """A voice-pack recording as a finished clip; :class:`CueError` if longer than 2.5 s once trimmed.

    User recordings are not time-stretched (that would change the voice); they are only trimmed, resampled,
    faded and normalised like synthesized speech.  :func:`check_recording` refuses oversized files first.
    """
    check_recording(path)
    raw, sr = _read_audio(path)
    if not np.all(np.isfinite(raw)):
        raise CueError(f"{path}: {what}: recording has NaN or infinite samples")
    trimmed = trim_silence(raw, sr)
    if trimmed.size == 0:
        raise CueError(f"{path}: {what}: recording is silent")
    clip = finish_clip(resample(trimmed, sr, samplerate), samplerate)
    if clip.size > int(MAX_CLIP_S * samplerate):
        raise CueError(f"{path}: {what}: {clip.size / samplerate:.2f} s after trimming silence; cues must be at "
                       f"most {MAX_CLIP_S} s")
    return clip


class VoiceBank:
    """Clips for every (cue, phrasing) of a library, synthesized lazily and memoised.

    Parameters
    ----------
    library : CueLibrary
    samplerate : int
        Session sample rate.
    voice : str or VoiceSpec, optional
        ``ENGINE[:VOICE]`` (:func:`cues.tts.parse_voice`); default the best installed engine.
    pack_dir : path, optional
        Voice pack folder whose recordings override synthesized speech (validated on construction).
    rate_wpm : int
    cache_dir : path, optional

    Notes
    -----
    Clip arrays are returned read-only: the same array is shared by every caller and by the kernel's bank.
    """

    def __init__(self, library: CueLibrary, samplerate: int, voice=None, pack_dir=None,
                 rate_wpm: int = DEFAULT_RATE_WPM, cache_dir=None):
        if not (isinstance(samplerate, (int, np.integer)) and 8000 <= samplerate <= 384000):
            raise CueError(f"--samplerate: {samplerate!r} is not an integer in 8000..384000")
        self.library = library
        self.samplerate = int(samplerate)
        self.voice = voice if isinstance(voice, VoiceSpec) else parse_voice(voice)
        self.rate_wpm = int(rate_wpm)
        self.cache_dir = cache_dir
        self.pack = load_voice_pack(pack_dir, library) if pack_dir is not None else None
        self._clips: dict[tuple[str, int, str], np.ndarray] = {}

    def _recording(self, cue_id: str, phrasing_index: int):
        return self.pack.recording(cue_id, phrasing_index) if self.pack is not None else None

    def keys(self) -> list:
        """Every ``(cue_id, phrasing_index)`` in library order (the clip bank order the renderer should use).

        A ``{grade}`` phrasing stands for its :data:`TEMPLATE_EXAMPLE_FILL` clip here (proof that a long value still
        fits in 2.5 s); the clips actually played are made per value with :meth:`clip`'s ``fill``.
        """
        return [(c.id, i) for c in self.library for i in range(len(c.phrasings))]

    def clip(self, cue_id: str, phrasing_index: int, fill: str | None = None) -> np.ndarray:
        """Mono float32 clip at :attr:`samplerate` for phrasing ``phrasing_index`` (0-based) of ``cue_id``.

        ``fill`` is the value of a ``{grade}`` phrasing (``"6"``) or of a ``{distance}`` one (whole metres,
        ``"5000"``); each filled-in text is synthesized (and cached) as its own clip.
        """
        entry = self.library.get(cue_id)
        if not 0 <= phrasing_index < len(entry.phrasings):
            raise CueError(f"cue {cue_id!r}: phrasing {phrasing_index + 1} does not exist "
                           f"(it has {len(entry.phrasings)})")
        what = f"cue {cue_id!r} phrasing {phrasing_index + 1}"
        rec = self._recording(cue_id, phrasing_index)
        example = (TEMPLATE_EXAMPLE_DISTANCE if "{distance}" in entry.phrasings[phrasing_index]
                   else TEMPLATE_EXAMPLE_FILL)
        text = entry.text(phrasing_index, fill or example)
        key = (cue_id, int(phrasing_index), text if rec is None else "")
        hit = self._clips.get(key)
        if hit is not None:
            return hit
        if rec is not None:
            clip = load_recording(rec, self.samplerate, what)
        else:
            clip = synthesize(text, self.samplerate, self.voice, self.rate_wpm, self.cache_dir, what)
        clip = np.array(clip, dtype=np.float32)
        clip.flags.writeable = False
        self._clips[key] = clip
        return clip

    def clips(self) -> dict:
        """``{(cue_id, phrasing_index): clip}`` for the whole library, in :meth:`keys` order."""
        return {k: self.clip(*k) for k in self.keys()}

    def durations_samples(self) -> dict:
        """``{(cue_id, phrasing_index): length in samples}``, the planner's ``clip_len_samples``."""
        return {k: int(v.size) for k, v in self.clips().items()}
