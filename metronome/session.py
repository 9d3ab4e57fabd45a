"""A session: profile -> tempo map -> (cue plan) -> clip bank -> engine; the public API the CLI drives."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def load_profile(spec: str, flat_pace=None, **kwargs):
    """Load a profile by path or bundled name; ``flat_pace`` is ``MM:SS`` per km (the ``--flat-pace`` flag)."""
    from profiles import load_profile as _load
    from profiles.pace import parse_pace

    if flat_pace is not None:
        kwargs["flat_pace_s_per_km"] = parse_pace(flat_pace, "--flat-pace")
    return _load(spec, **kwargs)


def tempo_settings_for(profile, base_cadence=None, upper_cap: float = 1.08) -> TempoSettings:
    """Tempo settings of a session: ``--base-cadence`` if given, else the profile's own, else the default."""
    base = base_cadence
    if base is None:
        base = (profile.base_cadence_spm if profile is not None else None) or TempoSettings.base_cadence_spm
    return TempoSettings(base_cadence_spm=float(base), upper_cap=float(upper_cap))


def plan_session(profile, tempo_settings: TempoSettings | None = None,
                 engine_settings: EngineSettings = EngineSettings(), *, cues: bool = True,
                 voice_pack: str | None = None) -> SessionPlan:
    """Build the tempo map and, unless ``cues`` is False, the cue plan and voice clips for a profile.

    A missing speech engine is not fatal: the session keeps its clicks and the reason is returned in
    ``warnings`` for the CLI to print, after the profile's own warnings (``Profile.warnings``).
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
            cue_clips, planned = plan_profile_cues(profile, tm, engine_settings.samplerate, voice_pack=voice_pack)
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
