"""Shared fixtures: real keys in temp dirs, a master 411 dir, node key dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from four11.core.keys import KEM_X25519, keygen
from testlib import BIN, cli, node_key_dir  # noqa: F401  (re-exported for older imports)


@pytest.fixture(scope="session")
def master_keys(tmp_path_factory) -> Path:
    """A cluster key set (hybrid KEM, as by default) with /compute and /nas group keys."""
    d = tmp_path_factory.mktemp("keys")
    keygen(d, ["/compute", "/nas"])
    return d


@pytest.fixture(scope="session")
def x25519_keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("xkeys")
    keygen(d, ["/compute"], KEM_X25519)
    return d


@pytest.fixture
def node_keys(master_keys, tmp_path) -> Path:
    """Keys of a node in /compute."""
    return node_key_dir(master_keys, tmp_path / "nodekeys", ["/compute"])
