"""The JACK recording checks (tests/support/jackutil.py) on synthetic recordings: cycles the recorder missed are left
out exactly, a player cycle the server skipped is accepted only within its bound, and a click moved by one sample
or a dropped block fails.  No JACK server needed: this is what makes the JACK tests unable to pass a defect."""

import numpy as np
import pytest

from tests.support.jackutil import Recording, match_beats, match_render

P = 128


def _render(n_frames=60 * P, beats=(300, 2000, 3900, 5500, 7000)):
    x = np.zeros(n_frames, dtype=np.float32)
    click = np.linspace(1.0, 0.1, 90, dtype=np.float32)
    for b in beats:
        x[b:b + click.size] = click
    return x, np.asarray(beats)


def _record(played, lag, missed=(), first=0, n=50):
    """Cycles of server time ``first..first+n``; the player's sample s sounds at server frame s + lag."""
    frames, data = [], []
    for c in range(first, first + n):
        if c in missed:
            continue
        start = c * P - lag
        block = np.zeros(P, dtype=np.float32)
        if 0 <= start < len(played):
            seg = played[start:start + P]
            block[:seg.size] = seg
        frames.append(c * P)
        data.append(block)
    return Recording(np.array(data), np.array(frames, dtype=np.int64) + 1000 * P, P, 48000)


def test_missed_recorder_cycles_are_left_out_and_the_rest_must_match():
    ref, beats = _render()
    rec = _record(ref, lag=-3 * P - 17, missed={5, 6, 20, 31})
    assert rec.missed_cycles == 4
    m = match_render(rec, ref, max_shift_periods=0)
    assert m["lag_steps"] == 0 and m["cycles"] == 46
    assert match_beats(rec, beats, max_shift_periods=0)["lag_steps"] == 0


def _late_player(ref, cycle, lag_periods=2):
    """The player delayed by one period from server ``cycle`` on (the server did not run it in that cycle)."""
    at = (cycle + lag_periods) * P
    return np.concatenate([ref[:at], np.zeros(P, np.float32), ref[at:]])


def test_a_skipped_player_cycle_at_a_recorder_gap_is_accepted_only_within_the_bound():
    ref, beats = _render()
    # In the cycle the server skips the player, it skips the recorder (fed by the player) too.
    rec = _record(_late_player(ref, 23), lag=-2 * P, missed={23})
    assert match_render(rec, ref, max_shift_periods=1)["lag_steps"] == 1
    assert match_beats(rec, beats, max_shift_periods=1)["lag_steps"] == 1
    with pytest.raises(AssertionError):
        match_render(rec, ref, max_shift_periods=0)
    with pytest.raises(AssertionError):
        match_beats(rec, beats, max_shift_periods=0)


def test_a_player_delay_away_from_any_recorder_gap_is_a_defect():
    ref, beats = _render()
    rec = _record(_late_player(ref, 23), lag=-2 * P, missed={5})  # a gap, but far from the delay
    with pytest.raises(AssertionError):
        match_render(rec, ref, max_shift_periods=3)
    with pytest.raises(AssertionError):
        match_beats(rec, beats, max_shift_periods=3)


def test_a_torn_block_is_accepted_right_after_a_gap_only():
    ref, beats = _render()
    for cycle, ok in ((24, True), (30, False)):  # 24: first cycle after the gap at 23
        rec = _record(ref, lag=-2 * P, missed={23})
        k = int(np.searchsorted(rec.frame, rec.frame[0] + cycle * P))
        rec.data[k, :40] = 0.5  # half old, half new buffer contents
        if ok:
            assert match_render(rec, ref, max_shift_periods=1)["torn"] == 1
            with pytest.raises(AssertionError):
                match_render(rec, ref, max_shift_periods=0)
        else:
            with pytest.raises(AssertionError):
                match_render(rec, ref, max_shift_periods=3)


@pytest.mark.parametrize("defect", ["click one sample late", "dropped block", "lost click"])
def test_defects_fail(defect):
    ref, beats = _render()
    played = ref.copy()
    if defect == "click one sample late":
        played[3900:3900 + 91] = np.concatenate([[0], ref[3900:3990]])
    elif defect == "dropped block":
        played = np.concatenate([ref[:20 * P], ref[21 * P:]])
    else:
        played[3900:3990] = 0
    rec = _record(played, lag=-2 * P)
    with pytest.raises(AssertionError):
        match_render(rec, ref, max_shift_periods=3)
    with pytest.raises(AssertionError):
        match_beats(rec, beats, max_shift_periods=3)
