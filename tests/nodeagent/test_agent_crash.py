"""SIGKILL at random moments while the agent applies a large file: the destination is
always the old or the new file (hash checked), never a mix, and the next start converges.
SIGTERM during a sync finishes the file being written and exits 0."""

from __future__ import annotations

import hashlib
import os
import random
import time

import pytest
from agent_helpers import sha, wait_until

SIZE = 6 * 1024 * 1024


@pytest.mark.slow
def test_sigkill_during_apply_leaves_old_or_new_and_restart_converges(cluster):
    rng = random.Random(411)
    dest = cluster.root / "etc/big.dat"
    on_disk = None
    kills_mid_apply = 0
    mid_write = 0  # kills that left a half-written temp file behind
    for i in range(8):
        content = os.urandom(SIZE)
        new = hashlib.sha256(content).hexdigest()
        cluster.master.publish("/etc/big.dat", content)
        a = cluster.agent(start=False)
        a.start(wait=False)
        # the start sync begins about when the log says so; kill somewhere inside it
        wait_until(lambda a=a: a._started() or a._died(), 20)
        time.sleep(rng.uniform(0.0, 0.25))
        a.kill()
        got = sha(dest) if dest.exists() else None
        assert got in (on_disk, new), f"round {i}: destination is neither the old nor the new file"
        kills_mid_apply += got == on_disk
        mid_write += any(n.startswith(".big.dat.four11-") for n in os.listdir(dest.parent))
        on_disk = got
    assert kills_mid_apply >= 1  # some kills did land before the rename
    print(f"kills before the rename: {kills_mid_apply}, inside the write: {mid_write}")
    a = cluster.agent()
    wait_until(lambda: dest.exists() and sha(dest) == new, 30, what="converge after the kills")
    assert [n for n in os.listdir(dest.parent) if n.startswith(".")] == []  # no temp file left
    assert a.stop() == 0


def test_sigterm_finishes_the_file_then_exits_zero(cluster):
    files = {f"/etc/f{i}.dat": os.urandom(512 * 1024) for i in range(12)}
    cluster.master.many(files)
    a = cluster.agent(start=False)
    a.start(wait=False)
    wait_until(lambda: (cluster.root / "etc").exists() and any(
        n.startswith("f") for n in os.listdir(cluster.root / "etc")), 20, step=0.002)
    assert a.stop() == 0
    for dest, content in files.items():
        p = cluster.root / dest.lstrip("/")
        if p.exists():
            assert p.read_bytes() == content  # every file there is complete
    assert [n for n in os.listdir(cluster.root / "etc") if n.startswith(".")] == []
