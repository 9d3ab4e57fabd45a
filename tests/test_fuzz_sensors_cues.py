"""Fuzz the sensor datagram parser and the cue library / voice-pack manifests (issue 7).

Contracts: :func:`metronome.sensors.parse_message` never raises, whatever bytes arrive (it returns a
``Reading`` or a counted ``Reject``); :func:`cues.library.load_library` and :func:`cues.library.load_voice_pack`
raise only :class:`~metronome.errors.InputError` subclasses (``CueError``) with a one-line message.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metronome.errors import InputError

from tests.support.fuzz import Hang, assert_one_line_error, budget, deadline, mutate_bytes, report

import metronome.sensors as sensors  # noqa: E402
import cues.library as library  # noqa: E402
parse_message = sensors.parse_message

VALID_MESSAGES = [
    b'{"t": 12.5, "grade_pct": -8.2, "speed_mps": 3.4, "cadence_spm": 176, "distance_m": 1520.0, "elevation_m": 812}',
    b'{"grade_pct": 0}',
    b'{"grade_pct": -45, "speed_mps": null, "extra": {"nested": [1, 2, 3]}}',
    b'{"t": 0, "grade_pct": 45.0, "cadence_spm": 300, "distance_m": 0}\n',
]


def check_parse(data) -> str:
    """Parse under the contract; return the outcome name (``reading`` or the reject reason)."""
    with deadline(2.0):
        try:
            res = parse_message(data)
        except Hang:
            raise
        except Exception as exc:  # the contract: never raises
            raise AssertionError(f"parse_message raised {type(exc).__name__}: {exc} on {data[:200]!r}") from exc
    if isinstance(res, sensors.Reading):
        assert math.isfinite(res.grade_pct) and abs(res.grade_pct) <= sensors.MAX_GRADE_PCT, res
        for name in ("speed_mps", "cadence_spm", "distance_m", "elevation_m", "t_s"):
            v = getattr(res, name, None)
            assert v is None or math.isfinite(v), (name, v)
        return "reading"
    assert isinstance(res, sensors.Reject), res
    assert isinstance(res.reason, sensors.RejectReason)
    return res.reason.name.lower()


def test_mutated_datagrams_never_raise():
    n = budget(2000)
    tally: dict[str, int] = {}
    for i in range(n):
        rng = random.Random(f"datagram-{i}")
        data, _ = mutate_bytes(rng.choice(VALID_MESSAGES), rng)
        if rng.random() < 0.05:
            data = data + b" " * rng.choice([1, 500, 1024])  # around the 1 KiB limit
        outcome = check_parse(data)
        tally[outcome] = tally.get(outcome, 0) + 1
    report("sensor:datagram bytes", tally)
    assert sum(tally.values()) == n
    assert tally.get("reading", 0) > 0 and len(tally) > 3, tally


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
protocol_numbers = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10 ** 400, 10 ** 400)
                    | st.sampled_from([1e308, -1e308, 45.0, -45.0, 45.000001, 0, -0.0, 10 ** 4000]) | json_values)
_MSG = {"n": 0}


@settings(max_examples=budget(300), deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(msg=st.dictionaries(st.sampled_from(["t", "grade_pct", "speed_mps", "cadence_spm", "distance_m",
                                            "elevation_m", "other"]), protocol_numbers, max_size=7),
       raw_tail=st.sampled_from(["", "\n", "\r\n", " ", "}", "\x00"]))
def test_protocol_shaped_messages_never_raise(msg, raw_tail):
    import sys
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # let the *sender* write a 4000-digit integer; the parser must cope
    try:
        data = (json.dumps(msg) + raw_tail).encode()
    finally:
        sys.set_int_max_str_digits(old)
    check_parse(data)
    _MSG["n"] += 1


def test_protocol_shaped_messages_count():
    report("sensor:protocol-shaped JSON (hypothesis)", {"cases": _MSG["n"]})
    assert _MSG["n"] >= min(50, budget(300))


@pytest.mark.parametrize("data", [
    b"[" * 1024, b"{" * 1024, b'{"grade_pct": ' + b"9" * 1000 + b"}", b'{"grade_pct": 1e999}',
    b'{"grade_pct": NaN}', b'{"grade_pct": -Infinity}', b"\xff" * 10, "{\"grade_pct\": \ud800}".encode("utf-8", "surrogatepass"),
    b'{"grade_pct": 1, "grade_pct": "x"}', b"", b"\x00", b'{"grade_pct": true}', b'{"grade_pct": [1]}',
], ids=lambda d: repr(d[:16]))
def test_hostile_datagrams_are_rejects(data):
    assert check_parse(data) != "reading"


# ----------------------------------------------------------------------------------------------------------------
# Cue library
# ----------------------------------------------------------------------------------------------------------------
def check_library(path) -> str:
    try:
        with deadline(10.0):
            try:
                library.load_library(path)
            except InputError as exc:
                assert_one_line_error(exc)
                return "rejected"
            return "loaded"
    except (AssertionError, Hang):
        raise
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} escaped load_library: {exc!s:.200}; input at {path}") from exc


def _mutate_library_doc(doc, rng: random.Random) -> None:
    cues = doc.get("cues")
    op = rng.choice(["field", "field", "delete", "dup", "top", "phrasing"])
    if not isinstance(cues, list) or not cues or not all(isinstance(c, dict) for c in cues):
        op = "top"  # an earlier mutation replaced the list itself
    else:
        cue = rng.choice(cues)
    if op == "field":
        key = rng.choice(sorted(library._CUE_KEYS) + ["bogus"])
        cue[key] = rng.choice([None, True, -1, 101, 3601, 1e308, float("nan"), "", "x" * 100, [], {}, "technical",
                               "Bad-Id", -61, 0.5, ["ok", ""], ["a\x07b"], [1, 2], 10 ** 30])
    elif op == "delete":
        cue.pop(rng.choice(sorted(cue)), None)
    elif op == "dup":
        cues.append(copy.deepcopy(cue))
    elif op == "top":
        doc[rng.choice(["version", "cues", "extra"])] = rng.choice([2, None, [], {}, "1", 1])
    else:
        cue["phrasings"] = [rng.choice(["", " ", "y" * 61, "ok", "tab\tin", "\u202eevil"])] * rng.randint(0, 3)


def test_mutated_cue_libraries_load_or_fail_cleanly(tmp_path):
    text = library.DEFAULT_LIBRARY_PATH.read_bytes()
    doc0 = yaml.safe_load(text)
    n = budget(150)
    tally = {"loaded": 0, "rejected": 0}
    for i in range(n):
        rng = random.Random(f"library-{i}")
        p = tmp_path / f"lib{i}.yaml"
        if rng.random() < 0.5:
            p.write_bytes(mutate_bytes(text, rng)[0])
        else:
            doc = copy.deepcopy(doc0)
            for _ in range(rng.randint(1, 3)):
                _mutate_library_doc(doc, rng)
            p.write_text(yaml.safe_dump(doc, allow_unicode=True))
        tally[check_library(p)] += 1
    report("cues:library yaml", tally)
    assert sum(tally.values()) == n
    assert tally["loaded"] > 0 and tally["rejected"] > 0, tally


def test_random_manifests_raise_only_cue_errors(tmp_path):
    """A voice pack's manifest.yaml: random documents and hostile paths are CueErrors (or load)."""
    lib = library.load_library()
    cue_id = lib.ids[0]
    (tmp_path / "ok.wav").write_bytes(b"RIFF")  # only the path is validated here, not the audio
    n = budget(100)
    tally = {"loaded": 0, "rejected": 0}
    for i in range(n):
        rng = random.Random(f"manifest-{i}")
        pack = tmp_path / f"pack{i}"
        pack.mkdir()
        (pack / "a.wav").write_bytes(b"RIFF")
        spec = rng.choice(["a.wav", ["a.wav", "a.wav"], "../ok.wav", "/etc/passwd", "C:\\x.wav", "..\\ok.wav",
                           "sub/../a.wav", "", None, 3, [], {"x": 1}, "a.WAV", "a.wav\x00", "missing.wav",
                           "./a.wav", "a.txt", [None], "~/a.wav", "\\\\server\\share\\a.wav"])
        key = rng.choices([cue_id, "unknown_cue", 1, None], weights=[7, 1, 1, 1])[0]
        doc = rng.choices([{"cues": {key: spec}}, {"cues": [spec]}, {"cues": None}, [spec], spec, {"voices": {}}],
                          weights=[10, 1, 1, 1, 1, 1])[0]
        (pack / "manifest.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
        try:
            with deadline(5.0):
                vp = library.load_voice_pack(pack, lib)
            for _, paths in vp.files:
                for path in paths:
                    assert path.resolve().parent == pack.resolve(), path  # nothing outside the pack
            tally["loaded"] += 1
        except InputError as exc:
            assert_one_line_error(exc)
            tally["rejected"] += 1
        except Exception as exc:
            raise AssertionError(f"manifest case {i} {doc!r:.100}: {type(exc).__name__}: {exc}") from exc
    report("cues:voice-pack manifest", tally)
    assert tally["loaded"] > 0 and tally["rejected"] > 0, tally


# Found by this suite (load_library and the manifest reader caught only yaml.YAMLError, and echoed whole values
# with !r); fixed by the shared metronome.safeyaml loader.
@pytest.mark.parametrize("value", ["1" * 5000, "2020-13-45"], ids=["5000-digit-int", "bad-timestamp"])
def test_library_unreadable_scalar_is_a_cue_error(tmp_path, value):
    p = tmp_path / "lib.yaml"
    p.write_text(f"cues:\n  - {{id: a, trigger: technical, priority: {value}, cooldown_s: 1, phrasings: [x]}}\n")
    check_library(p)


def test_library_deep_nesting_is_a_cue_error(tmp_path):
    p = tmp_path / "lib.yaml"
    p.write_text("[" * 100_000)
    check_library(p)


def test_library_alias_bomb_is_fast(tmp_path):
    from tests.support.fuzz import alias_bomb

    p = tmp_path / "lib.yaml"
    p.write_text(alias_bomb().replace("description:", "version:"))
    t0 = time.perf_counter()
    with deadline(3.0):  # a Hang fails the test without waiting the ~10 s the repr takes today
        assert check_library(p) == "rejected"
    assert time.perf_counter() - t0 < 2.0


def test_manifest_deep_nesting_is_a_cue_error(tmp_path):
    (tmp_path / "manifest.yaml").write_text("[" * 100_000)
    with deadline(30.0), pytest.raises(InputError):
        library.load_voice_pack(tmp_path, library.load_library())


# ----------------------------------------------------------------------------------------------------------------
# Voice-pack recordings (WAV bytes from a shared pack)
# ----------------------------------------------------------------------------------------------------------------
def _speechlike_wav(path, subtype="PCM_16", samplerate=16000):
    import numpy as np
    import soundfile as sf

    t = np.arange(int(0.8 * samplerate)) / samplerate
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * np.sin(np.pi * t / t[-1])
    sf.write(str(path), x, samplerate, subtype=subtype)


def test_mutated_recordings_raise_only_cue_errors(tmp_path):
    """PCM WAVs (no NaN is representable; FLOAT NaN/inf has its own test below) mutated byte-wise: a clip or a CueError."""
    import cues.voice as voice
    import numpy as np

    seed_path = tmp_path / "seed.wav"
    _speechlike_wav(seed_path)
    seed = seed_path.read_bytes()
    n = budget(100)
    tally = {"loaded": 0, "rejected": 0}
    for i in range(n):
        rng = random.Random(f"wav-{i}")
        p = tmp_path / f"rec{i}.wav"
        if rng.random() < 0.6:  # most bytes are samples: aim half the mutations at the RIFF/fmt/data headers
            head, _ = mutate_bytes(seed[:48], rng)
            p.write_bytes(head + seed[48:])
        else:
            p.write_bytes(mutate_bytes(seed, rng)[0])
        try:
            with deadline(10.0):
                clip = voice.load_recording(p, 16000, f"case {i}")
            assert clip.dtype == np.float32 and np.all(np.isfinite(clip)) and np.abs(clip).max() <= 1.0
            tally["loaded"] += 1
        except InputError as exc:
            assert_one_line_error(exc)
            tally["rejected"] += 1
        except Exception as exc:
            raise AssertionError(f"wav case {i}: {type(exc).__name__} escaped load_recording: {exc}") from exc
    report("cues:voice-pack wav bytes", tally)
    assert tally["loaded"] > 0 and tally["rejected"] > 0, tally


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_recording_with_non_finite_samples_is_a_cue_error(tmp_path, bad):
    import cues.voice as voice
    import numpy as np
    import soundfile as sf

    x = np.sin(np.arange(8000) / 5.0) * 0.5
    x[4000] = bad
    p = tmp_path / "rec.wav"
    sf.write(str(p), x.astype(np.float32), 16000, subtype="FLOAT")
    with pytest.raises(InputError):
        clip = voice.load_recording(p, 16000, "cue 'x' phrasing 1")
        assert np.all(np.isfinite(clip))  # (if it loads, it must at least be finite)
