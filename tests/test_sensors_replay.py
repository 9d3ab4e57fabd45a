"""metronome.sensors.replay: replay CSVs are size-capped, streamed, and their errors quote values briefly (issue 12.8)."""

from __future__ import annotations

import os
import resource

import pytest

from metronome.errors import MAX_MESSAGE_CHARS, DownbeatError, SensorError, cap_message
from metronome.sensors import load_replay
from metronome.sensors import replay as R


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_sparse_1gb_csv_is_refused_before_reading(tmp_path):
    p = tmp_path / "huge.csv"
    with open(p, "wb") as f:
        f.write(b"t,grade_pct\n0,0\n")
        f.truncate(1 << 30)  # sparse: costs no disk, but reading it would cost gigabytes
    before = _max_rss_mib()
    with pytest.raises(SensorError) as exc:
        load_replay(p)
    msg = str(exc.value)
    assert "huge.csv" in msg and "MiB" in msg
    assert _max_rss_mib() - before < 64


def test_over_cap_by_one_byte_refused_and_at_cap_read(tmp_path, monkeypatch):
    body = b"t,grade_pct\n" + b"".join(b"%d,-3.0\n" % i for i in range(100))
    monkeypatch.setattr(R, "MAX_REPLAY_CSV_BYTES", len(body))
    p = tmp_path / "ok.csv"
    p.write_bytes(body)
    assert len(load_replay(p)) > 1
    p.write_bytes(body + b"1")
    with pytest.raises(SensorError, match="ok.csv"):
        load_replay(p)


def test_garbage_header_error_is_short(tmp_path):
    p = tmp_path / "garbage.csv"
    p.write_bytes(b",".join([b"x" * 3000] * 1000) + b"\n1,2\n")  # a 3 MB first line
    with pytest.raises(SensorError) as exc:
        load_replay(p)
    msg = str(exc.value)
    assert "garbage.csv" in msg
    assert len(msg) <= 300, len(msg)


def test_garbage_header_within_line_cap_quotes_briefly(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text(",".join(f"col{i}_" + "y" * 30 for i in range(100)) + "\n1,2\n")  # 3.7 kB header, no 't'
    with pytest.raises(SensorError) as exc:
        load_replay(p)
    msg = str(exc.value)
    assert "cols.csv" in msg and "'t'" in msg
    assert len(msg) <= 300, len(msg)


def test_bad_cell_quoted_briefly(tmp_path):
    p = tmp_path / "cell.csv"
    p.write_text("t,grade_pct\n0," + "z" * 3000 + "\n")
    with pytest.raises(SensorError) as exc:
        load_replay(p)
    msg = str(exc.value)
    assert "cell.csv:2: grade_pct:" in msg and "is not a number" in msg
    assert len(msg) <= 200, len(msg)


def test_row_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "MAX_REPLAY_ROWS", 50)
    p = tmp_path / "rows.csv"
    p.write_text("t,grade_pct\n" + "".join(f"{i},-2\n" for i in range(51)))
    with pytest.raises(SensorError, match="more than 50 rows"):
        load_replay(p)


def test_fifo_is_refused_without_blocking(tmp_path):
    p = tmp_path / "feed.csv"
    os.mkfifo(p)
    with pytest.raises(SensorError, match="not a regular file"):
        load_replay(p)  # open() on a FIFO with no writer would block forever


def test_every_error_message_is_capped():
    huge = "v" * 5_000_000
    err = SensorError(f"file.csv: field: {huge} is bad")
    assert len(str(err)) <= MAX_MESSAGE_CHARS
    assert str(err).startswith("file.csv: field: ") and str(err).endswith(" is bad")
    assert cap_message("short") == "short"
    assert str(DownbeatError()) == ""
