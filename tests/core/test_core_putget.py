"""411put / 411get end to end on a local 411 dir, as an admin runs them.

Every refusal from design.md is made for real (tampered bytes, other keys, replays) and
must give a non-zero exit, a one-line reason naming the cause, and leave the node's file
byte-for-byte unchanged on the same inode.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from four11.core.fsutil import atomic_write
from four11.core.index import Entry, Index, encode_index
from four11.core.keys import keygen, load_signing_key, recipient_for_group
from four11.core.message import FileMeta, seal_message
from four11.core.publish import Four11Dir, PutItem, read_item
from testlib import cli, node_key_dir


class Cluster:
    def __init__(self, tmp: Path, master_keys: Path) -> None:
        self.tmp = tmp
        self.keys = master_keys
        self.src = tmp / "src"
        (self.src / "etc").mkdir(parents=True)
        self.d = tmp / "411.d"
        self.root = tmp / "node"
        self.root.mkdir()
        self.state = tmp / "state"
        self.node_keys = node_key_dir(master_keys, tmp / "nodekeys", ["/compute"])

    def source(self, rel: str, text: str, uid: int = 1234, gid: int = 1234, mode: int = 0o640) -> Path:
        p = self.src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.chown(p, uid, gid)
        os.chmod(p, mode)
        return p

    def put(self, *args: str, check: bool = True):
        r = cli("411put", "--411dir", str(self.d), "--keys", str(self.keys), "--chroot", str(self.src),
                "--master-url", "http://frontend:8411/411.d/", *args)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def get(self, *args: str, keys: Path | None = None):
        return cli("411get", "--master", str(self.d), "--keys", str(keys or self.node_keys),
                   "--state-dir", str(self.state), "--root", str(self.root), "--group", "/compute", *args)

    def node_file(self, dest: str) -> Path:
        return self.root / dest.lstrip("/")

    def four11dir(self) -> Four11Dir:
        return Four11Dir(self.d, self.keys)


@pytest.fixture
def c(tmp_path, master_keys) -> Cluster:
    return Cluster(tmp_path, master_keys)


def snapshot(p: Path) -> tuple[int, bytes]:
    return os.stat(p).st_ino, p.read_bytes()


def applied_v1(c: Cluster) -> tuple[Path, tuple[int, bytes]]:
    """Publish /etc/motd v1 and apply it; return the node file and its snapshot."""
    c.put(str(c.source("etc/motd", "version 1\n")))
    r = c.get("--all")
    assert r.returncode == 0, r.stderr
    f = c.node_file("/etc/motd")
    return f, snapshot(f)


def assert_refused(r, reason: str, f: Path, snap: tuple[int, bytes]) -> None:
    assert r.returncode != 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "refused" in ln]
    assert lines, r.stderr
    assert all(len(ln) < 400 for ln in lines)
    assert any(f": {reason}: " in ln or f"refused: {reason}:" in ln for ln in lines), r.stderr
    assert "Traceback" not in r.stderr
    assert snapshot(f) == snap


def test_round_trip_owner_mode_bytes(c):
    src = c.source("etc/motd", "hello cluster\n", uid=1234, gid=1234, mode=0o640)
    c.put(str(src))
    r = c.get("--all")
    assert r.returncode == 0, r.stderr
    f = c.node_file("/etc/motd")
    st = os.stat(f)
    assert f.read_bytes() == b"hello cluster\n"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 1234, 0o640)
    assert "applied /etc/motd" in r.stderr


def test_all_creates_a_missing_root_prefix(c):
    c.put(str(c.source("etc/motd", "hi\n")))
    shutil.rmtree(c.root)
    r = c.get("--all")
    assert r.returncode == 0, r.stderr
    assert c.node_file("/etc/motd").read_text() == "hi\n"


def test_list_and_print(c):
    c.put(str(c.source("etc/motd", "hi\n")))
    c.put("--group", "/nas", str(c.source("etc/exports", "/export *\n")))
    r = c.get()
    assert r.returncode == 0
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[2:]}
    assert rows["etc.motd"][1] == "/" and rows["etc.motd"][-1] == "yes"
    assert rows["etc.exports"][1] == "/nas" and rows["etc.exports"][-1] == "no"
    r = c.get("etc.motd")
    assert r.returncode == 0 and r.stdout == "hi\n"


def test_comment_header_and_411name(c):
    c.put("--comment", "#", str(c.source("etc/ssh/ssh_known_hosts", "n1 ssh-ed25519 AAAA\n")))
    assert c.get("--all").returncode == 0
    text = c.node_file("/etc/ssh/ssh_known_hosts").read_text()
    assert text.startswith("# ") and text.endswith("n1 ssh-ed25519 AAAA\n")
    r = cli("411put", "--411name", "--chroot", str(c.src), str(c.src / "etc/auto.home"))
    assert r.stdout.strip() == "etc.auto..home"


def test_directory_publishes_every_file_and_groups(c):
    c.source("etc/slurm/slurm.conf", "ClusterName=x\n")
    c.source("etc/slurm/gres.conf", "Name=gpu\n")
    c.put("--group", "/compute", str(c.src / "etc/slurm"))
    c.put("--group", "/nas", str(c.source("etc/exports", "/export *\n")))
    r = c.get("--all")
    assert r.returncode == 0, r.stderr
    assert c.node_file("/etc/slurm/slurm.conf").read_text() == "ClusterName=x\n"
    assert c.node_file("/etc/slurm/gres.conf").read_text() == "Name=gpu\n"
    assert not c.node_file("/etc/exports").exists()


def test_most_specific_group_wins(c):
    c.put(str(c.source("etc/motd", "everyone\n")))
    c.put("--group", "/compute", str(c.source("etc/motd", "compute nodes\n")))
    assert c.get("--all").returncode == 0
    assert c.node_file("/etc/motd").read_text() == "compute nodes\n"


def test_serial_and_version_strictly_increase(c):
    f = c.source("etc/motd", "a\n")
    d = c.four11dir()
    serials, versions = [], []
    for _ in range(3):
        c.put(str(f))
        idx = d.current_index()
        versions.append(idx.version)
        serials.append(idx.find("etc.motd", "/").serial)
    assert serials == sorted(set(serials)) and versions == sorted(set(versions))


def test_concurrent_411put_runs_lose_no_entry(c):
    import subprocess

    from testlib import BIN

    files = [c.source(f"etc/many/f{i}", f"{i}\n") for i in range(16)]
    procs = [subprocess.Popen([str(BIN / "411put"), "--411dir", str(c.d), "--keys", str(c.keys),
                               "--chroot", str(c.src), str(f)], stderr=subprocess.PIPE)
             for f in files]
    assert all(p.wait(60) == 0 for p in procs)
    names = {e.name for e in c.four11dir().current_index().entries}
    assert names == {f"etc.many.f{i}" for i in range(16)}


def test_merge_mode_passwd_keeps_node_system_accounts(c):
    c.source("etc/passwd", "root:x:0:0:master root:/root:/bin/bash\nalice:x:1000:1000::/home/a:/bin/sh\n",
             uid=0, gid=0, mode=0o644)
    (c.root / "etc").mkdir()
    (c.root / "etc/passwd").write_text(
        "root:x:0:0:node root:/root:/bin/bash\nmunge:x:998:998::/:/bin/false\n")
    c.put(str(c.src / "etc/passwd"))
    r = c.get("--all")
    assert r.returncode == 0, r.stderr
    assert c.node_file("/etc/passwd").read_text() == (
        "root:x:0:0:node root:/root:/bin/bash\nmunge:x:998:998::/:/bin/false\n"
        "alice:x:1000:1000::/home/a:/bin/sh\n")
    # The master's own root entry never left the master.
    d = c.four11dir()
    assert b"master root" not in (c.d / d.current_index().find("etc.passwd", "/").file).read_bytes()


# ---- refusals ---------------------------------------------------------------------------


def test_flipped_ciphertext_byte(c):
    f, snap = applied_v1(c)
    c.put(str(c.source("etc/motd", "version 2\n")))
    e = c.four11dir().current_index().find("etc.motd", "/")
    msg = c.d / e.file
    b = bytearray(msg.read_bytes())
    b[-100] ^= 0xFF
    msg.write_bytes(bytes(b))
    assert_refused(c.get("--all"), "mismatch", f, snap)


def test_index_with_bad_signature(c):
    f, snap = applied_v1(c)
    c.put(str(c.source("etc/motd", "version 2\n")))
    b = bytearray((c.d / "index").read_bytes())
    b[-5] ^= 0x01
    (c.d / "index").write_bytes(bytes(b))
    assert_refused(c.get("--all"), "bad_signature", f, snap)


def test_signed_with_another_master_key(c, tmp_path):
    f, snap = applied_v1(c)
    evil = tmp_path / "evilkeys"
    keygen(evil, [])
    shutil.copy(c.keys / "cluster.pub", evil / "cluster.pub.real")
    shutil.rmtree(c.d)
    r = cli("411put", "--411dir", str(c.d), "--keys", str(evil), "--pub", str(c.keys / "cluster.pub"),
            "--chroot", str(c.src), str(c.source("etc/motd", "evil\n")))
    assert r.returncode == 0, r.stderr
    assert_refused(c.get("--all"), "unknown_key", f, snap)


def test_rollback_to_older_index(c, tmp_path):
    c.put(str(c.source("etc/motd", "version 1\n")))
    old = tmp_path / "old411"
    shutil.copytree(c.d, old)
    c.put(str(c.source("etc/motd", "version 2\n")))
    assert c.get("--all").returncode == 0
    f = c.node_file("/etc/motd")
    snap = snapshot(f)
    assert snap[1] == b"version 2\n"
    shutil.rmtree(c.d)
    shutil.copytree(old, c.d)
    assert_refused(c.get("--all"), "rollback", f, snap)


def test_replayed_older_message_under_new_index(c, tmp_path):
    f, snap = applied_v1(c)
    old_entry = c.four11dir().current_index().find("etc.motd", "/")
    old_bytes = (c.d / old_entry.file).read_bytes()
    c.put(str(c.source("etc/motd", "version 2\n")))
    new = c.four11dir().current_index().find("etc.motd", "/")
    (c.d / new.file).write_bytes(old_bytes)
    assert_refused(c.get("--all"), "mismatch", f, snap)


def test_other_groups_message_served_under_this_name(c):
    c.put("--group", "/compute", str(c.source("etc/motd", "compute v1\n")))
    assert c.get("--all").returncode == 0
    f = c.node_file("/etc/motd")
    snap = snapshot(f)
    c.put("--group", "/nas", str(c.source("etc/motd", "nas version\n")))
    c.put("--group", "/compute", str(c.source("etc/motd", "compute v2\n")))
    idx = c.four11dir().current_index()
    nas, comp = idx.find("etc.motd", "/nas"), idx.find("etc.motd", "/compute")
    shutil.copy(c.d / nas.file, c.d / comp.file)
    assert_refused(c.get("--all"), "mismatch", f, snap)


def test_expired_index_freezes(c):
    f, snap = applied_v1(c)
    # An index signed a minute ago with a one-second validity: expired when the node sees it.
    d = Four11Dir(c.d, c.keys, index_expiry_s=1, clock=lambda: time.time() - 60)
    d.put([PutItem(c.source("etc/motd", "version 2\n"), "/etc/motd")])
    assert_refused(c.get("--all"), "expired", f, snap)


def test_oversized_message(c, tmp_path):
    f, snap = applied_v1(c)
    c.put(str(c.source("etc/motd", "x" * 100_000)))
    conf = tmp_path / "agent.yaml"
    conf.write_text("max_message: 50000\n")
    assert_refused(c.get("--all", "--conf", str(conf)), "too_large", f, snap)


def craft(c: Cluster, fm: FileMeta, name: str, content: bytes = b"evil\n", group: str = "/",
          serial: int | None = None) -> None:
    """What a master-key holder could sign: used to prove the node's own checks."""
    d = c.four11dir()
    signer = load_signing_key(c.keys / "master.key")
    old = d.current_index()
    serial = serial if serial is not None else int(time.time() * 1000) + 5
    data = seal_message(name=name, group=group, serial=serial, created=int(time.time()), file=fm,
                        content=content, recipients=[recipient_for_group(c.keys, group)], signer=signer)
    rel = f"{name}.{serial}"
    atomic_write(c.d / rel, data)
    entries = [e for e in old.entries if (e.group, e.name) != (group, name)]
    entries.append(Entry(name, group, serial, len(data), hashlib.sha256(data).hexdigest(), rel))
    idx = Index(old.version + 1000, int(time.time()), int(time.time()) + 3600, old.masters, entries)
    atomic_write(c.d / "index", encode_index(idx, signer))


@pytest.mark.parametrize("path", ["/etc/../root/.bashrc", "/root/.ssh/authorized_keys", "etc/motd"])
def test_signed_message_with_bad_destination(c, path):
    f, snap = applied_v1(c)
    fm = FileMeta(path, 0, 0, "root", "root", 0o644, 0)
    craft(c, fm, "etc.evil")
    assert_refused(c.get("--all"), "bad_path", f, snap)
    assert not (c.root / "root").exists()


def test_message_name_disagreeing_with_destination(c):
    f, snap = applied_v1(c)
    craft(c, FileMeta("/etc/shadow", 0, 0, "root", "root", 0o644, 0), "etc.motd")
    assert_refused(c.get("--all"), "mismatch", f, snap)


def test_symlinked_parent_on_node(c, tmp_path):
    c.put(str(c.source("etc/motd", "v1\n")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "motd").write_text("precious\n")
    (c.root / "etc").symlink_to(elsewhere)
    f = elsewhere / "motd"
    assert_refused(c.get("--all"), "bad_path", f, snapshot(f))


def test_stale_serial_refused(c):
    f, snap = applied_v1(c)
    applied = c.four11dir().current_index().find("etc.motd", "/").serial
    item = PutItem(c.source("etc/motd", "older\n"), "/etc/motd")
    fm, content = read_item(item)
    craft(c, fm, "etc.motd", content, serial=applied - 1)
    assert_refused(c.get("--all"), "stale_serial", f, snap)


def test_group_the_node_is_not_in(c):
    c.put("--group", "/nas", str(c.source("etc/exports", "/export *\n")))
    r = c.get("etc.exports")
    assert r.returncode != 0 and "wrong_group" in r.stderr and "/nas" in r.stderr
    assert c.get("--all").returncode == 0
    assert not c.node_file("/etc/exports").exists()


def test_compute_key_cannot_open_nas_message(c):
    c.put("--group", "/nas", str(c.source("etc/exports", "/export *\n")))
    r = cli("411get", "--master", str(c.d), "--keys", str(c.node_keys), "--state-dir", str(c.state),
            "--group", "/nas", "etc.exports")
    assert r.returncode != 0
    assert "no_key" in r.stderr and "/nas" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1


def test_put_with_a_bad_argument_writes_nothing(c):
    good = c.source("etc/motd", "x\n")
    r = c.put(str(good), str(c.src / "etc/missing"), check=False)
    assert r.returncode != 0 and "etc/missing" in r.stderr and r.stderr.count("\n") == 1
    assert not (c.d / "index").exists()


def test_see_and_direct_alert(c):
    import json
    import socket

    from four11.core.alert import parse_alert
    from four11.core.keys import load_keyring

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(20)
        port = s.getsockname()[1]
        r = c.put("--see", "--group", "/compute", "--alert", f"127.0.0.1:{port}",
                  str(c.source("etc/motd", "secret text\n")))
        data, _ = s.recvfrom(2048)
    shown = json.loads(r.stdout)
    assert shown["header"]["name"] == "etc.motd" and shown["header"]["group"] == "/compute"
    assert "secret text" not in r.stdout
    a = parse_alert(data, load_keyring(c.keys), now=time.time())
    assert a.version == c.four11dir().current_index().version and a.groups == ["/compute"]
    assert a.masters == ["http://frontend:8411/411.d/"]
    spooled = list((c.d / "alerts").iterdir())
    assert [p.read_bytes() for p in spooled] == [data]


def test_noalert_spools_nothing(c):
    c.put("--noalert", str(c.source("etc/motd", "x\n")))
    assert not (c.d / "alerts").exists() or not list((c.d / "alerts").iterdir())
