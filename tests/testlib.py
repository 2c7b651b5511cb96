"""Helpers every test directory imports (``from testlib import cli``): a plain module, so
the several conftest.py files never shadow one another."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent


def node_key_dir(master_keys: Path, dest: Path, groups: list[str]) -> Path:
    """What a node holds: master.pub, cluster.key, and the .key of each of its groups."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in ["master.pub", "cluster.key"] + [f"groups/{g.strip('/')}.key" for g in groups]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(master_keys / rel, dest / rel)
    return dest


def cli(*args: str, cwd: Path | None = None, input: str | None = None,
        env: dict | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run a console script of this package as a user would (stdout/stderr as text)."""
    prog, *rest = args
    return subprocess.run([str(BIN / prog), *rest], cwd=cwd, input=input, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=120, text=text)


def wait_until(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition",
               step: float = 0.02) -> object:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


async def until(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition",
                step: float = 0.02) -> object:
    """wait_until for code running on an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)
