"""kill -9 in the middle of publishing 500 files: what is left is always consistent."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import threading
import time

import pytest
from pub_helpers import BIN, Site, run_cli

from four11.core.alert import parse_alert
from four11.core.fsutil import TMP_PREFIX
from four11.core.keys import load_keyring
from four11.core.message import parse_message

N_FILES = 500
KILLS = 6


def check_consistent(site) -> tuple[int, int]:
    """The index verifies, every entry's message exists with the right size and hash, and
    every file the fileserver would serve (not a dot-file, not the spool) is complete.
    Returns the index version and how many messages were written after the index (by a
    round that was killed before it could name them)."""
    ring = load_keyring(site.keys)
    idx = site.index()  # verifies the signature and the expiry
    index_mtime = (site.msgs / "index").stat().st_mtime_ns
    named = set()
    orphans = 0
    for e in idx.entries:
        data = (site.msgs / e.file).read_bytes()
        assert len(data) == e.size, e.file
        assert hashlib.sha256(data).hexdigest() == e.sha256, e.file
        named.add(e.file)
    for p in site.msgs.rglob("*"):
        rel = p.relative_to(site.msgs).as_posix()
        if not p.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        if rel == "index":
            continue
        if rel.startswith("alerts/"):
            parse_alert(p.read_bytes(), ring, now=0)
            continue
        if rel not in named:  # superseded, or from a killed round: whole either way
            parse_message(p.read_bytes(), ring)
            orphans += p.stat().st_mtime_ns > index_mtime
    return idx.version, orphans


@pytest.mark.slow
def test_kill_9_while_publishing_500_files_leaves_a_consistent_dir(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    tree = site.src / "tree"
    tree.mkdir()
    for i in range(N_FILES):
        (tree / f"f{i:03}").write_text(f"{i} generation 0\n")
    cfg = str(site.write_config([{"source": str(tree), "dest": "/etc/many"}], poll_s=0.05,
                                debounce_s=0))
    stop = threading.Event()
    generation = [0]

    def writer():  # keep every file changing so the publisher is always mid-round
        while not stop.is_set():
            generation[0] += 1
            for i in range(N_FILES):
                (tree / f"f{i:03}").write_text(f"{i} generation {generation[0]}\n")
            time.sleep(0.3)

    r = run_cli("411", "commit", "--config", cfg)
    assert r.returncode == 0, r.stderr
    rng = random.Random(411)
    versions = []
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        for _ in range(KILLS):
            proc = subprocess.Popen([str(BIN / "411"), "publisher", "--config", cfg],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.8, 3.0))  # past start-up, somewhere in a round
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            versions.append(check_consistent(site))
    finally:
        stop.set()
        t.join(timeout=30)
    assert [v for v, _ in versions] == sorted(v for v, _ in versions)
    # messages newer than the index show that kills landed mid-round
    assert max(o for _, o in versions) > 0

    # After the storm: a clean commit publishes the final contents; temp files are gone.
    r = run_cli("411", "commit", "--config", cfg)
    assert r.returncode == 0, r.stderr
    check_consistent(site)
    assert not [p for p in site.msgs.rglob(f"{TMP_PREFIX}*")]
    idx = site.index()
    assert len(idx.entries) == N_FILES
    node = site.root / "node"
    node.mkdir()
    for n in ("master.pub", "cluster.key"):
        (node / n).write_bytes((site.keys / n).read_bytes())
        os.chmod(node / n, 0o400)
    r = run_cli("411get", "--master", str(site.msgs), "--keys", str(node), "--state-dir",
                str(site.root / "nstate"), "etc.many.f499")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"499 generation {generation[0]}\n"
