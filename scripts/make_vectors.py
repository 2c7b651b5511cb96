#!/usr/bin/env python3
"""Regenerate docs/vectors/*.json: wire-format test vectors from fixed keys and randomness.

Index and alert vectors are fully deterministic (Ed25519 signatures are). A message's
HPKE wrap is randomised by the library, so its vector ships the exact bytes and what they
must decode to; the AEAD body is deterministic given the data key and nonce listed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from four11.core import envelope
from four11.core.alert import Alert, encode_alert
from four11.core.index import Entry, Index, encode_index
from four11.core.keys import (
    KEM_HYBRID,
    KEM_X25519,
    RecipientKey,
    SigningKey,
    decryption_key_from_halves,
    key_id,
)
from four11.core.message import FileMeta, seal_message

OUT = Path(__file__).resolve().parent.parent / "docs" / "vectors"

MASTER_SEED = bytes(range(1, 33))
X25519_SEED = bytes(range(101, 133))
MLKEM_SEED = bytes(range(1, 65))
DATA_KEY = bytes([0x42] * 32)
NONCE = bytes(range(12))
CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z


def fixed_keys():
    signer = SigningKey.from_private(ed25519.Ed25519PrivateKey.from_private_bytes(MASTER_SEED))
    x = x25519.X25519PrivateKey.from_private_bytes(X25519_SEED)
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(MLKEM_SEED)
    return signer, x, m


def recipient(kem: str, x, m) -> RecipientKey:
    from cryptography.hazmat.primitives import hpke

    xr = x.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    if kem == KEM_X25519:
        return RecipientKey(KEM_X25519, x.public_key(), key_id(xr), b"")
    pub = hpke.MLKEM768X25519PublicKey(m.public_key(), x.public_key())
    return RecipientKey(KEM_HYBRID, pub, key_id(m.public_key().public_bytes_raw() + xr), b"")


def main() -> int:
    signer, x, m = fixed_keys()
    OUT.mkdir(parents=True, exist_ok=True)
    keys = {
        "master_ed25519_seed_hex": MASTER_SEED.hex(),
        "master_kid": signer.kid,
        "x25519_private_hex": X25519_SEED.hex(),
        "mlkem768_seed_hex": MLKEM_SEED.hex(),
        "x25519_kid": decryption_key_from_halves([x]).kid,
        "hybrid_kid": decryption_key_from_halves([m, x]).kid,
    }
    entries = [Entry("etc.passwd", "/", 7, 1234, "ab" * 32, "etc.passwd.7"),
               Entry("etc.auto..home", "/compute", 3, 999, "cd" * 32, "groups/compute/etc.auto..home.3")]
    idx = Index(1_767_225_600_000, CREATED, CREATED + 7 * 86400,
                ["http://frontend:8411/411.d/"], entries)
    index_bytes = encode_index(idx, signer)
    alert = Alert(idx.version, idx.masters, ["/", "/compute"], CREATED, CREATED + 3600)
    alert_bytes = encode_alert(alert, signer)
    (OUT / "index.json").write_text(json.dumps({
        "keys": keys, "now": CREATED + 60, "bytes_hex": index_bytes.hex(),
        "expect": {"version": idx.version, "created": idx.created, "expires": idx.expires,
                   "masters": idx.masters, "entries": [e.to_json() for e in entries]},
    }, indent=1) + "\n")
    (OUT / "alert.json").write_text(json.dumps({
        "keys": keys, "now": CREATED + 60, "bytes_hex": alert_bytes.hex(),
        "expect": {"version": alert.version, "masters": alert.masters, "groups": alert.groups,
                   "issued": alert.issued, "expires": alert.expires},
    }, indent=1) + "\n")
    fm = FileMeta(path="/etc/motd", uid=0, gid=0, owner="root", group="root", mode=0o644,
                  mtime=CREATED, apply="replace", comment="#")
    content = b"Welcome to the cluster.\n"
    for kem in (KEM_X25519, KEM_HYBRID):
        stream = iter([DATA_KEY, NONCE])
        data = seal_message(name="etc.motd", group="/", serial=5, created=CREATED, file=fm,
                            content=content, recipients=[recipient(kem, x, m)], signer=signer,
                            random=lambda n, s=stream: next(s))
        e = envelope.parse(data, envelope.KIND_MESSAGE, len(data))
        (OUT / f"message-{kem.lower()}.json").write_text(json.dumps({
            "keys": keys, "kem": kem, "data_key_hex": DATA_KEY.hex(), "nonce_hex": NONCE.hex(),
            "bytes_hex": data.hex(), "context_hex": e.context.hex(), "body_hex": e.body.hex(),
            "expect": {"name": "etc.motd", "group": "/", "serial": 5, "created": CREATED,
                       "file": fm.to_json(), "content_hex": content.hex()},
        }, indent=1) + "\n")
    print(f"wrote vectors to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
