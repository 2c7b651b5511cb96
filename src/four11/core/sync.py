"""The node's fetch -> verify -> decrypt -> apply path, shared by ``411get`` and the agent.

One sync: fetch the index, verify it (signature, rollback, expiry), pick the messages of
this node's groups whose serial is newer than the applied one, fetch each, check it
against the index (hash, size, name, group, serial), decrypt, check the destination,
write it atomically, record the serial. Each refusal names its reason; nothing on disk
changes for a refused message.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import apply as applymod
from . import groups as grp
from . import merge as mergemod
from .errors import Refusal
from .index import DEFAULT_MAX_INDEX, Entry, Index, parse_index
from .keys import DecryptionKey, Keyring
from .message import DEFAULT_MAX_MESSAGE, FileMeta, decrypt_message, parse_message
from .names import check_allowed, message_name
from .publish import INDEX_FILE
from .source import DirSource, Fetched, HttpSource
from .state import NodeState

COMMENT_HEADER = "This file is distributed by four11 from the cluster frontend; local edits are overwritten."

Source = DirSource | HttpSource


@dataclass
class NodePolicy:
    memberships: list[str] = field(default_factory=lambda: [grp.ROOT])
    root: str = "/"
    allow_paths: list[str] = field(default_factory=lambda: ["/etc/"])
    uid_min: int = 1000
    gid_min: int = 1000
    max_message: int = DEFAULT_MAX_MESSAGE
    max_index: int = DEFAULT_MAX_INDEX

    @property
    def groups(self) -> frozenset[str]:
        return grp.accepted(self.memberships)


@dataclass
class Applied:
    entry: Entry
    meta: FileMeta


@dataclass
class SyncReport:
    index: Index | None = None
    not_modified: bool = False
    applied: list[Applied] = field(default_factory=list)
    refused: list[tuple[Entry, Refusal]] = field(default_factory=list)
    unchanged: int = 0
    nodes: int | None = None
    fetch_s: float = 0.0  # time spent waiting on the master: t in the agents' backoff

    @property
    def ok(self) -> bool:
        return not self.refused


PostApply = Callable[[Applied], Awaitable[None]]


def select(index: Index, groups: frozenset[str]) -> dict[str, Entry]:
    """For each name, the entry of the most specific group this node takes."""
    best: dict[str, Entry] = {}
    for e in index.entries:
        if e.group in groups:
            cur = best.get(e.name)
            if cur is None or grp.depth(e.group) > grp.depth(cur.group):
                best[e.name] = e
    return best


class Node:
    def __init__(self, policy: NodePolicy, keyring: Keyring, keys: dict[str, DecryptionKey],
                 state: NodeState, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.keyring = keyring
        self.keys = keys
        self.state = state
        self.clock = clock
        self.index_etag: str | None = None
        self.fetch_s = 0.0  # time spent in src.get, summed; a sync reports its share

    async def _get(self, src: Source, rel: str, max_size: int, **kw) -> Fetched:
        t0 = time.monotonic()
        try:
            return await src.get(rel, max_size, **kw)
        finally:
            self.fetch_s += time.monotonic() - t0

    # -- index -----------------------------------------------------------------------------

    def accept_index(self, data: bytes) -> Index:
        idx = parse_index(data, self.keyring, now=self.clock(),
                          min_version=self.state.index_version, max_size=self.policy.max_index)
        if idx.version > self.state.index_version:
            self.state.index_version = idx.version
            self.state.index_created = idx.created
            self.state.save()
        return idx

    async def fetch_index(self, src: Source, conditional: bool = False,
                          wait: int | None = None) -> tuple[Index | None, Fetched]:
        """The verified index, or None on 304."""
        f = await self._get(src, INDEX_FILE, self.policy.max_index,
                            etag=self.index_etag if conditional else None, wait=wait)
        if f.status == 304:
            return None, f
        idx = self.accept_index(f.body)
        self.index_etag = f.etag
        return idx, f

    # -- messages --------------------------------------------------------------------------

    def check_message(self, data: bytes, entry: Entry) -> tuple[FileMeta, bytes]:
        """Everything short of writing: index agreement, signature, decryption, path."""
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise Refusal("mismatch", f"message {entry.name} does not match the index hash/size")
        h = parse_message(data, self.keyring, self.policy.max_message)
        if (h.name, h.group, h.serial) != (entry.name, entry.group, entry.serial):
            raise Refusal(
                "mismatch",
                f"message says {h.name} {h.group} serial {h.serial}; index says "
                f"{entry.name} {entry.group} serial {entry.serial}",
            )
        if h.group not in self.policy.groups:
            raise Refusal("wrong_group", f"message {h.name} is for group {h.group}, not this node's")
        fm, content = decrypt_message(h, self.keys)
        check_allowed(fm.path, self.policy.allow_paths)
        if message_name(fm.path) != h.name:
            raise Refusal("mismatch", f"message {h.name} carries destination {fm.path}")
        return fm, content

    def render(self, fm: FileMeta, content: bytes) -> bytes:
        """The bytes the node writes: merged, or with the comment header."""
        if fm.apply == "merge":
            kind = mergemod.kind_of(fm.path)
            root = self.policy.root
            local = applymod.read_current(root, fm.path) or b""
            id_min = self.policy.uid_min if kind in ("passwd", "shadow") else self.policy.gid_min
            ids = None
            if kind in mergemod.ID_SOURCE:
                id_path = fm.path.rsplit("/", 1)[0] + "/" + mergemod.ID_SOURCE[kind]
                ids = (applymod.read_current(root, id_path) or b"").decode(errors="replace")
            try:
                return mergemod.merge(kind, local.decode(), content.decode(), id_min, ids).encode()
            except UnicodeDecodeError:
                raise Refusal("bad_format", f"{fm.path} is not UTF-8 text") from None
        if fm.comment:
            return f"{fm.comment} {COMMENT_HEADER}\n".encode() + content
        return content

    async def fetch_message(self, src: Source, entry: Entry) -> tuple[FileMeta, bytes]:
        if entry.size > self.policy.max_message:
            raise Refusal("too_large",
                          f"message {entry.name} is {entry.size} bytes, limit {self.policy.max_message}")
        f = await self._get(src, entry.file, entry.size)
        return self.check_message(f.body, entry)

    async def apply_entry(self, src: Source, entry: Entry) -> Applied:
        applied = self.state.applied_serial(entry.group, entry.name)
        if entry.serial < applied:
            raise Refusal("stale_serial",
                          f"{entry.name} serial {entry.serial} is older than applied {applied}")
        fm, content = await self.fetch_message(src, entry)
        data = self.render(fm, content)
        applymod.write_atomic(self.policy.root, fm.path, data, uid=fm.uid, gid=fm.gid,
                              mode=fm.mode, mtime=fm.mtime)
        self.state.record(entry.group, entry.name, entry.serial)
        self.state.save()
        return Applied(entry, fm)

    async def sync(self, src: Source, *, conditional: bool = False,
                   post_apply: PostApply | None = None,
                   index: Index | None = None) -> SyncReport:
        """Bring this node up to the master's index. Index refusals raise; per-message
        refusals are collected in the report and leave their files untouched."""
        rep = SyncReport()
        fetched_before = self.fetch_s
        try:
            return await self._sync(src, rep, conditional, post_apply, index)
        finally:
            rep.fetch_s = self.fetch_s - fetched_before

    async def _sync(self, src: Source, rep: SyncReport, conditional: bool,
                    post_apply: PostApply | None, index: Index | None) -> SyncReport:
        if index is None:
            index, f = await self.fetch_index(src, conditional)
            rep.nodes = f.nodes
            if index is None:
                rep.not_modified = True
                return rep
        rep.index = index
        for name, entry in sorted(select(index, self.policy.groups).items()):
            if entry.serial == self.state.applied_serial(entry.group, name):
                rep.unchanged += 1
                continue
            try:
                a = await self.apply_entry(src, entry)
            except Refusal as r:
                rep.refused.append((entry, r))
                continue
            rep.applied.append(a)
            if post_apply is not None:
                await post_apply(a)
        return rep

    def find(self, index: Index, name: str) -> Entry:
        """The entry a node would take for ``name`` (most specific of its groups)."""
        chosen = select(index, self.policy.groups).get(name)
        if chosen is not None:
            return chosen
        others = sorted(e.group for e in index.entries if e.name == name)
        if others:
            raise Refusal("wrong_group",
                          f"{name} is published only for group {', '.join(others)}, not this node's")
        raise Refusal("fetch_failed", f"no message named {name} in index version {index.version}")


def node_from_dirs(policy: NodePolicy, keys_dir: Path, state_dir: Path,
                   clock: Callable[[], float] = time.time) -> Node:
    from .keys import load_keyring, load_node_keys

    return Node(policy, load_keyring(keys_dir), load_node_keys(keys_dir),
                NodeState.load(state_dir), clock)
