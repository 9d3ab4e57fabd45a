"""One track -> float32 stereo frames at the output rate, loudness-normalised (decoded whole, ahead of time).

Decoding is libsndfile's (WAV, FLAC, Ogg Vorbis/Opus, MP3 with libsndfile >= 1.1); resampling is libsoxr's (the
``soxr`` package, "HQ" preset: 20-bit precision, a steep band limit well above 16 kHz), which is what a real
resampler means here: linear interpolation would alias audibly on cymbals.  Each whole track is resampled in one
call, so the samples do not depend on how a reader later chunks them: render and play get the same stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .loudness import integrated_lufs, normalising_gain
from .playlist import Track

SOXR_QUALITY = "HQ"


@dataclass(frozen=True)
class DecodedTrack:
    """A track ready for the ring: float32 [frames, 2] at the output rate, already scaled to the target loudness."""

    track: Track
    frames: np.ndarray
    lufs: float
    gain: float


def _stereo(x: np.ndarray) -> np.ndarray:
    if x.shape[1] == 1:
        return np.repeat(x, 2, axis=1)
    if x.shape[1] == 2:
        return x
    # More than two channels: the front pair (WAV/FLAC channel order puts front left and right first).
    return np.ascontiguousarray(x[:, :2])


def decode_track(track: Track, samplerate: int, target_lufs: float, max_gain_db: float,
                 max_peak: float | None = None) -> DecodedTrack:
    """Decode, measure, resample and scale one track (to ``target_lufs``, its peak at most ``max_peak``).

    Raises InputError naming the file if it cannot be decoded (it passed its header check, so this is a broken
    body or a file changed since).
    """
    import soundfile as sf

    try:
        data, sr = sf.read(track.path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"{track.path}: cannot decode ({' '.join(str(exc).split())[:120]})", field="music") from None
    if data.shape[0] == 0:
        raise InputError(f"{track.path}: holds no audio", field="music")
    data = _stereo(np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0))
    lufs = integrated_lufs(data, sr)
    gain = normalising_gain(lufs, target_lufs, max_gain_db)
    if sr != samplerate:
        import soxr

        data = soxr.resample(data, sr, samplerate, quality=SOXR_QUALITY)
    if max_peak is not None:
        # After resampling: the band-limited signal can overshoot the source's samples (inter-sample peaks).
        peak = float(np.max(np.abs(data))) if data.size else 0.0
        if peak * gain > max_peak:
            gain = max_peak / peak
    out = np.ascontiguousarray(data * np.float32(gain), dtype=np.float32)
    out.flags.writeable = False
    return DecodedTrack(track, out, lufs, gain)
