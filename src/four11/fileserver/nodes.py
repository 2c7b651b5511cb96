"""Which node holds which index version, from the X-Four11-Node / X-Four11-Have headers.

In memory only, bounded: past ``max_nodes`` the node seen longest ago is forgotten. The
distinct count over 24 h is the agents' cluster-size estimate (their backoff window), so
it is recomputed at most once a second, not on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DAY_S = 24 * 3600.0
MAX_NODE_ID = 255
DEFAULT_MAX_NODES = 100_000


def valid_node_id(v: str) -> bool:
    return 0 < len(v) <= MAX_NODE_ID and v.isprintable()


def parse_have(v: str | None) -> int | None:
    if v is None or not v.isdigit() or len(v) > 19:  # non-negative int64
        return None
    return int(v)


class NodeTracker:
    def __init__(self, max_nodes: int = DEFAULT_MAX_NODES, clock: Callable[[], float] = time.time):
        self.max_nodes = max_nodes
        self.clock = clock
        # node id -> [last seen, index version it holds or None]; oldest first
        self._nodes: OrderedDict[str, list] = OrderedDict()
        self._count = 0
        self._count_at = -1.0
        self._header = "1"

    def seen(self, node: str, have: int | None, now: float) -> None:
        rec = self._nodes.get(node)
        if rec is None:
            self._nodes[node] = [now, have]
            self._count_at = -1.0  # a new node shows in the next answer
            if len(self._nodes) > self.max_nodes:
                self._nodes.popitem(last=False)
            return
        rec[0] = now
        if have is not None:
            rec[1] = have
        self._nodes.move_to_end(node)

    def count(self, now: float, window_s: float = DAY_S) -> int:
        """Distinct nodes seen within ``window_s`` (cached for one second for the 24 h one)."""
        if window_s == DAY_S and now - self._count_at < 1.0:
            return self._count
        cutoff = now - window_s
        stale = 0
        for rec in self._nodes.values():  # oldest first: stop at the first recent one
            if rec[0] >= cutoff:
                break
            stale += 1
        n = len(self._nodes) - stale
        if window_s == DAY_S:
            self._count, self._count_at = n, now
        return n

    def header_value(self, now: float) -> str:
        if now - self._count_at >= 1.0:
            self._header = str(max(1, self.count(now)))
        return self._header

    def items(self) -> list[tuple[str, float, int | None]]:
        return [(k, v[0], v[1]) for k, v in self._nodes.items()]

    def __len__(self) -> int:
        return len(self._nodes)
