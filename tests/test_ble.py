"""BLE decoders on real captured notifications (tests/data/ble/SOURCES.md), truncation, fuzz, notification path.

No hardware is involved anywhere in this file.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from metronome.sensors import ble
from metronome.sensors.ble import FtmsSource, RscSource
from metronome.sensors.ble_protocol import (BLE_MISSING, decode_rsc_measurement, decode_treadmill_data, rsc_to_reading,
                                            treadmill_to_reading)
from metronome.errors import SensorError
from metronome.sensors import FeedCore, Reading, Reject, RejectReason
from metronome.tempo import TempoSettings

VECTORS = json.loads((Path(__file__).parent / "data" / "ble" / "vectors.json").read_text())


def _payload(vec) -> bytes:
    if "hex" in vec:
        return bytes.fromhex(vec["hex"].replace(" ", ""))
    return bytes(vec["bytes"])


FTMS = VECTORS["ftms_treadmill_data"]
RSC = VECTORS["rsc_measurement"]


def _check_fields(obj, expected):
    for name, want in expected.items():
        got = getattr(obj, name)
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-9), name
        else:
            assert got == want, name


# ---------------------------------------------------------------------------------------------------------------
# FTMS Treadmill Data
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vec", FTMS, ids=[v["name"] for v in FTMS])
def test_treadmill_vectors_decode_to_hand_worked_values(vec):
    td = decode_treadmill_data(_payload(vec), partial=True)
    _check_fields(td, vec["expected"])


@pytest.mark.parametrize("vec", [v for v in FTMS if not v.get("overpromising_flags")],
                         ids=[v["name"] for v in FTMS if not v.get("overpromising_flags")])
def test_conformant_treadmill_vectors_decode_strictly(vec):
    assert decode_treadmill_data(_payload(vec)) == decode_treadmill_data(_payload(vec), partial=True)


@pytest.mark.parametrize("vec", [v for v in FTMS if v.get("overpromising_flags")],
                         ids=[v["name"] for v in FTMS if v.get("overpromising_flags")])
def test_overpromising_matrix_packets_fail_strict_decoding_with_a_clear_message(vec):
    with pytest.raises(SensorError, match=r"FTMS Treadmill Data: truncated at energy per hour \(offset 19"):
        decode_treadmill_data(_payload(vec))


def test_not_available_sentinels_decode_to_none():
    td = decode_treadmill_data(_payload(FTMS[1]))  # Life Fitness: ramp 0x7FFF, energy/h 0xFFFF, energy/min 0xFF
    assert td.ramp_angle_deg is None and td.energy_per_hour_kcal is None and td.energy_per_minute_kcal is None
    assert td.inclination_pct == 6.0


def test_negative_inclination_constructed_packet():
    # Constructed per the GATT layout (no public capture with a decline was found): flags 0x0008 (speed present
    # because bit 0 is clear, inclination+ramp present), 10.00 km/h, -6.0 %, -3.4 deg.
    pkt = bytes([0x08, 0x00, 0xE8, 0x03, 0xC4, 0xFF, 0xDE, 0xFF])
    td = decode_treadmill_data(pkt)
    assert td.speed_kmh == 10.0 and td.inclination_pct == -6.0 and td.ramp_angle_deg == -3.4
    r = treadmill_to_reading(pkt)
    assert isinstance(r, Reading) and r.grade_pct == -6.0 and r.speed_mps == pytest.approx(10 / 3.6)


def test_more_data_bit_means_no_speed_field():
    # bit 0 set: Instantaneous Speed absent, inclination follows the flags directly.
    td = decode_treadmill_data(bytes([0x09, 0x00, 0x32, 0x00, 0x00, 0x00]))
    assert td.speed_kmh is None and td.inclination_pct == 5.0


def test_treadmill_inclination_not_available_gives_gradeless_reading():
    pkt = bytes([0x08, 0x00, 0xE8, 0x03, 0xFF, 0x7F, 0xFF, 0x7F])
    r = treadmill_to_reading(pkt)
    assert isinstance(r, Reading) and r.grade_pct is None and r.speed_mps == pytest.approx(10 / 3.6)


@pytest.mark.parametrize("vec", FTMS, ids=[v["name"] for v in FTMS])
def test_treadmill_vectors_to_readings(vec):
    r = treadmill_to_reading(_payload(vec))
    exp = vec["expected"]
    assert isinstance(r, Reading)
    assert r.grade_pct == exp["inclination_pct"]
    assert r.speed_mps == pytest.approx(exp["speed_kmh"] / 3.6)
    assert r.distance_m == exp["total_distance_m"]


@pytest.mark.parametrize("vec", FTMS, ids=[v["name"] for v in FTMS])
def test_every_truncation_of_a_real_packet_is_a_sensor_error_or_a_clean_partial(vec):
    data = _payload(vec)
    for n in range(len(data)):
        prefix = data[:n]
        if n < 2:
            with pytest.raises(SensorError, match="need at least 2 for the flags"):
                decode_treadmill_data(prefix, partial=True)
        try:
            decode_treadmill_data(prefix)
        except SensorError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("FTMS Treadmill Data:")
        # The reading path never raises: a prefix cut inside the inclination is a DEVICE reject, never a grade.
        r = treadmill_to_reading(prefix)
        if isinstance(r, Reading):
            assert r.grade_pct in (None, vec["expected"]["inclination_pct"])
        else:
            assert r.reason is RejectReason.DEVICE


def test_cut_inside_inclination_is_rejected_not_guessed():
    data = _payload(FTMS[1])  # Life Fitness, inclination at offset 9..10
    r = treadmill_to_reading(data[:10])
    assert isinstance(r, Reject) and r.reason is RejectReason.DEVICE and "inclination" in r.detail


# ---------------------------------------------------------------------------------------------------------------
# RSC Measurement
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vec", RSC, ids=[v["name"] for v in RSC])
def test_rsc_vectors_decode_to_hand_worked_values(vec):
    _check_fields(decode_rsc_measurement(_payload(vec)), vec["expected"])


@pytest.mark.parametrize("vec", RSC, ids=[v["name"] for v in RSC])
def test_every_truncation_of_a_real_rsc_packet(vec):
    data = _payload(vec)
    needed = 4 + (2 if data[0] & 1 else 0) + (4 if data[0] & 2 else 0)
    for n in range(len(data)):
        if n < needed:
            with pytest.raises(SensorError, match=r"^RSC Measurement: truncated at "):
                decode_rsc_measurement(data[:n])
            r = rsc_to_reading(data[:n])
            assert isinstance(r, Reject) and r.reason is RejectReason.DEVICE
        else:
            decode_rsc_measurement(data[:n])


def test_rsc_reading_has_no_grade_and_cadence_in_steps():
    r = rsc_to_reading(_payload(RSC[1]))  # Technogym Run: 161 /min at 3.36 m/s
    assert isinstance(r, Reading)
    assert r.grade_pct is None and r.cadence_spm == 161 and r.distance_m == 255.0
    assert r.speed_mps == pytest.approx(3.359375)


def test_rsc_strides_pods_are_doubled_and_still_range_checked():
    r = rsc_to_reading(_payload(RSC[0]), cadence_factor=2.0)  # 51 -> 102 steps/min
    assert isinstance(r, Reading) and r.cadence_spm == 102
    r = rsc_to_reading(_payload(RSC[1]), cadence_factor=2.0)  # 161 -> 322: not a human cadence
    assert isinstance(r, Reject) and r.reason is RejectReason.CADENCE_RANGE


def test_decoders_refuse_non_bytes():
    with pytest.raises(SensorError, match="expected bytes"):
        decode_treadmill_data("8c05")
    with pytest.raises(SensorError, match="expected bytes"):
        decode_rsc_measurement([1, 2, 3, 4])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_decoders_raise_only_sensor_error(data):
    for fn in (decode_treadmill_data, lambda d: decode_treadmill_data(d, partial=True), decode_rsc_measurement):
        try:
            fn(data)
        except SensorError:
            pass
    for fn in (treadmill_to_reading, rsc_to_reading):
        r = fn(data)
        assert isinstance(r, (Reading, Reject))
        if isinstance(r, Reading):
            assert r.grade_pct is None or (math.isfinite(r.grade_pct) and abs(r.grade_pct) <= 45)


# ---------------------------------------------------------------------------------------------------------------
# Notification handler and source plumbing (fake bytes, no radio)
# ---------------------------------------------------------------------------------------------------------------
def test_ftms_notification_handler_queues_decoded_readings():
    src = FtmsSource("AA:BB:CC:DD:EE:FF")
    src.handle_notification(None, bytearray(_payload(FTMS[2])))  # Life Fitness 13 %
    src.handle_notification(None, bytearray(b"\x01"))  # garbage
    items = src.read(0.0)
    assert src.notifications == 2
    assert isinstance(items[0], Reading) and items[0].grade_pct == 13.0
    assert isinstance(items[1], Reject) and items[1].reason is RejectReason.DEVICE
    assert src.read(0.0) == []


def test_notification_queue_is_bounded_and_keeps_the_newest():
    src = RscSource("AA:BB:CC:DD:EE:FF", maxlen=8)
    for i in range(50):
        src.handle_notification(None, bytes([0, 0, 1, i]))  # cadence = i
    items = src.read(0.0)
    assert [r.cadence_spm for r in items] == list(range(42, 50))


def test_handler_survives_a_decoder_bug(monkeypatch):
    src = FtmsSource("AA:BB:CC:DD:EE:FF")
    monkeypatch.setattr(src, "decode", lambda data: 1 / 0)
    src.handle_notification(None, b"\x00\x00")
    (item,) = src.read(0.0)
    assert isinstance(item, Reject) and "ZeroDivisionError" in item.detail


def test_ble_readings_flow_through_the_feed_core():
    settings_ = TempoSettings()
    calls = []

    def fallback(now_s, distance_m):
        calls.append((now_s, distance_m))
        return 172.0

    core = FeedCore(settings_, fallback)
    src = RscSource("AA:BB:CC:DD:EE:FF")
    src.handle_notification(None, _payload(RSC[1]))
    for item in src.read(0.0):
        core.handle(item, 10.0)
    # A foot pod has no grade: the tempo is the fallback's, which is told the pod's distance.
    assert core.target_bpm(10.0) == 172.0 and calls[-1] == (10.0, 255.0)
    assert core.filter.cadence_spm == 161
    ftms = FtmsSource("AA:BB:CC:DD:EE:FF")
    ftms.handle_notification(None, _payload(FTMS[1]))  # +6 % incline: a climb below the steep threshold
    for item in ftms.read(0.0):
        core.handle(item, 11.0)
    assert core.filter.level_grade_pct == 6.0 and core.target_bpm(11.0) == settings_.base_cadence_spm


def test_missing_bleak_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "bleak", None)  # makes `import bleak` raise ImportError
    with pytest.raises(SensorError) as exc:
        ble.require_bleak()
    assert str(exc.value) == BLE_MISSING == "BLE needs the optional extra: pip install 'downbeat[ble]'"
    with pytest.raises(SensorError, match="downbeat\\[ble\\]"):
        FtmsSource("AA:BB:CC:DD:EE:FF").open()


def test_close_without_open_is_harmless():
    src = RscSource("AA:BB:CC:DD:EE:FF")
    src.close(timeout_s=0.1)
    assert src.read(0.0) == []


# ---------------------------------------------------------------------------------------------------------------
# The asyncio side with a fake BleakClient (same API as bleak's; still no radio)
# ---------------------------------------------------------------------------------------------------------------
import asyncio  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from metronome import _kernels as K  # noqa: E402
from metronome.sensors import SensorFeed  # noqa: E402
from metronome.tempo import target_cadence  # noqa: E402


class FakeBleakClient:
    """Connects, delivers ``packets`` as notifications, then drops the link after ``link_s``."""

    instances: list = []
    packets: list = []
    fail_connect = False
    link_s = 0.05

    def __init__(self, address, disconnected_callback=None, services=None, *, timeout=30.0, **kw):
        self.address, self.timeout = address, timeout
        self.is_connected = False
        self.notified_uuid = None
        type(self).instances.append(self)

    async def __aenter__(self):
        if type(self).fail_connect:
            raise OSError("Device with address AA:BB:CC:DD:EE:FF was not found")
        self.is_connected = True
        return self

    async def __aexit__(self, *exc):
        self.is_connected = False

    async def start_notify(self, uuid, callback):
        self.notified_uuid = uuid
        for p in type(self).packets:
            callback(None, bytearray(p))
        asyncio.get_running_loop().call_later(type(self).link_s, self._drop)

    def _drop(self):
        self.is_connected = False

    async def stop_notify(self, uuid):
        pass


@pytest.fixture
def fake_bleak(monkeypatch):
    import bleak

    class Client(FakeBleakClient):
        instances = []
        packets = []

    monkeypatch.setattr(bleak, "BleakClient", Client)
    return Client


def _wait(pred, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def test_ble_source_subscribes_decodes_and_reconnects(fake_bleak):
    fake_bleak.packets = [_payload(FTMS[2])]
    src = FtmsSource("AA:BB:CC:DD:EE:FF", retry_s=0.1)
    src.open()
    try:
        got = []
        assert _wait(lambda: got.extend(src.read(0.01)) or len(fake_bleak.instances) >= 2)  # dropped, reconnected
        assert fake_bleak.instances[0].notified_uuid == ble.TREADMILL_DATA_UUID
        assert fake_bleak.instances[0].address == "AA:BB:CC:DD:EE:FF"
        assert got and all(isinstance(r, Reading) and r.grade_pct == 13.0 for r in got)
    finally:
        t0 = time.monotonic()
        src.close(timeout_s=5.0)
        assert time.monotonic() - t0 < 2.0 and not src._thread.is_alive()


def test_ble_connect_failure_is_reported_and_retried(fake_bleak):
    fake_bleak.fail_connect = True
    src = RscSource("AA:BB:CC:DD:EE:FF", retry_s=0.1)
    src.open()
    try:
        assert _wait(lambda: len(fake_bleak.instances) >= 2)
        assert "was not found" in src.last_error and not src.connected
    finally:
        src.close(timeout_s=5.0)


def test_ftms_url_drives_the_control_slot_end_to_end(fake_bleak):
    fake_bleak.packets = [_payload(FTMS[2])]  # Life Fitness at 13 %: above the steep threshold
    fake_bleak.link_s = 60.0
    ctl = np.zeros(K.CT_N)
    ts = TempoSettings()
    feed = SensorFeed("ftms:AA:BB:CC:DD:EE:FF", ctl, ts)
    feed.start()
    try:
        want = float(target_cadence(13.0, ts))
        assert want < ts.base_cadence_spm
        assert _wait(lambda: ctl[K.CT_TARGET_BPM] == want)
        st = feed.state()
        assert st.grade_pct == 13.0 and st.distance_m == 122 and st.speed_mps == pytest.approx(4.02 / 3.6)
    finally:
        assert feed.stop(timeout_s=5.0)


def test_rsc_url_with_strides_option(fake_bleak):
    fake_bleak.packets = [_payload(RSC[0])]  # Technogym MyRun: 51 /min
    fake_bleak.link_s = 60.0
    feed = SensorFeed("rsc:AA:BB:CC:DD:EE:FF?cadence=strides", np.zeros(K.CT_N), TempoSettings())
    feed.start()
    try:
        assert _wait(lambda: feed.state().cadence_spm == 102)
        assert fake_bleak.instances[0].notified_uuid == ble.RSC_MEASUREMENT_UUID
        st = feed.state()
        assert st.mode == "fallback" and st.status.startswith("fallback: this sensor sends no grade")
    finally:
        assert feed.stop(timeout_s=5.0)
