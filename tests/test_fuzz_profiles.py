"""Fuzz every profile input boundary (issue 7): YAML, GPX, FIT and TCX, in process.

Contract under test (``profiles.load_profile``): any bytes in, either a :class:`Profile` that the tempo model can
use, or a :class:`~metronome.errors.InputError` with a one-line message; never another exception, never a hang,
never unbounded memory.  Inputs are real files from ``tests/data`` (and the bundled profiles) mutated at the byte
level, at the XML/YAML structure level, and hostile documents written by hand (alias bombs, deep nesting, huge
numbers).  Every case is reproducible from its seed, printed on failure.
"""

from __future__ import annotations

import copy
import datetime
import random
import reprlib
import sys
import time
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metronome.errors import InputError
from metronome.tempo import TempoSettings, tempo_map_from_profile
from profiles import load_profile
from profiles.loader import BUNDLED_DIR

from tests.support.fuzz import (Hang, alias_bomb, assert_one_line_error, budget, deadline, fix_fit_crcs, mutate_bytes,
                                report)

DATA = Path(__file__).parent / "data"
GPX_SEEDS = ["Mojstrovka.gpx", "cerknicko-jezero.gpx", "cerknicko-without-times.gpx", "track-with-empty-segment.gpx",
             "route.gpx", "gpx_with_garmin_extension.gpx"]
TCX_SEEDS = ["cerknicko-jezero.tcx"]
# fitdecode takes ~0.7 s on the two big activities: they get a tenth of the cases of the 5 KB one.
FIT_SMALL = ["garmin-fenix-5-run.fit", "WorkoutIndividualSteps.fit"]
FIT_BIG = ["activity-small-fenix2-run.fit", "sample-activity.fit"]
YAML_SEEDS = sorted(p.name for p in BUNDLED_DIR.glob("*.yaml"))

#: Longest a single load may take: the slowest real file loads in < 1 s on this machine.
CASE_DEADLINE_S = 10.0


def _seed_bytes(name: str) -> bytes:
    p = DATA / name
    return (p if p.exists() else BUNDLED_DIR / name).read_bytes()


def check_load(path: Path, what: str) -> str:
    """Load ``path`` under the contract; return ``"loaded"`` or ``"rejected"``.

    A profile that loads must also give a tempo map (the next stage) or a clean InputError there: a file that
    passes the loader but crashes the tempo model is a loader bug too.
    """
    try:
        with deadline(CASE_DEADLINE_S):
            try:
                prof = load_profile(str(path))
            except InputError as exc:
                assert_one_line_error(exc)
                return "rejected"
            assert np.all(np.isfinite(prof.grade_pct)) and np.all(np.diff(prof.time_s) > 0)
            try:
                tempo_map_from_profile(prof, TempoSettings(), 8000)
            except InputError as exc:
                assert_one_line_error(exc)
                return "rejected"
            return "loaded"
    except (AssertionError, Hang):
        raise
    except Exception as exc:  # the bug this suite hunts: say which case, keep the file for a reproduction
        raise AssertionError(f"{what}: {type(exc).__name__} escaped load_profile: {exc!s:.300}; "
                             f"input kept at {path}") from exc


def _write(tmp_path: Path, i: int, ext: str, data: bytes) -> Path:
    p = tmp_path / f"case{i}{ext}"
    p.write_bytes(data)
    return p


# ----------------------------------------------------------------------------------------------------------------
# Byte-level mutations of real files
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,seeds,default,ext", [
    ("gpx", GPX_SEEDS, 200, ".gpx"),
    ("tcx", TCX_SEEDS, 80, ".tcx"),
    ("yaml", YAML_SEEDS, 200, ".yaml"),
])
def test_mutated_text_files_load_or_fail_cleanly(tmp_path, fmt, seeds, default, ext):
    n = budget(default)
    tally = {"loaded": 0, "rejected": 0}
    for i in range(n):
        rng = random.Random(f"{fmt}-{i}")
        seed = rng.choice(seeds)
        data, how = mutate_bytes(_seed_bytes(seed), rng)
        tally[check_load(_write(tmp_path, i, ext, data), f"{fmt} case {i} ({seed}: {how})")] += 1
    report(f"profile:{fmt} bytes", tally)
    assert sum(tally.values()) == n
    # Most byte mutations of XML break well-formedness (the structure-level fuzz below goes deeper); the loop
    # must at least have exercised the rejection path.
    assert tally["rejected"] > 0, tally


def test_mutated_fit_files_load_or_fail_cleanly(tmp_path):
    """Byte mutations, then (for most cases) the CRCs and data size recomputed, so fitdecode decodes the mutated
    definitions and records instead of stopping at the checksum."""
    cases = [(s, i) for i in range(budget(150)) for s in [FIT_SMALL[i % len(FIT_SMALL)]]]
    cases += [(s, i) for i in range(budget(6)) for s in [FIT_BIG[i % len(FIT_BIG)]]]
    tally = {"loaded": 0, "rejected": 0}
    for i, (seed, j) in enumerate(cases):
        rng = random.Random(f"fit-{seed}-{j}")
        data, how = mutate_bytes(_seed_bytes(seed), rng)
        if rng.random() < 0.8 and len(data) > 16:
            b = bytearray(data)
            if rng.random() < 0.7:  # keep the header's data size consistent with what is left
                b[4:8] = (len(b) - b[0] - 2).to_bytes(4, "little") if b[0] in (12, 14) else b[4:8]
            data, how = fix_fit_crcs(bytes(b)), how + " + CRCs fixed"
        tally[check_load(_write(tmp_path, i, ".fit", data), f"fit case {i} ({seed}: {how})")] += 1
    report("profile:fit bytes", tally)
    assert sum(tally.values()) == len(cases)
    assert tally["loaded"] > 0 and tally["rejected"] > 0, tally


# ----------------------------------------------------------------------------------------------------------------
# XML structure mutations (GPX, TCX): the file stays well-formed, its content does not
# ----------------------------------------------------------------------------------------------------------------
ODD_VALUES = ["", " ", "nan", "NaN", "inf", "-Infinity", "1e308", "-1e308", "1e999", "0", "-0", "90.0000001",
              "-180.5", "1" * 5000, "0x1F", "\u0661\u0662\u0663", "12,5", "1_000", "\u00a0", "garbage", "8849",
              "-430", "1e-320", "2020-02-30T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00",
              "2020-01-01T00:00:00", "2020-01-01", "24:00", "-1"]


def mutate_xml(root: ET.Element, rng: random.Random) -> str:
    """Apply one structural mutation in place; return its description."""
    elems = list(root.iter())
    parents = {c: p for p in elems for c in p}
    e = rng.choice(elems)
    op = rng.choice(["text", "attr", "delete", "duplicate", "move", "rename", "swap", "clear", "reverse"])
    if op == "text":
        e.text = rng.choice(ODD_VALUES) if rng.random() < 0.8 else str(rng.uniform(-1e4, 1e4))
        return f"text of <{e.tag}> = {e.text[:20]!r}"
    if op == "attr":
        key = rng.choice(list(e.attrib) or ["lat", "lon"])
        e.set(key, rng.choice(ODD_VALUES))
        return f"@{key} of <{e.tag}> = {e.get(key)[:20]!r}"
    if e is root:
        return "noop (root)"
    parent = parents[e]
    if op == "delete":
        parent.remove(e)
        return f"delete <{e.tag}>"
    if op == "duplicate":
        k = rng.randint(1, 50)
        idx = list(parent).index(e)
        for _ in range(k):
            parent.insert(idx, copy.deepcopy(e))
        return f"duplicate <{e.tag}> x{k}"
    if op == "move":
        target = rng.choice(elems)
        if target is e or e in list(target.iter()):
            return "noop (move into itself)"
        parent.remove(e)
        target.append(e)
        return f"move <{e.tag}> under <{target.tag}>"
    if op == "rename":
        other = rng.choice(elems)
        e.tag = other.tag
        return f"rename to <{other.tag}>"
    if op == "swap":
        other = rng.choice(elems)
        e.text, other.text = other.text, e.text
        return f"swap text <{e.tag}>/<{other.tag}>"
    if op == "clear":
        e.clear()
        return f"clear <{e.tag}>"
    children = list(parent)
    for c in children:
        parent.remove(c)
    for c in reversed(children):
        parent.append(c)
    return f"reverse children of <{parent.tag}>"


@pytest.mark.parametrize("fmt,seeds,default", [("gpx", GPX_SEEDS[:4], 150), ("tcx", TCX_SEEDS, 60)])
def test_xml_structure_mutations_load_or_fail_cleanly(tmp_path, fmt, seeds, default):
    n = budget(default)
    trees = {s: ET.fromstring(_seed_bytes(s)) for s in seeds}
    tally = {"loaded": 0, "rejected": 0}
    for i in range(n):
        rng = random.Random(f"xml-{fmt}-{i}")
        seed = rng.choice(seeds)
        root = copy.deepcopy(trees[seed])
        how = [mutate_xml(root, rng) for _ in range(rng.randint(1, 4))]
        data = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        tally[check_load(_write(tmp_path, i, f".{fmt}", data), f"{fmt} xml case {i} ({seed}: {'; '.join(how)})")] += 1
    report(f"profile:{fmt} xml structure", tally)
    assert sum(tally.values()) == n
    assert tally["loaded"] > 0 and tally["rejected"] > 0, tally


# ----------------------------------------------------------------------------------------------------------------
# YAML: structure mutations of the bundled profiles and random documents
# ----------------------------------------------------------------------------------------------------------------
def _odd_scalar(rng: random.Random):
    return rng.choice([
        None, True, False, 0, -1, 1, 10 ** 30, -(10 ** 30), 10 ** 5000, 1e308, -1e308, float("inf"), float("nan"),
        0.5, -45.0, 45.0001, 1e-320, "", " ", "1e3", "-10", "abc", "nan", ".inf", "x" * 10000, "\u202e",
        datetime.date(2020, 1, 1), [], {}, [1, 2], {"a": 1}, [[[[]]]], "0x10", "1_000", "0o17", b"\x00\xff",
    ])


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    yield path


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def mutate_yaml_doc(doc, rng: random.Random) -> str:
    """Mutate a parsed YAML profile in place; return a description."""
    paths = [p for p in _leaves(doc) if p]
    op = rng.choice(["value", "value", "value", "delete", "unknown_key", "repeat_segments", "kind", "wrap"])
    if op == "value":
        p = rng.choice(paths)
        v = _odd_scalar(rng)
        _set(doc, p, v)
        return f"{'.'.join(map(str, p))} = {reprlib.repr(v) if not isinstance(v, int) else type(v).__name__}"
    if op == "delete":
        p = rng.choice(paths)
        parent = doc
        for k in p[:-1]:
            parent = parent[k]
        del parent[p[-1]]
        return f"delete {'.'.join(map(str, p))}"
    if op == "unknown_key":
        target = rng.choice([doc] + [s for s in doc.get("segments", []) if isinstance(s, dict)])
        target[rng.choice(["grade", "distance", "Segments", "x", 1, True])] = 1
        return "unknown key"
    if op == "repeat_segments":
        segs = doc.get("segments")
        if isinstance(segs, list) and segs:
            k = rng.choice([2, 50, 3000, 10_001])
            doc["segments"] = (segs * (k // len(segs) + 1))[:k]
            return f"{k} segments"
        return "noop"
    if op == "kind":
        doc["kind"] = rng.choice(["course", "workout", "activity", "COURSE", None, 3])
        return f"kind = {doc['kind']!r}"
    k = rng.choice(list(doc))
    doc[k] = [doc[k]] if rng.random() < 0.5 else {"value": doc[k]}
    return f"wrap {k}"


def _dump(doc) -> bytes:
    # yaml.dump (not safe_dump) so bytes objects become !!binary; the loader still reads with safe_load only.
    # Writing a 5000-digit int needs Python's int->str digit limit lifted (reading it back is the case under test).
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return yaml.dump(doc, allow_unicode=True).encode("utf-8")
    finally:
        sys.set_int_max_str_digits(old)


def test_yaml_structure_mutations_load_or_fail_cleanly(tmp_path):
    n = budget(200)
    docs = {s: yaml.safe_load(_seed_bytes(s)) for s in YAML_SEEDS}
    tally = {"loaded": 0, "rejected": 0}
    for i in range(n):
        rng = random.Random(f"yaml-doc-{i}")
        seed = rng.choice(YAML_SEEDS)
        doc = copy.deepcopy(docs[seed])
        how = [mutate_yaml_doc(doc, rng) for _ in range(rng.randint(1, 3))]
        path = _write(tmp_path, i, rng.choice([".yaml", ".yml"]), _dump(doc))
        tally[check_load(path, f"yaml doc case {i} ({seed}: {'; '.join(how)})")] += 1
    report("profile:yaml structure", tally)
    assert sum(tally.values()) == n
    assert tally["loaded"] > 0 and tally["rejected"] > 0, tally


_YAML_CASES = {"n": 0}
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["course", "workout", "segments", "distance_m", "grade_pct", "1e400", "-0.0"]),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(
        st.sampled_from(["name", "kind", "segments", "distance_m", "grade_pct", "duration_s", "incline_pct",
                         "speed_kmh", "technical", "surface", "base_cadence_spm", "flat_pace_s_per_km",
                         "start_elevation_m"]) | st.text(max_size=8), c, max_size=6),
    max_leaves=30)


@settings(max_examples=budget(150), deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(doc=yaml_values, raw=st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=200)))
def test_random_yaml_documents_load_or_fail_cleanly(tmp_path_factory, doc, raw):
    path = tmp_path_factory.mktemp("y") / "random.yaml"
    path.write_bytes(_dump(doc) if raw is None else raw if isinstance(raw, bytes) else raw.encode("utf-8"))
    check_load(path, f"random yaml {path.read_bytes()[:200]!r}")
    _YAML_CASES["n"] += 1


def test_random_yaml_documents_count():
    # Hypothesis runs the test above once per example; record how many (pytest runs tests in file order).
    report("profile:yaml random documents (hypothesis)", {"cases": _YAML_CASES["n"]})
    assert _YAML_CASES["n"] >= min(50, budget(150))


# ----------------------------------------------------------------------------------------------------------------
# Hostile YAML written by hand
# ----------------------------------------------------------------------------------------------------------------
BOMB_PLACES = {
    "kind": "kind: *l8\n",
    "name": "name: *l8\nsegments: [{distance_m: 100, grade_pct: 0}]\n",
    "segments": "segments: *l8\n",
    "segment": "segments: [*l8]\n",
    "distance": "segments: [{distance_m: *l8, grade_pct: 0}]\n",
    "grade": "segments: [{distance_m: 100, grade_pct: *l8}]\n",
    "technical": "segments: [{distance_m: 100, grade_pct: 0, technical: *l8}]\n",
    "surface": "segments: [{distance_m: 100, grade_pct: 0, surface: *l8}]\n",
    "base_cadence": "base_cadence_spm: *l8\nsegments: [{distance_m: 100, grade_pct: 0}]\n",
    "pace": "flat_pace_s_per_km: *l8\nsegments: [{distance_m: 100, grade_pct: 0}]\n",
    "start_elevation": "start_elevation_m: *l8\nsegments: [{distance_m: 100, grade_pct: 0}]\n",
    "workout_duration": "kind: workout\nsegments: [{duration_s: *l8, incline_pct: 0, speed_kmh: 10}]\n",
    "workout_speed": "kind: workout\nsegments: [{duration_s: 60, incline_pct: 0, speed_kmh: *l8}]\n",
}


@pytest.mark.parametrize("place", sorted(BOMB_PLACES))
def test_yaml_alias_bomb_is_rejected_fast_and_small(tmp_path, place):
    """9 ** 9 = 387 million leaves if expanded: must be refused in well under a second, with a short message and
    a few MB of memory at most (before the fix: tens of seconds and gigabytes spent building the message)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb() + BOMB_PLACES[place])
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with deadline(5.0), pytest.raises(InputError) as info:
            load_profile(str(path))
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(info.value, max_chars=300)
    assert elapsed < 2.0, elapsed
    assert peak < 32 << 20, f"{peak >> 20} MiB"


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    "{a: " * 20_000 + "1" + "}" * 20_000,
    "".join("  " * i + f"k{i}:\n" for i in range(3000)) + "  " * 3000 + "x: 1\n",
    "segments:\n" + "".join("  " * i + "- \n" for i in range(1, 3000)),
], ids=["flow-seq", "flow-map", "block-map", "block-seq"])
def test_deeply_nested_yaml_is_an_input_error(tmp_path, text):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with deadline(20.0), pytest.raises(InputError) as info:
        load_profile(str(path))
    assert_one_line_error(info.value, max_chars=300)


@pytest.mark.parametrize("value", [
    "1" * 5000,                       # int('1' * 5000) raises ValueError (Python's 4300-digit limit)
    "-" + "9" * 100_000,
    "0x" + "f" * 5000,
    "1" * 4000 + ".5",                # a float: fine, inf -> rejected as not finite
    "1e99999",
    "2020-13-45",                     # matches YAML's timestamp pattern; date(2020, 13, 45) raises ValueError
    "2020-02-30 25:61:61",
    "!!int 'abc'",
    "!!float '1.0.0'",
    "!!binary 'not base64!'",
    "!!timestamp '2020-99-99'",
], ids=lambda v: v[:18])
@pytest.mark.parametrize("field", ["grade_pct", "distance_m"])
def test_hostile_yaml_scalars_are_input_errors(tmp_path, field, value):
    seg = {"distance_m": "100", "grade_pct": "0"}
    seg[field] = value
    path = tmp_path / "scalar.yaml"
    path.write_text(f"segments:\n  - distance_m: {seg['distance_m']}\n    grade_pct: {seg['grade_pct']}\n")
    with deadline(5.0), pytest.raises(InputError) as info:
        load_profile(str(path))
    assert_one_line_error(info.value, max_chars=300)


def test_huge_yaml_list_of_segments_is_bounded(tmp_path):
    """10 001 segments: refused by count (MAX_SEGMENTS), quickly."""
    path = tmp_path / "many.yaml"
    path.write_text("segments:\n" + "  - {distance_m: 1, grade_pct: 0}\n" * 10_001)
    t0 = time.perf_counter()
    with deadline(20.0), pytest.raises(InputError, match="10001 segments"):
        load_profile(str(path))
    assert time.perf_counter() - t0 < 10.0


def test_loading_a_small_file_allocates_little(tmp_path):
    """The 256 MiB size limit must not be an allocation: reading used to preallocate it for every file."""
    path = tmp_path / "bad.yaml"
    path.write_text("segments: 3\n")
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            load_profile(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB to read a 12-byte file"
