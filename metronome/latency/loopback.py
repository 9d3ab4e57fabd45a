"""Round trip through a duplex audio device whose output is wired back to its input.

A cable from the output to the input, a PipeWire/PulseAudio loopback, or a JACK connection: the test signal
(:mod:`metronome.latency.signal`) is played every ``burst_frames`` by a compiled C callback
(:mod:`metronome.latency._kernel`), the input is recorded into a ring at the same absolute frames, and the main
thread cross-correlates each completed burst with the signal.  The lag of the peak is the round trip in frames.

On a JACK server where nothing carries the signal back (the dummy backend's capture ports are silent), the
measurement connects its own output port to its own input port and says so in :attr:`LoopbackResult.notes`.
A JACK client's output fed to its own input arrives exactly one period later (JACK runs the graph once per
cycle; a connection that loops back to the same client can only be read in the next cycle), so the round trip
measured that way is the server's period.

Every figure is in frames first (what the device's clock counted), then in ms at the stream's sample rate.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import AudioDeviceError, InputError
from . import _kernel as KD
from .signal import make_signal, onset

#: Frames between burst starts at 48 kHz: 16384 frames = 341 ms, so round trips up to
#: 16384 - 4095 = 12289 frames (256 ms) are unambiguous; a USB interface at 48 kHz is 3-30 ms, a PipeWire
#: loopback tens of ms (see benchmarks/README.md).  Scaled with the sample rate.
BURST_FRAMES_48K = 16384
#: Input ring: 8 bursts (2.7 s at 48 kHz) give the main thread ample time to copy each one out.
RING_BURSTS = 8
#: Callback log ring (start frame, frames, flags) for the period actually used.
LOG_CALLBACKS = 4096
#: Bursts with no detected signal before the JACK self-connection is made.
PROBE_BURSTS = 2
#: How often the main thread looks for completed bursts.
POLL_S = 0.02


@dataclass
class LoopbackResult:
    """One measurement run (one blocksize).

    Attributes
    ----------
    round_trip_frames : int or None
        Median lag of the signal, frames (None when it never came back).
    round_trip_ms : float or None
    jitter_p50_ms, jitter_p99_ms : float or None
        Median and 99th percentile of ``|lag - trend|`` (the trend is the straight-line fit used for drift).
    drift_ppm : float or None
        Slope of the lag over the run (frames of lag per frame played) x 1e6 (Theil-Sen, see :func:`analyse`):
        0 when input and output share
        one clock; a cable between two devices with their own crystals can show tens of ppm (crystal
        tolerances are commonly specified as +-20 to +-100 ppm).
    period_frames : int or None
        Median frames per callback (the period PortAudio actually used).
    server_period_frames : int or None
        The JACK server's period, when the host API is JACK.
    xruns : int
        Callbacks PortAudio flagged with an input overflow/underflow or output underflow/overflow (one count per
        callback, however many flags it had).
    """

    device: str
    hostapi: str
    samplerate: int
    blocksize: int
    period_frames: int | None
    server_period_frames: int | None
    round_trip_frames: int | None
    round_trip_ms: float | None
    jitter_p50_ms: float | None
    jitter_p99_ms: float | None
    drift_ppm: float | None
    xruns: int
    bursts: int
    bursts_missing: int
    seconds: float
    portaudio_latency_ms: dict
    jack_connected: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    lags_frames: list = field(default_factory=list)
    lag_times_s: list = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-ready dict without the per-burst lists."""
        d = dataclasses.asdict(self)
        d.pop("lags_frames")
        d.pop("lag_times_s")
        return d


def analyse(lags_fine, starts, samplerate: int) -> dict:
    """Round trip, jitter and drift from per-burst lags (fine, frames) at burst start frames.

    Drift is the Theil-Sen slope of lag over time (the median of all pairwise slopes: one burst disturbed by an
    xrun cannot tilt it, unlike a least-squares line; Sen, J. Am. Stat. Assoc. 63, 1968); jitter is the absolute
    deviation of each lag from that line.
    """
    lags = np.asarray(lags_fine, dtype=np.float64)
    x = np.asarray(starts, dtype=np.float64)
    if lags.size == 0:
        return {"round_trip_frames": None, "round_trip_ms": None, "jitter_p50_ms": None, "jitter_p99_ms": None,
                "drift_ppm": None}
    rt = int(np.median(np.round(lags)))
    slope = 0.0
    if lags.size >= 2:
        i, j = np.triu_indices(lags.size, 1)
        dx = x[j] - x[i]
        ok = dx != 0
        if np.any(ok):
            slope = float(np.median((lags[j] - lags[i])[ok] / dx[ok]))
    icpt = float(np.median(lags - slope * (x - x[0])))
    resid = np.abs(lags - (icpt + slope * (x - x[0])))
    to_ms = 1000.0 / samplerate

    def clean(v, nd):
        v = round(float(v), nd)
        return 0.0 if v == 0 else v  # no "-0.0" in a report

    return {"round_trip_frames": rt, "round_trip_ms": clean(rt * to_ms, 4),
            "jitter_p50_ms": clean(np.percentile(resid, 50) * to_ms, 4),
            "jitter_p99_ms": clean(np.percentile(resid, 99) * to_ms, 4),
            "drift_ppm": clean(slope * 1e6, 3)}


# ------------------------------------------------------------------------------------------------------------------
# Devices
# ------------------------------------------------------------------------------------------------------------------
def find_duplex_device(name: str | None):
    """``--device`` (index or case-insensitive substring of "name (host API)") -> (index, label, host API name)
    of a device with both inputs and outputs."""
    from ..devices import NoOutputDevice, list_devices, match_devices

    try:
        devices = list_devices()
    except NoOutputDevice as exc:
        raise AudioDeviceError(exc.reason) from None
    duplex = [d.index for d in devices if d.outputs > 0 and d.inputs > 0]
    label = {d.index: d.label for d in devices}
    if not duplex:
        raise AudioDeviceError("no audio device with both an input and an output (a loopback needs one)")
    if name is None:
        d_out = [d.index for d in devices if d.default_output]
        d_in = [d.index for d in devices if d.default_input]
        pick = d_out[0] if d_out and d_out[0] in duplex else (d_in[0] if d_in and d_in[0] in duplex else duplex[0])
    elif name.isdigit():
        if int(name) not in duplex:
            raise InputError(f"device: {name!r} is not a device with inputs and outputs (have: {duplex})")
        pick = int(name)
    else:
        matches = match_devices([d for d in devices if d.index in duplex], name)
        if not matches:
            have = ", ".join(repr(label[i]) for i in duplex)
            raise InputError(f"device: no duplex device matches {name!r} (have: {have})")
        pick = matches[0]
    return pick, label[pick], devices[pick].hostapi


# ------------------------------------------------------------------------------------------------------------------
# JACK graph (JACK-Client if installed, else jack_lsp / jack_connect from jackd2)
# ------------------------------------------------------------------------------------------------------------------
class JackGraph:
    """The few graph operations the self-connection needs, without starting a server."""

    def __init__(self):
        self.client = None
        try:
            import jack

            self.client = jack.Client("downbeat-latency", no_start_server=True)
        except Exception:  # module missing, or no server: fall back to the command-line tools
            self.client = None

    def ports(self) -> set[str]:
        if self.client is not None:
            return {p.name for p in self.client.get_ports(is_audio=True)}
        import subprocess

        r = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=5)
        return set(r.stdout.split()) if r.returncode == 0 else set()

    def connections(self, port: str) -> set[str]:
        if self.client is not None:
            return {p.name for p in self.client.get_all_connections(port)}
        import subprocess

        r = subprocess.run(["jack_lsp", "-c", port], capture_output=True, text=True, timeout=5)
        lines = r.stdout.splitlines()
        return {ln.strip() for ln in lines[1:] if ln.startswith((" ", "\t"))}

    def connect(self, src: str, dst: str) -> None:
        if self.client is not None:
            self.client.connect(src, dst)
            return
        import subprocess

        r = subprocess.run(["jack_connect", src, dst], capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            raise AudioDeviceError(f"jack_connect {src} {dst} failed: {(r.stderr or r.stdout).strip()[:200]}")

    def period_frames(self) -> int | None:
        return int(self.client.blocksize) if self.client is not None else None

    def close(self):
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None


def _own_ports(before: set[str], after: set[str]):
    """Our stream's ports: the ones that appeared when it opened (PortAudio names them CLIENT:in_N / out_N)."""
    new = sorted(after - before)
    ins = [p for p in new if p.rsplit(":", 1)[-1].startswith("in_")]
    outs = [p for p in new if p.rsplit(":", 1)[-1].startswith("out_")]
    return ins, outs


# ------------------------------------------------------------------------------------------------------------------
# The measurement
# ------------------------------------------------------------------------------------------------------------------
class DuplexMeasurement:
    """Preallocated arrays + pointer table for :func:`metronome.latency._kernel.duplex_callback`."""

    def __init__(self, samplerate: int, in_channels: int = 1, out_channels: int = 1, kind: str = "mls",
                 level_dbfs: float = -20.0):
        self.samplerate = int(samplerate)
        self.sig = make_signal(kind, self.samplerate, level_dbfs)
        self.burst = int(round(BURST_FRAMES_48K * self.samplerate / 48000))
        if self.burst < 2 * self.sig.shape[0]:
            self.burst = 2 * self.sig.shape[0]
        self.ring = np.zeros(self.burst * RING_BURSTS, dtype=np.float32)
        self.stats = np.zeros(KD.S_N, dtype=np.int64)
        self.log = np.zeros((LOG_CALLBACKS, 3), dtype=np.int64)
        t = np.zeros(KD.T_N, dtype=np.int64)
        t[KD.T_SIG], t[KD.T_SIG_LEN] = self.sig.ctypes.data, self.sig.shape[0]
        t[KD.T_BURST] = self.burst
        t[KD.T_RING], t[KD.T_RING_LEN] = self.ring.ctypes.data, self.ring.shape[0]
        t[KD.T_IN_CH], t[KD.T_OUT_CH] = in_channels, out_channels
        t[KD.T_STATS] = self.stats.ctypes.data
        t[KD.T_LOG], t[KD.T_LOG_LEN] = self.log.ctypes.data, LOG_CALLBACKS
        self.table = t
        self.in_channels, self.out_channels = in_channels, out_channels

    @property
    def pos(self) -> int:
        return int(self.stats[KD.S_POS])

    def read_burst(self, k: int):
        """Copy of burst ``k``'s recording, or None if it is not complete yet; raises LookupError if the ring
        already overwrote part of it."""
        start = k * self.burst
        if self.pos < start + self.burst:
            return None
        r = self.ring.shape[0]
        a = start % r
        x = self.ring[a:a + self.burst].copy()
        if self.pos - start > r:  # the kernel wrapped onto it while (or before) we copied
            raise LookupError(k)
        return x

    def xruns(self) -> int:
        """Callbacks PortAudio flagged with any input/output under- or overflow."""
        return int(self.stats[KD.S_XRUN_CALLBACKS])

    def period_frames(self) -> int | None:
        n = min(int(self.stats[KD.S_CALLBACKS]), LOG_CALLBACKS)
        if n == 0:
            return None
        return int(np.median(self.log[:n, 1]))


def warm_callback() -> None:
    """Compile (or load from cache) the callback and call it once into scratch arrays, as PortAudio will."""
    m = DuplexMeasurement(48000)
    cb = KD.duplex_callback()
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                          ctypes.c_ulong, ctypes.c_void_p)(cb.address)
    inp = np.zeros((64, 1), dtype=np.float32)
    out = np.zeros((64, 1), dtype=np.float32)
    fn(inp.ctypes.data, out.ctypes.data, 64, None, 0, m.table.ctypes.data)
    fn(None, out.ctypes.data, 64, None, 0, m.table.ctypes.data)


def _stop(stream, timeout_s: float = 3.0) -> None:
    def close():
        for f in (stream.stop, stream.close):
            try:
                f()
            except Exception:
                pass

    t = threading.Thread(target=close, name="downbeat-latency-close", daemon=True)
    t.start()
    t.join(timeout_s)


def measure(device: str | None = None, blocksize: int = 0, seconds: float = 10.0, *, samplerate: int | None = None,
            kind: str = "mls", level_dbfs: float = -20.0, jack_self_connect: bool = True,
            on_note=None) -> LoopbackResult:
    """Measure the round trip of ``device`` for ``seconds`` of bursts.

    Parameters
    ----------
    device : str or None
        Index or substring of "name (host API)"; None: the default device if it is duplex.
    blocksize : int
        Frames per callback asked of PortAudio (0: let the host API choose; on JACK that is the period).
    seconds : float
        Measured time after the first burst (a warm-up burst is discarded).
    jack_self_connect : bool
        On JACK, when no signal comes back in the first bursts, connect the stream's own outputs to its inputs.
    on_note : callable, optional
        Called with each note as it happens (the command prints them to stderr at once).
    """
    import sounddevice as sd

    idx, label, hostapi = find_duplex_device(device)
    info = sd.query_devices(idx)
    sr = int(samplerate or info["default_samplerate"])
    notes = []

    def note(msg):
        notes.append(msg)
        if on_note is not None:
            on_note(msg)

    warm_callback()
    m = DuplexMeasurement(sr, 1, 1, kind, level_dbfs)
    is_jack = hostapi.upper().startswith("JACK")
    graph = JackGraph() if is_jack else None
    before = graph.ports() if graph else set()
    cb = KD.duplex_callback()
    try:
        stream = sd._StreamBase(kind="duplex", samplerate=sr, blocksize=blocksize, device=(idx, idx),
                                channels=(1, 1), dtype="float32", latency="low", callback=cb.address,
                                userdata=sd._ffi.cast("void *", m.table.ctypes.data), wrap_callback=None)
    except sd.PortAudioError as exc:
        if graph:
            graph.close()
        raise AudioDeviceError(f"cannot open {label} for input and output: {exc}") from None
    connected = []
    lags, starts, missing, probed = [], [], 0, 0
    first_k = 1  # burst 0 is a warm-up (streams start with priming and silence)
    n_bursts = max(2, int(math.ceil(seconds * sr / m.burst)))
    try:
        try:
            stream.start()
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot start {label} for input and output: {exc}") from None
        pa_lat = {"input": round(stream.latency[0] * 1000.0, 3), "output": round(stream.latency[1] * 1000.0, 3)}
        ins, outs = _own_ports(before, graph.ports()) if graph else ([], [])
        if graph and ins and outs and any(o in graph.connections(ins[0]) for o in outs):
            note(f"{outs[0]} is already connected to {ins[0]}")
        k = first_k
        deadline = time.monotonic() + (n_bursts + PROBE_BURSTS + 4) * m.burst / sr + 10.0
        while k < first_k + n_bursts:
            if time.monotonic() > deadline:
                raise AudioDeviceError(f"{label}: the stream stopped advancing ({m.pos} frames played)")
            try:
                rec = m.read_burst(k)
            except LookupError:
                missing += 1
                k += 1
                continue
            if rec is None:
                time.sleep(POLL_S)
                continue
            hit = onset(rec, m.sig)
            if hit is not None:
                lags.append(hit[1])
                starts.append(k * m.burst)
                k += 1
                continue
            if not lags and not connected:
                probed += 1
                if graph and ins and outs and jack_self_connect and probed >= PROBE_BURSTS:
                    graph.connect(outs[0], ins[0])
                    connected.append([outs[0], ins[0]])
                    note(f"nothing carried the signal back: connected {outs[0]} -> {ins[0]} (JACK)")
                    # Measure from the first burst that starts after the connection is certainly in place.
                    k = m.pos // m.burst + 2
                    first_k = k
                    deadline += 2 * m.burst / sr
                    continue
                if probed >= PROBE_BURSTS + 2:
                    raise AudioDeviceError(f"{label}: the test signal did not come back; wire the output to the "
                                           "input (a cable, a loopback device, or a JACK connection)")
                k += 1
                first_k = k
                continue
            missing += 1
            k += 1
        period = m.period_frames()
    finally:
        _stop(stream)
        server_period = graph.period_frames() if graph else None
        if graph:
            graph.close()
    xruns = m.xruns()
    if server_period is not None and period is not None and server_period != period:
        note(f"JACK period {server_period} frames, PortAudio callbacks of {period} frames")
    a = analyse(lags, starts, sr)
    if missing:
        note(f"{missing} of {missing + len(lags)} bursts did not come back cleanly (xruns: {xruns})")
    return LoopbackResult(device=label, hostapi=hostapi, samplerate=sr, blocksize=int(blocksize),
                          period_frames=period, server_period_frames=server_period, **a, xruns=xruns,
                          bursts=len(lags), bursts_missing=missing,
                          seconds=round(len(lags) * m.burst / sr, 3), portaudio_latency_ms=pa_lat,
                          jack_connected=connected, notes=notes,
                          lags_frames=[float(v) for v in lags], lag_times_s=[s / sr for s in starts])
