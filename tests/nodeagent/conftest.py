"""Fixtures for the node agent tests: a master, its HTTP server(s), a node's dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import AgentProc, Master, StaticServer, agent_config

from testlib import node_key_dir


class Cluster:
    """One master 411 dir served by ``servers`` static HTTP servers, and one node."""

    def __init__(self, tmp: Path, master_keys: Path, n_servers: int = 1) -> None:
        self.tmp = tmp
        self.servers = [StaticServer(tmp / "411").start() for _ in range(n_servers)]
        self.master = Master(tmp, master_keys, [s.url for s in self.servers])
        self.keys = node_key_dir(master_keys, tmp / "nodekeys", ["/compute"])
        self.root = tmp / "root"
        (self.root / "etc").mkdir(parents=True)
        self.state = tmp / "state"
        self.agents: list[AgentProc] = []

    @property
    def server(self) -> StaticServer:
        return self.servers[0]

    def config(self, name: str = "agent.yaml", **over) -> Path:
        over.setdefault("masters", [s.url for s in self.servers])
        over.setdefault("groups", ["/compute"])
        root = over.pop("root", self.root)
        return agent_config(self.tmp / name, keys=self.keys, root=root, state=self.state, **over)

    def agent(self, *args: str, start: bool = True, **over) -> AgentProc:
        a = AgentProc(self.config(**over), *args)
        self.agents.append(a)
        return a.start() if start else a

    def close(self) -> None:
        for a in self.agents:
            a.kill()
        for s in self.servers:
            s.close()


@pytest.fixture
def cluster(tmp_path, master_keys):
    c = Cluster(tmp_path, master_keys)
    yield c
    c.close()


@pytest.fixture
def cluster2(tmp_path, master_keys):
    c = Cluster(tmp_path, master_keys, n_servers=2)
    yield c
    c.close()
