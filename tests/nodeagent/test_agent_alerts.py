"""Bad alerts never cause a fetch, and each is counted with its reason; verified alerts
teach the agent new masters; the verification budget keeps a flood from one source away
from everyone else's alerts."""

from __future__ import annotations

import json
import time

from agent_helpers import StaticServer, send_unicast, wait_until
from cryptography.hazmat.primitives.asymmetric import ed25519

from four11.core.alert import Alert, encode_alert
from four11.core.keys import SigningKey, load_keyring, load_signing_key
from four11.nodeagent.listener import AlertGate
from four11.nodeagent.ratelimit import VerifyBudget

M = "four11_agent_alerts_received_total"


def _alert(signer: SigningKey, version: int, masters: list[str], groups=("/",), ttl: int = 600,
           issued: int | None = None) -> bytes:
    now = int(time.time()) if issued is None else issued
    return encode_alert(Alert(version, masters, list(groups), now, now + ttl), signer)


def test_bad_alerts_cause_no_fetch_and_count_their_reason(cluster, master_keys):
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent()
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: hosts.exists() and a.value("four11_agent_applied_index_version") > 0)
    have = int(a.value("four11_agent_applied_index_version"))
    signer = load_signing_key(master_keys / "master.key")
    genuine_old = sorted((cluster.master.dir / "alerts").glob("*.alert"))[-1].read_bytes()
    other = SigningKey.from_private(ed25519.Ed25519PrivateKey.generate())
    impostor = SigningKey(ed25519.Ed25519PrivateKey.generate(), signer.kid)  # claims the master's id
    urls = [cluster.server.url]
    cases = {
        "garbage": (b"\x00" * 300, "refused", "bad_format"),
        "oversized": (b"F411A" + b"x" * 1500, "refused", "too_large"),
        "wrong key": (_alert(other, have + 5, urls), "refused", "unknown_key"),
        "forged signature": (_alert(impostor, have + 5, urls), "refused", "bad_signature"),
        "expired": (_alert(signer, have + 5, urls, ttl=60, issued=int(time.time()) - 3600),
                    "refused", "expired"),
        "replayed": (genuine_old, "refused", "replay"),
        "other group": (_alert(signer, have + 5, urls, groups=["/nas"]), "ignored", "other_groups"),
    }
    before = len(cluster.server.log)
    for data, _, _ in cases.values():
        send_unicast(data, a.unicast_port)
    for name, (_, result, reason) in cases.items():
        wait_until(lambda r=result, w=reason: a.value(M, channel="unicast", result=r, reason=w) == 1,
                   what=f"{name} counted as {result}/{reason}")
    time.sleep(0.5)  # a fetch, if one had been scheduled, would have started by now
    assert cluster.server.log[before:] == []
    assert a.value(M, channel="unicast", result="accepted", reason="none") == 0
    assert hosts.read_bytes() == b"v1\n"


def test_verified_alert_teaches_a_new_master_that_survives_restart(cluster, tmp_path, master_keys):
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent()
    wait_until(lambda: (cluster.root / "etc/hosts").exists())
    other = StaticServer(cluster.master.dir).start()
    try:
        res = cluster.master.publish("/etc/hosts", b"v2\n")
        signer = load_signing_key(master_keys / "master.key")
        send_unicast(_alert(signer, res.index_version, [cluster.server.url, other.url]), a.unicast_port)
        wait_until(lambda: (cluster.root / "etc/hosts").read_bytes() == b"v2\n", what="alerted apply")
        assert a.value("four11_agent_masters_learned_total") == 1
        state = json.loads((cluster.state / "state.json").read_text())
        assert other.url in state["masters"]
        assert a.stop() == 0
        cluster.server.stop()  # only the learned master is left
        b = cluster.agent()
        cluster.master.publish("/etc/hosts", b"v3\n")
        b.signal(1)  # SIGHUP: reload also syncs
        wait_until(lambda: (cluster.root / "etc/hosts").read_bytes() == b"v3\n", what="sync via learned")
        assert other.count("index") >= 1
    finally:
        other.close()


def test_flood_from_one_source_does_not_starve_another(master_keys):
    signer = load_signing_key(master_keys / "master.key")
    ring = load_keyring(master_keys)
    impostor = SigningKey(ed25519.Ed25519PrivateKey.generate(), signer.kid)
    gate = AlertGate(ring, lambda: 10, VerifyBudget(per_source=5, total=100))
    forged = [_alert(impostor, 100 + i, ["http://m/"]) for i in range(50)]
    verdicts = [gate.check(f, "10.0.0.9") for f in forged]
    assert {v.reason for v in verdicts} == {"bad_signature", "rate_limited"}
    assert sum(v.reason == "bad_signature" for v in verdicts) <= 10  # the burst, no more
    assert all(v.scope == "source" for v in verdicts if v.result == "dropped")
    good = gate.check(_alert(signer, 11, ["http://m/"]), "10.0.0.1")
    assert (good.result, good.reason, good.alert.version) == ("accepted", "none", 11)
    again = gate.check(_alert(signer, 11, ["http://m/"]), "10.0.0.9")  # cached: no check needed
    assert again.result != "dropped"


def test_global_budget_caps_checks_from_many_sources(master_keys):
    signer = load_signing_key(master_keys / "master.key")
    impostor = SigningKey(ed25519.Ed25519PrivateKey.generate(), signer.kid)
    gate = AlertGate(load_keyring(master_keys), lambda: 0, VerifyBudget(per_source=5, total=20))
    verdicts = [gate.check(_alert(impostor, 5, ["http://m/"]), f"10.1.{i // 250}.{i % 250}")
                for i in range(500)]
    checked = sum(v.reason == "bad_signature" for v in verdicts)
    assert 20 <= checked <= 45  # burst of 2 s worth plus what refills while the loop runs
    assert sum(v.scope == "global" for v in verdicts) == 500 - checked
