"""Publishing into a 411 dir: messages, then the signed index, then the pre-signed alert.

The one implementation behind ``411put`` and the publisher service. Every publish runs
under an exclusive lock on ``<411dir>/.lock``, so concurrent runs never lose an index
entry. Order makes a crash harmless: a new message lands under a new file name (the
serial is part of it) before the index names it, the index is replaced atomically, and
files no index names are removed later. The fileserver never serves dot-files.
"""

from __future__ import annotations

import grp as unix_grp
import hashlib
import os
import pwd
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import groups as grp
from . import merge as mergemod
from .alert import DEFAULT_ALERT_TTL_S, Alert, encode_alert, parse_alert
from .errors import Refusal
from .fsutil import TMP_PREFIX, atomic_write, locked
from .index import DEFAULT_EXPIRY_S, Entry, Index, encode_index, parse_index
from .keys import RecipientKey, SigningKey, load_signing_key, recipient_for_group
from .message import FileMeta, seal_message
from .names import chroot_dest, message_file, message_name

INDEX_FILE = "index"
ALERT_DIR = "alerts"
LOCK_FILE = ".lock"
ALERT_SUFFIX = ".alert"
GC_GRACE_S = 600  # keep superseded messages this long for nodes mid-sync on the old index
DEFAULT_URLDIR = "/411.d/"


def default_master_url(urldir: str = DEFAULT_URLDIR, port: int = 8411) -> str:
    path = "/" + urldir.strip("/") + "/" if urldir.strip("/") else "/"
    return f"http://{socket.getfqdn()}:{port}{path}"


@dataclass
class PutItem:
    """One file to publish."""

    source: Path
    dest: str
    group: str = grp.ROOT
    comment: str | None = None
    apply: str = "replace"
    uid: int | None = None  # owner override; default: the source file's
    gid: int | None = None
    perm: int | None = None  # mode override; default: the source file's
    id_min: int = 1000  # merge mode: entries below stay on the master


@dataclass
class PutResult:
    index_version: int
    entries: list[Entry] = field(default_factory=list)
    alert_file: Path | None = None


def default_apply(dest: str) -> str:
    """passwd, group, shadow and gshadow in /etc merge; everything else replaces."""
    d, _, base = dest.rpartition("/")
    return "merge" if d == "/etc" and base in mergemod.MERGEABLE else "replace"


def expand(sources: Iterable[Path], chroot: str | None, **kw) -> list[PutItem]:
    """PutItems for files and (recursively) every regular file below directories."""
    items: list[PutItem] = []
    for s in sources:
        s = Path(os.path.abspath(s))
        if s.is_dir():
            files = sorted(p for p in s.rglob("*") if p.is_file() and not p.is_symlink())
        elif s.is_file():
            files = [s]
        else:
            raise Refusal("io_error", f"{s} is not a regular file or directory")
        for f in files:
            dest = chroot_dest(str(f), chroot)
            apply = kw.get("apply") or default_apply(dest)
            items.append(PutItem(source=f, dest=dest, **{**kw, "apply": apply}))
    return items


def _names(uid: int, gid: int) -> tuple[str, str]:
    try:
        owner = pwd.getpwuid(uid).pw_name
    except KeyError:
        owner = str(uid)
    try:
        group = unix_grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return owner, group


def read_item(item: PutItem) -> tuple[FileMeta, bytes]:
    """Read the source and build what the node will write."""
    try:
        fd = os.open(item.source, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            content = f.read()
    except OSError as e:
        raise Refusal("io_error", f"cannot read {item.source}: {e.strerror}") from None
    uid = st.st_uid if item.uid is None else item.uid
    gid = st.st_gid if item.gid is None else item.gid
    comment = item.comment
    if item.apply == "merge":
        kind = mergemod.kind_of(item.dest)
        id_text = None
        if kind in mergemod.ID_SOURCE:
            sibling = item.source.with_name(mergemod.ID_SOURCE[kind])
            id_text = sibling.read_text() if sibling.exists() else None
        try:
            content = mergemod.filter_master(kind, content.decode(), item.id_min, id_text).encode()
        except UnicodeDecodeError:
            raise Refusal("bad_format", f"{item.source} is not UTF-8 text") from None
        comment = None  # headers in these files break tools at boot
    owner, group = _names(uid, gid)
    fm = FileMeta(
        path=item.dest, uid=uid, gid=gid, owner=owner, group=group,
        mode=(st.st_mode & 0o7777) if item.perm is None else item.perm,
        mtime=int(st.st_mtime), apply=item.apply, comment=comment,
    )
    return fm, content


class Four11Dir:
    """The master's message directory."""

    def __init__(
        self,
        path: Path,
        keys_dir: Path | None = None,
        *,
        signer: SigningKey | None = None,
        master_urls: list[str] | None = None,
        index_expiry_s: int = DEFAULT_EXPIRY_S,
        alert_ttl_s: int = DEFAULT_ALERT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.keys_dir = Path(keys_dir) if keys_dir else None
        if signer is None:
            if self.keys_dir is None:
                raise ValueError("need a signer or a keys dir")
            signer = load_signing_key(self.keys_dir / "master.key")
        self.signer = signer
        self.keyring = {signer.kid: signer.verify_key()}
        self.master_urls = master_urls
        self.index_expiry_s = index_expiry_s
        self.alert_ttl_s = alert_ttl_s
        self.clock = clock
        self._recipients: dict[str, RecipientKey] = {}

    # -- reading ---------------------------------------------------------------------------

    def current_index(self) -> Index | None:
        try:
            data = (self.path / INDEX_FILE).read_bytes()
        except FileNotFoundError:
            return None
        return parse_index(data, self.keyring, now=self.clock(), check_expiry=False)

    def set_recipient(self, group: str, key: RecipientKey) -> None:
        """Encrypt messages of ``group`` to ``key`` instead of the keys dir's choice."""
        self._recipients[grp.normalize(group)] = key

    def recipient(self, group: str) -> RecipientKey:
        if group not in self._recipients:
            if self.keys_dir is None:
                raise ValueError("need a keys dir to encrypt")
            self._recipients[group] = recipient_for_group(self.keys_dir, group)
        return self._recipients[group]

    # -- writing ---------------------------------------------------------------------------

    def put(self, items: list[PutItem], *, alert: bool = True,
            prepared: list[tuple[PutItem, FileMeta, bytes]] | None = None) -> PutResult:
        """Publish items (read now, or ``prepared``) and sign a new index."""
        work = prepared if prepared is not None else [(it, *read_item(it)) for it in items]
        self.path.mkdir(parents=True, exist_ok=True)
        with locked(self.path / LOCK_FILE):
            self._clean_temps()
            old = self.current_index()
            entries = {(e.group, e.name): e for e in (old.entries if old else [])}
            now = self.clock()
            changed: list[Entry] = []
            for item, fm, content in work:
                group = grp.normalize(item.group)
                name = message_name(fm.path)
                prev = entries.get((group, name))
                serial = max((prev.serial + 1) if prev else 1, int(now * 1000))
                data = seal_message(
                    name=name, group=group, serial=serial, created=int(now), file=fm,
                    content=content, recipients=[self.recipient(group)], signer=self.signer,
                )
                rel = message_file(group, name, serial)
                target = self.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data, 0o644)
                e = Entry(name, group, serial, len(data), hashlib.sha256(data).hexdigest(), rel)
                entries[(group, name)] = e
                changed.append(e)
            version = self._write_index(old, list(entries.values()), now)
            alert_file = None
            if alert:
                alert_file = self._write_alert(version, self._masters(old), {e.group for e in changed}, now)
            self._collect_garbage(entries.values(), now)
        return PutResult(version, changed, alert_file)

    def resign(self, *, alert: bool = False, groups: Iterable[str] = ()) -> PutResult:
        """A new index version with the same entries and a fresh expiry (daily re-sign, or
        re-alert for ``411 restart``)."""
        with locked(self.path / LOCK_FILE):
            old = self.current_index()
            now = self.clock()
            version = self._write_index(old, list(old.entries) if old else [], now)
            alert_file = (
                self._write_alert(version, self._masters(old), set(groups), now) if alert else None
            )
        return PutResult(version, [], alert_file)

    def remove(self, names: Iterable[tuple[str, str]]) -> PutResult:
        """Drop (group, name) entries from the index (the node keeps its copy)."""
        drop = {(grp.normalize(g), n) for g, n in names}
        with locked(self.path / LOCK_FILE):
            old = self.current_index()
            now = self.clock()
            keep = [e for e in (old.entries if old else []) if (e.group, e.name) not in drop]
            version = self._write_index(old, keep, now)
            self._collect_garbage(keep, now)
        return PutResult(version)

    def _masters(self, old: Index | None) -> list[str]:
        if self.master_urls:
            return list(self.master_urls)
        if old and old.masters:
            return list(old.masters)
        return [default_master_url()]

    def _write_index(self, old: Index | None, entries: list[Entry], now: float) -> int:
        # Time-based versions stay increasing even if the 411 dir is wiped and rebuilt.
        version = max((old.version + 1) if old else 1, int(now * 1000))
        idx = Index(version, int(now), int(now) + self.index_expiry_s, self._masters(old), entries)
        atomic_write(self.path / INDEX_FILE, encode_index(idx, self.signer), 0o644)
        return version

    def _write_alert(self, version: int, masters: list[str], groups: set[str], now: float) -> Path:
        spool = self.path / ALERT_DIR
        spool.mkdir(mode=0o755, exist_ok=True)
        prev = self.newest_alert()
        if prev is not None and prev.issued > now - self.alert_ttl_s:
            groups |= set(prev.groups)  # a node that missed the earlier alert still hears it
        a = Alert(version, masters, sorted(groups or {grp.ROOT}),
                  int(now), int(now) + self.alert_ttl_s)
        target = spool / f"{version}{ALERT_SUFFIX}"
        atomic_write(target, encode_alert(a, self.signer), 0o644)
        for p in spool.glob(f"*{ALERT_SUFFIX}"):
            if p != target:
                p.unlink(missing_ok=True)
        return target

    def newest_alert(self) -> Alert | None:
        for p in sorted((self.path / ALERT_DIR).glob(f"*{ALERT_SUFFIX}"), reverse=True):
            try:
                return parse_alert(p.read_bytes(), self.keyring, now=0)
            except (Refusal, OSError):
                continue
        return None

    def _clean_temps(self) -> None:
        """Under the lock no other writer runs, so every temp file is a killed run's."""
        for p in self.path.rglob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)

    def _collect_garbage(self, live: Iterable[Entry], now: float) -> None:
        keep = {e.file for e in live}
        for p in list(self.path.rglob("*")):
            rel = p.relative_to(self.path).as_posix()
            if not p.is_file() or rel == INDEX_FILE or rel.startswith((ALERT_DIR + "/", ".")):
                continue
            if rel in keep or p.name.startswith("."):
                continue
            try:
                if p.stat().st_mtime < now - GC_GRACE_S:
                    p.unlink()
            except FileNotFoundError:
                pass
