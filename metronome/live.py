"""A live session as an object: :class:`LiveSession` start / poll / stop, returning what happened.

Threads: the PortAudio callback (runs the kernel), an optional sensor thread (writes one control slot), and the
main thread, which calls :meth:`LiveSession.poll`: it feeds cue requests into the SPSC ring ahead of time, runs the
live cue planner, drains the kernel's event ring and watches the device.  No thread ever waits on another.

Nothing here prints, reads ``sys.argv``, re-executes the process or exits: the CLI (:mod:`metronome.cli.play`) draws
the status line from :class:`LiveStatus`, and decides what a lost device means (an error, or a reconnect).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ._layout import CT_N, CT_READING_NS, CT_TARGET_BPM
from .engine import Engine, freeze_kernels, warm_kernels
from .errors import InputError
from .player import LivePlayer

CUE_LOOKAHEAD_S = 5.0
#: Following a course, the session ends this long after the runner reaches its end (or a replayed run ends): the
#: last cue ("Descent done.") has time to play.
FOLLOW_TAIL_S = 5.0
STALL_S = 2.0  # no callback for this long while the stream claims to run => the device is gone
RESUME_COUNTERS = ("beats", "cues", "cues_dropped", "underflows", "reconnects")


@dataclass(frozen=True)
class LiveStatus:
    """One poll's view of the session, for the status line (immutable; built by the main thread)."""

    t_s: float
    grade_pct: float | None
    target_bpm: float
    actual_bpm: float
    next_cue: str | None
    underflows: int
    sensor_status: str | None
    finished: str | None  # None while playing; "end" (the session is over) or "device" (the device is gone)
    #: Music samples the ring could not supply in time (silence played for the music; clicks untouched).
    music_underruns: int = 0
    #: Following a course: ``course: km 3.42  descent in 180 m`` / ``OFF COURSE`` / ``lost fix`` (else None).
    course: str | None = None


def follows_position(spec) -> bool:
    """A feed that says where the runner is, so a session with a course follows it by position: gpsd, the phone
    apps' HTTP push, or a recorded run (``replay:RUN.gpx|.fit|.tcx``).  A UDP/stdin feed or a replayed grade log
    keeps the grade-driven live planner."""
    from .sensors.track_replay import is_track_file

    return spec.kind in ("gpsd", "http") or (spec.kind == "replay" and is_track_file(spec.path))


def follow_source(spec):
    """The source of a course-following feed: a recorded run (``replay:RUN.gpx``) replays its *fixes* (not its grade
    readings, :mod:`metronome.sensors.track_replay`); any other URL gets its usual source (None)."""
    from .sensors.track_replay import TrackReplaySource, is_track_file

    if spec.kind == "replay" and is_track_file(spec.path):
        return TrackReplaySource(spec.path, spec.speed)
    return None


class LiveSession:
    """Play a :class:`~metronome.session.SessionPlan` on an output device, optionally following a live feed.

    Parameters
    ----------
    plan : SessionPlan
        From :func:`metronome.session.plan_live_session`; ``plan.live`` says whether a feed drives the tempo.
    feed_spec : SensorSpec, optional
        The live feed (required when ``plan.live``).
    device : int or None
        Output device index (:func:`metronome.devices.find_device`).
    blocksize : int
        Frames per callback (0: the host's choice).
    duration_s : float, optional
        Stop after this long; a profile session also stops one second after its tempo map ends.
    resume : dict, optional
        ``{"position": sample, "bpm": float or None, "counters": {...}}``: continue an interrupted session in a new
        process (the clicks land where an uninterrupted session would put them).  The music starts again from
        its first track.
    music : MusicPlan, optional
        The runner's music: a worker thread (:class:`metronome.music.feeder.MusicFeeder`) decodes it ahead into
        the engine's ring, the callback only mixes.
    follow : FollowPlan, optional
        Follow a course by position (issue 14; :func:`metronome.session.plan_follow_live` builds ``plan``): the
        feed's fixes go to a :class:`~metronome.follow_live.LiveFollow`, which sets the tempo and requests the cues
        from the main thread; the feed's own grade-based target goes to a scratch array.  The session ends with
        the course (``FOLLOW_TAIL_S`` after the runner reaches its end) or with a replayed run.
    event_log : list, optional
        Every kernel event (:class:`~metronome.engine.Event`: beats, cues) is appended here as it is drained: what
        the player itself did, sample by sample.
    """

    def __init__(self, plan, *, feed_spec=None, device=None, blocksize: int = 0, duration_s: float | None = None,
                 resume: dict | None = None, music=None, follow=None, event_log: list | None = None):
        self.plan = plan
        tm, es, ts = plan.tempo_map, plan.engine_settings, plan.tempo_settings
        self.samplerate = sr = es.samplerate
        mus = dict(music=music.settings, music_frames=music.ring_frames(sr)) if music is not None else {}
        self.follow = None
        if plan.live:
            from .sensors import SensorFeed

            self.engine = Engine(tm, es, plan.bank, live=True, max_change_per_beat=ts.max_change_per_beat,
                                 min_bpm=ts.min_bpm, max_bpm=ts.max_bpm, **mus)
            if follow is not None:
                import numpy as np

                from .follow_live import LiveFollow

                self.follow = LiveFollow(follow)
                # The main thread is the one writer of the engine's target: the feed's own grade target goes here.
                self._feed_ctl = np.zeros(CT_N)
                self.feed = SensorFeed(feed_spec, self._feed_ctl, ts, on_position=self.follow.on_position,
                                       source=follow_source(feed_spec))
            else:
                fallback = None
                if plan.profile is not None:
                    # The feed calls this with its own clock; the profile's tempo is read at the playback position.
                    fallback = lambda now_s: float(tm.bpm_at(self.engine.position))  # noqa: E731
                self.feed = SensorFeed(feed_spec, self.engine.ctl, ts, fallback=fallback)
        else:
            self.engine = Engine(tm, es, plan.bank, stop_beats_at=tm.end_sample if plan.profile is not None else None,
                                 **mus)
            self.feed = None
        self.event_log = event_log
        self.music = music
        self.music_feeder = None
        self.music_errors: list[str] = []
        if music is not None:
            from .music.feeder import MusicFeeder
            from .music.ring import MusicRing

            source = music.source(sr, on_error=self.music_errors.append)  # a broken track is skipped, not fatal
            self.music_feeder = MusicFeeder(MusicRing(self.engine, source), sr)
        self.requests = list(plan.cue_requests)
        self.planned = list(plan.planned_cues)
        resume = resume or {}
        self.summary = {"played_s": 0.0, "beats": 0, "cues": 0, "cues_dropped": 0, "underflows": 0, "callbacks": 0,
                        "callback_p99_ms": 0.0, "warm_s": 0.0, "error": None, "stop_reason": None, "reconnects": 0}
        self.summary.update(resume.get("counters", {}))
        self._prior_underflows = self.summary["underflows"]
        position = resume.get("position")
        if position is not None:
            if position > tm.end_sample + sr:
                raise InputError(f"resume position: {position} is past the end of this session "
                                 f"({tm.end_sample} samples)")
            self.engine.seek(int(position), resume.get("bpm"))
            # Cues already behind us are not replayed.
            keep = [i for i, r in enumerate(self.requests) if r[1] >= position]
            self.requests = [self.requests[i] for i in keep]
            self.planned = [self.planned[i] for i in keep]
        self.end_sample = tm.end_sample + sr if plan.profile is not None else None
        if duration_s is not None:
            d = int(duration_s * sr)
            self.end_sample = d if self.end_sample is None else min(self.end_sample, d)
        self.player = LivePlayer(self.engine, device=device, blocksize=blocksize)
        self.lost = False  # the device or server went away
        self._ri = 0
        self._last_cb, self._last_cb_t = -1, time.monotonic()
        self._bpm_lo, self._bpm_hi = float("inf"), float("-inf")
        self._live_cue = None
        self._follow_done_sample = None
        self.witness = None  # TimingWitness, from start()
        self._latency = None  # output_latency(), from start()

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> "LiveSession":
        """Warm and freeze every kernel, start the feed, open the stream (AudioDeviceError if it cannot)."""
        self.summary["warm_s"] = round(warm_kernels(self.samplerate, self.plan.engine_settings.channels), 3)
        freeze_kernels()
        if self.music_feeder is not None:
            self.music_feeder.prime()  # the first ring_s seconds decoded before the first callback
            self.music_feeder.start()
        if self.feed is not None:
            self.feed.start()
        self.player.start()
        self._last_cb_t = time.monotonic()
        from .latency.witness import TimingWitness

        self._latency = self.output_latency()  # enumerates devices and reads the offsets file: once per session
        eff_ms = self._latency["output_latency_ms"]
        self.witness = TimingWitness(self.player.stats, self.samplerate, 0.0 if eff_ms is None else eff_ms / 1e3)
        return self

    def poll(self) -> LiveStatus:
        """One main-thread step: queue cues ahead, run the live planner, drain events, watch the device."""
        engine, sr = self.engine, self.samplerate
        pos = engine.position
        # Cue requests a few seconds ahead: the kernel starts each on its beat, sample-exact.
        self._ri = engine.queue_cues(self.requests, self._ri, pos + CUE_LOOKAHEAD_S * sr)
        next_cue = None
        if self._ri < len(self.planned):
            eta_s = max(0.0, (self.planned[self._ri].start_sample - pos) / sr)
            next_cue = f'"{self.planned[self._ri].text}" in {eta_s:.0f} s'
        state = self.feed.state() if self.feed is not None else None
        if self.follow is not None:
            self.follow.step(engine)
            if self.follow.last_reading_s is not None:
                # The fix behind the tempo decision (the witness's sensor-to-sound figure, metronome.latency).
                engine.ctl[CT_READING_NS] = float(round(self.follow.last_reading_s * 1e9))
            if self._follow_done_sample is None and (self.follow.finished() or (state is not None
                                                                                 and state.source_done)):
                self._follow_done_sample = pos
        planner = self.plan.live_planner
        if planner is not None and state is not None:
            target_now = float(engine.ctl[CT_TARGET_BPM])
            # Raw grade: the planner has its own hysteresis (feeding it the held level would hold twice).
            for req in planner.update(pos, grade_pct=state.grade_pct, speed_mps=state.speed_mps,
                                      cadence_spm=state.cadence_spm, target_cadence_spm=target_now,
                                      tempo_changing=abs(engine.current_bpm - target_now) > 0.05):
                engine.request_cue(self.plan.bank.index(req.clip_name), req.not_before_sample)
                next_cue = f'"{req.text}" now'
        self._drain()
        finished = None
        if self.end_sample is not None and pos >= self.end_sample:
            finished = "end"
        elif self._follow_done_sample is not None and pos - self._follow_done_sample >= FOLLOW_TAIL_S * sr:
            finished = "end"
        else:
            cb = int(self.player.stats[1])
            now = time.monotonic()
            if cb != self._last_cb:
                self._last_cb, self._last_cb_t = cb, now
            elif now - self._last_cb_t > STALL_S or not self.player.active:
                # No callback for STALL_S: the server died or the device was unplugged.
                self.player.lost = self.lost = True
                finished = "device"
        if finished and self.summary["stop_reason"] is None:
            self.summary["stop_reason"] = finished
        t_s = pos / sr
        prof = self.plan.profile
        if self.follow is not None:
            grade = self.follow.grade_pct()
        elif state is not None:
            grade = state.grade_pct
        elif prof is not None:
            grade = float(prof.grade_at_time(min(t_s, prof.duration_s)))
        else:
            grade = None
        target = float(engine.ctl[CT_TARGET_BPM]) if self.feed is not None else float(self.plan.tempo_map.bpm_at(pos))
        return LiveStatus(t_s, grade, target, engine.current_bpm, next_cue, int(self.player.stats[0]),
                          None if state is None else state.status, finished, engine.music_underruns,
                          None if self.follow is None else self.follow.status())

    def wait(self, timeout_s: float) -> None:
        """The main loop's pause between polls: ``timeout_s``, or less when a fix arrives (following a course,
        a fix reaches the tempo and the cues within milliseconds, not a poll interval later)."""
        if self.follow is not None:
            self.follow.wait(timeout_s)
        else:
            time.sleep(timeout_s)

    def interrupted(self) -> None:
        """The user stopped the session (Ctrl-C, SIGTERM)."""
        self.summary["stop_reason"] = "interrupted"

    def stop(self, *, abandon_stream: bool = False) -> dict:
        """Stop the feed and the stream (fade out); return the summary.

        ``abandon_stream``: the device is gone and the caller will start a fresh process, so the stream is not
        closed at all (PortAudio's JACK teardown blocks forever on a dead server).
        """
        if self.feed is not None:
            self.feed.stop()
        if not abandon_stream:
            self.player.stop()
        if self.music_feeder is not None:
            self.music_feeder.stop()
        self._drain()
        s = self.summary
        if self._bpm_lo <= self._bpm_hi:
            s["bpm_min"], s["bpm_max"] = round(self._bpm_lo, 4), round(self._bpm_hi, 4)
        ts = self.plan.tempo_settings
        s["bpm_bounds"] = [round(ts.min_bpm, 4), round(ts.max_bpm, 4)]
        stats = self.player.callback_stats()
        s["played_s"] = self.engine.position / self.samplerate
        s["position"] = self.engine.position
        s["bpm_now"] = self.engine.current_bpm
        s["underflows"] = self._prior_underflows + stats["underflows"]
        s["callbacks"] = stats["callbacks"]
        s["callback_p99_ms"] = stats["p99_s"] * 1e3
        s["callback_max_ms"] = stats["max_s"] * 1e3
        s["blocksize"] = stats["median_frames"]
        s["peak"] = self.engine.peak
        if self.feed is not None:
            s["sensor"] = self.feed.summary()
        if self.follow is not None:
            s["follow"] = self.follow.summary()
        if self.music_feeder is not None:
            src = self.music_feeder.ring.source
            errors = self.music_errors + ([self.music_feeder.error] if self.music_feeder.error else [])
            s["music"] = {"tracks": list(src.played), "tracks_started": src.starts, "skipped": src.skipped,
                          "target_lufs": round(self.music.target_lufs, 2), "underruns": self.engine.music_underruns,
                          "errors": errors[:5]}
        s.update(self._latency if self._latency is not None else self.output_latency())
        if self.witness is not None:
            s.update(self.witness.summary())
        return s

    def output_latency(self) -> dict:
        """What the runner hears late by: PortAudio's reported output latency, the offset measured for this device
        by ``downbeat latency`` (tap or loopback), and the effective figure (the measured one when there is one:
        PortAudio does not know the headphones, Bluetooth or the DAC's own delay)."""
        reported = self.player.reported_latency_s
        stored = None
        device = self.player.device
        if device is not None:
            try:
                from .devices import list_devices
                from .latency.offsets import output_offset_s

                stored = output_offset_s(list_devices()[device].label)
            except Exception:  # a missing or unreadable offsets file must not cost the summary
                stored = None
        effective = stored if stored is not None else reported
        ms = lambda v: None if v is None else round(v * 1e3, 3)  # noqa: E731
        return {"output_latency_reported_ms": ms(reported), "output_offset_stored_ms": ms(stored),
                "output_latency_ms": ms(effective)}

    def resume_state(self) -> dict:
        """What a fresh process needs to continue this session (see ``resume`` above)."""
        counters = {k: int(self.summary.get(k, 0)) for k in RESUME_COUNTERS}
        return {"position": int(self.engine.position), "bpm": float(self.engine.current_bpm), "counters": counters}

    def _drain(self) -> None:
        """Drain the kernel's events: count them, and hand beats and footfalls to the timing witness."""
        events = self.engine.drain_events()
        self._count(events)
        if self.event_log is not None:
            self.event_log.extend(events)
        if self.witness is not None:
            core = self.feed.core if self.feed is not None else None
            self.witness.poll([ev.sample for ev in events if ev.kind == "beat"],
                              None if core is None else core.footfall_s, 0 if core is None else core.footfalls,
                              time.monotonic())

    def _count(self, events) -> None:
        s = self.summary
        for ev in events:
            if ev.kind == "beat":
                s["beats"] += 1
                self._bpm_lo, self._bpm_hi = min(self._bpm_lo, ev.bpm), max(self._bpm_hi, ev.bpm)
            elif ev.kind == "cue":
                s["cues"] += 1
            else:
                s["cues_dropped"] += 1
