"""Shared fixtures: real keys in temp dirs, a master 411 dir, node key dirs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from four11.core.keys import KEM_X25519, keygen

BIN = Path(sys.executable).parent


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


def node_key_dir(master_keys: Path, dest: Path, groups: list[str]) -> Path:
    """What a node holds: master.pub, cluster.key, and the .key of each of its groups."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in ["master.pub", "cluster.key"] + [f"groups/{g.strip('/')}.key" for g in groups]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(master_keys / rel, dest / rel)
    return dest


@pytest.fixture
def node_keys(master_keys, tmp_path) -> Path:
    """Keys of a node in /compute."""
    return node_key_dir(master_keys, tmp_path / "nodekeys", ["/compute"])


def cli(*args: str, cwd: Path | None = None, input: str | None = None,
        env: dict | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run a console script of this package as a user would (stdout/stderr as text)."""
    prog, *rest = args
    return subprocess.run([str(BIN / prog), *rest], cwd=cwd, input=input, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=120, text=text)
