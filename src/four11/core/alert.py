"""The alert: one signed UDP datagram saying "index version V is out, from these masters".

Pure: no I/O. At most 1,200 bytes so it never fragments.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import envelope as env
from .errors import Refusal
from .keys import Keyring, SigningKey

MAX_ALERT = 1200
DEFAULT_ALERT_TTL_S = 3600
WHAT = "alert"


@dataclass(frozen=True)
class Alert:
    version: int  # index version it announces
    masters: list[str]
    groups: list[str]
    issued: int
    expires: int


def encode_alert(a: Alert, signer: SigningKey) -> bytes:
    meta = {"version": a.version, "masters": list(a.masters), "groups": sorted(set(a.groups)),
            "issued": a.issued, "expires": a.expires, "signer": signer.kid}
    data = env.encode(env.KIND_ALERT, meta, signer)
    if len(data) > MAX_ALERT:
        raise ValueError(f"alert would be {len(data)} bytes, limit {MAX_ALERT}: too many masters or groups")
    return data


def parse_alert(data: bytes, keyring: Keyring, *, now: float, verify: bool = True) -> Alert:
    """Size, magic, key id and expiry before the signature, so forgeries cost little."""
    a, e = check_alert(data, keyring, now=now, check_signer=verify)
    if verify:
        env.verify(e, keyring)
    return a


def check_alert(data: bytes, keyring: Keyring, *, now: float,
                check_signer: bool = True) -> tuple[Alert, env.Envelope]:
    """The cheap checks of parse_alert, without the signature: a receiver that budgets its
    signature checks calls ``envelope.verify(e, keyring)`` itself afterwards."""
    e = env.parse(data, env.KIND_ALERT, MAX_ALERT)
    m = e.meta
    a = Alert(
        version=env.need(m, "version", int, WHAT),
        masters=env.need_str_list(m, "masters", WHAT, 32),
        groups=env.need_str_list(m, "groups", WHAT, 256),
        issued=env.need(m, "issued", int, WHAT),
        expires=env.need(m, "expires", int, WHAT),
    )
    if check_signer:
        env.signer_of(e, keyring)
    if a.expires <= now:
        raise Refusal("expired", f"alert for index {a.version} expired at {a.expires}")
    return a, e
