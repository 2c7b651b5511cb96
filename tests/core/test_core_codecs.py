"""Round trips and malformed inputs for the message, index and alert codecs."""

from __future__ import annotations

import pytest
from codec_helpers import NOW, enc_pair, sample_alert, sample_file, sample_index, signer

from four11.core import envelope as env
from four11.core.alert import MAX_ALERT, Alert, encode_alert, parse_alert
from four11.core.errors import Refusal
from four11.core.index import encode_index, parse_index
from four11.core.message import decrypt_message, parse_message, seal_message

S = signer()
RING = {S.kid: S.verify_key()}
RK, DK = enc_pair()


def seal(content=b"hello\n", **kw):
    args = dict(name="etc.motd", group="/", serial=3, created=NOW, file=sample_file(),
                content=content, recipients=[RK], signer=S)
    args.update(kw)
    return seal_message(**args)


def reason(fn, *a, **kw) -> str:
    with pytest.raises(Refusal) as e:
        fn(*a, **kw)
    return e.value.reason


def test_message_round_trip_both_aeads():
    for aead in ("AES-256-GCM", "ChaCha20-Poly1305"):
        data = seal(aead=aead)
        h = parse_message(data, RING)
        assert (h.name, h.group, h.serial, h.size) == ("etc.motd", "/", 3, 6)
        fm, content = decrypt_message(h, {DK.kid: DK})
        assert fm == sample_file() and content == b"hello\n"


def test_identical_files_give_different_ciphertexts():
    a, b = seal(), seal()
    assert parse_message(a, RING).envelope.body != parse_message(b, RING).envelope.body


def test_several_recipients_each_can_open():
    rk2, dk2 = enc_pair()
    h = parse_message(seal(recipients=[RK, rk2]), RING)
    assert decrypt_message(h, {dk2.kid: dk2})[1] == b"hello\n"
    assert decrypt_message(h, {DK.kid: DK})[1] == b"hello\n"


def test_index_and_alert_round_trip():
    idx = sample_index()
    assert parse_index(encode_index(idx, S), RING, now=NOW) == idx
    a = sample_alert()
    assert parse_alert(encode_alert(a, S), RING, now=NOW) == a


def test_alert_size_limit_enforced_when_encoding():
    with pytest.raises(ValueError, match="limit 1200"):
        encode_alert(Alert(1, [f"http://m{i}.example:8411/411.d/" for i in range(40)], ["/"], NOW,
                           NOW + 1), S)


def flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(("mutate", "want"), [
    (lambda d: d[:-1], "bad_format"),
    (lambda d: d[:20], "bad_format"),
    (lambda d: b"X" + d[1:], "bad_format"),
    (lambda d: d[:5] + b"\x02" + d[6:], "bad_format"),
    (lambda d: d[:4] + b"I" + d[5:], "bad_format"),
    (lambda d: flip(d, len(d) - 1), "bad_signature"),  # signature
    (lambda d: flip(d, len(d) - 80), "bad_signature"),  # ciphertext: body hash
    (lambda d: flip(d, 12), "bad_format"),  # inside the JSON header: no longer JSON/valid
    (lambda d: d + b"\x00", "bad_format"),
])
def test_message_malformed(mutate, want):
    assert reason(parse_message, mutate(seal()), RING) == want


def test_message_signed_by_other_key_is_unknown_key():
    other = signer()
    data = seal(signer=other)
    assert reason(parse_message, data, RING) == "unknown_key"


def test_message_over_size_limit():
    assert reason(parse_message, seal(content=b"x" * 5000), RING, max_size=1000) == "too_large"


def test_message_wrong_key_is_no_key_and_tampered_wrap_fails():
    h = parse_message(seal(), RING)
    _, other = enc_pair()
    assert reason(decrypt_message, h, {other.kid: other}) == "no_key"


def test_header_field_tamper_breaks_signature():
    data = seal()
    i = data.index(b'"serial":3')
    forged = data[:i] + b'"serial":4' + data[i + 10:]
    assert reason(parse_message, forged, RING) == "bad_signature"


def test_index_checks_order_and_reasons():
    idx = sample_index()
    data = encode_index(idx, S)
    assert reason(parse_index, data, RING, now=NOW, min_version=6) == "rollback"
    assert parse_index(data, RING, now=NOW, min_version=5).version == 5  # same version is fine
    assert reason(parse_index, data, RING, now=NOW + 3600) == "expired"
    assert reason(parse_index, flip(data, len(data) - 3), RING, now=NOW) == "bad_signature"
    assert reason(parse_index, encode_index(idx, signer()), RING, now=NOW) == "unknown_key"
    assert reason(parse_index, data, RING, now=NOW, max_size=100) == "too_large"


def test_alert_checks():
    data = encode_alert(sample_alert(), S)
    assert reason(parse_alert, data, RING, now=NOW + 3600) == "expired"
    assert reason(parse_alert, flip(data, len(data) - 3), RING, now=NOW) == "bad_signature"
    assert reason(parse_alert, data + b"x" * MAX_ALERT, RING, now=NOW) == "too_large"
    assert reason(parse_alert, encode_alert(sample_alert(), signer()), RING, now=NOW) == "unknown_key"


def test_kind_confusion_refused():
    idx = encode_index(sample_index(), S)
    assert reason(parse_alert, idx[:MAX_ALERT], RING, now=NOW) in ("bad_format",)
    alert = encode_alert(sample_alert(), S)
    assert reason(parse_index, alert, RING, now=NOW) == "bad_format"


def test_index_entry_fields_validated():
    d = env.encode(env.KIND_INDEX, {"version": 1, "created": 1, "expires": NOW + 10, "signer": S.kid,
                                    "masters": [], "entries": [{"name": "x"}]}, S)
    assert reason(parse_index, d, RING, now=NOW) == "bad_format"
    bad_file = sample_index(1).entries[0].to_json() | {"file": "../../etc/shadow"}
    d = env.encode(env.KIND_INDEX, {"version": 1, "created": 1, "expires": NOW + 10, "signer": S.kid,
                                    "masters": [], "entries": [bad_file]}, S)
    assert reason(parse_index, d, RING, now=NOW) == "bad_format"
