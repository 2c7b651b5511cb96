"""Master URLs with saturating scores (-3..+3), best first, persisted in the node state.

Configured masters always stay; masters learned from verified alerts are added with score
0 and kept in the state file, so they survive restarts. Equal scores are shuffled, so a
cluster's nodes spread over equally good masters.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from urllib.parse import urlsplit

from ..core.errors import Refusal
from ..core.source import normalize_master
from ..core.state import NodeState

log = logging.getLogger("four11.agent")

MIN_SCORE, MAX_SCORE = -3, 3
MAX_MASTERS = 16  # learned masters beyond this are not added (bounded state and metrics)


def _clamp(v: int) -> int:
    return max(MIN_SCORE, min(MAX_SCORE, v))


class Masters:
    def __init__(self, configured: list[str], state: NodeState,
                 on_change: Callable[[list[int]], None] | None = None,
                 rng: random.Random | None = None) -> None:
        self.state = state
        self.rng = rng or random.Random()
        self.on_change = on_change
        self.configured: list[str] = []
        self.set_configured(configured)

    def set_configured(self, urls: list[str]) -> None:
        self.configured = list(dict.fromkeys(normalize_master(u) for u in urls))
        changed = False
        for u in self.configured:
            if u not in self.state.masters:
                self.state.masters[u] = 0
                changed = True
        self.state.masters = {u: _clamp(s) for u, s in self.state.masters.items()}
        if changed:
            self._save()
        self._publish()

    @property
    def urls(self) -> list[str]:
        """Configured first, then learned, in a stable order (the metric label is the position)."""
        learned = [u for u in self.state.masters if u not in self.configured]
        return self.configured + learned

    def score(self, url: str) -> int:
        return self.state.masters.get(url, 0)

    def ordered(self) -> list[str]:
        urls = self.urls
        self.rng.shuffle(urls)
        return sorted(urls, key=self.score, reverse=True)  # sort is stable: ties stay shuffled

    def success(self, url: str) -> None:
        self._bump(url, +1)

    def failure(self, url: str) -> None:
        self._bump(url, -1)

    def _bump(self, url: str, delta: int) -> None:
        old = self.score(url)
        new = _clamp(old + delta)
        if new != old or url not in self.state.masters:
            self.state.masters[url] = new
            self._save()
            self._publish()

    def learn(self, urls: list[str]) -> list[str]:
        """Add http(s) masters named in a verified alert; returns the ones that were new."""
        added = []
        for raw in urls:
            try:
                u = normalize_master(raw)
            except Refusal:
                continue
            if urlsplit(u).scheme not in ("http", "https") or u in self.state.masters:
                continue
            if len(self.state.masters) >= MAX_MASTERS:
                log.warning("not adding master %s: already %d masters", u, MAX_MASTERS)
                break
            self.state.masters[u] = 0
            added.append(u)
        if added:
            self._save()
            self._publish()
            log.info("learned master(s) from a verified alert: %s", ", ".join(added))
        return added

    def _save(self) -> None:
        try:
            self.state.save()
        except OSError as e:
            log.error("cannot save master scores to %s: %s", self.state.path, e.strerror)

    def _publish(self) -> None:
        if self.on_change is not None:
            self.on_change([self.score(u) for u in self.urls])
