"""The duplex measurement's audio callback: a numba ``cfunc`` over preallocated arrays (never enters Python).

Same contract as the player's :func:`metronome._kernels.pa_callback`: PortAudio calls a compiled C function with
a table of array addresses as ``userData``; the callback allocates nothing, takes no lock (not even the GIL), does
no I/O and never compiles (:func:`duplex_callback` compiles or loads it from numba's cache before a stream opens).

Per callback it

* plays the test signal periodically: absolute output frame ``n`` gets ``sig[n % burst]`` (zero past the
  signal's end), so burst ``k`` starts at output frame ``k * burst``;
* records input channel 0 into a ring at the same absolute frame index (``ring[n % len(ring)]``): a duplex
  callback's input and output blocks cover the same frames, so the lag of the signal in the ring *is* the round
  trip in frames;
* counts PortAudio's status flags and logs (start frame, frames, flags) of every callback into a ring;
* publishes the new frame count last (single writer; the main thread reads bursts that are complete).

Analysis (cross-correlation) happens in the main thread, after each burst has been recorded
(:mod:`metronome.latency.loopback`).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from .._intrinsics import _voidptr
from .._kernels import PA_CALLBACK_SIG, PA_CONTINUE

# Pointer table (int64) slots
T_SIG, T_SIG_LEN = 0, 1  # float32 test signal
T_BURST = 2  # frames between burst starts
T_RING, T_RING_LEN = 3, 4  # float32 input ring
T_IN_CH, T_OUT_CH = 5, 6  # interleaved channel counts of the duplex stream
T_STATS = 7  # int64 [S_N]
T_LOG, T_LOG_LEN = 8, 9  # int64 [n, 3]: start frame, frames, status flags
T_N = 10

# stats (int64)
S_POS = 0  # frames processed so far (published last)
S_CALLBACKS = 1
S_IN_UNDERFLOW = 2
S_IN_OVERFLOW = 3
S_OUT_UNDERFLOW = 4
S_OUT_OVERFLOW = 5
S_PRIMING = 6
S_NULL_INPUT = 7  # callbacks that got no input buffer (recorded as silence)
S_XRUN_CALLBACKS = 8  # callbacks with any under/overflow flag (PortAudio's JACK host API sets input overflow
#                       and output underflow together for one server xrun: counting flags would count it twice)
S_N = 9

# PaStreamCallbackFlags (portaudio.h)
PA_INPUT_UNDERFLOW = 0x1
PA_INPUT_OVERFLOW = 0x2
PA_OUTPUT_UNDERFLOW = 0x4
PA_OUTPUT_OVERFLOW = 0x8
PA_PRIMING_OUTPUT = 0x10


@intrinsic
def _addr(typingctx, ptr):
    """A ``void*`` as an integer (to test for NULL)."""
    sig = types.int64(ptr)

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], ir.IntType(64))

    return sig, codegen


@njit(cache=True, nogil=True)
def duplex_block(inp, out, sig, burst, ring, pos):
    """Play frames ``pos .. pos + len(out)`` of the periodic test signal into ``out`` (every channel) and record
    ``inp[:, 0]`` into ``ring`` at the same absolute frames.  ``inp`` may have zero columns (no input: silence)."""
    frames = out.shape[0]
    n_sig = sig.shape[0]
    r = ring.shape[0]
    for i in range(frames):
        n = pos + i
        ph = n % burst
        y = sig[ph] if ph < n_sig else np.float32(0.0)
        for ch in range(out.shape[1]):
            out[i, ch] = y
        if inp.shape[1] > 0:
            ring[n % r] = inp[i, 0]
        else:
            ring[n % r] = np.float32(0.0)


def _duplex_cb(inp, outp, frames, time_info, status, user):
    tbl = carray(user, (T_N,), np.int64)
    stats = carray(_voidptr(tbl[T_STATS]), (S_N,), np.int64)
    if status & PA_INPUT_UNDERFLOW:
        stats[S_IN_UNDERFLOW] += 1
    if status & PA_INPUT_OVERFLOW:
        stats[S_IN_OVERFLOW] += 1
    if status & PA_OUTPUT_UNDERFLOW:
        stats[S_OUT_UNDERFLOW] += 1
    if status & PA_OUTPUT_OVERFLOW:
        stats[S_OUT_OVERFLOW] += 1
    if status & (PA_INPUT_UNDERFLOW | PA_INPUT_OVERFLOW | PA_OUTPUT_UNDERFLOW | PA_OUTPUT_OVERFLOW):
        stats[S_XRUN_CALLBACKS] += 1
    if status & PA_PRIMING_OUTPUT:
        stats[S_PRIMING] += 1
    n = int(frames)
    pos = stats[S_POS]
    sig = carray(_voidptr(tbl[T_SIG]), (tbl[T_SIG_LEN],), np.float32)
    ring = carray(_voidptr(tbl[T_RING]), (tbl[T_RING_LEN],), np.float32)
    out = carray(outp, (n, tbl[T_OUT_CH]), np.float32)
    if _addr(inp) == 0:
        stats[S_NULL_INPUT] += 1
        duplex_block(out[:, :0], out, sig, tbl[T_BURST], ring, pos)
    else:
        duplex_block(carray(inp, (n, tbl[T_IN_CH]), np.float32), out, sig, tbl[T_BURST], ring, pos)
    k = stats[S_CALLBACKS]
    log = carray(_voidptr(tbl[T_LOG]), (tbl[T_LOG_LEN], 3), np.int64)
    row = k % tbl[T_LOG_LEN]
    log[row, 0] = pos
    log[row, 1] = n
    log[row, 2] = int(status)
    stats[S_CALLBACKS] = k + 1
    stats[S_POS] = pos + n  # published last: a reader that sees it sees the ring filled up to it
    return PA_CONTINUE


_CB = None


def duplex_callback():
    """The compiled C callback (compiled, or loaded from numba's cache, on first use: before any stream opens)."""
    global _CB
    if _CB is None:
        _CB = cfunc(PA_CALLBACK_SIG, nopython=True, cache=True)(_duplex_cb)
    return _CB
