"""A session that follows the runner along a course (issue 14): its plan, and the offline twin of ``play``.

``downbeat play COURSE --sensor gpsd://...|http://...|replay:RUN`` and ``downbeat render COURSE --follow
replay:RUN`` share everything below the clock: :class:`FollowPlan` (the course plan by distance, the clip bank with
every phrasing, the controller's settings), the :class:`~metronome.follower.CourseFollower` and the
:class:`~metronome.follow_control.FollowController`.  Live, the main thread updates them at each poll
(:class:`metronome.live.LiveSession`); here, :class:`FollowSchedule` updates them at each recorded fix's sample
and once a second between fixes, through the same render loop and kernel as any render
(:func:`metronome.render.render`'s ``control`` hook), so the output is deterministic and bit-identical for any
block size.  Sample 0 is the feed's first fix.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .course_plan import CoursePlan
from .follow_control import FollowController
from .follower import CourseFollower, CoursePath
from .mix import ClipBank, EngineSettings, click_bank
from .settings import TempoSettings
from .tempo import TempoMap

#: Render: a control step this often between fixes (live play polls every 0.1 s; a fix comes at 1 Hz).
RENDER_POLL_S = 1.0


@dataclass(frozen=True)
class FollowPlan:
    """Everything a following session needs besides its feed, built once."""

    profile: object
    course: CoursePlan
    path: CoursePath
    tempo_settings: TempoSettings
    engine_settings: EngineSettings
    bank: ClipBank
    library: object = None  # None: clicks only
    clip_len_samples: tuple = ()  # ((cue_id, phrasing_index), samples) pairs
    warnings: tuple = ()

    def controller(self, update_interval_s: float = RENDER_POLL_S) -> FollowController:
        return FollowController(self.course, self.library, dict(self.clip_len_samples),
                                self.engine_settings.samplerate, self.tempo_settings,
                                update_interval_s=update_interval_s)

    def follower(self) -> CourseFollower:
        return CourseFollower(self.path)


def plan_follow(profile, tempo_settings: TempoSettings, engine_settings: EngineSettings, *, cues: bool = True,
                voice_pack=None, voice=None, by_position: bool = True) -> FollowPlan:
    """The plan of a session that follows ``profile`` by position (a course with coordinates).

    ``voice``: the speech engine and voice (``--voice``, see :mod:`cues.tts`); default the best installed.
    ``by_position=False``: the feed reports distance along the course (a treadmill's Total Distance, UDP
    ``distance_m``), so a course without coordinates (YAML) can be followed too.
    """
    from .errors import InputError

    if by_position and profile.lat_deg is None:
        raise InputError(f"{profile.source}: following a course needs its coordinates (lat/lon); this course has "
                         "none (a YAML course or a track without positions)", field="profile")
    course = CoursePlan.from_profile(profile, tempo_settings)
    path = CoursePath.from_profile(profile)
    es = engine_settings
    warnings = list(getattr(profile, "warnings", ()))
    bank, library, lengths = click_bank(es.samplerate, settings=es), None, ()
    if cues:
        from cues.library import load_library
        from cues.planner import clip_name
        from cues.voice import VoiceBank, VoiceUnavailableError

        library = load_library()
        try:
            clips = VoiceBank(library, es.samplerate, voice=voice, pack_dir=voice_pack).clips()
        except VoiceUnavailableError as exc:  # clicks only (a bad voice pack is still exit 2)
            warnings.append(f"cues disabled: {exc}")
            library, clips = None, {}
        if clips:
            named = [(clip_name(cid, idx), clip) for (cid, idx), clip in sorted(clips.items())]
            bank = click_bank(es.samplerate, named, es)
            lengths = tuple(sorted((key, int(len(clip))) for key, clip in clips.items()))
    return FollowPlan(profile, course, path, tempo_settings, es, bank, library, lengths, tuple(warnings))


class FollowSchedule:
    """The render's control hook: follower + controller at each fix's sample and every ``poll_s`` between.

    ``fixes``: ``[(t_rel_s, Fix), ...]`` from :func:`metronome.sensors.track_replay.load_track_fixes`.  After the
    render, :attr:`steps` holds every :class:`~metronome.follow_control.FollowStep` and :attr:`follower` the
    follower's events.
    """

    def __init__(self, plan: FollowPlan, fixes, poll_s: float = RENDER_POLL_S):
        sr = plan.engine_settings.samplerate
        self.plan, self.sr = plan, sr
        self.follower = plan.follower()
        self.controller = plan.controller(poll_s)
        sched = []
        prev = None
        for t, fix in fixes:
            if prev is not None:
                k = 1
                while prev + k * poll_s < t - 1e-9:
                    sched.append((prev + k * poll_s, None))
                    k += 1
            sched.append((t, fix))
            prev = t
        self._sched = [(int(round(t * sr)), t, fix) for t, fix in sched]
        self._i = 0
        self.steps: list = []
        self._step_samples: list = []
        self.end_s = fixes[-1][0] if fixes else 0.0

    @property
    def next_sample(self):
        return self._sched[self._i][0] if self._i < len(self._sched) else None

    def step(self, engine, sample: int) -> None:
        _, t, fix = self._sched[self._i]
        self._i += 1
        state = self.follower.push(fix, t) if fix is not None else self.follower.poll(t)
        st = self.controller.update(sample, state, engine.current_bpm)
        engine.set_target_bpm(st.target_bpm)
        for cue in st.cues:
            engine.request_cue(self.plan.bank.index(cue.clip_name), cue.not_before_sample)
        self.steps.append(st)
        self._step_samples.append(sample)

    def distance_at(self, sample: int) -> float:
        """Course distance the follower reported at the last step at or before ``sample`` (0 before the first)."""
        i = bisect.bisect_right(self._step_samples, sample) - 1
        return self.steps[i].distance_m if i >= 0 else 0.0


def render_follow(plan: FollowPlan, fixes, out_path: str, *, events_path=None, blocksize: int = 65536,
                  subtype=None, progress=None, tail_s: float = 1.0, keep_events: bool = False):
    """What a live session would have played on a recorded run: ``(RenderResult, FollowSchedule)``."""
    from .render import render

    sched = FollowSchedule(plan, fixes)
    sr = plan.engine_settings.samplerate
    tm = TempoMap.constant(plan.course.bpm_at(0.0), sr, max(sched.end_s, 1.0 / sr))
    res = render(tm, out_path, plan.engine_settings, bank=plan.bank, events_path=events_path, blocksize=blocksize,
                 tail_s=tail_s, subtype=subtype, progress=progress, keep_events=keep_events, control=sched,
                 live_tempo=plan.tempo_settings, event_distance=sched.distance_at)
    return res, sched
