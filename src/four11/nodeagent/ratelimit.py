"""Token buckets for alert signature checks: one per source address, one global.

Signature checks are the only expensive step for a datagram, so they are what is
budgeted. A flood from some addresses uses up their own buckets, not the global one, and
a genuine alert from another address still gets checked.
"""

from __future__ import annotations

from collections import OrderedDict


class Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class VerifyBudget:
    """``allow(source, now)`` -> None when a check may run, else "source" or "global".
    ``total=None``: no global bucket."""

    def __init__(self, per_source: float, total: float | None, max_sources: int = 4096) -> None:
        self.per_source = per_source
        self.total = total
        self.max_sources = max_sources  # bounded: spoofed addresses cannot grow memory
        self._sources: OrderedDict[str, Bucket] = OrderedDict()
        self._global: Bucket | None = None

    def allow(self, source: str, now: float) -> str | None:
        b = self._sources.get(source)
        if b is None:
            if len(self._sources) >= self.max_sources:
                self._sources.popitem(last=False)
            b = self._sources[source] = Bucket(self.per_source, max(1.0, 2 * self.per_source), now)
        else:
            self._sources.move_to_end(source)
        if not b.take(now):
            return "source"
        if self.total is None:
            return None
        if self._global is None:
            self._global = Bucket(self.total, max(1.0, 2 * self.total), now)
        if not self._global.take(now):
            return "global"
        return None
