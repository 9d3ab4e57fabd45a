"""Spoken technique cues: library, voice synthesis, terrain events and the beat-aligned cue planner.

Public API::

    load_library(path=None) -> CueLibrary
    load_voice_pack(pack_dir, library) -> VoicePack
    VoiceBank(library, samplerate, voice=None, pack_dir=None, rate_wpm=175, cache_dir=None)  (voice: ENGINE[:VOICE])
        .clip(cue_id, phrasing_index, fill=None) -> float32 ndarray;  .durations_samples() -> {(cue_id, idx): int}
    terrain_events(profile, rules=TerrainRules()) -> list[TerrainEvent]
    cue_events(profile, rules=TerrainRules()) -> list[TerrainEvent]   (terrain + a workout's incline changes)
    plan_cues(events, beat_samples, ramps, clip_len_samples, samplerate, library, rules=PlannerRules())
        -> list[PlannedCue]
    LivePlanner(library, clip_len_samples, samplerate, rules=PlannerRules()).update(sample, ...) -> list[CueRequest]

``cues.voice`` (numpy + soundfile + a speech engine, ``cues.tts``) is imported lazily so that planning needs no audio stack.
"""

from .library import TRIGGERS, CueEntry, CueLibrary, VoicePack, load_library, load_voice_pack
from .live_planner import CueRequest, LivePlanner
from .planner import PlannedCue, PlannerRules, plan_cues
from .terrain import TERRAIN_KINDS, TerrainEvent, TerrainRules, cue_events, terrain_events

__all__ = [
    "TRIGGERS", "CueEntry", "CueLibrary", "VoicePack", "load_library", "load_voice_pack",
    "CueRequest", "LivePlanner", "PlannedCue", "PlannerRules", "plan_cues",
    "TERRAIN_KINDS", "TerrainEvent", "TerrainRules", "terrain_events", "cue_events",
    "VoiceBank", "VoiceUnavailableError",
]


def __getattr__(name):
    if name in ("VoiceBank", "VoiceUnavailableError"):
        from . import voice

        return getattr(voice, name)
    raise AttributeError(f"module 'cues' has no attribute {name!r}")
