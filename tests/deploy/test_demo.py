"""`411 demo`: the four services as processes on loopback, and a file converging."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from ._tools import cli


def test_demo_converges_and_cleans_up():
    r = cli("411", "demo", "--timeout", "30", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    base = re.search(r"working in (\S+)", r.stdout).group(1)
    for svc in ("publisher", "fileserver", "alerter", "agent"):
        assert re.search(rf"^{svc} +pid \d+ +http://127\.0\.0\.1:\d+/healthz ok$", r.stdout, re.M), svc
    assert re.search(r"^published: the node has /etc/411-demo/hello.conf .* after [0-9.]+ s$", r.stdout, re.M)
    assert re.search(r"^changed  : the node has /etc/411-demo/hello.conf .* after [0-9.]+ s$", r.stdout, re.M)
    assert "temporary directory removed" in r.stdout
    assert not Path(base).exists()


def test_demo_keep_leaves_the_node_files(tmp_path):
    d = tmp_path / "demo"
    r = cli("411", "demo", "--dir", str(d), "--keep", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    applied = d / "node" / "etc" / "411-demo" / "hello.conf"
    assert applied.read_text() == (d / "sources" / "hello.conf").read_text()
    assert "changed = " in applied.read_text()
    assert stat.S_IMODE(applied.stat().st_mode) == 0o644
    assert stat.S_IMODE((d / "keys" / "master.key").stat().st_mode) == 0o400
    assert not (d / "node-keys" / "master.key").exists()


def test_demo_refuses_an_existing_directory(tmp_path):
    r = cli("411", "demo", "--dir", str(tmp_path))
    assert r.returncode == 1 and "exists: give a new directory" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []
