"""Where the live session's timing meets the outside world: sensor-to-sound delay and footfall phase.

The engine counts samples; the outside world (a sensor's reading, a runner's foot strike, the runner's ear) lives
on the host clock.  The live C callback stamps both clocks at the start of every block (``S_ANCHOR_NS`` /
``S_ANCHOR_POS``) and, when the sensor thread has published a new reading (``CT_READING_NS``), notes the block that
first reflects it (``S_SEEN_*``).  What the runner *hears* is later than what the kernel produces by the output
latency: the offset measured for this device by ``downbeat latency`` (tap or loopback, stored in
:mod:`.offsets`) when there is one, else PortAudio's own figure (which knows nothing of Bluetooth, headphones or
the DAC).  This class turns those into two figures:

* **sensor-to-sound**: from a reading's arrival to the moment the first sample computed after it reaches the ear
  (``seen callback start - arrival + output latency``).  Sampled once per main-thread poll (the newest reading
  then), so a 50 Hz feed is not measured reading by reading; the tempo itself moves at the next beat, within the
  slew limit, which is the coaching's design rather than a delay.
* **footfall phase**: for each foot strike (a message with ``"footfall": true``; its arrival on the host clock is
  the strike's time, network delay included), the time from the nearest *heard* click to the strike, in ms
  (positive: the foot lands after the click).  The heard click time is its sample mapped to the host clock plus the
  output latency, so a stored Bluetooth offset of 180 ms moves every figure by 180 ms -- without it the phase of a
  runner exactly on the beat would read -180 ms.

Main thread only; everything is preallocated (bounded rings), nothing here runs in the audio thread.
"""

from __future__ import annotations

import numpy as np

from .. import _layout as K

#: Figures kept (rings); the summary reports medians over what is kept.
RING = 4096
#: Beats remembered for matching footfalls (two seconds of 180 spm is 6 beats; 64 leaves margin for slow polls).
BEAT_RING = 64
#: A footfall farther than this from every heard click is not a step on the beat (a stop, a stumble).
MAX_PHASE_S = 0.5


class TimingWitness:
    """Sensor-to-sound and footfall-phase figures of a live session.

    Parameters
    ----------
    stats : int64 ndarray
        The C callback's counters (``LivePlayer.stats``), read only.
    samplerate : int
    output_latency_s : float
        The effective output latency (stored offset, else PortAudio's), added to every "heard" time.
    """

    def __init__(self, stats: np.ndarray, samplerate: int, output_latency_s: float):
        self.stats = stats
        self.samplerate = int(samplerate)
        self.output_latency_s = float(output_latency_s)
        self._delay_s = np.zeros(RING)
        self._n_delay = 0
        self._phase_s = np.zeros(RING)
        self._n_phase = 0
        self._last_seen = 0
        self._beats = np.zeros(BEAT_RING)  # heard times (host s) of the latest beats
        self._n_beats = 0
        self._pending = np.zeros(RING)  # footfalls waiting for the click after them
        self._n_pending = 0
        self._footfalls_read = 0
        self.footfalls_unmatched = 0

    # -- clocks ---------------------------------------------------------------------------------------------
    def anchor(self) -> tuple[float, int] | None:
        """``(host_s, sample)`` of the latest callback's start, or None before the first callback."""
        st = self.stats
        for _ in range(4):  # the callback rewrites the pair each block; retry on a torn read
            k = int(st[K.S_CALLBACKS])
            if k == 0:
                return None
            ns, pos = int(st[K.S_ANCHOR_NS]), int(st[K.S_ANCHOR_POS])
            if int(st[K.S_CALLBACKS]) == k:
                return ns * 1e-9, pos
        return ns * 1e-9, pos

    def heard_s(self, sample: float, anchor: tuple[float, int] | None = None) -> float | None:
        """Host time at which ``sample`` reaches the runner's ear (None before the first callback)."""
        a = anchor if anchor is not None else self.anchor()
        if a is None:
            return None
        return a[0] + (float(sample) - a[1]) / self.samplerate + self.output_latency_s

    # -- figures --------------------------------------------------------------------------------------------
    def poll(self, beat_samples=(), footfall_s=None, footfalls: int = 0, now_s: float | None = None) -> None:
        """One main-thread step.

        ``beat_samples``: samples of the beats drained since the last poll; ``footfall_s`` / ``footfalls``: the
        feed's footfall ring and its count (:class:`~metronome.sensors.core.FeedCore`); ``now_s``: host time,
        to give up on footfalls no click follows.
        """
        st = self.stats
        seen = int(st[K.S_SEEN_READING_NS])
        if seen != 0 and seen != self._last_seen:
            cb_ns = int(st[K.S_SEEN_CB_NS])
            if int(st[K.S_SEEN_READING_NS]) == seen:  # not overwritten while read
                self._last_seen = seen
                self._push_delay((cb_ns - seen) * 1e-9 + self.output_latency_s)
        a = self.anchor()
        if a is not None:
            for s in beat_samples:
                self._beats[self._n_beats % BEAT_RING] = self.heard_s(s, a)
                self._n_beats += 1
        if footfall_s is not None:
            lo = max(self._footfalls_read, footfalls - footfall_s.size)
            for i in range(lo, footfalls):
                if self._n_pending < self._pending.size:
                    self._pending[self._n_pending] = footfall_s[i % footfall_s.size]
                    self._n_pending += 1
            self._footfalls_read = footfalls
        self._match(now_s)

    def _push_delay(self, d: float) -> None:
        self._delay_s[self._n_delay % RING] = d
        self._n_delay += 1

    def _match(self, now_s) -> None:
        n = min(self._n_beats, BEAT_RING)
        if self._n_pending == 0:
            return
        beats = np.sort(self._beats[:n]) if n else self._beats[:0]
        keep = 0
        for i in range(self._n_pending):
            t = self._pending[i]
            after = beats[beats >= t]
            if after.size == 0 and (now_s is None or now_s - t < 2 * MAX_PHASE_S):
                self._pending[keep] = t  # the click after it is not heard yet: wait
                keep += 1
                continue
            if beats.size == 0:
                self.footfalls_unmatched += 1
                continue
            d = t - beats
            j = int(np.argmin(np.abs(d)))
            if abs(d[j]) > MAX_PHASE_S:
                self.footfalls_unmatched += 1
                continue
            self._phase_s[self._n_phase % RING] = d[j]
            self._n_phase += 1
        self._n_pending = keep

    def summary(self) -> dict:
        """JSON-friendly figures: medians and p99 in ms over the kept samples, with their counts."""
        def ms(x):
            return round(float(x) * 1e3, 3)

        out = {"timing_output_latency_ms": ms(self.output_latency_s)}
        nd = min(self._n_delay, RING)
        if nd:
            d = self._delay_s[:nd]
            out["sensor_to_sound_ms"] = {"p50": ms(np.median(d)), "p99": ms(np.percentile(d, 99)), "n": int(nd)}
        npf = min(self._n_phase, RING)
        if npf:
            p = self._phase_s[:npf]
            out["footfall_phase_ms"] = {"median": ms(np.median(p)), "p90_abs": ms(np.percentile(np.abs(p), 90)),
                                        "n": int(npf), "unmatched": int(self.footfalls_unmatched)}
        return out
