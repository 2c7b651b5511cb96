"""The signed envelope shared by messages, the index and alerts. Pure: no I/O.

Layout (all integers big-endian)::

    magic     4  b"F411"
    kind      1  b"M" message, b"I" index, b"A" alert
    version   1  1
    meta_len  4  u32
    meta         UTF-8 JSON object                       <- context ends here
    ext_len   4  u32
    ext          UTF-8 JSON array (message recipients; empty for I and A)
    body_len  8  u64
    body_hash 32 SHA-256 of the body                      <- signed part ends here
    body         body_len bytes (message ciphertext; empty for I and A)
    signature 64 Ed25519 over the signed part

The signature covers exact bytes and binds the body through its hash, so the body is
hashed once and never signed twice. ``context`` (magic..meta) is the AEAD associated
data and the HPKE ``info`` of a message.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature

from .errors import Refusal
from .keys import Keyring, SigningKey

MAGIC = b"F411"
VERSION = 1
KIND_MESSAGE, KIND_INDEX, KIND_ALERT = b"M", b"I", b"A"
KIND_NAMES = {KIND_MESSAGE: "message", KIND_INDEX: "index", KIND_ALERT: "alert"}
SIG_LEN = 64
HASH_LEN = 32
_PRE = struct.Struct(">4scBI")  # magic, kind, version, meta_len
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
MIN_LEN = _PRE.size + _U32.size + _U64.size + HASH_LEN + SIG_LEN


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Envelope:
    kind: bytes
    meta: dict[str, Any]
    ext: Any
    context: bytes  # magic..meta
    signed: bytes  # magic..body_hash
    body: memoryview  # a view into the parsed bytes: a large body is never copied
    body_hash: bytes
    signature: bytes


def build_context(kind: bytes, meta: dict[str, Any]) -> bytes:
    m = canonical_json(meta)
    return _PRE.pack(MAGIC, kind, VERSION, len(m)) + m


def seal(context: bytes, ext: Any, body: bytes, signer: SigningKey) -> bytearray:
    """Finish an envelope whose context was built with build_context."""
    def fill(out: memoryview) -> None:
        out[:] = body

    return seal_with(context, ext, len(body), fill, signer)


def seal_with(context: bytes, ext: Any, body_len: int, fill: Callable[[memoryview], None],
              signer: SigningKey) -> bytearray:
    """Like seal, but ``fill`` writes the body straight into the output buffer (no copy of a
    large body: the AEAD encrypts into place, then the body is hashed once)."""
    e = canonical_json(ext) if ext is not None else b""
    head = context + _U32.pack(len(e)) + e + _U64.pack(body_len)
    signed_len = len(head) + HASH_LEN
    buf = bytearray(signed_len + body_len + SIG_LEN)
    view = memoryview(buf)
    view[: len(head)] = head
    body = view[signed_len : signed_len + body_len]
    fill(body)
    view[len(head) : signed_len] = hashlib.sha256(body).digest()
    view[signed_len + body_len :] = signer.sign(bytes(view[:signed_len]))
    body.release()
    view.release()
    return buf


def encode(kind: bytes, meta: dict[str, Any], signer: SigningKey, ext: Any = None,
           body: bytes = b"") -> bytes:
    return bytes(seal(build_context(kind, meta), ext, body, signer))


def parse_json(data: bytes, what: str, want: type) -> Any:
    try:
        v = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refusal("bad_format", f"{what} is not valid UTF-8 JSON") from None
    if not isinstance(v, want):
        raise Refusal("bad_format", f"{what} is not a JSON {want.__name__}")
    return v


def parse(data: bytes, kind: bytes, max_len: int, max_meta: int | None = None) -> Envelope:
    """Cheap structural checks only: no signature, no body hash. Raises Refusal."""
    what = KIND_NAMES[kind]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Refusal("bad_format", f"{what} is not bytes")
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) > max_len:
        raise Refusal("too_large", f"{what} is {len(data)} bytes, limit {max_len}")
    if len(data) < MIN_LEN:
        raise Refusal("bad_format", f"{what} is truncated ({len(data)} bytes)")
    magic, k, version, meta_len = _PRE.unpack_from(data, 0)
    if magic != MAGIC:
        raise Refusal("bad_format", f"{what} does not start with the four11 magic")
    if version != VERSION:
        raise Refusal("bad_format", f"{what} has unsupported format version {version}")
    if k != kind:
        raise Refusal("bad_format", f"expected a {what}, got kind {k!r}")
    limit = max_meta if max_meta is not None else max_len
    if meta_len > limit or _PRE.size + meta_len + _U32.size > len(data):
        raise Refusal("bad_format", f"{what} header length {meta_len} is out of bounds")
    off = _PRE.size + meta_len
    context = data[:off]
    (ext_len,) = _U32.unpack_from(data, off)
    off += _U32.size
    if off + ext_len + _U64.size + HASH_LEN + SIG_LEN > len(data):
        raise Refusal("bad_format", f"{what} recipient block length {ext_len} is out of bounds")
    ext_bytes = data[off : off + ext_len]
    off += ext_len
    (body_len,) = _U64.unpack_from(data, off)
    off += _U64.size
    body_hash = data[off : off + HASH_LEN]
    off += HASH_LEN
    if off + body_len + SIG_LEN != len(data):
        raise Refusal("bad_format", f"{what} body length {body_len} disagrees with its size")
    meta = parse_json(context[_PRE.size :], f"{what} header", dict)
    ext = parse_json(ext_bytes, f"{what} recipient block", list) if ext_len else None
    return Envelope(
        kind=kind, meta=meta, ext=ext, context=context, signed=data[:off],
        body=memoryview(data)[off : off + body_len], body_hash=body_hash,
        signature=data[off + body_len :],
    )


def signer_of(env: Envelope, keyring: Keyring) -> None:
    """The cheap half of verification: the signer's key id must be one we trust."""
    kid = env.meta.get("signer")
    if not isinstance(kid, str) or kid not in keyring:
        raise Refusal(
            "unknown_key",
            f"{KIND_NAMES[env.kind]} is signed by unknown key {str(kid)[:32]!r} "
            f"(trusted: {', '.join(sorted(keyring)) or 'none'})",
        )


def verify(env: Envelope, keyring: Keyring) -> None:
    """Signature over the signed part, then the body against its signed hash."""
    signer_of(env, keyring)
    try:
        keyring[env.meta["signer"]].public.verify(env.signature, env.signed)
    except InvalidSignature:
        raise Refusal(
            "bad_signature",
            f"{KIND_NAMES[env.kind]} signature does not verify with master key "
            f"{env.meta['signer']}",
        ) from None
    if hashlib.sha256(env.body).digest() != env.body_hash:
        raise Refusal("bad_signature", f"{KIND_NAMES[env.kind]} body does not match its signed hash")


# ---- field helpers shared by the codecs --------------------------------------------------


def need(meta: dict[str, Any], key: str, typ: type | tuple[type, ...], what: str) -> Any:
    v = meta.get(key)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise Refusal("bad_format", f"{what} field {key!r} is missing or has the wrong type")
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        raise Refusal("bad_format", f"{what} field {key!r} is negative")
    return v


def need_str_list(meta: dict[str, Any], key: str, what: str, max_items: int = 1000) -> list[str]:
    v = need(meta, key, list, what)
    if len(v) > max_items or not all(isinstance(x, str) for x in v):
        raise Refusal("bad_format", f"{what} field {key!r} must be a list of strings")
    return v
