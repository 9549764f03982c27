"""Token-bucket flood control for what a channel sends.

IRC servers throttle or disconnect clients that send faster than they read: ngircd processes
three commands and about 256 bytes per second of a client and makes it wait beyond that
(``conn.c``: ``MAX_COMMANDS``, ``maxbps = COMMAND_LEN / 2``); ircd-hybrid and solanum disconnect
with "Excess Flood" once a client's unread queue passes a few kilobytes. A bucket in lines and one
in bytes, both refilled continuously, keep a long reply under both kinds of limit while a short
one goes out at once (the burst).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

__all__ = ["TokenBucket", "FloodControl"]


@dataclass
class TokenBucket:
    """``capacity`` tokens at rest, ``rate`` more per second; ``wait(n)`` returns how long to
    wait until ``n`` tokens are there (0 when they are), and takes them."""

    capacity: float
    rate: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate <= 0:
            raise ValueError("a token bucket needs a positive capacity and rate")
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float, now: float | None = None) -> float:
        """Take ``amount`` tokens (at most the capacity), going into debt if needed; the seconds
        until the debt is paid off."""
        now = time.monotonic() if now is None else now
        self._refill(now)
        self.tokens -= min(amount, self.capacity)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass
class FloodControl:
    """Paces lines to the server: at most ``burst_lines`` / ``burst_bytes`` at once, then
    ``lines_per_s`` and ``bytes_per_s``."""

    burst_lines: int = 4
    lines_per_s: float = 2.0
    burst_bytes: int = 1024
    bytes_per_s: float = 240.0
    lines: TokenBucket = field(init=False)
    bytes: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.lines = TokenBucket(self.burst_lines, self.lines_per_s)
        self.bytes = TokenBucket(self.burst_bytes, self.bytes_per_s)

    async def pace(self, size: int) -> None:
        """Wait until a line of ``size`` bytes may be sent."""
        now = time.monotonic()
        delay = max(self.lines.take(1, now), self.bytes.take(size, now))
        if delay > 0:
            await asyncio.sleep(delay)
