"""The shipped test vectors (docs/vectors) decode as docs/protocol.md says; index and
alert vectors re-encode to the exact same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from four11.core.alert import Alert, encode_alert, parse_alert
from four11.core.index import Entry, Index, encode_index, parse_index
from four11.core.keys import SigningKey, decryption_key_from_halves
from four11.core.message import decrypt_message, parse_message

VEC = Path(__file__).resolve().parents[2] / "docs" / "vectors"


def load(name: str) -> dict:
    return json.loads((VEC / name).read_text())


def signer(v: dict) -> SigningKey:
    seed = bytes.fromhex(v["keys"]["master_ed25519_seed_hex"])
    return SigningKey.from_private(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def test_index_vector_decodes_and_reencodes_exactly():
    v = load("index.json")
    s = signer(v)
    assert s.kid == v["keys"]["master_kid"]
    data = bytes.fromhex(v["bytes_hex"])
    idx = parse_index(data, {s.kid: s.verify_key()}, now=v["now"])
    exp = v["expect"]
    assert (idx.version, idx.created, idx.expires, idx.masters) == (
        exp["version"], exp["created"], exp["expires"], exp["masters"])
    assert [e.to_json() for e in idx.entries] == exp["entries"]
    rebuilt = Index(idx.version, idx.created, idx.expires, idx.masters,
                    [Entry(**e) for e in exp["entries"]])
    assert encode_index(rebuilt, s) == data


def test_alert_vector_decodes_and_reencodes_exactly():
    v = load("alert.json")
    s = signer(v)
    data = bytes.fromhex(v["bytes_hex"])
    a = parse_alert(data, {s.kid: s.verify_key()}, now=v["now"])
    assert a == Alert(**v["expect"])
    assert encode_alert(a, s) == data
    assert len(data) <= 1200


@pytest.mark.parametrize("name", ["message-x25519.json", "message-mlkem768_x25519.json"])
def test_message_vector_verifies_and_decrypts(name):
    v = load(name)
    s = signer(v)
    k = v["keys"]
    x = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(k["x25519_private_hex"]))
    if v["kem"] == "X25519":
        dk = decryption_key_from_halves([x])
        assert dk.kid == k["x25519_kid"]
    else:
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes.fromhex(k["mlkem768_seed_hex"]))
        dk = decryption_key_from_halves([m, x])
        assert dk.kid == k["hybrid_kid"]
    data = bytes.fromhex(v["bytes_hex"])
    h = parse_message(data, {s.kid: s.verify_key()})
    exp = v["expect"]
    assert (h.name, h.group, h.serial, h.created) == (exp["name"], exp["group"], exp["serial"],
                                                      exp["created"])
    fm, content = decrypt_message(h, {dk.kid: dk})
    assert fm.to_json() == exp["file"]
    assert content == bytes.fromhex(exp["content_hex"])
    # The AEAD layer is deterministic given the listed data key and nonce.
    assert h.envelope.context.hex() == v["context_hex"]
    plain = AESGCM(bytes.fromhex(v["data_key_hex"])).decrypt(
        bytes.fromhex(v["nonce_hex"]), bytes.fromhex(v["body_hex"]), h.envelope.context)
    assert plain.endswith(content)
