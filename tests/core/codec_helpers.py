"""Building blocks for codec tests: in-memory keys and sample objects."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from four11.core.alert import Alert
from four11.core.index import Entry, Index
from four11.core.keys import (
    KEM_X25519,
    RecipientKey,
    SigningKey,
    decryption_key_from_halves,
)
from four11.core.message import FileMeta

NOW = 1_800_000_000


def signer() -> SigningKey:
    return SigningKey.from_private(ed25519.Ed25519PrivateKey.generate())


def enc_pair():
    x = x25519.X25519PrivateKey.generate()
    dk = decryption_key_from_halves([x])
    return RecipientKey(KEM_X25519, x.public_key(), dk.kid, b""), dk


def sample_index(n: int = 3) -> Index:
    entries = [Entry(f"etc.f{i}", "/", i + 1, 100 + i, f"{i:064x}", f"etc.f{i}.{i + 1}") for i in range(n)]
    return Index(5, NOW, NOW + 3600, ["http://m:8411/411.d/"], entries)


def sample_alert() -> Alert:
    return Alert(5, ["http://m:8411/411.d/"], ["/", "/compute"], NOW, NOW + 3600)


def sample_file() -> FileMeta:
    return FileMeta("/etc/motd", 1234, 1234, "u", "g", 0o640, NOW, "replace", "#")
