"""bleak-based BLE sources (transport).  The notification decoders are :mod:`.ble_protocol`."""

from __future__ import annotations

import asyncio
import collections
import threading

from ..errors import SensorError
from .protocol import Reject, RejectReason
from .ble_protocol import (BLE_MISSING, RSC_MEASUREMENT_UUID, TREADMILL_DATA_UUID,
                           rsc_to_reading, treadmill_to_reading)

# --------------------------------------------------------------------------------------------------------------
# bleak sources
# --------------------------------------------------------------------------------------------------------------
def require_bleak():
    """Import bleak or raise :class:`SensorError` with the install hint."""
    try:
        import bleak  # noqa: F401
    except ImportError:
        raise SensorError(BLE_MISSING) from None
    return bleak


class _BleSource:
    """A notification subscription run in a private asyncio thread, read by the sensor thread.

    The notification callback only decodes and appends to a bounded deque (``maxlen``: a stalled reader loses the
    oldest items, never memory); :meth:`read` pops whatever is there.  ``deque.append``/``popleft`` are atomic in
    CPython, and this hand-off is between two non-audio threads, so no lock is involved anywhere near audio.
    """

    char_uuid = ""
    name = "BLE"

    def __init__(self, address: str, *, connect_timeout_s: float = 20.0, retry_s: float = 3.0, maxlen: int = 256):
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.retry_s = retry_s
        self._q: collections.deque = collections.deque(maxlen=maxlen)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = False
        self.last_error: str | None = None
        self.notifications = 0

    # -- decoding (pure, tested with real vectors) --------------------------------------------------------------
    def decode(self, data: bytes):
        raise NotImplementedError

    def handle_notification(self, _characteristic, data) -> None:
        """bleak notification callback: decode and queue (never raises)."""
        self.notifications += 1
        try:
            item = self.decode(bytes(data))
        except Exception as exc:  # a decoder bug must not kill bleak's loop
            item = Reject(RejectReason.DEVICE, f"{self.name}: {exc!r}")
        self._q.append(item)
        self._wake.set()

    # -- source protocol --------------------------------------------------------------------------------------
    def open(self) -> None:
        require_bleak()
        self._stop.clear()
        self._thread = threading.Thread(target=self._thread_main, name=f"downbeat-{self.name}", daemon=True)
        self._thread.start()

    def read(self, timeout_s: float) -> list:
        if not self._q:
            self._wake.wait(timeout_s)
        self._wake.clear()
        out = []
        while self._q:
            out.append(self._q.popleft())
        return out

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(lambda: None)  # wake the loop so it sees the stop flag
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- asyncio side ------------------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        finally:
            loop.close()

    async def _run(self) -> None:
        from bleak import BleakClient

        while not self._stop.is_set():
            try:
                async with BleakClient(self.address, timeout=self.connect_timeout_s) as client:
                    await client.start_notify(self.char_uuid, self.handle_notification)
                    self.connected = True
                    self.last_error = None
                    while client.is_connected and not self._stop.is_set():
                        await asyncio.sleep(0.1)
                    if client.is_connected:
                        await client.stop_notify(self.char_uuid)
            except Exception as exc:  # connection failures are reported in the status line, then retried
                self.last_error = f"{self.name} {self.address}: {exc}"
            finally:
                self.connected = False
            # Back off before reconnecting, but wake at once on stop.
            for _ in range(int(self.retry_s / 0.1)):
                if self._stop.is_set():
                    return
                await asyncio.sleep(0.1)


class FtmsSource(_BleSource):
    """FTMS treadmill (Treadmill Data 0x2ACD): inclination -> grade, speed, total distance."""

    char_uuid = TREADMILL_DATA_UUID
    name = "FTMS"

    def decode(self, data: bytes):
        return treadmill_to_reading(data)


class RscSource(_BleSource):
    """RSC foot pod (RSC Measurement 0x2A53): cadence, speed, distance; no grade."""

    char_uuid = RSC_MEASUREMENT_UUID
    name = "RSC"

    def __init__(self, address: str, *, cadence_factor: float = 1.0, **kw):
        super().__init__(address, **kw)
        self.cadence_factor = cadence_factor

    def decode(self, data: bytes):
        return rsc_to_reading(data, self.cadence_factor)
