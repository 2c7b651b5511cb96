"""The message: one published file, signed by the master and sealed to its recipients.

meta (clear, signed, AEAD associated data): name, group, serial, created, signer,
aead, nonce, size (plaintext length).  ext: recipients [{kid, kem, wrap}] where
``wrap`` is the base64 HPKE ciphertext (enc || sealed data key).  body: AEAD ciphertext
of ``u32 len | file-meta JSON | content``.  Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from . import envelope as env
from .errors import Refusal
from .keys import KEMS, DecryptionKey, Keyring, RecipientKey, SigningKey

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
MAX_META = 64 * 1024
AEADS: dict[str, type] = {"AES-256-GCM": AESGCM, "ChaCha20-Poly1305": ChaCha20Poly1305}
APPLY_MODES = ("replace", "merge")
_U32 = struct.Struct(">I")
TAG_LEN = 16  # both AEADs append a 16-byte tag
WHAT = "message"


def _suite(kem: str) -> hpke.Suite:
    return hpke.Suite(KEMS[kem], hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True)
class FileMeta:
    """What the node needs to write the file; travels encrypted."""

    path: str
    uid: int
    gid: int
    owner: str
    group: str
    mode: int
    mtime: int
    apply: str = "replace"
    comment: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> FileMeta:
        if not isinstance(d, dict):
            raise Refusal("bad_format", "file metadata is not a JSON object")
        try:
            fm = cls(**d)
        except TypeError:
            raise Refusal("bad_format", "file metadata has missing or unknown fields") from None
        for k in ("uid", "gid", "mode", "mtime"):
            v = getattr(fm, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise Refusal("bad_format", f"file metadata {k!r} must be a non-negative integer")
        if fm.mode > 0o7777:
            raise Refusal("bad_format", f"file mode {fm.mode:o} is out of range")
        if not all(isinstance(getattr(fm, k), str) for k in ("path", "owner", "group")):
            raise Refusal("bad_format", "file metadata path/owner/group must be strings")
        if fm.apply not in APPLY_MODES:
            raise Refusal("bad_format", f"unknown apply mode {fm.apply!r}")
        if fm.comment is not None and (not isinstance(fm.comment, str) or "\n" in fm.comment):
            raise Refusal("bad_format", "comment must be a one-line string")
        return fm


@dataclass(frozen=True)
class MessageHeader:
    name: str
    group: str
    serial: int
    created: int
    size: int
    aead: str
    nonce: bytes
    recipients: list[dict[str, str]]
    envelope: env.Envelope


def seal_message(
    *,
    name: str,
    group: str,
    serial: int,
    created: int,
    file: FileMeta,
    content: bytes,
    recipients: Iterable[RecipientKey],
    signer: SigningKey,
    aead: str = "AES-256-GCM",
    random: Callable[[int], bytes] = os.urandom,
) -> bytearray:
    recips = list(recipients)
    if not recips:
        raise ValueError("a message needs at least one recipient key")
    data_key, nonce = random(32), random(12)
    meta = {
        "name": name, "group": group, "serial": serial, "created": created,
        "signer": signer.kid, "aead": aead, "nonce": nonce.hex(), "size": len(content),
    }
    context = env.build_context(env.KIND_MESSAGE, meta)
    fm = env.canonical_json(file.to_json())
    plain = b"".join((_U32.pack(len(fm)), fm, content))
    wraps = [
        {
            "kid": r.kid,
            "kem": r.kem,
            "wrap": base64.b64encode(_suite(r.kem).encrypt(data_key, r.public, info=context)).decode(),
        }
        for r in recips
    ]
    cipher = AEADS[aead](data_key)
    return env.seal_with(context, wraps, len(plain) + TAG_LEN,
                         lambda out: cipher.encrypt_into(nonce, plain, context, out), signer)


def parse_message(data: bytes, keyring: Keyring, max_size: int = DEFAULT_MAX_MESSAGE,
                  verify: bool = True) -> MessageHeader:
    """Structure, signer, signature and body hash; no decryption. Raises Refusal."""
    e = env.parse(data, env.KIND_MESSAGE, max_size, MAX_META)
    m = e.meta
    name = env.need(m, "name", str, WHAT)
    group = env.need(m, "group", str, WHAT)
    serial = env.need(m, "serial", int, WHAT)
    created = env.need(m, "created", int, WHAT)
    size = env.need(m, "size", int, WHAT)
    aead = env.need(m, "aead", str, WHAT)
    if aead not in AEADS:
        raise Refusal("bad_format", f"message uses unknown AEAD {aead!r}")
    try:
        nonce = bytes.fromhex(env.need(m, "nonce", str, WHAT))
    except ValueError:
        raise Refusal("bad_format", "message nonce is not hex") from None
    if len(nonce) != 12:
        raise Refusal("bad_format", "message nonce must be 12 bytes")
    if size > max_size or size > len(e.body):
        raise Refusal("too_large", f"message declares {size} bytes of content, limit {max_size}")
    recips = e.ext if e.ext is not None else []
    for r in recips:
        if not (isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("kid", "kem", "wrap"))):
            raise Refusal("bad_format", "message recipient entry is malformed")
    if verify:
        env.verify(e, keyring)
    return MessageHeader(name, group, serial, created, size, aead, nonce, recips, e)


def decrypt_message(h: MessageHeader, keys: dict[str, DecryptionKey]) -> tuple[FileMeta, bytes]:
    """Unwrap the data key with one of ``keys`` and open the body. Raises Refusal."""
    for r in h.recipients:
        k = keys.get(r["kid"])
        if k is None or r["kem"] != k.kem:
            continue
        try:
            wrap = base64.b64decode(r["wrap"], validate=True)
            data_key = _suite(k.kem).decrypt(wrap, k.private, info=h.envelope.context)
            body = h.envelope.body
            if len(body) < TAG_LEN:
                raise ValueError("body shorter than the AEAD tag")
            plain = bytearray(len(body) - TAG_LEN)
            AEADS[h.aead](data_key).decrypt_into(h.nonce, body, h.envelope.context, plain)
        except (InvalidTag, ValueError, binascii.Error):
            raise Refusal("decrypt_failed", f"message {h.name} does not decrypt with key {k.kid}") from None
        break
    else:
        held = ", ".join(sorted(keys)) or "none"
        wanted = ", ".join(r["kid"] for r in h.recipients) or "none"
        raise Refusal(
            "no_key",
            f"message {h.name} of group {h.group} is sealed to key {wanted}; this node holds {held}",
        )
    if len(plain) < _U32.size:
        raise Refusal("bad_format", "decrypted message is truncated")
    (fm_len,) = _U32.unpack_from(plain, 0)
    if _U32.size + fm_len > len(plain):
        raise Refusal("bad_format", "decrypted file metadata length is out of bounds")
    fm = FileMeta.from_json(env.parse_json(plain[_U32.size : _U32.size + fm_len], "file metadata", dict))
    content = bytes(memoryview(plain)[_U32.size + fm_len :])
    if len(content) != h.size:
        raise Refusal("mismatch", f"message {h.name} content is {len(content)} bytes, header says {h.size}")
    return fm, content
