"""One scheduler for every trigger (start, alert, watch, poll, retry).

Requests coalesce: while a sync is pending, a new request can only move it earlier or
raise the version it must reach, so an alert and a watch wake-up for the same version
cause one fetch. Syncs never run concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# run(trigger, target_version) -> True when the node is now up to date
SyncFn = Callable[[str, int | None], Awaitable[bool]]


class Scheduler:
    def __init__(self, run: SyncFn, have: Callable[[], int]) -> None:
        self._run = run
        self._have = have  # the index version whose messages are all applied
        self._wake = asyncio.Event()
        self._pending = False
        self._due = 0.0
        self._target: int | None = None
        self._trigger = ""
        self.running = False
        self._closed = False
        self.idle = asyncio.Event()
        self.idle.set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def request(self, trigger: str, version: int | None = None, delay: float = 0.0) -> bool:
        """Ask for a sync within ``delay`` seconds, to reach ``version`` (None: just check).
        Returns False when the version is already applied."""
        if version is not None and version <= self._have():
            return False
        due = self._now() + max(0.0, delay)
        if self._pending:
            if due < self._due:  # the sync is now this request's doing
                self._due, self._trigger = due, trigger
            if version is not None:
                self._target = max(self._target or 0, version)
        else:
            self._pending, self._due, self._target, self._trigger = True, due, version, trigger
        self.idle.clear()
        self._wake.set()
        return True

    @property
    def pending(self) -> bool:
        return self._pending

    def close(self) -> None:
        """No sync starts after this; run_forever returns at its next wake-up."""
        self._closed = True
        self._pending = False
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closed:
                wait = self._due - self._now()
                if wait > 0:
                    # an earlier request sets _wake and shortens the wait (a timer, not
                    # wait_for, which can swallow a cancellation on 3.11)
                    timer = asyncio.get_running_loop().call_later(wait, self._wake.set)
                    try:
                        await self._wake.wait()
                    finally:
                        timer.cancel()
                    self._wake.clear()
                    continue
                trigger, target = self._trigger, self._target
                self._pending, self._target = False, None
                if target is not None and target <= self._have():
                    continue
                self.running = True
                try:
                    await self._run(trigger, target)
                finally:
                    self.running = False
            self.idle.set()
