"""Cue library loading/validation and voice pack validation (including path escapes)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import soundfile as sf
import yaml

from cues.library import TRIGGERS, CueLibrary, load_library, load_voice_pack
from metronome.errors import CueError, InputError


def test_bundled_library_is_complete_and_valid():
    lib = load_library()
    assert isinstance(lib, CueLibrary)
    # Every trigger the planner knows has at least one cue, so no situation is silently cue-less.
    assert {c.trigger for c in lib} == set(TRIGGERS)
    ids = lib.ids
    assert len(ids) == len(set(ids))
    for c in lib:
        assert c.phrasings and all(isinstance(p, str) and p for p in c.phrasings)
        assert 0 <= c.priority <= 100
    # The safety classes the planner relies on.
    assert all(c.safety for c in lib.by_trigger("technical"))
    assert all(c.safety for c in lib.by_trigger("announce_descent"))
    assert not any(c.safety for c in lib.by_trigger("long_descent"))
    # A steep-only announcement exists and is steep-only.
    steep = [c for c in lib.by_trigger("announce_descent") if c.grade_max_pct is not None]
    assert steep and all(c.grade_max_pct <= -10 for c in steep)


def test_library_content_covers_the_coaching_points():
    text = " ".join(p.lower() for c in load_library() for p in c.phrasings)
    for phrase in ("lean", "ankles", "eyes", "arms", "quick", "midfoot", "shoulders", "knees", "line",
                   "descent ahead", "steep descent coming up", "back to your rhythm", "quicker steps", "ease off"):
        assert phrase in text, phrase


def test_library_is_frozen():
    lib = load_library()
    with pytest.raises(AttributeError):
        lib.cues[0].priority = 1
    with pytest.raises(AttributeError):
        lib.cues = ()


def test_get_unknown_id_is_a_cue_error_naming_known_ids():
    with pytest.raises(CueError, match=r"'nope' is not in library.yaml \(known: steep_ahead"):
        load_library().get("nope")


def _write(tmp_path, data, name="lib.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def _good():
    return {"cues": [
        {"id": "a", "trigger": "descent_start", "priority": 10, "cooldown_s": 5, "phrasings": ["One."]},
        {"id": "b", "trigger": "technical", "priority": 20, "cooldown_s": 5, "safety": True, "phrasings": ["Two."]},
        {"id": "c", "trigger": "long_descent", "priority": 30, "cooldown_s": 5, "phrasings": ["Three."]},
        {"id": "d", "trigger": "descent_end", "priority": 30, "cooldown_s": 5, "phrasings": ["Four.", "Five."]},
    ]}


def test_small_library_round_trip(tmp_path):
    lib = load_library(_write(tmp_path, _good()))
    assert lib.ids == ("a", "b", "c", "d")
    assert lib.get("d").phrasings == ("Four.", "Five.")
    assert lib.get("b").safety and not lib.get("a").safety
    assert lib.by_trigger("technical") == (lib.get("b"),)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["cues"][3].__setitem__("trigger", "foo"),
     r"lib.yaml: cues\[3\].trigger: 'foo' is not one of descent_start, steep_descent"),
    (lambda d: d["cues"][1].__setitem__("priority", "high"), r"lib.yaml: cues\[1\].priority: 'high' is not an integer"),
    (lambda d: d["cues"][1].__setitem__("priority", True), r"cues\[1\].priority: True is not an integer"),
    (lambda d: d["cues"][0].__setitem__("priority", 101), r"cues\[0\].priority: 101 is not an integer in 0..100"),
    (lambda d: d["cues"][0].__setitem__("cooldown_s", -1), r"cues\[0\].cooldown_s: -1 is not a number"),
    (lambda d: d["cues"][0].__setitem__("cooldown_s", float("nan")), r"cues\[0\].cooldown_s: nan"),
    (lambda d: d["cues"][2].__setitem__("phrasings", []), r"cues\[2\].phrasings: expected a non-empty list"),
    (lambda d: d["cues"][2].__setitem__("phrasings", ["ok", 3]), r"cues\[2\].phrasings\[1\]: 3 is not a non-empty"),
    (lambda d: d["cues"][2].__setitem__("phrasings", ["x" * 61]), r"cues\[2\].phrasings\[0\]: 61 characters"),
    (lambda d: d["cues"][0].__setitem__("id", "Bad-Id"), r"cues\[0\].id: 'Bad-Id' is not a lowercase identifier"),
    (lambda d: d["cues"][1].__setitem__("id", "a"), r"cues\[1\].id: 'a' duplicates cues\[0\]"),
    (lambda d: d["cues"][0].pop("trigger"), r"cues\[0\]: missing required key 'trigger'"),
    (lambda d: d["cues"][0].__setitem__("priorty", 3), r"cues\[0\]: unknown key 'priorty'"),
    (lambda d: d["cues"][0].__setitem__("safety", "yes please"), r"cues\[0\].safety: 'yes please' is not true"),
    (lambda d: d["cues"][0].__setitem__("grade_max_pct", 5), r"cues\[0\].grade_max_pct: 5 is not a grade"),
    (lambda d: d.__setitem__("cues", []), r"lib.yaml: cues: expected a non-empty list"),
    (lambda d: d["cues"][2].__setitem__("phrasings", ["Decline {pct} percent"]),
     r"cues\[2\].phrasings\[0\]: unknown placeholder '\{pct\}' \(known: \{grade\}, \{distance\}\)"),
    (lambda d: d["cues"][2].__setitem__("phrasings", ["{grade} in {distance}"]),
     r"cues\[2\].phrasings\[0\]: one kind of placeholder per phrasing"),
    (lambda d: d["cues"][2].__setitem__("phrasings", ["Decline {grade percent"]),
     r"cues\[2\].phrasings\[0\]: unbalanced"),
    (lambda d: d["cues"][0].__setitem__("core", "yes"), r"cues\[0\].core: 'yes' is not true or false"),
    (lambda d: d.__setitem__("extra", 1), r"lib.yaml: unknown top-level key 'extra'"),
    (lambda d: d["cues"].__setitem__(0, "just a string"), r"cues\[0\]: expected a mapping"),
])
def test_validation_errors_are_one_line_and_path_qualified(tmp_path, mutate, message):
    data = _good()
    mutate(data)
    with pytest.raises(CueError) as info:
        load_library(_write(tmp_path, data))
    msg = str(info.value)
    assert re.search(message, msg), msg
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path / "lib.yaml"))
    assert isinstance(info.value, InputError)  # exit code 2 at the top level


def test_yaml_errors_and_missing_file(tmp_path):
    with pytest.raises(CueError, match=r"lib.yaml: invalid YAML: line \d+, column \d+: "):
        load_library(_write(tmp_path, "cues: [\n  - id: a\n    trigger: [unclosed\n"))
    with pytest.raises(CueError, match=r"nope.yaml: no such file"):
        load_library(tmp_path / "nope.yaml")
    with pytest.raises(CueError, match=r"expected a mapping with a 'cues' list"):
        load_library(_write(tmp_path, "- just\n- a list\n"))


def test_only_safe_load_is_used(tmp_path):
    # A python/object tag would execute code under yaml.load; safe_load refuses it.
    evil = "cues: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(CueError, match="invalid YAML"):
        load_library(_write(tmp_path, evil))


# ----------------------------------------------------------------------------------------------------------------
# Voice packs
# ----------------------------------------------------------------------------------------------------------------
def _wav(path, seconds=0.5, sr=16000, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.5 * np.sin(2 * np.pi * freq * t), sr)
    return path


@pytest.fixture()
def lib():
    return load_library()


def test_pack_files_by_name(tmp_path, lib):
    _wav(tmp_path / "pick_line.wav")
    _wav(tmp_path / "lean_forward-1.wav")
    _wav(tmp_path / "lean_forward-2.wav")
    (tmp_path / "README.txt").write_text("my voice pack")  # non-WAV files are ignored
    pack = load_voice_pack(tmp_path, lib)
    root = tmp_path.resolve()
    assert pack.recording("pick_line", 0) == root / "pick_line.wav"
    assert pack.recording("pick_line", 2) == root / "pick_line.wav"  # one file serves every phrasing
    assert pack.recording("lean_forward", 0) == root / "lean_forward-1.wav"
    assert pack.recording("lean_forward", 1) == root / "lean_forward-2.wav"
    assert pack.recording("eyes_ahead", 0) is None


def test_pack_manifest(tmp_path, lib):
    (tmp_path / "sub").mkdir()
    _wav(tmp_path / "sub" / "a.wav")
    _wav(tmp_path / "b.wav")
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"cues": {"pick_line": ["sub/a.wav", "b.wav"],
                                                                       "ease_off": "b.wav"}}))
    pack = load_voice_pack(tmp_path, lib)
    root = tmp_path.resolve()
    assert pack.recordings("pick_line") == (root / "sub" / "a.wav", root / "b.wav")
    assert pack.recording("pick_line", 3) == root / "b.wav"  # rotates when fewer files than phrasings
    assert pack.recording("ease_off", 1) == root / "b.wav"


@pytest.mark.parametrize("entry, message", [
    ("../outside.wav", r"contains '\.\.'"),
    ("sub/../../outside.wav", r"contains '\.\.'"),
    ("/etc/passwd", r"is an absolute path"),
    ("C:\\voices\\x.wav", r"is an absolute path"),
    ("..\\outside.wav", r"contains '\.\.'"),
    ("missing.wav", r"is not a file in the pack folder"),
    ("notes.txt", r"is not a \.wav file"),
])
def test_pack_manifest_rejects_escapes(tmp_path, lib, entry, message):
    pack = tmp_path / "pack"
    pack.mkdir()
    _wav(tmp_path / "outside.wav")
    (pack / "notes.txt").write_text("x")
    (pack / "manifest.yaml").write_text(yaml.safe_dump({"cues": {"pick_line": [entry]}}))
    with pytest.raises(CueError, match=message) as info:
        load_voice_pack(pack, lib)
    assert "manifest.yaml: cues.pick_line[0]" in str(info.value)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_pack_rejects_symlink_pointing_outside(tmp_path, lib):
    pack = tmp_path / "pack"
    pack.mkdir()
    secret = _wav(tmp_path / "secret.wav")
    os.symlink(secret, pack / "pick_line.wav")
    with pytest.raises(CueError, match=r"pick_line.wav: 'pick_line.wav' points outside the pack folder"):
        load_voice_pack(pack, lib)
    # ...also through a manifest.
    (pack / "pick_line.wav").unlink()
    os.symlink(secret, pack / "x.wav")
    (pack / "manifest.yaml").write_text("cues: {pick_line: x.wav}\n")
    with pytest.raises(CueError, match="points outside the pack folder"):
        load_voice_pack(pack, lib)


def test_pack_accepts_symlink_inside(tmp_path, lib):
    (tmp_path / "takes").mkdir()  # sub-folders are not scanned, only linked to
    _wav(tmp_path / "takes" / "take3.wav")
    os.symlink(tmp_path / "takes" / "take3.wav", tmp_path / "pick_line.wav")
    assert load_voice_pack(tmp_path, lib).recording("pick_line", 0) == (tmp_path / "takes" / "take3.wav").resolve()


@pytest.mark.parametrize("files, message", [
    (["nosuchcue.wav"], r"'nosuchcue' is not a cue id"),
    (["Pick_Line.wav"], r"file name must be <cue_id>.wav or <cue_id>-<n>.wav"),
    (["pick_line-1.wav", "pick_line-3.wav"], r"pick_line-2.wav is missing"),
    (["pick_line.wav", "pick_line-1.wav"], r"both pick_line.wav and pick_line-<n>.wav exist"),
])
def test_pack_folder_errors(tmp_path, lib, files, message):
    for f in files:
        _wav(tmp_path / f)
    with pytest.raises(CueError, match=message):
        load_voice_pack(tmp_path, lib)


def test_pack_manifest_unknown_cue_and_not_a_folder(tmp_path, lib):
    (tmp_path / "manifest.yaml").write_text("cues: {nope: a.wav}\n")
    with pytest.raises(CueError, match=r"manifest.yaml: cues.nope: 'nope' is not a cue id"):
        load_voice_pack(tmp_path, lib)
    with pytest.raises(CueError, match="voice pack is not a folder"):
        load_voice_pack(tmp_path / "manifest.yaml", lib)


def test_grade_placeholder_is_filled_and_formatted():
    from cues.library import format_grade

    lib = load_library()
    e = lib.get("decline_ahead")
    assert e.is_template(0) and not lib.get("flat_ahead").is_template(0)
    assert [format_grade(g) for g in (-6.0, -2.5, 3, -9.04, 0.0)] == ["6", "2.5", "3", "9", "0"]
    assert e.text(0, format_grade(-6.0)) == "Decline 6 percent in 10 seconds."
    assert lib.get("lean_forward").text(0, "6") == "Lean slightly forward from the ankles."
    # The three core cues are flagged as such.
    assert {c.id for c in lib if c.core} == {"lean_forward", "eyes_ahead", "arms_wide"}
