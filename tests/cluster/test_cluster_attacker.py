"""An attacker on the same bridge: forged alerts, replayed alerts, a rogue server announced
by a forged alert, a man in the middle serving an older signed index (rollback) and
another group's message (mix-and-match). No node changes a file; each refusal shows in
the agents' metrics with its reason."""

from __future__ import annotations

from rogue import RogueServer, forged_alert, send_udp

from four11.core.index import parse_index
from four11.core.keys import load_verify_key
from four11.core.publish import INDEX_FILE
from four11.testing.cluster import MCAST, PORT, metric_sum, wait_until

CONF = "/etc/cluster.conf"


def _counts(cluster, name: str, **labels: str) -> dict[str, float]:
    return {n.name: metric_sum(n.metrics(), name, **labels) for n in cluster.nodes}


def _wait_all_grew(cluster, before: dict[str, float], name: str, what: str, timeout: float = 40,
                   **labels: str) -> None:
    late: list[str] = []

    def grown() -> bool:
        now = _counts(cluster, name, **labels)
        late[:] = [k for k, v in before.items() if now[k] <= v]
        return not late

    try:
        wait_until(grown, timeout, f"every node to count {what}", interval=0.5)
    except TimeoutError as e:
        raise AssertionError(f"{e}; not counted on {', '.join(late)}") from None


def test_attacker_cannot_change_a_file(cluster, tmp_path):
    c = cluster
    x, xaddr = c.attacker_ns, c.net.hosts["x"]
    old = c.publish(CONF, b"genuine 1\n")
    c.publish("/etc/exports", b"/srv nas(rw)\n", group="/nas")  # another group's message
    c.wait_converged(old, timeout=30)
    old_tree = c.snapshot_411(tmp_path / "old-411")
    old_alert = c.alert_bytes()
    cur = c.publish(CONF, b"genuine 2\n")
    c.wait_converged(cur, timeout=30)
    before = {n.name: n.files() for n in c.nodes}
    learned = _counts(c, "four11_agent_masters_learned_total")

    # forged and replayed alerts, by multicast and to every node's unicast port (the alerter
    # sends no unicast here, so the unicast counts are the attacker's alone)
    rogue = RogueServer(x, xaddr, PORT, tmp_path / "empty").start()
    try:
        evil = [f"http://{xaddr}:{PORT}/411.d/"]
        counted = {r: _counts(c, "four11_agent_alerts_received_total", channel="unicast", reason=r)
                   for r in ("unknown_key", "bad_signature", "replay")}
        for data in (forged_alert(cur.version + 10, evil),
                     forged_alert(cur.version + 10, evil, c.keys / "master.pub"),
                     old_alert, c.alert_bytes()):
            send_udp(x, xaddr, data, (MCAST, PORT))
            for n in c.nodes:
                send_udp(x, xaddr, data, (n.addr, PORT))
        for reason, b in counted.items():
            _wait_all_grew(c, b, "four11_agent_alerts_received_total", f"a {reason} alert",
                           channel="unicast", reason=reason)
        assert rogue.log == [], "a node asked the server a forged alert announced"
        assert _counts(c, "four11_agent_masters_learned_total") == learned
    finally:
        rogue.close()

    # man in the middle: the primary is down and the attacker answers for the secondary
    m1, m2 = c.masters
    x_mac = c.net.mac("x")
    c.stop_master(m1, ["fileserver"])
    c.net.take_over("m2", "x")
    mitm = RogueServer(x, m2.addr, PORT, old_tree).start()
    try:
        rollback = _counts(c, "four11_agent_index_refused_total", reason="rollback")
        _wait_all_grew(c, rollback, "four11_agent_index_refused_total", "a rollback", reason="rollback")

        # mix-and-match: the genuine new index, but the /compute message's bytes are the
        # /nas group's message
        mismatch = _counts(c, "four11_agent_files_total", result="refused", reason="mismatch")
        new = c.publish("/etc/compute.conf", b"for /compute only\n", group="/compute")
        vk = load_verify_key(c.keys / "master.pub")
        idx = parse_index((c.four11 / INDEX_FILE).read_bytes(), {vk.kid: vk}, now=0, check_expiry=False)
        by_group = {e.group: e for e in idx.entries}
        nas = (c.four11 / by_group["/nas"].file).read_bytes()
        mitm.tamper[by_group["/compute"].file] = lambda: nas
        mitm.root = c.four11  # only now: the genuine message must never be served
        _wait_all_grew(c, mismatch, "four11_agent_files_total", "a mix-and-match refusal",
                       result="refused", reason="mismatch")
        assert {n.name: n.files() for n in c.nodes} == before, "a node changed a file"
    finally:
        mitm.close()
        c.net.give_back("m2", "x", x_mac)
        c.start_master(m1, ["fileserver"])
        m1.procs["fileserver"].wait_ready()
    c.wait_converged(new, timeout=60)
