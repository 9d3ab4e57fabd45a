"""Soak: a real-time live session on the JACK dummy server with a sensor feed and cues.

CI runs it for DOWNBEAT_SOAK_S seconds (default 90); benchmarks/soak.py runs the 10-minute version."""

import os

import numpy as np
import pytest

from tests.support.jackutil import assert_underflows_explained, jack_log_since, jack_log_size, require_jack
from tests.support.soak import soak

pytestmark = pytest.mark.jack


def test_soak_live_feed_with_cues_no_underflow_no_growth_tempo_in_bounds():
    require_jack()
    duration = float(os.environ.get("DOWNBEAT_SOAK_S", "90"))
    log_offset = jack_log_size()
    summary, rss, err = soak(duration)
    assert summary["stop_reason"] == "end" and summary["played_s"] >= duration - 0.1
    # Tempo inside its bounds the whole time, and it did follow the feed (descents raise it).
    lo, hi = summary["bpm_bounds"]
    assert lo - 1e-6 <= summary["bpm_min"] and summary["bpm_max"] <= hi + 1e-6
    assert summary["bpm_max"] > 175.0
    assert summary["cues"] >= 1, err  # the live planner announced/coached the descent
    # No memory growth: after the first 15 s (imports, voice bank, warm-up), RSS stays flat.
    steady = np.array([r for t, r in rss if t > 15.0])
    assert steady.size >= 5
    assert steady.max() - steady[0] < 4 * 1024, (steady[0], steady.max())
    assert summary["callback_p99_ms"] < 0.1 * 128 / 48.0  # our own compute (p99: max includes preemption)
    if log_offset is None:
        assert summary["underflows"] == 0
    else:
        assert_underflows_explained(summary["underflows"], jack_log_since(log_offset))
