"""Several masters: failover inside one sync when a master is down, slow or answers
badly; saturating scores (-3..+3) that persist across restarts."""

from __future__ import annotations

import json
import time

from agent_helpers import send_unicast, wait_until

SCORE = "four11_agent_master_score"


def _alert(cluster) -> bytes:
    return sorted((cluster.master.dir / "alerts").glob("*.alert"))[-1].read_bytes()


def test_dead_master_fails_over_in_the_same_sync_and_its_score_stays_bounded(cluster2):
    c = cluster2
    c.master.publish("/etc/hosts", b"v0\n")
    c.servers[0].stop()  # master 0 refuses connections from now on
    a = c.agent()
    hosts = c.root / "etc/hosts"
    wait_until(lambda: hosts.exists() and hosts.read_bytes() == b"v0\n", what="start sync")
    assert a.value("four11_agent_syncs_total", trigger="start", result="ok") == 1
    assert a.total("four11_agent_syncs_total", result="failed") == 0
    for i in range(1, 7):
        c.master.publish("/etc/hosts", f"v{i}\n".encode())
        send_unicast(_alert(c), a.unicast_port)
        wait_until(lambda i=i: hosts.read_bytes() == f"v{i}\n".encode(), what=f"apply v{i}")
    assert a.total("four11_agent_syncs_total", result="failed") == 0
    wait_until(lambda: a.value(SCORE, master="1") == 3, what="live master at the top")
    dead = a.value(SCORE, master="0")
    assert -3 <= dead <= 0  # asked only while it was not behind the live one
    state = json.loads((c.state / "state.json").read_text())
    assert state["masters"][c.servers[0].url] == dead
    assert state["masters"][c.servers[1].url] == 3
    assert a.stop() == 0
    # scores persist: the restarted agent asks the live master first, the dead one not at all
    b = c.agent()
    wait_until(lambda: b.value("four11_agent_syncs_total", trigger="start", result="ok") == 1)
    assert b.value(SCORE, master="0") == dead
    assert b.value("four11_agent_index_refused_total", reason="fetch_failed") == 0


def test_scores_saturate_at_minus_three_and_a_returning_master_serves(cluster2):
    c = cluster2
    c.master.publish("/etc/hosts", b"v1\n")
    port1 = c.servers[1].port
    for s in c.servers:
        s.stop()
    a = c.agent()
    wait_until(lambda: a.value(SCORE, master="0") == -3 and a.value(SCORE, master="1") == -3,
               what="both dead masters at -3")
    failed = a.total("four11_agent_syncs_total", result="failed")
    a.signal(1)  # SIGHUP: one more sync, both fail again
    wait_until(lambda: a.total("four11_agent_syncs_total", result="failed") > failed)
    assert (a.value(SCORE, master="0"), a.value(SCORE, master="1")) == (-3, -3)
    assert not (c.root / "etc/hosts").exists()
    c.servers[1].start(port1)
    res = c.master.publish("/etc/hosts", b"v2\n")
    send_unicast(res.alert_file.read_bytes(), a.unicast_port)
    wait_until(lambda: (c.root / "etc/hosts").exists(), what="converge from the returning master")
    assert (c.root / "etc/hosts").read_bytes() == b"v2\n"
    assert a.value("four11_agent_syncs_total", trigger="alert", result="ok") == 1
    assert a.value(SCORE, master="1") == -2


def test_slow_master_times_out_and_the_other_serves(cluster2):
    c = cluster2
    c.master.publish("/etc/hosts", b"v1\n")
    c.servers[0].hang = True  # accepts, never answers
    c.servers[1].hang = True
    a = c.agent(read_timeout_s=0.5, connect_timeout_s=0.5)
    wait_until(lambda: a.value("four11_agent_index_refused_total", reason="fetch_failed") >= 2,
               what="both masters time out")
    assert not (c.root / "etc/hosts").exists()
    assert a.healthz()[0] == 503
    c.servers[1].hang = False
    t0 = time.monotonic()
    wait_until(lambda: (c.root / "etc/hosts").exists(), what="retry converges via the other master")
    assert time.monotonic() - t0 < 10
    assert a.value(SCORE, master="0") < a.value(SCORE, master="1")
    wait_until(lambda: a.healthz()[0] == 200)


def test_master_with_a_tampered_index_is_skipped(cluster2):
    c = cluster2
    c.master.publish("/etc/hosts", b"v1\n")
    c.servers[0].tamper["index"] = lambda b: b[:-1] + bytes([b[-1] ^ 1])  # breaks the signature
    c.state.mkdir()  # master 0 used to be the best one, so it is asked first
    (c.state / "state.json").write_text(json.dumps({"masters": {c.servers[0].url: 3}}))
    a = c.agent()
    wait_until(lambda: (c.root / "etc/hosts").exists(), what="sync from the good master")
    assert (c.root / "etc/hosts").read_bytes() == b"v1\n"
    for i in range(2, 5):
        c.master.publish("/etc/hosts", f"v{i}\n".encode())
        send_unicast(_alert(c), a.unicast_port)
        wait_until(lambda i=i: (c.root / "etc/hosts").read_bytes() == f"v{i}\n".encode())
    assert a.total("four11_agent_syncs_total", result="failed") == 0
    assert a.value(SCORE, master="0") < 3
    assert c.servers[0].count("index") >= 1
    assert a.value("four11_agent_index_refused_total", reason="bad_signature") >= 1
