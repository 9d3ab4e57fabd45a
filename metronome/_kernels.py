"""Numba kernels: every per-sample operation of Downbeat lives here.

Style (stumpy's kernel/driver split): kernels take arrays and scalars only, write into arrays they are given and
allocate nothing proportional to a block.  Drivers (:mod:`metronome.engine`) own the arrays.  The same
:func:`process_block` runs inside the PortAudio callback and in the offline renderer, so a render is bit-identical
to what is played, for any block size.

Why beats are computed per beat and not per sample
--------------------------------------------------
A naive phase accumulator adds ``bpm / 60 / samplerate`` every sample; its rounding error then depends on how many
samples were summed, and a click lands one sample early or late after an hour.  Here the *next beat time* is solved
analytically from the tempo map (linear bpm between breakpoints => the phase is quadratic in time, see
:func:`beat_time`) or advanced once per beat in live mode.  Block boundaries never enter the arithmetic, so the
output does not depend on the block size and every click starts at ``round(analytic beat time)``.
"""

from __future__ import annotations

import math

import numpy as np

from ._jitcache import CHOICE as CACHE_CHOICE  # first: it picks numba's cache folder before numba is imported
from numba import njit  # noqa: E402

# Compile cost (benchmarks/README.md, start-up): every jitted function is typed, lowered and optimised by LLVM on
# its own, ~0.3-0.8 s each even when tiny, and once more for every distinct argument type (read-only vs writable
# arrays, a literal int).  So the helpers that run only inside the kernels are inlined into their callers at
# numba IR level (``inline="always"``: same operations, one compile instead of one per helper and signature), and
# the C callback reuses the renderer's compiled process_block (see pa_callback).  ``cache`` is off only when no
# folder is writable (metronome._jitcache).
CACHE = CACHE_CHOICE.enabled
KERNEL = dict(cache=CACHE, nogil=True)
HELPER = dict(cache=CACHE, nogil=True)

from ._layout import (  # noqa: E402,F401  (slot numbers: numba reads module globals as constants)
    ST_POS, ST_NEXT_BEAT, ST_BEAT_INDEX, ST_BPM, ST_SEG, ST_DUCK, ST_LIMIT, ST_MASTER, ST_CUES_DROPPED,
    ST_EVENTS_LOST, ST_PEAK, ST_LIMITED, ST_LAST_BEAT, ST_ACTIVE, ST_MUSIC_DUCK, ST_MUSIC_UNDERRUNS, ST_N,
    CT_TARGET_BPM, CT_GAIN, CT_LIVE, CT_SLEW, CT_MIN_BPM, CT_MAX_BPM, CT_BEAT_END, CT_CEILING, CT_DUCK,
    CT_ACCENT_EVERY, CT_MUSIC, CT_MUSIC_DUCK, CT_COACH_GAIN, CT_READING_NS, CT_N, MI_WRITTEN, MI_READ, MI_ENDED,
    V_CLIP, V_POS, V_KIND, EV_BEAT, EV_CUE, EV_CUE_DROPPED, CLIP_ACCENT, CLIP_NORMAL, BLOCK_ARGS, BLOCK_SLOTS,
    BLOCK_PARAMS, _N_BLOCK_SLOTS, P_ST, P_CTL, P_MAP_S, P_MAP_B, P_MAP_P, P_BANK, P_CLIP_OFF, P_CLIP_LEN, P_VOICES,
    P_CUEQ, P_CUEIDX, P_EVENTS, P_EVIDX, P_MUSIC, P_MUSIC_IDX, PR_SR, PR_DUCK, PR_RELEASE, PR_GAIN, PR_M_ATTACK,
    PR_M_RELEASE, N_PARAMS, P_PARAMS, P_STATS, P_TIMING, P_CHANNELS, P_N, S_UNDERFLOWS, S_CALLBACKS, S_FRAMES,
    S_ANCHOR_NS, S_ANCHOR_POS, S_SEEN_READING_NS, S_SEEN_CB_NS, S_SEEN_POS, S_N, PA_OUTPUT_UNDERFLOW, PA_CONTINUE,
    _layout,
)


@njit(**HELPER)
def beat_time(k, map_sample, map_bpm, map_phase, samplerate, seg):
    """Exact sample time of beat ``k`` on a tempo map, and the segment that holds it.

    Between breakpoints ``s0 < s1`` the tempo is linear, ``bpm(x) = b0 + a x`` with ``a = (b1 - b0) / (s1 - s0)``,
    so the phase in beats is ``(b0 x + a x^2 / 2) / (60 sr)``.  Beat ``k`` solves ``phase = k - P0``; the root is
    written as ``2c / (b0 + sqrt(b0^2 + 2 a c))`` which is exact for ``a = 0`` and free of cancellation.

    Parameters
    ----------
    k : float
        Beat index (beat 0 is at sample 0).
    map_sample, map_bpm, map_phase : ndarray
        Breakpoints (float64 sample times, bpm, cumulative beats at each breakpoint).
    samplerate : float
    seg : int
        Cursor: first segment to search from (monotonic use is O(1) amortized, like klick's position cursor).

    Returns
    -------
    (time, seg) : (float, int)
    """
    m = map_sample.shape[0]
    while seg + 1 < m and map_phase[seg + 1] <= k:
        seg += 1
    b0 = map_bpm[seg]
    c = (k - map_phase[seg]) * 60.0 * samplerate
    if seg + 1 < m:
        a = (map_bpm[seg + 1] - b0) / (map_sample[seg + 1] - map_sample[seg])
    else:
        a = 0.0
    x = 2.0 * c / (b0 + math.sqrt(b0 * b0 + 2.0 * a * c))
    return map_sample[seg] + x, seg


@njit(**HELPER)
def bpm_at(t, map_sample, map_bpm, seg):
    """Tempo at sample time ``t`` within segment ``seg`` (constant after the last breakpoint)."""
    m = map_sample.shape[0]
    if seg + 1 >= m:
        return map_bpm[m - 1]
    frac = (t - map_sample[seg]) / (map_sample[seg + 1] - map_sample[seg])
    return map_bpm[seg] + frac * (map_bpm[seg + 1] - map_bpm[seg])


@njit(**KERNEL)
def map_phase_at_breakpoints(map_sample, map_bpm, samplerate, out):
    """Cumulative beats at each breakpoint (trapezoid rule is exact for linear bpm)."""
    out[0] = 0.0
    for i in range(1, map_sample.shape[0]):
        dt = map_sample[i] - map_sample[i - 1]
        out[i] = out[i - 1] + 0.5 * (map_bpm[i] + map_bpm[i - 1]) * dt / (60.0 * samplerate)


@njit(**KERNEL)
def beat_times(map_sample, map_bpm, map_phase, samplerate, end_sample, out):
    """Fill ``out`` with the exact times of beats 0, 1, ... strictly before ``end_sample``; return the count."""
    seg = 0
    n = 0
    while n < out.shape[0]:
        t, seg = beat_time(float(n), map_sample, map_bpm, map_phase, samplerate, seg)
        if t >= end_sample:
            break
        out[n] = t
        n += 1
    return n


@njit(**HELPER)
def _smooth(x, target, coef):
    """One-pole step that lands *exactly* on the target once within 1e-12 of it.

    Without the snap, ``x + (t - x) c`` can stall one ulp away from ``t`` forever, and the silent fast path
    (which needs the smoothers at their fixed points) would never engage.
    """
    y = x + (target - x) * coef
    if abs(target - y) < 1e-12:
        return target
    return y


@njit(**HELPER)
def _log_event(events, ev_idx, st, kind, sample, bpm, clip):
    w = ev_idx[0]
    if w - ev_idx[1] >= events.shape[0]:
        st[ST_EVENTS_LOST] += 1.0
        return
    row = w % events.shape[0]
    events[row, 0] = kind
    events[row, 1] = sample
    events[row, 2] = bpm
    events[row, 3] = clip
    ev_idx[0] = w + 1  # publish after the row is written (single writer)


@njit(**HELPER)
def _start_voice(voices, clip, kind):
    """Start ``clip`` in a free voice; a click steals the oldest click voice when the pool is full."""
    n = voices.shape[0]
    steal = -1
    steal_pos = -1
    for v in range(n):
        if voices[v, V_CLIP] < 0:
            voices[v, V_CLIP] = clip
            voices[v, V_POS] = 0
            voices[v, V_KIND] = kind
            return True
        if voices[v, V_KIND] == kind and voices[v, V_POS] > steal_pos:
            steal = v
            steal_pos = voices[v, V_POS]
    if kind == 0 and steal >= 0:
        voices[steal, V_CLIP] = clip
        voices[steal, V_POS] = 0
        return True
    return False


@njit(**HELPER)
def _sole_click(voices):
    """The voice index of the one sounding voice if it is a click, else -1 (the caller knows one is sounding)."""
    for v in range(voices.shape[0]):
        if voices[v, V_CLIP] >= 0:
            return v if voices[v, V_KIND] == 0 else -1
    return -1


@njit(**HELPER)
def _advance_beat(st, ctl, map_sample, map_bpm, map_phase, samplerate):
    """Compute the time of the beat after the one just started (phase-continuous: only beat intervals change)."""
    k = st[ST_BEAT_INDEX] + 1.0
    if ctl[CT_LIVE] > 0.5:
        # Live: the tempo of the coming interval moves toward the target by at most CT_SLEW of itself.
        bpm = st[ST_BPM]
        target = min(max(ctl[CT_TARGET_BPM], ctl[CT_MIN_BPM]), ctl[CT_MAX_BPM])
        step = ctl[CT_SLEW] * bpm
        if target > bpm + step:
            bpm = bpm + step
        elif target < bpm - step:
            bpm = bpm - step
        else:
            bpm = target
        st[ST_BPM] = bpm
        st[ST_NEXT_BEAT] = st[ST_NEXT_BEAT] + 60.0 * samplerate / bpm
    else:
        t, seg = beat_time(k, map_sample, map_bpm, map_phase, samplerate, int(st[ST_SEG]))
        st[ST_SEG] = seg
        st[ST_NEXT_BEAT] = t
    st[ST_BEAT_INDEX] = k


@njit(**KERNEL)
def process_block(out, st, ctl, map_sample, map_bpm, map_phase, samplerate,
                  bank, clip_off, clip_len, voices, cue_q, cue_idx, events, ev_idx,
                  duck_coef, release_coef, gain_coef, music, music_idx, music_attack_coef, music_release_coef):
    """Produce ``out.shape[0]`` frames into ``out`` (float32 [frames, channels], every channel the same mono mix).

    Parameters
    ----------
    st, ctl : float64[ST_N], float64[CT_N]
        Kernel state (only this function writes it); control slots (only the driver/sensor thread writes them).
    map_sample, map_bpm, map_phase : float64[m]
        Tempo map breakpoints and cumulative beats (see :func:`beat_time`).
    bank, clip_off, clip_len : float32[total], int64[n], int64[n]
        Clip bank: clip ``i`` is ``bank[clip_off[i]:clip_off[i] + clip_len[i]]``. Clips 0/1 are accent/normal clicks.
    voices : int64[n_voices, 3]
        Fixed voice pool (clip, position, kind).
    cue_q, cue_idx : int64[r, 3], int64[2]
        SPSC cue request ring: rows (clip, not_before_sample, deadline_sample); ``cue_idx = [written, read]``.  A
        request starts on the first beat at or after ``not_before_sample`` (every cue is on the beat by
        construction), or is dropped if that beat is after ``deadline_sample``.
    events, ev_idx : float64[e, 4], int64[2]
        SPSC event log ring (kernel writes): kind, sample, bpm, clip.
    duck_coef, release_coef, gain_coef, music_attack_coef, music_release_coef : float
        One-pole coefficients per sample: click ducking, limiter release, master gain, the music's duck ramps.
    music, music_idx : float32[capacity, 2], int64[3]
        SPSC ring of the runner's music (resampled and loudness-normalised by its writer, see
        :mod:`metronome.music.ring`), one frame per output sample while ``ctl[CT_MUSIC]`` is set;
        ``music_idx = [written, read, ended]``.
    """
    frames = out.shape[0]
    channels = out.shape[1]
    pos = int(st[ST_POS])
    ceiling = ctl[CT_CEILING]
    beat_end = ctl[CT_BEAT_END]
    accent_every = int(ctl[CT_ACCENT_EVERY])
    i = 0
    while i < frames:
        n = pos + i
        # ---- fast path: nothing sounding and every smoother at its fixed point => the output is exactly zero
        # until the next beat (or the block end).  The state is identical to what the slow path would leave, so
        # this changes speed only, never bits.
        if (st[ST_ACTIVE] == 0.0 and st[ST_DUCK] == 1.0 and st[ST_LIMIT] == 1.0 and ctl[CT_MUSIC] < 0.5
                and st[ST_MASTER] == min(max(ctl[CT_GAIN], 0.0), 1.0)):
            stop = frames
            nb = math.floor(st[ST_NEXT_BEAT] + 0.5)
            if nb - pos < stop and (beat_end < 0.0 or nb < beat_end):
                stop = int(nb - pos)
            if stop > i:
                out[i:stop, :] = 0.0  # a slice store: vectorised (an indexed loop costs ~20x a memset)
                i = stop
                continue
        # ---- click path (most non-silent samples): a lone click, smoothers at their fixed points: the slow path's
        # arithmetic for that state minus the voice loop (same bits; limiter or non-finite samples: slow path).
        if (st[ST_ACTIVE] == 1.0 and st[ST_DUCK] == 1.0 and st[ST_LIMIT] == 1.0 and ctl[CT_MUSIC] < 0.5
                and st[ST_MASTER] == min(max(ctl[CT_GAIN], 0.0), 1.0)):
            v = _sole_click(voices)
            if v >= 0:
                c, p0 = voices[v, V_CLIP], voices[v, V_POS]
                stop = min(frames, i + clip_len[c] - p0)
                nb = math.floor(st[ST_NEXT_BEAT] + 0.5)
                if nb - pos < stop and (beat_end < 0.0 or nb < beat_end):
                    stop = int(nb - pos)
                master, base, j = st[ST_MASTER], clip_off[c] - i + p0, i
                while j < stop:
                    y = ((0.0 + bank[base + j]) * 1.0 + 0.0) * master
                    a = abs(y)
                    if not math.isfinite(y) or a * 1.0 > ceiling:
                        break
                    if a > st[ST_PEAK]:
                        st[ST_PEAK] = a
                    y32 = np.float32(y * 1.0)
                    for ch in range(channels):
                        out[j, ch] = y32
                    j += 1
                if j > i:
                    p = p0 + j - i
                    if p >= clip_len[c]:
                        voices[v, V_CLIP] = -1
                        st[ST_ACTIVE] = 0.0
                    else:
                        voices[v, V_POS] = p
                    i = j
                    continue
        # ---- beat scheduling: at most one beat per sample; several per block are fine.
        beat_sample = math.floor(st[ST_NEXT_BEAT] + 0.5)
        if n == beat_sample and (beat_end < 0.0 or n < beat_end):
            k = int(st[ST_BEAT_INDEX])
            clip = CLIP_ACCENT if (accent_every > 0 and k % accent_every == 0) else CLIP_NORMAL
            _start_voice(voices, clip, 0)
            # The logged tempo is the tempo from this beat on: in map mode the map's tempo at the beat, in live
            # mode the tempo of the interval this beat starts (computed now from the latest target).
            if ctl[CT_LIVE] > 0.5:
                _advance_beat(st, ctl, map_sample, map_bpm, map_phase, samplerate)
                bpm_now = st[ST_BPM]
            else:
                bpm_now = bpm_at(st[ST_NEXT_BEAT], map_sample, map_bpm, int(st[ST_SEG]))
                st[ST_BPM] = bpm_now
            _log_event(events, ev_idx, st, EV_BEAT, float(n), bpm_now, float(clip))
            st[ST_LAST_BEAT] = float(n)
            # Cue requests whose time has come start on this very beat (never between beats).
            while cue_idx[1] < cue_idx[0]:
                row = cue_idx[1] % cue_q.shape[0]
                if cue_q[row, 1] > n:
                    break
                cclip = cue_q[row, 0]
                if n > cue_q[row, 2]:
                    # Past its deadline: a late cue is worse than none (it would talk over the wrong terrain).
                    st[ST_CUES_DROPPED] += 1.0
                    _log_event(events, ev_idx, st, EV_CUE_DROPPED, float(n), bpm_now, float(cclip))
                elif cclip >= 0 and cclip < clip_off.shape[0] and _start_voice(voices, cclip, 1):
                    # Duck at once: the cue starts on this beat, together with a click that starts on this very
                    # sample, so an instant duck makes no step, and a smoothed one would let that first click
                    # through at full level on top of the speech.  The release back to 1 stays smooth.
                    st[ST_DUCK] = ctl[CT_DUCK]
                    _log_event(events, ev_idx, st, EV_CUE, float(n), bpm_now, float(cclip))
                else:
                    st[ST_CUES_DROPPED] += 1.0
                    _log_event(events, ev_idx, st, EV_CUE_DROPPED, float(n), bpm_now, float(cclip))
                cue_idx[1] += 1
            if ctl[CT_LIVE] <= 0.5:
                _advance_beat(st, ctl, map_sample, map_bpm, map_phase, samplerate)
        elif n > beat_sample:
            # Only reachable if the state was edited behind the kernel's back: resynchronise, never stall.
            _advance_beat(st, ctl, map_sample, map_bpm, map_phase, samplerate)
        # ---- mix voices
        clicks = 0.0
        speech = 0.0
        speaking = False
        active = 0
        for v in range(voices.shape[0]):
            c = voices[v, V_CLIP]
            if c < 0:
                continue
            p = voices[v, V_POS]
            x = bank[clip_off[c] + p]
            if voices[v, V_KIND] == 0:
                clicks += x
            else:
                speech += x
                speaking = True
            p += 1
            if p >= clip_len[c]:
                voices[v, V_CLIP] = -1
            else:
                voices[v, V_POS] = p
                active += 1
        st[ST_ACTIVE] = float(active)
        duck_target = ctl[CT_DUCK] if speaking else 1.0
        duck = _smooth(st[ST_DUCK], duck_target, duck_coef)
        st[ST_DUCK] = duck
        gain_target = min(max(ctl[CT_GAIN], 0.0), 1.0)
        master = _smooth(st[ST_MASTER], gain_target, gain_coef)
        st[ST_MASTER] = master
        y = (clicks * duck + speech) * master
        if not math.isfinite(y):
            # A clip from outside (a voice pack) could hold NaN or inf; every comparison with NaN is false, so it
            # would pass the limiter and the clamp.  Silence it here and keep the limiter state sane.
            y = 0.0
        yr = y
        # ---- music: one ring frame per output sample, under the clicks and cues, ducked under speech.
        if ctl[CT_MUSIC] > 0.5:
            y = y * ctl[CT_COACH_GAIN]
            ml = 0.0
            mr = 0.0
            r = music_idx[MI_READ]
            if r < music_idx[MI_WRITTEN]:
                row = r % music.shape[0]
                ml = float(music[row, 0])
                mr = float(music[row, 1])
                music_idx[MI_READ] = r + 1  # frees the row for the writer
            elif music_idx[MI_ENDED] == 0:
                # The writer fell behind (live play only; the renderer fills the ring before every block):
                # silence for the music, clicks and cues untouched.
                st[ST_MUSIC_UNDERRUNS] += 1.0
            if speaking:
                mduck = _smooth(st[ST_MUSIC_DUCK], ctl[CT_MUSIC_DUCK], music_attack_coef)
            else:
                mduck = _smooth(st[ST_MUSIC_DUCK], 1.0, music_release_coef)
            st[ST_MUSIC_DUCK] = mduck
            g = mduck * master
            if channels == 1:
                ml = 0.5 * (ml + mr)
                mr = ml
            yl = y + ml * g
            yr = y + mr * g
            if not math.isfinite(yl) or not math.isfinite(yr):
                yl = y
                yr = y
            y = yl
        # ---- peak limiter: instant attack (no look-ahead, so no added latency), smooth release; one gain for
        # both channels (the stereo image does not move).
        lim = _smooth(st[ST_LIMIT], 1.0, release_coef)
        a = max(abs(y), abs(yr))
        if a * lim > ceiling:
            lim = ceiling / a
            st[ST_LIMITED] += 1.0
        st[ST_LIMIT] = lim
        y = y * lim
        yr = yr * lim
        # Belt and braces: the ceiling is a promise to the runner's ears.
        if y > ceiling:
            y = ceiling
        elif y < -ceiling:
            y = -ceiling
        if yr > ceiling:
            yr = ceiling
        elif yr < -ceiling:
            yr = -ceiling
        a = max(abs(y), abs(yr))
        if a > st[ST_PEAK]:
            st[ST_PEAK] = a
        out[i, 0] = np.float32(y)
        ysr = np.float32(yr)
        for ch in range(1, channels):
            out[i, ch] = ysr
        i += 1
    st[ST_POS] = float(pos + frames)


@njit(**KERNEL)
def process_blocks(out, blocksize, st, ctl, map_sample, map_bpm, map_phase, samplerate,
                   bank, clip_off, clip_len, voices, cue_q, cue_idx, events, ev_idx,
                   duck_coef, release_coef, gain_coef, music, music_idx, music_attack_coef, music_release_coef):
    """:func:`process_block` over ``out`` in consecutive blocks of ``blocksize`` frames (the last may be shorter).

    Exactly the calls a driver looping in Python would make, without a Python round trip per block: an offline
    render with a device-sized block (even 1 frame) runs at the speed of a large one and stays bit-identical.
    """
    frames = out.shape[0]
    i = 0
    while i < frames:
        n = min(blocksize, frames - i)
        process_block(out[i:i + n], st, ctl, map_sample, map_bpm, map_phase, samplerate,
                      bank, clip_off, clip_len, voices, cue_q, cue_idx, events, ev_idx,
                      duck_coef, release_coef, gain_coef, music, music_idx, music_attack_coef,
                      music_release_coef)
        i += n

# --------------------------------------------------------------------------------------------------------------
# The PortAudio callback as a C function (numba cfunc): the audio thread never enters the Python interpreter.
#
# Why not sounddevice's Python callback: a cffi Python callback must take the GIL.  When the main thread holds the
# GIL and is preempted (a loaded 2-core machine), the real-time audio thread waits on that lock and the server
# reports an xrun.  Measured on the JACK dummy server with the other core busy: 1-19 underflows in 10 s with the
# Python callback, 0 with this one (see benchmarks/README.md).
#
# The callback finds the engine's preallocated arrays through a table of addresses (int64) passed as PortAudio's
# ``userData``; the arrays are owned by :class:`metronome.engine.Engine`, which keeps them alive for the stream.
# --------------------------------------------------------------------------------------------------------------
from numba import carray, cfunc, types  # noqa: E402

from ._intrinsics import _monotonic_ns, _voidptr  # noqa: E402


# PaStreamCallback: int (const void *in, void *out, unsigned long frames, const PaStreamCallbackTimeInfo *,
#                        PaStreamCallbackFlags, void *userData); unsigned long is 64-bit on LP64 platforms.
PA_CALLBACK_SIG = types.intc(types.voidptr, types.voidptr, types.uint64, types.voidptr, types.uint64,
                             types.voidptr)


def _pa_callback(inp, outp, frames, time_info, status, user):
    t0 = _monotonic_ns()
    tbl = carray(user, (P_N,), np.int64)
    stats = carray(_voidptr(tbl[P_STATS]), (S_N,), np.int64)
    if status & PA_OUTPUT_UNDERFLOW:
        stats[S_UNDERFLOWS] += 1
    n = int(frames)
    params = carray(_voidptr(tbl[P_PARAMS]), (N_PARAMS,), np.float64)
    out = carray(outp, (n, tbl[P_CHANNELS]), np.float32)
    st = carray(_voidptr(tbl[P_ST]), (tbl[P_ST + 1],), np.float64)
    ctl = carray(_voidptr(tbl[P_CTL]), (tbl[P_CTL + 1],), np.float64)
    pos0 = np.int64(st[ST_POS])
    reading_ns = np.int64(ctl[CT_READING_NS])
    if reading_ns != stats[S_SEEN_READING_NS]:
        stats[S_SEEN_CB_NS] = t0
        stats[S_SEEN_POS] = pos0
        stats[S_SEEN_READING_NS] = reading_ns  # published last
    process_block(out, st, ctl,
                  carray(_voidptr(tbl[P_MAP_S]), (tbl[P_MAP_S + 1],), np.float64),
                  carray(_voidptr(tbl[P_MAP_B]), (tbl[P_MAP_B + 1],), np.float64),
                  carray(_voidptr(tbl[P_MAP_P]), (tbl[P_MAP_P + 1],), np.float64),
                  params[PR_SR],
                  carray(_voidptr(tbl[P_BANK]), (tbl[P_BANK + 1],), np.float32),
                  carray(_voidptr(tbl[P_CLIP_OFF]), (tbl[P_CLIP_OFF + 1],), np.int64),
                  carray(_voidptr(tbl[P_CLIP_LEN]), (tbl[P_CLIP_LEN + 1],), np.int64),
                  carray(_voidptr(tbl[P_VOICES]), (tbl[P_VOICES + 1], tbl[P_VOICES + 2]), np.int64),
                  carray(_voidptr(tbl[P_CUEQ]), (tbl[P_CUEQ + 1], tbl[P_CUEQ + 2]), np.int64),
                  carray(_voidptr(tbl[P_CUEIDX]), (tbl[P_CUEIDX + 1],), np.int64),
                  carray(_voidptr(tbl[P_EVENTS]), (tbl[P_EVENTS + 1], tbl[P_EVENTS + 2]), np.float64),
                  carray(_voidptr(tbl[P_EVIDX]), (tbl[P_EVIDX + 1],), np.int64),
                  params[PR_DUCK], params[PR_RELEASE], params[PR_GAIN],
                  carray(_voidptr(tbl[P_MUSIC]), (tbl[P_MUSIC + 1], tbl[P_MUSIC + 2]), np.float32),
                  carray(_voidptr(tbl[P_MUSIC_IDX]), (tbl[P_MUSIC_IDX + 1],), np.int64),
                  params[PR_M_ATTACK], params[PR_M_RELEASE])
    k = stats[S_CALLBACKS]
    timing = carray(_voidptr(tbl[P_TIMING]), (tbl[P_TIMING + 1], 2), np.int64)
    row = k % tbl[P_TIMING + 1]
    timing[row, 0] = _monotonic_ns() - t0
    timing[row, 1] = n
    stats[S_FRAMES] += n
    stats[S_ANCHOR_NS] = t0
    stats[S_ANCHOR_POS] = pos0
    stats[S_CALLBACKS] = k + 1  # published last: a reader that sees k+1 sees the row
    return PA_CONTINUE


_PA_CALLBACK = None


def pa_callback():
    """The compiled C callback (compiled or loaded from the numba cache on first use, i.e. at warm-up).

    The callback's arrays come from ``carray`` and are writable, while the renderer passes read-only tempo-map and
    clip arrays; left to itself numba would compile process_block a second time for those types (~3 s on a cold
    cache).  With process_block's compilation switched off while the callback is typed, numba binds the call to
    the overload already compiled for the renderer (a writable array converts safely to a read-only one), so the
    live and offline paths also run the very same machine code.
    """
    global _PA_CALLBACK
    if _PA_CALLBACK is None:
        reuse = bool(process_block.signatures) and process_block._can_compile
        if reuse:
            process_block.disable_compile()
        try:
            _PA_CALLBACK = cfunc(PA_CALLBACK_SIG, nopython=True, cache=CACHE)(_pa_callback)
        finally:
            if reuse:
                process_block.disable_compile(False)
    return _PA_CALLBACK


def _helper_signatures():
    """The one signature each helper is called with from the kernels (read-only where the kernels only read)."""
    from numba import types as T

    ro = T.Array(T.float64, 1, "C", readonly=True)
    rw = T.Array(T.float64, 1, "C")
    f8, i8 = T.float64, T.int64
    return ((beat_time, (f8, ro, ro, ro, f8, i8)),
            (bpm_at, (f8, ro, ro, i8)),
            (_smooth, (f8, f8, f8)),
            (_log_event, (T.Array(T.float64, 2, "C"), T.Array(T.int64, 1, "C"), rw, f8, f8, f8, f8)),
            (_start_voice, (T.Array(T.int64, 2, "C"), i8, i8)),
            (_sole_click, (T.Array(T.int64, 2, "C"),)),
            (_advance_beat, (rw, rw, ro, ro, ro, f8)))


def bind_helpers():
    """Compile every helper once, for its one signature, and keep it from compiling more while kernels are typed.

    Left alone, numba compiles a helper again for each distinct argument type its callers pass: a literal
    ``0`` and an ``int64`` for ``beat_time``'s segment, a literal ``0`` and ``1`` for ``_start_voice``'s kind
    (0.3-0.8 s each on a cold cache).  With compilation off, a caller binds to the compiled overload by numba's
    safe conversions (literal int -> int64, writable -> read-only array); the integer arithmetic and float
    operations are the same, so the output is bit-identical.  Returns a function that switches compilation back
    on (direct calls from Python with other types then compile as before).
    """
    bound = []
    for f, sig in _helper_signatures():
        f.compile(sig)
        if f._can_compile:
            f.disable_compile()
            bound.append(f)

    def release():
        for f in bound:
            f.disable_compile(False)

    return release


@njit(**KERNEL)
def _to_pcm16_flat(src, dst):
    # Clamp first, then floor: floor is monotonic, so this equals floor-then-clip.  The floor is a truncation
    # (cvttps2dq) corrected by one below zero, which every x86-64 and ARM vectorizes: math.floor needs SSE4.1's
    # roundps, which the ahead-of-time module (generic CPU, metronome._aot) lacks and would call libm per sample
    # (3x slower than libsndfile's own conversion).  Exact for |v| <= 32768 (every such float32 is checked in
    # tests/test_aot.py).
    scale = np.float32(32768.0)
    lo = np.float32(-32768.0)
    hi = np.float32(32767.0)
    for i in range(src.shape[0]):
        v = min(max(src[i] * scale, lo), hi)
        t = np.int32(v)
        dst[i] = np.int16(t - np.int32(np.float32(t) > v))


def to_pcm16(src, dst):
    """float32 [frames, ch] -> int16 exactly as libsndfile (1.2) converts for PCM_16: ``floor(x * 32768)``,
    clipped.  Doing it here lets the renderer hand libsndfile ready-made shorts (its own float->short path was
    the render bottleneck, see benchmarks/README.md); tests check the bytes are identical.  Both arrays must be
    C-contiguous (they are viewed flat)."""
    _to_pcm16_flat(src.reshape(-1), dst.reshape(-1))


@njit(**KERNEL)
def process_blocks_pcm16(out, blocksize, scratch, st, ctl, map_sample, map_bpm, map_phase, samplerate,
                         bank, clip_off, clip_len, voices, cue_q, cue_idx, events, ev_idx,
                         duck_coef, release_coef, gain_coef, music, music_idx, music_attack_coef,
                         music_release_coef):
    """:func:`process_blocks` straight to PCM_16: each block is rendered into ``scratch`` (float32 [>= blocksize,
    channels]) and converted by :func:`_to_pcm16_flat` into ``out`` (int16 [frames, channels]) at once.

    The same two functions a render ran one after the other over a whole chunk, so the same bits; but the float
    block stays in the CPU cache (256 KiB for 65536 mono frames) instead of crossing memory twice (issue 19: the
    kernel and the conversion took 0.1 s of a 0.35 s render of 30 minutes that way, beside the file writes).
    """
    frames = out.shape[0]
    channels = out.shape[1]
    flat = out.reshape(frames * channels)
    i = 0
    while i < frames:
        n = min(blocksize, frames - i)
        blk = scratch[:n]
        process_block(blk, st, ctl, map_sample, map_bpm, map_phase, samplerate,
                      bank, clip_off, clip_len, voices, cue_q, cue_idx, events, ev_idx,
                      duck_coef, release_coef, gain_coef, music, music_idx, music_attack_coef,
                      music_release_coef)
        _to_pcm16_flat(scratch.reshape(scratch.shape[0] * channels)[:n * channels],
                       flat[i * channels:(i + n) * channels])
        i += n
