"""One publish round: read the list, publish what changed, forget what left the list.

Used by the service and by ``411 commit``/``411 restart`` without a running service. All
writing goes through core.publish.Four11Dir (the code behind 411put), so a round lands
in its order: messages, then the index, then the alert. Rounds of several processes are
serialised by a lock in the state dir.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import groups as grp
from ..core.errors import Refusal
from ..core.fsutil import locked
from ..core.index import Index
from ..core.message import FileMeta
from ..core.names import message_name
from ..core.publish import Four11Dir, PutItem, default_master_url, read_item
from .config import PublisherConfig
from .filelist import expand_spec
from .metrics import SOURCE_REASONS, PublisherMetrics
from .state import Key, Published, fingerprint, load_state, save_state

log = logging.getLogger("four11.publisher")
LOCK_FILE = ".lock"
SIBLINGS = {"shadow": "passwd", "gshadow": "group"}


@dataclass
class Round:
    """What a round did; ``errors`` are one-line reasons about single sources."""

    published: list[str] = field(default_factory=list)  # "group name serial"
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    index_version: int | None = None
    resigned: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        return {"ok": self.ok, "published": self.published, "unchanged": self.unchanged,
                "removed": self.removed, "errors": self.errors, "index_version": self.index_version,
                "resigned": self.resigned}

    def summary(self) -> str:
        what = (f"{len(self.published)} published, {self.unchanged} unchanged, "
                f"{len(self.removed)} removed, {len(self.errors)} errors")
        return f"{what}; index version {self.index_version}"


class Engine:
    def __init__(self, config: PublisherConfig, metrics: PublisherMetrics | None = None,
                 clock=time.time) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.resign_due = 0.0  # when the index on disk gets old enough to re-sign (0: unknown)

    @property
    def settings(self) -> dict:
        return self.config.settings

    @property
    def state_dir(self) -> Path:
        return Path(self.settings["state_dir"])

    def four11dir(self) -> Four11Dir:
        """A fresh one per round, so replaced key files are picked up without a restart."""
        s = self.settings
        d = Four11Dir(Path(s["four11_dir"]), Path(s["keys_dir"]),
                      master_urls=list(s["master_urls"]) or None,
                      index_expiry_s=s["index_expiry_s"], clock=self.clock)
        if not s["master_urls"] and d.current_index() is None:
            d.master_urls = [default_master_url(s["urldir"])]
        return d

    def _lock(self):
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return locked(self.state_dir / LOCK_FILE)

    # -- rounds ----------------------------------------------------------------------------

    def commit(self, force: bool = False) -> Round:
        """Publish every entry whose content or metadata changed (all of them if ``force``:
        re-encrypt and re-sign everything, and alert). Raises on a failure that stops the
        whole round (keys, disk); per-source problems end up in ``Round.errors``."""
        t0 = time.monotonic()
        rnd = Round()
        try:
            with self._lock():
                self._commit_locked(rnd, force)
        except Exception:
            self._count("error")
            raise
        wrote = bool(rnd.published or rnd.removed or rnd.resigned)
        if self.metrics is not None and wrote:
            self.metrics.duration.observe(time.monotonic() - t0)
        self._count("ok" if wrote else "unchanged")
        return rnd

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.publishes.labels(result).inc()
            if result != "error":
                self.metrics.last_success.set(self.clock())

    def _source_error(self, rnd: Round, what: str, r: Refusal) -> None:
        rnd.errors.append(f"{what}: {r}")
        log.warning("cannot publish %s: %s", what, r)
        if self.metrics is not None:
            reason = r.reason if r.reason in SOURCE_REASONS else "bad_format"
            self.metrics.source_errors.labels(reason).inc()

    def _commit_locked(self, rnd: Round, force: bool) -> None:
        d = self.four11dir()
        state = load_state(self.state_dir)
        idx = d.current_index()
        indexed = {(e.group, e.name): e.serial for e in idx.entries} if idx else {}
        produced: dict[Key, str] = {}  # key -> origin
        held: set[Key] = set()  # keys whose source failed: keep what is published
        failed_origins: set[str] = set()
        work: list[tuple[PutItem, FileMeta, bytes]] = []
        fps: dict[Key, str] = {}
        for spec in self.config.files:
            try:
                items = expand_spec(spec)
            except Refusal as r:
                failed_origins.add(spec.source)
                self._source_error(rnd, f"{spec.source} (line {spec.line})", r)
                continue
            for item in items:
                key = (grp.normalize(item.group), message_name(item.dest))
                if key in produced:
                    self._source_error(rnd, str(item.source), Refusal(
                        "bad_path", f"{item.dest} in group {key[0]} is already published from "
                                    f"{produced[key]}"))
                    continue
                produced[key] = spec.source
                try:
                    fm, content = read_item(item)
                except Refusal as r:
                    held.add(key)
                    self._source_error(rnd, str(item.source), r)
                    continue
                fp = fingerprint(fm, content, d.recipient(key[0]).kid, d.signer.kid)
                prev = state.get(key)
                if (not force and prev is not None and prev.fingerprint == fp
                        and indexed.get(key) == prev.serial):
                    rnd.unchanged += 1
                    continue
                work.append((item, fm, content))
                fps[key] = fp
        # Entries this publisher made whose list entry is gone (and did not just fail).
        gone = [k for k, p in state.items()
                if k not in produced and k not in held and p.origin not in failed_origins]
        for k in gone:
            state.pop(k)
        drop = [k for k in gone if k in indexed]  # not if 411put or an admin replaced it
        if drop:
            d.remove(drop)
            rnd.removed = [f"{g} {n}" for g, n in drop]
            log.info("removed %d messages that left the file list", len(drop))
        if work:
            res = d.put([], prepared=work, alert=True)
            for e in res.entries:
                state[(e.group, e.name)] = Published(fps[(e.group, e.name)], e.serial,
                                                     produced[(e.group, e.name)])
                rnd.published.append(f"{e.group} {e.name} {e.serial}")
            if self.metrics is not None:
                self.metrics.published.inc(len(res.entries))
            log.info("published %d messages, index version %d", len(res.entries), res.index_version)
        elif force:
            d.resign(alert=True, groups=[grp.ROOT])  # re-alert even with an empty list
            rnd.resigned = True
        save_state(self.state_dir, state)
        self._observe(d.current_index(), rnd)

    def resign_if_due(self) -> Round | None:
        """Re-sign the index (new version, new expiry) once it is ``resign_s`` old."""
        with self._lock():
            d = self.four11dir()
            idx = d.current_index()
            if idx is None:  # nothing to re-sign until the first publish
                self.resign_due = self.clock() + self.settings["poll_s"] * 100
                return None
            if idx.created > self.clock() - self.settings["resign_s"]:
                self._observe(idx, Round())  # someone else (411put) may have signed it
                return None
            d.resign()
            rnd = Round(resigned=True)
            self._observe(d.current_index(), rnd)
        log.info("re-signed the index: version %s", rnd.index_version)
        self._count("ok")
        return rnd

    def observe(self) -> None:
        """Set the index gauges and the re-sign time from the index on disk (at start)."""
        with contextlib.suppress(Refusal, OSError):
            self._observe(self.four11dir().current_index(), Round())

    def _observe(self, idx: Index | None, rnd: Round) -> None:
        if idx is None:
            return
        rnd.index_version = idx.version
        self.resign_due = idx.created + self.settings["resign_s"]
        if self.metrics is not None:
            self.metrics.index_version.set(idx.version)
            self.metrics.index_expiry.set(idx.expires)
            self.metrics.messages.set(len(idx.entries))


def snapshot(config: PublisherConfig) -> tuple:
    """Cheap stat snapshot of every source; a change in it
    triggers a round, which then decides by fingerprint what really changed."""
    out: list[tuple] = []

    def add(p: str) -> None:
        try:
            st = os.stat(p)
        except OSError as e:
            out.append((p, e.errno))
            return
        out.append((p, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode,
                    st.st_uid, st.st_gid))

    for spec in config.files:
        if os.path.isdir(spec.source):
            for root, dirs, files in os.walk(spec.source):
                dirs.sort()
                add(root)
                for f in sorted(files):
                    add(os.path.join(root, f))
        else:
            add(spec.source)
            sibling = SIBLINGS.get(os.path.basename(spec.source))
            if sibling:  # shadow is filtered by the names in passwd next to it
                add(os.path.join(os.path.dirname(spec.source), sibling))
    return tuple(out)
