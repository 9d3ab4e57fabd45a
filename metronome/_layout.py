"""The kernels' array layouts and slot numbers, declared once (no numba here).

Everything that reads or writes the kernels' arrays (the engine, the live player, the sensor feed, the music ring)
imports its slot numbers from here, so a command that runs the ahead-of-time compiled kernels
(:mod:`metronome.kernels`) never has to import numba.  :mod:`metronome._kernels` compiles them in as constants.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------------------
# Layout of the state array (written by the kernel only) and the control array (written by the main/sensor thread
# only, read by the kernel).  Single writer each: no locks are needed.
# --------------------------------------------------------------------------------------------------------------
ST_POS = 0  # absolute sample index of the next sample to produce
ST_NEXT_BEAT = 1  # exact (fractional) sample time of the next beat
ST_BEAT_INDEX = 2  # index of the next beat (beat 0 is at sample 0)
ST_BPM = 3  # live mode: tempo of the current beat interval; map mode: tempo at the last beat
ST_SEG = 4  # tempo-map cursor: segment holding the next beat
ST_DUCK = 5  # current click ducking gain (smoothed)
ST_LIMIT = 6  # current limiter gain
ST_MASTER = 7  # current master gain (smoothed toward CT_GAIN)
ST_CUES_DROPPED = 8  # cue requests the kernel could not start (no free cue voice)
ST_EVENTS_LOST = 9  # events not logged because the event ring was full
ST_PEAK = 10  # peak |output| so far (after limiter)
ST_LIMITED = 11  # samples on which the limiter reduced gain
ST_LAST_BEAT = 12  # sample of the last started beat
ST_ACTIVE = 13  # voices still sounding after the last sample
ST_MUSIC_DUCK = 14  # current music ducking gain (smoothed, ramps down under speech)
ST_MUSIC_UNDERRUNS = 15  # samples on which the music ring was empty before its end (silence played instead)
ST_N = 16

CT_TARGET_BPM = 0  # live mode target tempo (sensor thread writes it)
CT_GAIN = 1  # master gain, linear, <= 1 (never positive gain)
CT_LIVE = 2  # 0: follow the tempo map; 1: slew toward CT_TARGET_BPM once per beat
CT_SLEW = 3  # max relative tempo change per beat in live mode (0.004 = 0.4 %)
CT_MIN_BPM = 4
CT_MAX_BPM = 5
CT_BEAT_END = 6  # no beat starts at or after this sample (< 0: never stop)
CT_CEILING = 7  # output peak ceiling, linear (0.501 = -6 dBFS)
CT_DUCK = 8  # click gain while speech plays (0.501 = -6 dB)
CT_ACCENT_EVERY = 9  # accent every N beats (0: never)
CT_MUSIC = 10  # 1: mix the music ring under the clicks and cues (0: no music, the ring is never read)
CT_MUSIC_DUCK = 11  # music gain while speech plays (0.316 = -10 dB)
CT_COACH_GAIN = 12  # with music: gain of the clicks and cues (0.501 = -6 dB), the rest of the ceiling is the music's
# Host monotonic time (CLOCK_MONOTONIC, integer ns held exactly in a float64 below 2**53 ns = 104 days of uptime) at
# which the sensor thread received the reading behind CT_TARGET_BPM; 0: none.  Only the live C callback reads it
# (to stamp when audio first reflects a reading: the sensor-to-sound figure); process_block never does, so offline
# renders are unaffected.
CT_READING_NS = 13
CT_N = 16

# Music ring counters (int64 [3]): frames written (the music writer publishes), frames read (the kernel), and the
# writer's end flag (1: the playlist is over, an empty ring is the end of the music, not an underrun).
MI_WRITTEN = 0
MI_READ = 1
MI_ENDED = 2

# Voice pool columns (int64 array [n_voices, 3]): clip id (-1 free), read position, kind (0 click, 1 cue)
V_CLIP = 0
V_POS = 1
V_KIND = 2

# Event ring columns (float64 [n, 4]): kind, sample, bpm, clip
EV_BEAT = 0.0
EV_CUE = 1.0
EV_CUE_DROPPED = 2.0

CLIP_ACCENT = 0
CLIP_NORMAL = 1


# --------------------------------------------------------------------------------------------------------------
# The argument layout of process_block (after ``out``), declared once.  ``Engine`` builds the offline argument tuple
# from it and ``LivePlayer`` the callback's pointer table; the slot numbers below are derived from it, so the three
# cannot drift apart (tests/test_kernels.py checks the declaration against process_block's signature).
# Each entry: (name, dtype, ndim); dtype None is a float64 scalar, carried in the callback's ``params`` array.
# --------------------------------------------------------------------------------------------------------------
BLOCK_ARGS = (
    ("st", np.float64, 1), ("ctl", np.float64, 1),
    ("map_sample", np.float64, 1), ("map_bpm", np.float64, 1), ("map_phase", np.float64, 1),
    ("samplerate", None, 0),
    ("bank", np.float32, 1), ("clip_off", np.int64, 1), ("clip_len", np.int64, 1),
    ("voices", np.int64, 2), ("cue_q", np.int64, 2), ("cue_idx", np.int64, 1),
    ("events", np.float64, 2), ("ev_idx", np.int64, 1),
    ("duck_coef", None, 0), ("release_coef", None, 0), ("gain_coef", None, 0),
    ("music", np.float32, 2), ("music_idx", np.int64, 1),
    ("music_attack_coef", None, 0), ("music_release_coef", None, 0),
)


#: The arrays of BLOCK_ARGS the kernel only reads (the tempo map and the clip bank): the ahead-of-time kernels are
#: typed read-only there (metronome._aot), as numba types them for the renderer's immutable tempo-map arrays.
BLOCK_READ_ONLY = frozenset({"map_sample", "map_bpm", "map_phase", "bank", "clip_off", "clip_len"})


def _layout(args):
    """Pointer-table slots: each array gets its address, then one slot per dimension; scalars get a params index."""
    slots, params, n = {}, {}, 0
    for name, dtype, ndim in args:
        if dtype is None:
            params[name] = len(params)
        else:
            slots[name] = n
            n += 1 + ndim
    return slots, params, n


BLOCK_SLOTS, BLOCK_PARAMS, _N_BLOCK_SLOTS = _layout(BLOCK_ARGS)
# Named slots for the compiled callback (numba reads module-level ints as compile-time constants).
P_ST, P_CTL = BLOCK_SLOTS["st"], BLOCK_SLOTS["ctl"]
P_MAP_S, P_MAP_B, P_MAP_P = BLOCK_SLOTS["map_sample"], BLOCK_SLOTS["map_bpm"], BLOCK_SLOTS["map_phase"]
P_BANK, P_CLIP_OFF, P_CLIP_LEN = BLOCK_SLOTS["bank"], BLOCK_SLOTS["clip_off"], BLOCK_SLOTS["clip_len"]
P_VOICES, P_CUEQ, P_CUEIDX = BLOCK_SLOTS["voices"], BLOCK_SLOTS["cue_q"], BLOCK_SLOTS["cue_idx"]
P_EVENTS, P_EVIDX = BLOCK_SLOTS["events"], BLOCK_SLOTS["ev_idx"]
P_MUSIC, P_MUSIC_IDX = BLOCK_SLOTS["music"], BLOCK_SLOTS["music_idx"]
PR_SR, PR_DUCK, PR_RELEASE, PR_GAIN = (BLOCK_PARAMS[k] for k in ("samplerate", "duck_coef", "release_coef",
                                                                 "gain_coef"))
PR_M_ATTACK, PR_M_RELEASE = BLOCK_PARAMS["music_attack_coef"], BLOCK_PARAMS["music_release_coef"]
N_PARAMS = len(BLOCK_PARAMS)
# Slots of the callback's own arrays, after the kernel's: params (float64 [N_PARAMS]), stats (int64 [S_N]),
# timing (int64 [n, 2]: ns inside the callback, frames) and the channel count.
P_PARAMS = _N_BLOCK_SLOTS
P_STATS = P_PARAMS + 1
P_TIMING = P_STATS + 1  # address, then its length
P_CHANNELS = P_TIMING + 2
P_N = P_CHANNELS + 1
# stats (int64): output underflows, callbacks, frames;
# S_ANCHOR_NS / S_ANCHOR_POS: CLOCK_MONOTONIC ns at the start of the latest callback and the sample index it
# produced first (maps the engine's sample clock to the host clock: where timing meets the outside world);
# S_SEEN_READING_NS: the CT_READING_NS the callback last saw change, S_SEEN_CB_NS / S_SEEN_POS: when (callback start)
# and from which sample audio first reflected it.  Writers publish the stamp last, so a reader that sees it
# unchanged before and after reading the other two has a consistent triple.
S_UNDERFLOWS, S_CALLBACKS, S_FRAMES = 0, 1, 2
S_ANCHOR_NS, S_ANCHOR_POS = 3, 4
S_SEEN_READING_NS, S_SEEN_CB_NS, S_SEEN_POS = 5, 6, 7
S_N = 16
PA_OUTPUT_UNDERFLOW = 0x4  # paOutputUnderflow in portaudio.h
PA_CONTINUE = 0
