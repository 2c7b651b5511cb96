"""Publish rounds without a running service: what changes makes a serial, what does not."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat

from prometheus_client import CollectorRegistry
from pub_helpers import Site, run_cli

from four11.core.envelope import KIND_MESSAGE, parse
from four11.core.keys import keygen
from four11.publisher import config as pconfig
from four11.publisher.engine import Engine
from four11.publisher.metrics import PublisherMetrics


def _engine(site, files, **over) -> Engine:
    site.write_config(files, **over)
    return Engine(pconfig.load(site.config, env={}), PublisherMetrics(CollectorRegistry()))


def test_only_content_or_metadata_changes_make_a_new_serial(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    hosts = site.src / "hosts"
    hosts.write_text("10.0.0.1 a\n")
    eng = _engine(site, [{"source": str(hosts), "dest": "/etc/hosts"}])
    first = eng.commit()
    assert len(first.published) == 1 and first.ok
    s1 = site.serials()["etc.hosts"]

    assert eng.commit().unchanged == 1
    os.utime(hosts, (1, 1))  # touch: same content, same owner and mode
    assert eng.commit().published == []
    assert site.serials()["etc.hosts"] == s1

    hosts.write_text("10.0.0.1 a\n10.0.0.2 b\n")
    assert len(eng.commit().published) == 1
    s2 = site.serials()["etc.hosts"]
    assert s2 > s1
    os.chmod(hosts, 0o600)
    assert len(eng.commit().published) == 1
    s3 = site.serials()["etc.hosts"]
    assert s3 > s2
    os.chown(hosts, 4242, 4242)
    assert len(eng.commit().published) == 1
    assert site.serials()["etc.hosts"] > s3
    m = eng.metrics.registry.get_sample_value
    assert m("four11_publisher_publishes_total", {"result": "ok"}) == 4
    assert m("four11_publisher_publishes_total", {"result": "unchanged"}) == 2
    assert m("four11_publisher_messages_published_total") == 4


def test_list_removals_leave_the_index_but_read_errors_keep_the_message(master_keys, tmp_path):
    site = Site(tmp_path, master_keys)
    tree = site.src / "tree"
    tree.mkdir()
    for n in ("a", "b"):
        (tree / n).write_text(n)
    single = site.src / "motd"
    single.write_text("hi\n")
    other = site.src / "other"
    other.write_text("published by hand\n")
    r = run_cli("411put", "--411dir", str(site.msgs), "--keys", str(master_keys), "--chroot",
                str(site.src), str(other))
    assert r.returncode == 0, r.stderr
    eng = _engine(site, [{"source": str(tree), "dest": "/etc/tree"},
                         {"source": str(single), "dest": "/etc/motd"}])
    eng.commit()
    assert set(site.serials()) == {"etc.tree.a", "etc.tree.b", "etc.motd", "other"}

    (tree / "b").unlink()  # gone from the directory: gone from the index
    single.unlink()  # a list entry that cannot be read: keep what nodes have, report it
    rnd = eng.commit()
    assert rnd.removed == ["/ etc.tree.b"]
    assert rnd.errors == [f"{single} (line {eng.config.files[1].line}): io_error: "
                          f"{single} is not a regular file or directory"]
    assert set(site.serials()) == {"etc.tree.a", "etc.motd", "other"}
    m = eng.metrics.registry.get_sample_value
    assert m("four11_publisher_source_errors_total", {"reason": "io_error"}) == 1

    eng.config.files = eng.config.files[:1]  # the admin drops the entry from the list
    assert eng.commit().removed == ["/ etc.motd"]
    assert set(site.serials()) == {"etc.tree.a", "other"}  # 411put's message stays


def test_fingerprints_are_private_and_never_in_the_message_dir(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    secret = b"root:$6$salt$hash:19000:0:99999:7:::\nalice:$6$x$y:19000:0:99999:7:::\n"
    src = site.src / "secret"
    src.write_bytes(secret)
    os.chmod(src, 0o600)
    eng = _engine(site, [{"source": str(src), "dest": "/etc/secret.conf"}])
    eng.commit()
    state = site.state / "state.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert not state.is_relative_to(site.msgs)
    digest = hashlib.sha256(secret).hexdigest()
    for p in site.msgs.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert digest.encode() not in data and secret not in data, p


def test_commit_and_restart_work_without_a_running_publisher(master_keys, tmp_path):
    site = Site(tmp_path, master_keys)
    keys = tmp_path / "keys"
    shutil.copytree(master_keys, keys)
    hosts = site.src / "hosts"
    hosts.write_text("10.0.0.1 a\n")
    cfg = str(site.write_config([{"source": str(hosts), "dest": "/etc/hosts", "comment": "#"}],
                                keys_dir=str(keys)))
    r = run_cli("411", "commit", "--config", cfg)
    assert r.returncode == 0, r.stderr
    serial = site.serials()["etc.hosts"]
    v1 = site.index().version
    assert r.stderr.splitlines() == [
        f"published / etc.hosts {serial}",
        f"1 published, 0 unchanged, 0 removed, 0 errors; index version {v1} (published directly)",
    ]
    r = run_cli("411", "commit", "--config", cfg)
    assert r.stderr.splitlines()[-1] == (
        f"0 published, 1 unchanged, 0 removed, 0 errors; index version {v1} (published directly)")

    # a node reads it
    node = tmp_path / "node"
    node.mkdir()
    shutil.copy2(keys / "master.pub", node / "master.pub")
    shutil.copy2(keys / "cluster.key", node / "cluster.key")
    r = run_cli("411get", "--master", str(site.msgs), "--keys", str(node), "--state-dir",
                str(tmp_path / "nstate"), "etc.hosts")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("10.0.0.1 a\n")

    # key rotation: new cluster key, then 411 restart re-encrypts everything and re-alerts
    fresh = tmp_path / "fresh"
    keygen(fresh, [])
    for n in ("cluster.key", "cluster.pub"):
        os.chmod(keys / n, 0o600)
        shutil.copy2(fresh / n, keys / n)
    r = run_cli("411", "restart", "--config", cfg)
    assert r.returncode == 0, r.stderr
    idx = site.index()
    e = idx.find("etc.hosts", "/")
    assert e.serial > serial and idx.version > v1
    env = parse((site.msgs / e.file).read_bytes(), KIND_MESSAGE, 1 << 20)
    new_kid = Engine(pconfig.load(cfg, env={})).four11dir().recipient("/").kid
    assert [w["kid"] for w in env.ext] == [new_kid]
    assert sorted(p.name for p in (site.msgs / "alerts").iterdir()) == [f"{idx.version}.alert"]
    # a node holding only the old key can no longer read it
    r = run_cli("411get", "--master", str(site.msgs), "--keys", str(node), "--state-dir",
                str(tmp_path / "nstate"), "etc.hosts")
    assert r.returncode == 1 and "no_key" in r.stderr
