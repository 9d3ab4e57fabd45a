"""Glue for :mod:`metronome.session`: a profile and its tempo map -> cue clips + planned cues."""

from __future__ import annotations

from .library import load_library
from .planner import PlannerRules, plan_cues, templated_texts
from .terrain import TerrainRules, cue_events


def plan_profile_cues(profile, tempo_map, samplerate: int, voice_pack=None, *, library=None, voice=None,
                      rules: PlannerRules = PlannerRules(), terrain_rules: TerrainRules = TerrainRules(),
                      cache_dir=None):
    """Plan the cues of a known profile and synthesize the clips they use.

    Parameters
    ----------
    profile : profiles.schema.Profile
    tempo_map : metronome.tempo.TempoMap
    samplerate : int
    voice_pack : path, optional
        Voice pack folder overriding synthesized speech.
    library : CueLibrary, optional
        Default: the bundled library.
    voice : str or cues.tts.VoiceSpec, optional
        ``ENGINE[:VOICE]``; default the best installed engine (:func:`cues.tts.parse_voice`).

    Returns
    -------
    (clips, planned) : (list of (name, float32 ndarray), list of PlannedCue)
        ``clips`` holds only the phrasings the plan uses, named ``PlannedCue.clip_name``; ``planned`` is sorted by
        ``start_sample`` and every ``start_sample`` is a beat of ``tempo_map``.

    Raises
    ------
    VoiceUnavailableError
        No speech engine is installed (a :class:`CueError`, hence an ``InputError``: the caller keeps the clicks).
    CueError
        Bad library or voice pack.
    """
    from .voice import VoiceBank  # the audio stack only when clips are actually needed

    lib = library if library is not None else load_library()
    bank = VoiceBank(lib, samplerate, voice=voice, pack_dir=voice_pack, cache_dir=cache_dir)
    lengths = bank.durations_samples()
    events = cue_events(profile, terrain_rules)
    # {grade} phrasings (treadmill announcements): one clip per value the events need, keyed by the words.
    for cid, idx, fill in templated_texts(events, lib, rules):
        lengths[(cid, idx, lib.get(cid).text(idx, fill))] = int(bank.clip(cid, idx, fill).size)
    planned = plan_cues(events, tempo_map.beat_samples(), tempo_map.ramps(), lengths, samplerate, lib, rules)
    clips, seen = [], set()
    for cue in planned:
        if cue.clip_name not in seen:
            seen.add(cue.clip_name)
            clips.append((cue.clip_name, bank.clip(cue.cue_id, cue.phrasing_index, cue.fill or None)))
    return clips, planned


def plan_profile_cues_unvoiced(profile, tempo_map, samplerate: int, *, library=None,
                               rules: PlannerRules = PlannerRules(), terrain_rules: TerrainRules = TerrainRules()):
    """The cue plan without synthesizing any speech (exports, machines without espeak-ng).

    Every phrasing is assumed to be ``rules.max_clip_s`` long, the longest a clip may be, so the plan never
    places a cue where the real clip would not fit; a real clip is shorter, hence a cue may land a beat or a few
    seconds away from where the synthesized plan puts it (same cues, same rules, same order of placement).

    Returns
    -------
    list of PlannedCue
        Sorted by ``start_sample``, as :func:`plan_profile_cues`.
    """
    lib = library if library is not None else load_library()
    length = int(rules.max_clip_s * samplerate)
    lengths = {(c.id, k): length for c in lib for k in range(len(c.phrasings))}
    events = cue_events(profile, terrain_rules)
    for cid, idx, fill in templated_texts(events, lib, rules):
        lengths[(cid, idx, lib.get(cid).text(idx, fill))] = length
    return plan_cues(events, tempo_map.beat_samples(), tempo_map.ramps(), lengths, samplerate, lib, rules)
