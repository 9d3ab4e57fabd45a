"""metronome/parts.py: a split render is the single render cut at the planned samples, for any block size, atomically."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from metronome.errors import InputError
from metronome.parts import AudioParts, part_paths
from metronome.render import render
from metronome.session import plan_session, tempo_settings_for
from metronome.settings import EngineSettings
from profiles import load_profile

SR = 16000
COURSE = """\
name: split-test
kind: course
segments:
  - {distance_m: 200, grade_pct: 0}
  - {distance_m: 300, grade_pct: -10}
  - {distance_m: 200, grade_pct: 2}
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    p = tmp_path_factory.mktemp("course") / "course.yaml"
    p.write_text(COURSE)
    prof = load_profile(str(p))
    return plan_session(prof, tempo_settings_for(prof), EngineSettings(samplerate=SR), cues=True)


def _read(path, dtype):
    return sf.read(str(path), dtype=dtype, always_2d=True)[0]


def _render(plan, out, **kw):
    return render(plan.tempo_map, str(out), plan.engine_settings, bank=plan.bank, cue_requests=plan.cue_requests,
                  **kw)


def _cuts(plan):
    """Cuts at awkward places: one sample in, around the 65536-frame render chunks, on beats, near the end."""
    beats = plan.tempo_map.beat_samples()
    total = plan.tempo_map.end_sample + SR
    return sorted({1, 65535, 65536, 65537, int(beats[10]), int(beats[200]), int(beats[-1]), total - 1})


def test_part_names():
    assert part_paths("/x/run.ogg", 3) == ["/x/run-01.ogg", "/x/run-02.ogg", "/x/run-03.ogg"]
    assert part_paths("run.flac", 120)[0] == "run-001.flac" and part_paths("run.flac", 120)[-1] == "run-120.flac"


@pytest.mark.parametrize("ext, subtype, dtype", [(".wav", "PCM_16", "int16"), (".wav", "PCM_24", "int32"),
                                                 (".flac", "PCM_16", "int16"), (".flac", "PCM_24", "int32"),
                                                 (".wav", "FLOAT", "float32")])
def test_parts_concatenate_to_the_single_render(plan, tmp_path, ext, subtype, dtype):
    whole = tmp_path / f"whole{ext}"
    _render(plan, whole, subtype=subtype)
    ref = _read(whole, dtype)
    cuts = _cuts(plan)
    _render(plan, tmp_path / f"run{ext}", subtype=subtype, split_at=cuts)
    paths = part_paths(str(tmp_path / f"run{ext}"), len(cuts) + 1)
    parts = [_read(p, dtype) for p in paths]
    assert not (tmp_path / f"run{ext}").exists()  # only the parts are written
    assert [len(x) for x in parts] == list(np.diff([0, *cuts, len(ref)]))  # each part ends at its planned sample
    assert np.array_equal(np.concatenate(parts), ref)  # sample for sample
    assert any(np.any(x != 0) for x in parts[3:])  # clicks and cues, not silence


@pytest.mark.parametrize("blocksize", [1, 64, 65, 128, 8192, 8193])
def test_split_is_the_same_for_any_block_size(plan, tmp_path, blocksize):
    whole = tmp_path / "whole.wav"
    _render(plan, whole)
    ref = _read(whole, "int16")
    cuts = _cuts(plan)
    res = _render(plan, tmp_path / "run.wav", split_at=cuts, blocksize=blocksize)
    assert res.frames == len(ref)
    parts = [_read(p, "int16") for p in part_paths(str(tmp_path / "run.wav"), len(cuts) + 1)]
    assert np.array_equal(np.concatenate(parts), ref)
    assert [len(x) for x in parts] == list(np.diff([0, *cuts, len(ref)]))


def test_an_interrupted_split_leaves_nothing_and_keeps_earlier_files(plan, tmp_path):
    cuts = _cuts(plan)
    names = part_paths(str(tmp_path / "run.wav"), len(cuts) + 1)
    old = tmp_path / os.path.basename(names[1])
    old.write_bytes(b"an earlier part")
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 3:  # several parts already written, more to come
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _render(plan, tmp_path / "run.wav", split_at=cuts, progress=stop)
    assert sorted(os.listdir(tmp_path)) == [old.name]  # no new part, no temporary
    assert old.read_bytes() == b"an earlier part"


def test_bad_cuts_are_refused(tmp_path):
    for cuts in ([0], [5, 5], [10, 3], [100]):
        with pytest.raises(InputError, match="split points"):
            AudioParts(str(tmp_path / "x.wav"), 100, SR, 2, "WAV", "PCM_16", cuts)
    assert os.listdir(tmp_path) == []
