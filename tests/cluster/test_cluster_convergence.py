"""Publish a change: every one of K=20 agents in its own namespace applies it within 5 s;
a node that joins late converges on start."""

from __future__ import annotations

import statistics

from four11.testing.cluster import metric_sum


def test_k20_nodes_apply_a_publish_within_5_s(cluster):
    pub = cluster.publish("/etc/cluster.conf", b"convergence test\n")
    times = cluster.wait_converged(pub, timeout=30)
    spread = sorted(times.values())
    print(f"\nK={len(spread)}: 411put return -> apply: min {spread[0]:.3f} s, "
          f"median {statistics.median(spread):.3f} s, max {spread[-1]:.3f} s")
    assert len(times) == 20
    assert spread[-1] < 5.0, f"slowest node took {spread[-1]:.2f} s"
    for n in cluster.nodes:
        st = n.path("/etc/cluster.conf").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
        assert metric_sum(n.metrics(), "four11_agent_applied_index_version") >= pub.version


def test_publisher_service_change_reaches_every_node(cluster):
    # the publisher in the master namespace watches its file list: an edit is enough
    (cluster.src / "etc" / "motd").write_text("maintenance at 18:00\n")
    from four11.testing.cluster import wait_until

    wait_until(lambda: all(n.read("/etc/motd") == b"maintenance at 18:00\n" for n in cluster.nodes),
               30, "the edited /etc/motd on every node")
