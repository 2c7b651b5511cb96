"""Random and mutated bytes into every parser: only Refusal ever escapes."""

from __future__ import annotations

from codec_helpers import NOW, enc_pair, sample_alert, sample_file, sample_index, signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from four11.core.alert import encode_alert, parse_alert
from four11.core.errors import Refusal
from four11.core.index import encode_index, parse_index
from four11.core.message import decrypt_message, parse_message, seal_message

S = signer()
RING = {S.kid: S.verify_key()}
RK, DK = enc_pair()
SEEDS = {
    "message": seal_message(name="etc.motd", group="/", serial=1, created=NOW, file=sample_file(),
                            content=b"content\n" * 4, recipients=[RK], signer=S),
    "index": encode_index(sample_index(), S),
    "alert": encode_alert(sample_alert(), S),
}


def run_parser(kind: str, data: bytes) -> None:
    try:
        if kind == "message":
            h = parse_message(data, RING, verify=False)
            decrypt_message(h, {DK.kid: DK})
            parse_message(data, RING)
        elif kind == "index":
            parse_index(data, RING, now=NOW, verify=False)
            parse_index(data, RING, now=NOW)
        else:
            parse_alert(data, RING, now=NOW, verify=False)
            parse_alert(data, RING, now=NOW)
    except Refusal:
        pass


kinds = st.sampled_from(sorted(SEEDS))
fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(kinds, st.binary(max_size=2048))
def test_random_bytes(kind, data):
    run_parser(kind, data)


@fuzz
@given(kinds, st.data())
def test_mutated_valid_bytes(kind, data):
    b = bytearray(SEEDS[kind])
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del b[pos: pos + data.draw(st.integers(1, 64))]
        elif op == "insert":
            b[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif b:
            b[pos] = data.draw(st.integers(0, 255))
    run_parser(kind, bytes(b))


@fuzz
@given(st.sampled_from(sorted(SEEDS)), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_length_fields(kind, meta_len, body_len):
    b = bytearray(SEEDS[kind])
    b[6:10] = meta_len.to_bytes(4, "big")
    run_parser(kind, bytes(b))
    b = bytearray(SEEDS[kind])
    off = 10 + int.from_bytes(SEEDS[kind][6:10], "big")
    off += 4 + int.from_bytes(SEEDS[kind][off:off + 4], "big")
    b[off:off + 8] = body_len.to_bytes(8, "big")
    run_parser(kind, bytes(b))
