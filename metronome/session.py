"""A session: profile -> tempo map -> (cue plan) -> clip bank -> engine; the public API the CLI drives."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .mix import ClipBank, EngineSettings, click_bank
from .tempo import TempoMap, TempoSettings, tempo_map_from_profile

DEFAULT_PROFILE = "demo-descent"


@dataclass(frozen=True)
class SessionPlan:
    """Everything needed to render or play a profile, computed once, immutable."""

    profile: object
    tempo_settings: TempoSettings
    engine_settings: EngineSettings
    tempo_map: TempoMap
    bank: ClipBank
    cue_requests: tuple = ()  # (clip index, start sample)
    planned_cues: tuple = ()
    warnings: tuple = field(default_factory=tuple)
    #: A live feed's cue planner (cues.live_planner.LivePlanner) when the session follows a sensor, else None.
    live_planner: object = None
    #: The session follows a live feed (the engine slews toward the feed's target instead of the tempo map).
    live: bool = False


#: ``runner=`` of :func:`load_profile`: the runner profile at its default location, if there is one.
DEFAULT_RUNNER = "default"


def load_profile(spec: str, flat_pace=None, runner=DEFAULT_RUNNER, **kwargs):
    """Load a profile by path or bundled name, as the runner would run it.

    ``flat_pace`` is ``MM:SS`` per km (the ``--flat-pace`` flag); given, it times a course by the default pace model
    at that pace and no runner profile retimes it.  ``runner``: a runner profile file (``downbeat learn``),
    :data:`DEFAULT_RUNNER` for the one at the default location if it exists, or None for none; it sets a course's
    timing from the runner's own grade -> pace curve and the base cadence (``--base-cadence`` still wins).
    """
    from profiles import load_profile as _load
    from profiles.pace import parse_pace

    from .history.runner import apply_runner, load_runner_or_default

    if flat_pace is not None:
        kwargs["flat_pace_s_per_km"] = parse_pace(flat_pace, "--flat-pace")
    profile = _load(spec, **kwargs)
    if flat_pace is not None and runner == DEFAULT_RUNNER:
        runner = None
    who = load_runner_or_default(None if runner == DEFAULT_RUNNER else runner) if runner is not None else None
    return apply_runner(profile, who) if who is not None else profile


def tempo_settings_for(profile, base_cadence=None, upper_cap: float = TempoSettings.upper_cap) -> TempoSettings:
    """Tempo settings of a session: ``--base-cadence`` if given, else the profile's own, else the default."""
    base = base_cadence
    if base is None:
        base = (profile.base_cadence_spm if profile is not None else None) or TempoSettings.base_cadence_spm
    return TempoSettings(base_cadence_spm=float(base), upper_cap=float(upper_cap))


def plan_session(profile, tempo_settings: TempoSettings | None = None,
                 engine_settings: EngineSettings = EngineSettings(), *, cues: bool = True,
                 voice_pack: str | None = None, voice=None, anchor_every_m: float | None = None) -> SessionPlan:
    """Build the tempo map and, unless ``cues`` is False, the cue plan and voice clips for a profile.

    ``voice`` is the speech engine and voice, ``ENGINE[:VOICE]`` (``--voice``; default the best installed, see
    :mod:`cues.tts`).  A missing speech engine is not fatal: the session keeps its clicks and the reason is returned in
    ``warnings`` for the CLI to print, after the profile's own warnings (``Profile.warnings``).
    ``anchor_every_m`` adds spoken distance anchors (``render --anchors``, :mod:`cues.anchors`) around the cue plan;
    anchors that find no free beat near their distance are dropped and listed in ``warnings``.
    """
    if tempo_settings is None:
        tempo_settings = tempo_settings_for(profile)
    tm = tempo_map_from_profile(profile, tempo_settings, engine_settings.samplerate)
    warnings = list(getattr(profile, "warnings", ()))  # what the loader worked around in the file
    cue_clips, requests, planned = [], [], []
    if cues:
        from cues.session import plan_profile_cues
        from cues.voice import VoiceUnavailableError

        try:
            cue_clips, planned = plan_profile_cues(profile, tm, engine_settings.samplerate, voice_pack=voice_pack,
                                                   voice=voice)
            if anchor_every_m is not None:
                cue_clips, planned, dropped = _with_anchors(profile, tm, engine_settings.samplerate, cue_clips,
                                                            planned, anchor_every_m, voice, voice_pack)
                warnings.extend(dropped)
        except VoiceUnavailableError as exc:
            # No speech engine: the runner still gets the metronome.  (A bad voice pack or library is bad input
            # and propagates: exit 2.)
            warnings.append(f"cues disabled: {exc}")
            cue_clips, planned = [], []
    bank = click_bank(engine_settings.samplerate, cue_clips, engine_settings)
    planned = sorted(planned, key=lambda c: c.start_sample)  # the kernel's ring is served in time order
    for cue in planned:
        requests.append((bank.index(cue.clip_name), cue.start_sample))
    return SessionPlan(profile, tempo_settings, engine_settings, tm, bank, tuple(requests), tuple(planned),
                       tuple(warnings))


def _with_anchors(profile, tm, samplerate, cue_clips, planned, anchor_every_m, voice, voice_pack):
    """The cue plan plus its distance anchors (:func:`cues.anchors.plan_profile_anchors`); a warning for the
    anchors dropped."""
    from cues.anchors import plan_profile_anchors

    clips, anchors, dropped = plan_profile_anchors(profile, tm, samplerate, planned, anchor_every_m, voice=voice,
                                                   voice_pack=voice_pack)
    names = {name for name, _ in cue_clips}
    merged = list(cue_clips) + [(n, c) for n, c in clips if n not in names]
    note = []
    if dropped:
        where = ", ".join(f"{a.distance_m:.0f} m" for a in dropped[:5]) + (" ..." if len(dropped) > 5 else "")
        note.append(f"{len(dropped)} distance anchor(s) dropped: no free beat near {where} (other cues there)")
    return merged, list(planned) + list(anchors), note


#: A live session without a profile or a duration is one long constant-tempo map (24 h).
OPEN_SESSION_S = 24 * 3600.0


def plan_live_session(profile, tempo_settings: TempoSettings, engine_settings: EngineSettings, *,
                      follows_feed: bool, cues: bool = True, voice_pack: str | None = None,
                      duration_s: float | None = None, voice=None) -> SessionPlan:
    """The plan of a live session: a profile's plan, or a constant map at the base cadence without a profile.

    With a live feed the runner's position on a profile is not known from the clock, so the profile's time-based
    cue plan is not used: the live planner (with every phrasing in the clip bank) picks cues from the terrain as it
    arrives, and the profile's tempo map is the feed's fallback.
    """
    es = engine_settings
    if profile is not None:
        plan = plan_session(profile, tempo_settings, es, cues=cues and not follows_feed, voice_pack=voice_pack,
                            voice=voice)
    else:
        tm = TempoMap.constant(tempo_settings.base_cadence_spm, es.samplerate, duration_s or OPEN_SESSION_S)
        plan = SessionPlan(None, tempo_settings, es, tm, click_bank(es.samplerate, settings=es))
    if not follows_feed:
        return plan
    plan = replace(plan, cue_requests=(), planned_cues=(), live=True)
    if not cues:
        return plan
    from cues.library import load_library
    from cues.live_planner import LivePlanner
    from cues.planner import clip_name
    from cues.voice import VoiceBank, VoiceUnavailableError

    library = load_library()
    try:
        clips = VoiceBank(library, es.samplerate, voice=voice, pack_dir=voice_pack).clips()
    except VoiceUnavailableError as exc:  # no speech engine: clicks only (a bad voice pack is still exit 2)
        return replace(plan, warnings=plan.warnings + (f"cues disabled: {exc}",))
    named = [(clip_name(cid, idx), clip) for (cid, idx), clip in sorted(clips.items())]
    lengths = {key: len(clip) for key, clip in clips.items()}
    return replace(plan, bank=click_bank(es.samplerate, named, es),
                   live_planner=LivePlanner(library, lengths, es.samplerate))


def plan_follow_live(follow_plan, duration_s: float | None = None) -> SessionPlan:
    """The session plan of ``play COURSE --sensor URL`` following the course by position (issue 14).

    The tempo and the cues come from the follower at run time (:class:`metronome.follow_live.LiveFollow`), so
    the plan holds no cue requests and a constant map at the course's starting tempo (the engine's starting
    point; ``duration_s`` or an open session long).  ``follow_plan``: :func:`metronome.follow_session.plan_follow`.
    """
    fp = follow_plan
    es = fp.engine_settings
    tm = TempoMap.constant(fp.course.bpm_at(0.0), es.samplerate, duration_s or OPEN_SESSION_S)
    return SessionPlan(None, fp.tempo_settings, es, tm, fp.bank, warnings=fp.warnings, live=True)
