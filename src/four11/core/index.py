"""The signed index: version, validity window, master URLs and every message's digest.

Pure: no I/O. A node accepts an index only if it verifies, is not expired and its version
is not lower than the one it already accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import envelope as env
from . import groups as grp
from .errors import ConfigError, Refusal
from .keys import Keyring, SigningKey

DEFAULT_MAX_INDEX = 16 * 1024 * 1024
DEFAULT_EXPIRY_S = 7 * 24 * 3600
WHAT = "index"
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Entry:
    name: str
    group: str
    serial: int
    size: int
    sha256: str
    file: str  # path of the message relative to the 411 dir / URL dir

    def to_json(self) -> dict:
        return {"name": self.name, "group": self.group, "serial": self.serial,
                "size": self.size, "sha256": self.sha256, "file": self.file}


@dataclass(frozen=True)
class Index:
    version: int
    created: int
    expires: int
    masters: list[str]
    entries: list[Entry]

    def find(self, name: str, group: str) -> Entry | None:
        for e in self.entries:
            if e.name == name and e.group == group:
                return e
        return None


def encode_index(idx: Index, signer: SigningKey) -> bytes:
    meta = {
        "version": idx.version, "created": idx.created, "expires": idx.expires,
        "signer": signer.kid, "masters": list(idx.masters),
        "entries": [e.to_json() for e in sorted(idx.entries, key=lambda e: (e.group, e.name))],
    }
    return env.encode(env.KIND_INDEX, meta, signer)


def _entry(d: object) -> Entry:
    if not isinstance(d, dict):
        raise Refusal("bad_format", "index entry is not an object")
    e = Entry(
        name=env.need(d, "name", str, "index entry"),
        group=env.need(d, "group", str, "index entry"),
        serial=env.need(d, "serial", int, "index entry"),
        size=env.need(d, "size", int, "index entry"),
        sha256=env.need(d, "sha256", str, "index entry"),
        file=env.need(d, "file", str, "index entry"),
    )
    if not _SHA.match(e.sha256):
        raise Refusal("bad_format", f"index entry {e.name} has a malformed sha256")
    try:
        canonical = grp.normalize(e.group)
    except ConfigError:
        canonical = None
    if canonical != e.group:
        raise Refusal("bad_format", f"index entry {e.name} has an invalid or non-canonical group")
    if e.file.startswith("/") or ".." in e.file.split("/") or "\x00" in e.file:
        raise Refusal("bad_format", f"index entry {e.name} has an unsafe file path")
    return e


def parse_index(
    data: bytes,
    keyring: Keyring,
    *,
    now: float,
    min_version: int = 0,
    max_size: int = DEFAULT_MAX_INDEX,
    verify: bool = True,
    check_expiry: bool = True,
) -> Index:
    """Cheap checks, then rollback and expiry, then the signature. Raises Refusal."""
    e = env.parse(data, env.KIND_INDEX, max_size)
    m = e.meta
    version = env.need(m, "version", int, WHAT)
    created = env.need(m, "created", int, WHAT)
    expires = env.need(m, "expires", int, WHAT)
    masters = env.need_str_list(m, "masters", WHAT)
    raw_entries = env.need(m, "entries", list, WHAT)
    if verify:
        env.signer_of(e, keyring)
    if version < min_version:
        raise Refusal("rollback", f"index version {version} is lower than accepted {min_version}")
    if check_expiry and expires <= now:
        raise Refusal("expired", f"index version {version} expired at {expires} (now {int(now)})")
    if verify:
        env.verify(e, keyring)
    entries = [_entry(d) for d in raw_entries]
    if len({(x.group, x.name) for x in entries}) != len(entries):
        raise Refusal("bad_format", "index names the same message twice")
    return Index(version, created, expires, masters, entries)


def peek_version(data: bytes, max_size: int = DEFAULT_MAX_INDEX) -> int:
    """The version of an index without verifying it (for the keyless fileserver)."""
    return env.need(env.parse(data, env.KIND_INDEX, max_size).meta, "version", int, WHAT)
