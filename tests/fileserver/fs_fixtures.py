"""Fixtures (imported by the test modules; no conftest here, so `import conftest` stays the
root one): a published 411 dir and real fileservers on 127.0.0.1:0."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fs_helpers import LARGE, Running

from four11.core.index import Index, parse_index
from four11.core.keys import load_keyring
from four11.core.publish import Four11Dir, PutItem


@dataclass
class Published:
    dir: Path
    keys: Path
    pub: Four11Dir

    def index(self) -> Index:
        return parse_index((self.dir / "index").read_bytes(), load_keyring(self.keys), now=time.time())


@pytest.fixture
def published(master_keys: Path, tmp_path: Path) -> Published:
    """A 411 dir with a small file in "/", one in /compute, and a large one."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "hosts").write_text("127.0.0.1 localhost\n10.1.0.1 frontend\n")
    (src / "slurm.conf").write_text("ClusterName=test\n" * 50)
    (src / "big").write_bytes(os.urandom(LARGE))
    d = tmp_path / "411.d"
    pub = Four11Dir(d, master_keys)
    pub.put([PutItem(src / "hosts", "/etc/hosts"),
             PutItem(src / "slurm.conf", "/etc/slurm/slurm.conf", group="/compute"),
             PutItem(src / "big", "/etc/big")])
    return Published(d, master_keys, pub)


@pytest.fixture
def start_server() -> Iterator[Callable[..., Running]]:
    servers: list[Running] = []

    def start(**kw) -> Running:
        s = Running(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def server(published: Published, start_server) -> Running:
    return start_server(four11_dir=published.dir)
