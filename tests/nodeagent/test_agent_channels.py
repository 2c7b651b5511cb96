"""Alerts (unicast, multicast), the long-poll watch and the poller each bring a new
publish to a running agent; the start pulls everything without any alert."""

from __future__ import annotations

import os
import stat
import time

import pytest
from agent_helpers import (
    RealFileServer,
    free_udp_port,
    node_headers,
    send_multicast,
    send_unicast,
    wait_until,
)


def _content(path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def test_start_pulls_everything_and_reports_its_version(cluster):
    cluster.master.publish("/etc/hosts", b"10.0.0.1 head\n", mode=0o640, uid=0, gid=4)
    cluster.master.publish("/etc/slurm.conf", b"ClusterName=c\n", group="/compute", mode=0o644)
    cluster.master.publish("/etc/exports", b"/nas\n", group="/nas")  # not this node's group
    a = cluster.agent()
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(cluster.root / "etc/slurm.conf") == b"ClusterName=c\n", what="start sync")
    st = os.stat(hosts)
    assert hosts.read_bytes() == b"10.0.0.1 head\n"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 4)
    assert not (cluster.root / "etc/exports").exists()
    assert not any("nas" in p for p in cluster.server.paths())  # another group's file is never fetched
    version = cluster.master.d.current_index().version
    wait_until(lambda: a.value("four11_agent_applied_index_version") == version)
    assert a.value("four11_agent_files_total", result="applied", reason="none") == 2
    assert a.value("four11_agent_syncs_total", trigger="start", result="ok") == 1
    assert a.healthz()[0] == 200
    # the next request names the node and the version it holds
    cluster.master.publish("/etc/hosts", b"10.0.0.2 head\n")
    send_unicast(_alert(cluster), a.unicast_port)
    wait_until(lambda: _content(hosts) == b"10.0.0.2 head\n", what="alerted sync")
    heads = node_headers(cluster.server)
    assert heads[0] == ("node-1", None)
    assert ("node-1", str(version)) in heads
    assert a.stop() == 0


def _alert(cluster) -> bytes:
    spool = sorted((cluster.master.dir / "alerts").glob("*.alert"))
    return spool[-1].read_bytes()


def test_unicast_alert_applies_within_one_second(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent()
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
    cluster.master.publish("/etc/hosts", b"v2\n")
    t0 = time.monotonic()
    send_unicast(_alert(cluster), a.unicast_port)
    wait_until(lambda: _content(hosts) == b"v2\n", timeout=10, step=0.005, what="alerted apply")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"applied {elapsed:.3f} s after the alert"
    assert a.value("four11_agent_alerts_received_total", channel="unicast", result="accepted",
                   reason="none") == 1
    assert a.value("four11_agent_syncs_total", trigger="alert", result="ok") == 1


def test_multicast_alert_applies_within_one_second(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    port = free_udp_port()
    a = cluster.agent(unicast_port=port,  # one port for both channels, as by default
                      multicast={"enabled": True, "group": "239.2.11.71", "port": port,
                                 "interface": "127.0.0.1"})
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
    cluster.master.publish("/etc/hosts", b"v2\n")
    t0 = time.monotonic()
    send_multicast(_alert(cluster), "239.2.11.71", port)
    wait_until(lambda: _content(hosts) == b"v2\n", timeout=10, step=0.005, what="alerted apply")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"applied {elapsed:.3f} s after the alert"
    assert a.value("four11_agent_alerts_received_total", channel="multicast", result="accepted",
                   reason="none") == 1
    send_unicast(_alert(cluster), port)  # the same alert again, now unicast: each socket its own
    wait_until(lambda: a.value("four11_agent_alerts_received_total", channel="unicast", result="refused",
                               reason="replay") == 1)
    assert a.total("four11_agent_alerts_received_total", channel="multicast") == 1


def test_watch_delivers_without_alerts_from_the_real_fileserver(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    fs = RealFileServer(cluster.master.dir)
    try:
        a = cluster.agent(masters=[fs.url], watch=True, unicast_port=0)
        hosts = cluster.root / "etc/hosts"
        wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
        time.sleep(0.3)  # let the watch settle into its long-poll
        cluster.master.publish("/etc/hosts", b"v2\n")
        t0 = time.monotonic()
        wait_until(lambda: _content(hosts) == b"v2\n", timeout=10, step=0.005, what="watched apply")
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, f"applied {elapsed:.3f} s after the publish"
        assert a.value("four11_agent_syncs_total", trigger="watch", result="ok") == 1
        assert a.stop() == 0
    finally:
        fs.close()


def test_poller_delivers_when_alerts_and_watch_are_off(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent(poll_mean_s=0.3, unicast_port=0)
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
    wait_until(lambda: a.value("four11_agent_syncs_total", trigger="poll", result="not_modified") >= 2,
               what="conditional polls")
    cluster.master.publish("/etc/hosts", b"v2\n")
    wait_until(lambda: _content(hosts) == b"v2\n", what="polled apply")
    assert a.value("four11_agent_syncs_total", trigger="poll", result="ok") >= 1
    # polls are conditional GETs of the index
    assert any("If-None-Match" in h for p, h in cluster.server.log if p == "index")


def test_alert_and_watch_for_one_version_cause_one_fetch(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent(watch=True)
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
    time.sleep(0.3)
    res = cluster.master.publish("/etc/hosts", b"v2\n")
    send_unicast(_alert(cluster), a.unicast_port)
    wait_until(lambda: _content(hosts) == b"v2\n", what="apply")
    time.sleep(0.5)  # a second fetch would come now
    assert cluster.server.count(res.entries[0].file) == 1
    syncs = a.total("four11_agent_syncs_total", result="ok")
    assert syncs == 2  # start + one for the new version


def test_backoff_window_follows_the_fileservers_node_count(cluster):
    cluster.server.nodes = 40  # the fileserver says 40 nodes; with C=2 each waits up to 20 t
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent(concurrency=2)
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
    wait_until(lambda: a.value("four11_agent_cluster_nodes_estimate") == 40)
    cluster.master.publish("/etc/hosts", b"v2\n")
    t0 = time.monotonic()
    send_unicast(_alert(cluster), a.unicast_port)
    wait_until(lambda: _content(hosts) == b"v2\n", timeout=30, step=0.005, what="apply after backoff")
    waited = time.monotonic() - t0
    t = a.value("four11_agent_fetch_time_ewma_seconds")
    w = a.value("four11_agent_backoff_window_seconds")
    assert w > 0
    assert 40 * t / 2 == pytest.approx(w, rel=0.5)  # t moved a little with the second sync
    assert waited <= w * 1.5 + 1.0


def test_watch_reconnects_after_the_master_comes_back(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent(watch=True, unicast_port=0)
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: _content(hosts) == b"v1\n", what="start sync")
    port = cluster.server.port
    cluster.server.stop()
    wait_until(lambda: a.value("four11_agent_watch_errors_total") >= 2, what="watch notices the outage")
    cluster.server.start(port)
    cluster.master.publish("/etc/hosts", b"v2\n")
    wait_until(lambda: _content(hosts) == b"v2\n", timeout=30, what="watch delivers after reconnecting")
    assert a.value("four11_agent_syncs_total", trigger="watch", result="ok") >= 1
