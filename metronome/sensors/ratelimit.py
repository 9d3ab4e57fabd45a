"""Flood control: a token bucket on an injected clock, applied before any parsing."""

from __future__ import annotations

from ..errors import SensorError

class TokenBucket:
    """Classic token bucket on an injected clock: at most ``burst`` at once, ``rate_hz`` sustained.

    50 msgs/s is an order of magnitude above any real sensor (treadmills notify at 1-4 Hz) and far below what
    would cost the machine anything.
    """

    __slots__ = ("rate_hz", "burst", "tokens", "last_s")

    def __init__(self, rate_hz: float = 50.0, burst: float = 50.0):
        if not (rate_hz > 0 and burst >= 1):
            raise SensorError(f"rate limit: rate {rate_hz!r}/s, burst {burst!r} must be > 0 and >= 1")
        self.rate_hz = float(rate_hz)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last_s: float | None = None

    def take(self, now_s: float) -> bool:
        if self.last_s is not None and now_s > self.last_s:
            self.tokens = min(self.burst, self.tokens + (now_s - self.last_s) * self.rate_hz)
        if self.last_s is None or now_s > self.last_s:
            self.last_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
