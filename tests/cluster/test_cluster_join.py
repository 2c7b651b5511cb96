"""A node that joins after ten publishes converges on start, without any alert."""

from __future__ import annotations

from four11.testing.cluster import metric_sum, wait_until


def test_new_node_after_ten_publishes_converges_on_start(cluster):
    while len(cluster.published) < 10:
        cluster.publish("/etc/cluster.conf", f"publish {len(cluster.published)}\n".encode())
    cluster.publish("/etc/compute.conf", b"only for /compute\n", group="/compute")
    last = cluster.published[-1]
    cluster.wait_converged(last, timeout=30)
    reference = cluster.nodes[0].files()
    (new,) = cluster.add_nodes(1)
    wait_until(lambda: new.files().keys() == reference.keys()
               and all(h == reference[p][1] for p, (_, h) in new.files().items()),
               30, "the new node to hold every published file")
    m = new.metrics()
    assert metric_sum(m, "four11_agent_syncs_total", trigger="start", result="ok") == 1
    assert metric_sum(m, "four11_agent_applied_index_version") == last.version
