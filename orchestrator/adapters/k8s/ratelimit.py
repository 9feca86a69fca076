"""A token bucket for API writes: `qps` sustained, `burst` at once (like client-go's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Tokens refill at `qps` per second up to `burst`; each write takes one.

    The clock and sleep are injected so tests run on a fake clock without waiting.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"need qps > 0 and burst >= 1, got qps={qps}, burst={burst}")
        self.qps = float(qps)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
        self._last = now

    def try_acquire(self) -> bool:
        """Take a token if one is there now."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def wait_s(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        with self._lock:
            self._refill()
            return max(0.0, (1.0 - self._tokens) / self.qps)

    def acquire(self, deadline: float | None = None) -> bool:
        """Take a token, sleeping for it, unless that would pass `deadline` (clock time)."""
        while True:
            if self.try_acquire():
                return True
            wait = self.wait_s()
            if deadline is not None and self._clock() + wait > deadline:
                return False
            self._sleep(max(wait, 1e-3))
