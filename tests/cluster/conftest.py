"""One cluster for the whole directory: 2 masters, K=20 agents, an attacker, on a bridge
of network namespaces (starting 20 Python agents costs about 10 s of the budget, so the
tests share it and each heals the faults it made)."""

from __future__ import annotations

import os

import pytest

from four11.testing.cluster import Cluster

K = 20
POLL_MEAN_S = 5.0


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    assert os.geteuid() == 0, "tests/cluster needs root (network namespaces, iptables)"
    with Cluster(tmp_path_factory.mktemp("cluster"), k=K, masters=2, attacker=True,
                 poll_mean_s=POLL_MEAN_S, alert_interval_s=2.0) as c:
        yield c
