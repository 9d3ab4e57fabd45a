"""Live session: the main-thread loop around a :class:`~metronome.player.LivePlayer`.

Threads: the PortAudio callback (runs the kernel), an optional sensor thread (writes one control slot), and the
main thread, which feeds cue requests into the SPSC ring ahead of time, drains the kernel's event ring, draws
the status line and watches the device.  No thread ever waits on another.
"""

from __future__ import annotations

import math
import sys
import time


from ._kernels import CT_TARGET_BPM
from .devices import find_device
from .engine import Engine, freeze_kernels, warm_kernels
from .mix import EngineSettings, click_bank
from .player import LivePlayer
from .errors import AudioDeviceError
from .tempo import TempoMap

CUE_LOOKAHEAD_S = 5.0
POLL_S = 0.1
STALL_S = 2.0  # no callback for this long while the stream claims to run => the device is gone


def _status_line(t_s, grade, target, actual, next_cue, underflows, sensor_txt):
    g = "  --  " if grade is None or not math.isfinite(grade) else f"{grade:+5.1f}%"
    nc = f"next cue {next_cue}" if next_cue else "no cue queued"
    return (f"{int(t_s // 60):02d}:{t_s % 60:04.1f}  grade {g}  cadence {actual:5.1f} -> {target:5.1f} spm  "
            f"{nc}  xruns {underflows}{sensor_txt}")


def _live_cues(samplerate, es, bank, voice_pack):
    """(LivePlanner, bank with every phrasing, warning or None).  A missing speech engine keeps the clicks."""
    from cues.library import load_library
    from cues.planner import LivePlanner
    from cues.voice import VoiceBank

    from cues.voice import VoiceUnavailableError

    library = load_library()
    try:
        voices = VoiceBank(library, samplerate, pack_dir=voice_pack)
        clips = voices.clips()
    except VoiceUnavailableError as exc:  # no speech engine: clicks only (a bad voice pack is still exit 2)
        return None, bank, f"cues disabled: {exc}"
    from cues.planner import clip_name

    named = [(clip_name(cid, idx), clip) for (cid, idx), clip in sorted(clips.items())]
    full = click_bank(samplerate, named, es)
    lengths = {key: len(clip) for key, clip in clips.items()}
    return LivePlanner(library, lengths, samplerate), full, None


def _device_available(device) -> bool:
    """Ask a *fresh* process whether an output device exists: this process's PortAudio is wedged on the dead
    server (its JACK teardown blocks on a mutex forever) and cannot rescan."""
    import subprocess

    code = "import sys; from metronome.devices import find_device; find_device(sys.argv[1] if len(sys.argv) > 1 else None)"
    try:
        r = subprocess.run([sys.executable, "-c", code, *([device] if device else [])], capture_output=True,
                           timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def _wait_and_resume(position, bpm, summary):
    """Wait for an output device, then replace this process with a fresh one resuming at ``position``.

    ``exec`` gives the new session a fresh PortAudio and skips this one's blocking teardown; the tempo map,
    cue plan and beat grid are recomputed from the same arguments, so clicks continue on the same samples.
    """
    import json
    import os

    print("downbeat: audio device lost; waiting for it to come back (Ctrl-C to stop)", file=sys.stderr, flush=True)
    argv = _strip_resume_args(sys.argv[1:])
    device = None
    if "--device" in argv:
        i = argv.index("--device")
        device = argv[i + 1] if i + 1 < len(argv) else None
    delay = 0.5
    while not _device_available(device):
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
    carried = {k: summary.get(k, 0) for k in ("beats", "cues", "cues_dropped", "underflows", "reconnects")}
    carried["reconnects"] += 1
    os.environ["DOWNBEAT_RESUME"] = json.dumps({"counters": carried, "bpm": bpm})
    print("downbeat: audio device back, resuming", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "metronome.cli", *argv, "--resume-at", str(int(position))])


def _strip_resume_args(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--resume-at":
            skip = True
            continue
        if a.startswith("--resume-at="):
            continue
        out.append(a)
    return out


# An upper bound for a resume position before the session is planned: 400 h at 384 kHz, more than any session
# lasts (the longest valid course, 1000 km, is ~92 h at the default pace).  The exact bound, the session's own
# length, is checked once the tempo map exists.
MAX_RESUME_SAMPLES = 400 * 3600 * 384000
RESUME_COUNTERS = ("beats", "cues", "cues_dropped", "underflows", "reconnects")
MAX_COUNT = 2 ** 53  # exact in a float, and far more than any session counts


def parse_resume(resume_at, env_text) -> dict:
    """Validate the hand-over of ``--reconnect`` (``--resume-at`` + the ``DOWNBEAT_RESUME`` JSON).

    Returns ``{"counters": {...}, "bpm": float or None}``; raises InputError naming the bad field.  Both come from
    the process environment, so they are checked like any other input (a huge position would allocate its beat
    grid, bad JSON would be a traceback).
    """
    from .errors import InputError
    from .safeyaml import short

    if isinstance(resume_at, bool) or not isinstance(resume_at, int) or not 0 <= resume_at <= MAX_RESUME_SAMPLES:
        raise InputError(f"--resume-at: {short(resume_at)} is not a sample position in 0..{MAX_RESUME_SAMPLES}")
    if env_text is None or not env_text.strip():
        return {"counters": {}, "bpm": None}
    import json

    try:
        data = json.loads(env_text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"DOWNBEAT_RESUME: not valid JSON ({' '.join(str(exc).split())[:80]})") from None
    if not isinstance(data, dict):
        raise InputError(f"DOWNBEAT_RESUME: expected a JSON object, got {short(data)}")
    unknown = sorted(set(data) - {"counters", "bpm"})
    if unknown:
        raise InputError(f"DOWNBEAT_RESUME: unknown key {short(unknown[0])} (known: counters, bpm)")
    counters = data.get("counters", {})
    if not isinstance(counters, dict):
        raise InputError(f"DOWNBEAT_RESUME: counters: expected an object, got {short(counters)}")
    for key, value in counters.items():
        if key not in RESUME_COUNTERS:
            raise InputError(f"DOWNBEAT_RESUME: counters: unknown key {short(key)} "
                             f"(known: {', '.join(RESUME_COUNTERS)})")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise InputError(f"DOWNBEAT_RESUME: counters.{key}: {short(value)} is not an integer in 0..{MAX_COUNT}")
    bpm = data.get("bpm")
    if bpm is not None:
        if isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or not (math.isfinite(bpm) and 1 <= bpm <= 1000):
            raise InputError(f"DOWNBEAT_RESUME: bpm: {short(bpm)} is not a tempo in 1..1000 steps/min")
        bpm = float(bpm)
    return {"counters": dict(counters), "bpm": bpm}


def run_play(*, profile=None, sensor=None, listen_any=False, device=None, blocksize=0, duration=None, quiet=False,
             base_cadence=None, samplerate=48000, upper_cap=1.08, volume_db=0.0, ceiling_db=-6.0, accent_every=4,
             flat_pace=None, no_cues=False, voice_pack=None, reconnect=False, status_stream=None, on_ready=None,
             resume_at=None):
    """Play a profile and/or a live sensor feed until the profile ends, ``duration`` passes or Ctrl-C.

    Returns a summary dict (also printed by the CLI).
    """
    from .session import load_profile, plan_session, tempo_settings_for

    import os

    resume = parse_resume(resume_at, os.environ.pop("DOWNBEAT_RESUME", None)) if resume_at is not None else {}
    es = EngineSettings(samplerate=samplerate, channels=2, ceiling_dbfs=ceiling_db, volume_db=volume_db,
                        accent_every=accent_every)
    spec = None
    if sensor is not None:
        from .sensors import parse_sensor_url

        spec = parse_sensor_url(sensor, listen_any=listen_any)  # bad input (exit 2) before device problems (exit 1)
    dev = find_device(device)  # fail fast, before any slow preparation
    prof = load_profile(profile, flat_pace=flat_pace) if profile else None
    ts = tempo_settings_for(prof, base_cadence, upper_cap)
    base = ts.base_cadence_spm
    warnings = []
    if prof is not None:
        plan = plan_session(prof, ts, es, cues=not no_cues and sensor is None, voice_pack=voice_pack)
        tm, bank, requests, planned = plan.tempo_map, plan.bank, list(plan.cue_requests), list(plan.planned_cues)
        warnings += list(plan.warnings)
    else:
        span = duration if duration else 24 * 3600.0
        tm = TempoMap.constant(base, samplerate, span)
        bank, requests, planned = click_bank(samplerate, settings=es), [], []
    live_planner = None
    if sensor is not None:
        # With a live feed the runner's position on a profile is not known from the clock, so the profile's
        # time-based cue plan is not used: the live planner picks cues from the terrain as it arrives.
        requests, planned = [], []
        if not no_cues:
            live_planner, bank, warn = _live_cues(samplerate, es, bank, voice_pack)
            if warn:
                warnings.append(warn)
    feed = None
    if sensor is not None:
        from .sensors import SensorFeed

        engine = Engine(tm, es, bank, live=True, max_change_per_beat=ts.max_change_per_beat,
                        min_bpm=ts.min_bpm, max_bpm=ts.max_bpm)
        fallback = None
        if prof is not None:
            # The feed calls this with its own clock; the profile's tempo is read at the playback position.
            fallback = lambda now_s: float(tm.bpm_at(engine.position))  # noqa: E731
        feed = SensorFeed(spec, engine.ctl, ts, fallback=fallback)
    else:
        engine = Engine(tm, es, bank, stop_beats_at=tm.end_sample if prof is not None else None)
    for w in warnings:
        print(f"downbeat: warning: {w}", file=sys.stderr)

    if resume_at is not None:
        if resume_at > tm.end_sample + samplerate:
            from .errors import InputError

            raise InputError(f"--resume-at: {resume_at} is past the end of this session ({tm.end_sample} samples)")
        engine.seek(int(resume_at), resume.get("bpm"))
    warm_s = warm_kernels(samplerate, es.channels)
    freeze_kernels()
    end_sample = tm.end_sample + samplerate if prof is not None else None
    if duration is not None:
        d = int(duration * samplerate)
        end_sample = d if end_sample is None else min(end_sample, d)

    player = LivePlayer(engine, device=dev, blocksize=blocksize)
    summary = {"played_s": 0.0, "beats": 0, "cues": 0, "cues_dropped": 0, "underflows": 0, "callbacks": 0,
               "callback_p99_ms": 0.0, "warm_s": round(warm_s, 3), "error": None, "stop_reason": None,
               "reconnects": 0}
    summary.update(resume.get("counters", {}))
    prior_underflows = summary["underflows"]
    if resume_at is not None:
        # Cues already behind us are not replayed.
        keep = [i for i, r in enumerate(requests) if r[1] >= resume_at]
        requests = [requests[i] for i in keep]
        planned = [planned[i] for i in keep]
    live_view = None
    if not quiet and sys.stderr.isatty():
        from rich.console import Console
        from rich.live import Live

        live_view = Live("", console=Console(file=status_stream or sys.stderr), refresh_per_second=4,
                         transient=True)
    ri = 0
    last_cb, last_cb_t = -1, time.monotonic()
    next_cue_name = None
    lost = False
    bpm_lo, bpm_hi = float("inf"), float("-inf")
    try:
        if feed is not None:
            feed.start()
        player.start()
        if on_ready is not None:
            on_ready(player)
        if live_view is not None:
            live_view.start()
        while True:
            pos = engine.position
            # Cue requests a few seconds ahead: the kernel starts each on its beat, sample-exact.
            ri = engine.queue_cues(requests, ri, pos + CUE_LOOKAHEAD_S * samplerate)
            next_cue_name = None
            if ri < len(planned):
                eta_s = max(0.0, (planned[ri].start_sample - pos) / samplerate)
                next_cue_name = f'"{planned[ri].text}" in {eta_s:.0f} s'
            if live_planner is not None:
                st = feed.state()
                target_now = float(engine.ctl[CT_TARGET_BPM])
                # Raw grade: the planner has its own hysteresis (feeding it the held level would hold twice).
                for req in live_planner.update(pos, grade_pct=st.grade_pct, speed_mps=st.speed_mps,
                                               cadence_spm=st.cadence_spm, target_cadence_spm=target_now,
                                               tempo_changing=abs(engine.current_bpm - target_now) > 0.05):
                    engine.request_cue(bank.index(req.clip_name), req.not_before_sample)
                    next_cue_name = f'"{req.text}" now'
            for ev in engine.drain_events():
                if ev.kind == "beat":
                    summary["beats"] += 1
                    bpm_lo, bpm_hi = min(bpm_lo, ev.bpm), max(bpm_hi, ev.bpm)
                elif ev.kind == "cue":
                    summary["cues"] += 1
                else:
                    summary["cues_dropped"] += 1
            if end_sample is not None and pos >= end_sample:
                summary["stop_reason"] = "end"
                break
            cb = int(player.stats[1])
            now = time.monotonic()
            if cb != last_cb:
                last_cb, last_cb_t = cb, now
            elif now - last_cb_t > STALL_S or not player.active:
                # No callback for STALL_S: the server died or the device was unplugged.
                player.lost = True
                if not reconnect:
                    raise AudioDeviceError("audio device stopped (server gone or device unplugged); "
                                           "use --reconnect to keep trying")
                lost = True
                break
            if live_view is not None:
                t_s = pos / samplerate
                grade = None
                sensor_txt = ""
                if feed is not None:
                    st = feed.state()
                    grade = st.get("grade_pct")
                    sensor_txt = f"  sensor {st.get('status', '')}"
                elif prof is not None:
                    grade = float(prof.grade_at_time(min(t_s, prof.duration_s)))
                target = float(engine.ctl[CT_TARGET_BPM]) if feed is not None else float(tm.bpm_at(pos))
                live_view.update(_status_line(t_s, grade, target, engine.current_bpm, next_cue_name,
                                              int(player.stats[0]), sensor_txt))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        summary["stop_reason"] = "interrupted"
    except AudioDeviceError as exc:
        summary["error"] = str(exc)
        summary["stop_reason"] = "device"
    finally:
        if live_view is not None:
            live_view.stop()
        if feed is not None:
            feed.stop()
        if not lost:
            player.stop()
    for ev in engine.drain_events():
        summary["beats"] += ev.kind == "beat"
        summary["cues"] += ev.kind == "cue"
        if ev.kind == "beat":
            bpm_lo, bpm_hi = min(bpm_lo, ev.bpm), max(bpm_hi, ev.bpm)
    if bpm_lo <= bpm_hi:
        summary["bpm_min"], summary["bpm_max"] = round(bpm_lo, 4), round(bpm_hi, 4)
    summary["bpm_bounds"] = [round(ts.min_bpm, 4), round(ts.max_bpm, 4)]
    stats = player.callback_stats()
    summary["played_s"] = engine.position / samplerate
    summary["underflows"] = prior_underflows + stats["underflows"]
    if lost:  # does not return: waits for a device, then execs a fresh process that resumes here
        _wait_and_resume(engine.position, engine.current_bpm, summary)
    summary["callbacks"] = stats["callbacks"]
    summary["callback_p99_ms"] = stats["p99_s"] * 1e3
    summary["callback_max_ms"] = stats["max_s"] * 1e3
    summary["blocksize"] = stats["median_frames"]
    summary["peak"] = engine.peak
    if feed is not None:
        summary["sensor"] = feed.summary() if hasattr(feed, "summary") else {}
    return summary
