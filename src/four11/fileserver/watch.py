"""The current index, its history, and the long-poll watchers waiting for a newer one.

A cheap stat loop (one lstat every ``interval_s``) notices a new index; it also works on
NFS and other shared volumes where inotify never fires for writes made on another host.
GETs of the index revalidate with the same lstat, so they never serve a stale index.
All watchers wait on one asyncio.Event that is set and replaced on each new version:
an idle watcher costs one future and one timer, no polling of its own.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
from collections import deque
from dataclasses import dataclass

from ..core.errors import Refusal
from ..core.index import DEFAULT_MAX_INDEX, peek_version
from ..core.publish import INDEX_FILE
from .store import Key, NotFound, key_of, open_below, read_fd, strong_etag

HISTORY = 4096  # index versions remembered for the nodes' lag


@dataclass(slots=True)
class Snapshot:
    version: int
    body: bytes
    etag: str
    key: Key
    mtime: float  # when the publisher wrote it: a node lacking it is behind since then


class IndexWatch:
    def __init__(self, root: str, interval_s: float = 0.2, max_size: int = DEFAULT_MAX_INDEX) -> None:
        self.root = os.path.abspath(root)
        self.path = os.path.join(self.root, INDEX_FILE)
        self.interval_s = interval_s
        self.max_size = max_size
        self.current: Snapshot | None = None
        self.error: str | None = "no index read yet"
        self.missing = True  # no index file at all (404), as opposed to a bad one (503)
        self._key: Key | None = None
        self._event = asyncio.Event()
        self._closing = False
        self._versions: deque[int] = deque(maxlen=HISTORY)
        self._seen_at: deque[float] = deque(maxlen=HISTORY)
        self._task: asyncio.Task | None = None

    # -- reading ---------------------------------------------------------------------------

    def refresh(self) -> Snapshot | None:
        """Reread the index if its file changed; wake watchers on a new version."""
        try:
            k = key_of(os.stat(self.path, follow_symlinks=False))
        except OSError as e:
            self.current, self._key, self.missing = None, None, True
            self.error = f"no index at {self.path}: {e.strerror}"
            return None
        self.missing = False
        if k == self._key:
            return self.current
        self._load()
        return self.current

    def _load(self) -> None:
        try:
            fd, st = open_below(self.root, [INDEX_FILE])
        except NotFound:
            self.current, self._key = None, None
            self.error = f"{self.path} is not a regular file"
            return
        try:
            if st.st_size > self.max_size:
                self.current, self._key = None, key_of(st)
                self.error = f"{self.path} is {st.st_size} bytes, over the index limit {self.max_size}"
                return
            body = read_fd(fd, st.st_size)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        k = key_of(st)
        if key_of(after) != k:
            return  # written in place under us; the next refresh reads it whole
        try:
            version = peek_version(body, self.max_size)
        except Refusal as r:
            self.current, self._key = None, k
            self.error = f"{self.path} does not parse: {r}"
            return
        prev = self.current
        self.current = Snapshot(version, body, strong_etag(body), k, st.st_mtime)
        self._key, self.error = k, None
        if not self._versions or version > self._versions[-1]:
            self._versions.append(version)
            self._seen_at.append(st.st_mtime)
        if prev is None or version != prev.version:
            self._wake()

    def _wake(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    def behind_since(self, have: int | None) -> float | None:
        """When the first index newer than ``have`` appeared (None: not behind/unknown)."""
        cur = self.current
        if have is None or cur is None or have >= cur.version:
            return None
        i = bisect.bisect_right(self._versions, have)
        return self._seen_at[i] if i < len(self._seen_at) else cur.mtime

    # -- watching --------------------------------------------------------------------------

    async def wait_newer(self, version: int, timeout_s: float) -> Snapshot | None:
        """The index once its version is above ``version``; None on timeout or shutdown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            cur = self.current
            if cur is not None and cur.version > version:
                return cur
            if self._closing:
                return None
            try:
                async with asyncio.timeout_at(deadline):
                    await self._event.wait()
            except TimeoutError:
                return None

    async def _run(self) -> None:
        while not self._closing:
            try:
                self.refresh()
            except OSError as e:  # e.g. the volume went away; keep watching
                self.error = f"cannot read {self.path}: {e.strerror}"
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Release every watcher (they answer 304) and stop the stat loop."""
        self._closing = True
        self._wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
