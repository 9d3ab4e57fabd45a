"""Offline render: a tempo map (+ planned cues) through the engine into an audio file, atomically.

Same kernel, same control logic as live play: a render is bit-identical to what the device would have played.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import outfiles
from .errors import InputError
from .parts import AtomicOutput, AudioParts, part_paths  # noqa: F401  (AtomicOutput: other writers use it here)
from .tempo import TempoMap
from .engine import Engine
from .mix import ClipBank, EngineSettings

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT", "VORBIS")


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


#: Seconds rendered after the end of the tempo map, so the last click and cue decay (the file is this much longer).
TAIL_S = 1.0
RENDER_CHUNK = 65536  # frames per Python round trip of a render (the default --blocksize)
RENDER_MIN_BLOCK = 64  # smallest kernel block of a render (see render())
#: Formats written from a second thread (metronome.encoder_thread): encoders cost more than the kernel, and even a
#: WAV's write() calls (page-cache copies, ~0.02 s per 30 minutes) then overlap the kernel (issue 19).
THREADED_FORMATS = ("OGG", "FLAC", "MP3", "WAV")


def render_estimate(tempo_map: TempoMap, out_path: str, settings: EngineSettings = EngineSettings(), *,
                    subtype: str | None = None, tail_s: float = TAIL_S,
                    events_path: str | None = None) -> "outfiles.OutputEstimate":
    """Size, length and render time of :func:`render` with these arguments, before any work (see outfiles)."""
    fmt, sub = output_format(out_path, subtype, settings.samplerate)
    total = tempo_map.end_sample + int(round(tail_s * settings.samplerate))
    beats = total / settings.samplerate * float(np.max(tempo_map.bpm)) / 60.0
    return outfiles.estimate(out_path, fmt, sub, total, settings.samplerate, settings.channels, beats=beats,
                             events=bool(events_path))


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
    #: With ``music``: the tracks started (path, lufs, gain_db), the music's target loudness and underruns (0).
    music: dict | None = None


def render(tempo_map: TempoMap, out_path: str, settings: EngineSettings = EngineSettings(), *,
           bank: ClipBank | None = None, cue_requests=(), events_path: str | None = None,
           blocksize: int = 65536, tail_s: float = TAIL_S, subtype: str | None = None, progress=None,
           keep_events: bool = False, control=None, live_tempo=None, event_distance=None,
           music=None, split_at=None) -> RenderResult:
    """Render a tempo map (and cues) to WAV/FLAC/OGG through the live kernel, streaming to disk.

    Memory is constant in the session length: one block buffer, the event ring and the output file handle.

    Parameters
    ----------
    cue_requests : iterable of (clip_index, not_before_sample)
        Sorted by sample. Each starts on the first beat at or after its sample.
    events_path : str, optional
        CSV with one row per event: kind, sample, time_s, bpm, clip, distance_m.
    progress : callable(frames_done, frames_total), optional
    control : object, optional
        Control steps inside the render (``render --follow``, :mod:`metronome.follow_render`): ``next_sample``
        (int, or None when there are no more) and ``step(engine, sample)``, called with the audio rendered exactly
        up to ``sample`` (so the output does not depend on the block size).
    live_tempo : TempoSettings, optional
        Run the engine in live mode (it slews toward ``ctl[CT_TARGET_BPM]``, which ``control`` sets), with these
        slew and bpm bounds.
    event_distance : callable(sample) -> float, optional
        Course distance at an event's sample, for the ``distance_m`` column (empty without it).
    music : MusicPlan, optional
        The runner's music under the clicks (:func:`metronome.music.plan.plan_music`).  The renderer writes the
        music ring before every chunk, as far as that chunk needs, through the same ring and kernel section live
        play uses (there a worker thread writes it ahead): the output does not depend on the block size.
    split_at : sequence of int, optional
        Samples where the audio starts a new file (``render --split``): the parts are ``OUT-01.ext``, ``OUT-02.ext``
        ... (:func:`metronome.parts.part_paths`) instead of ``out_path``, the single render cut at exactly these
        samples, all moved into place only when every one is complete (an empty sequence: ``OUT-01.ext`` alone).
    """
    if not (1 <= blocksize <= 1 << 20):
        raise InputError(f"--blocksize: {blocksize!r} is outside 1..1048576")
    if events_path and os.path.abspath(events_path) == os.path.abspath(out_path):
        raise InputError(f"--events: {events_path!r} is the audio output file; give the events CSV its own name")
    est = render_estimate(tempo_map, out_path, settings, subtype=subtype, tail_s=tail_s, events_path=events_path)
    fmt, sub = output_format(out_path, subtype, settings.samplerate)
    outfiles.check_free_space({out_path: est.audio_bytes, **({events_path: est.events_bytes} if events_path else {})})
    total = tempo_map.end_sample + int(round(tail_s * settings.samplerate))
    kernel_block = max(blocksize, RENDER_MIN_BLOCK)
    chunk = kernel_block * max(1, RENDER_CHUNK // kernel_block)
    music_kw = dict(music=music.settings if music is not None else None,
                    music_frames=music.ring_frames(settings.samplerate, chunk) if music is not None else 0)
    if live_tempo is None:
        engine = Engine(tempo_map, settings, bank, stop_beats_at=tempo_map.end_sample, **music_kw)
    else:
        engine = Engine(tempo_map, settings, bank, live=True, max_change_per_beat=live_tempo.max_change_per_beat,
                        min_bpm=live_tempo.min_bpm, max_bpm=live_tempo.max_bpm, stop_beats_at=tempo_map.end_sample,
                        **music_kw)
    ring = None
    if music is not None:
        from .music.ring import MusicRing

        ring = MusicRing(engine, music.source(settings.samplerate))
    # Time order: the kernel serves the ring head first, so an out-of-order request would hold back the others.
    requests = sorted(((int(c), int(s)) for c, s in cue_requests), key=lambda r: r[1])
    audio = AudioParts(out_path, total, settings.samplerate, settings.channels, fmt, sub, split_at)
    outs = []
    try:
        if events_path:
            outs.append(AtomicOutput(events_path))
    except BaseException:
        audio.abort()  # the events folder may be bad after the audio temporaries were made
        raise
    t0 = time.perf_counter()
    beats = cues = dropped = 0
    kept = []
    # Python hands the kernel RENDER_CHUNK frames at a time, a whole number of blocks, and the kernel runs blocks
    # of ``blocksize`` inside one compiled loop: a tiny block no longer costs a Python round trip and a libsndfile
    # write each (--blocksize 1 took ~2000x the default's time).  Below RENDER_MIN_BLOCK frames the kernel's own
    # per-call cost (~0.3 us) would still make a render ~20x slower, for the same bits: the output does not depend
    # on the block size (tests/test_kernels.py checks blocks of 1, 64, 65, 128, 8192, 8193 through
    # Engine.process), so smaller values run as RENDER_MIN_BLOCK (benchmarks/README.md, section 7).
    ef = enc = None
    try:
        # PCM_16: convert in the kernel layer and give libsndfile shorts (identical bytes, several times faster).
        pcm16 = sub == "PCM_16"
        # The encoder (or the WAV writer) runs on the second core while the kernel renders the next chunk, from
        # its own rotating buffers; otherwise the chunk is written from ``buf`` (or ``pcm``) here.
        if fmt in THREADED_FORMATS:
            from .encoder_thread import EncoderThread

            enc = EncoderThread(audio, (chunk, settings.channels), np.int16 if pcm16 else np.float32)
        buf = np.zeros((chunk, settings.channels), dtype=np.float32) if not pcm16 and enc is None else None
        pcm = np.zeros((chunk, settings.channels), dtype=np.int16) if pcm16 and enc is None else None
        writer = None
        if events_path:
            try:
                ef = open(outs[0].tmp, "w", newline="")
                writer = csv.writer(ef)
                writer.writerow(["kind", "sample", "time_s", "bpm", "clip", "distance_m"])
            except OSError as exc:
                raise outfiles.write_error(events_path, exc) from None
        done = 0
        ri = 0
        while done < total:
            n = min(chunk, total - done)
            if control is not None:
                # Control steps due now run before the audio after them; the chunk ends at the next one.
                while control.next_sample is not None and control.next_sample <= done:
                    control.step(engine, done)
                if control.next_sample is not None:
                    n = min(n, control.next_sample - done)
            # Queue every cue that could start in this chunk (it waits in the ring for its beat otherwise).
            ri = engine.queue_cues(requests, ri, done + n)
            if ring is not None:
                ring.fill(until_written=done + n)  # exactly the frames this chunk reads (read == done here)
            si, dst = enc.slot() if enc is not None else (None, pcm if pcm16 else buf)
            if pcm16:  # kernel and conversion block by block (the float block stays in the cache)
                engine.process_pcm16(dst[:n], kernel_block)
            else:
                engine.process(dst[:n], kernel_block)
            if enc is not None:
                enc.submit(si, n)
            else:
                audio.write(dst[:n])
            rows = []
            if writer is None and not keep_events:  # counts only: no Event objects
                b, c, d = engine.drain_counts()
                beats, cues, dropped = beats + b, cues + c, dropped + d
                evs = ()
            else:
                evs = engine.drain_events()
            for ev in evs:
                if ev.kind == "beat":
                    beats += 1
                elif ev.kind == "cue":
                    cues += 1
                else:
                    dropped += 1
                if writer:
                    dist = "" if event_distance is None else f"{float(event_distance(ev.sample)):.1f}"
                    rows.append([ev.kind, ev.sample, f"{ev.time_s:.6f}", f"{ev.bpm:.4f}", ev.clip, dist])
                if keep_events:
                    kept.append(ev)
            if rows:
                try:
                    writer.writerows(rows)
                except OSError as exc:
                    raise outfiles.write_error(events_path, exc) from None
            done += n
            if progress is not None:
                progress(done, total)
        if enc is not None:
            enc.finish()  # every chunk written (or the encoder's error raised here)
        # Closes the last file (its header may fail on a full disk too) and reads every length back: a file that
        # is shorter than what was rendered must never be reported as written.
        audio.close()
        if ef is not None:
            try:
                ef.close()
            except OSError as exc:
                raise outfiles.write_error(events_path, exc) from None
        audio.commit()
        for o in outs:
            o.commit()
    except BaseException:
        if enc is not None:
            enc.stop()  # the worker must be done with the sink before it is aborted
        try:
            if ef is not None:
                ef.close()
        except Exception:
            pass
        audio.abort()
        for o in outs:
            o.abort()
        raise
    music_info = None
    if ring is not None:
        music_info = {"tracks": list(ring.source.played), "tracks_started": ring.source.starts, "target_lufs": round(music.target_lufs, 2),
                      "click_lufs": round(music.click_lufs, 2), "underruns": engine.music_underruns}
    return RenderResult(out_path, total, beats, cues, dropped, engine.peak, time.perf_counter() - t0,
                        events_path, kept, music_info)
