"""Writing files on a node: atomic replace, owner and mode, symlink and path refusals, merge."""

from __future__ import annotations

import os
import stat

import pytest

from four11.core import merge
from four11.core.apply import read_current, write_atomic
from four11.core.errors import Refusal
from four11.core.names import check_allowed, message_name


def test_write_creates_with_owner_mode_mtime(tmp_path):
    write_atomic(str(tmp_path), "/etc/sub/f", b"data", uid=1234, gid=4321, mode=0o640, mtime=1000)
    st = os.stat(tmp_path / "etc/sub/f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (1234, 4321, 0o640, 1000)
    assert (tmp_path / "etc/sub/f").read_bytes() == b"data"
    assert not [p for p in os.listdir(tmp_path / "etc/sub") if p != "f"]


def test_setuid_mode_survives_chown(tmp_path):
    write_atomic(str(tmp_path), "/etc/x", b"d", uid=1, gid=1, mode=0o4755)
    assert stat.S_IMODE(os.stat(tmp_path / "etc/x").st_mode) == 0o4755


def test_symlinked_parent_refused_and_nothing_written(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "etc").symlink_to(elsewhere)
    with pytest.raises(Refusal) as e:
        write_atomic(str(root), "/etc/passwd", b"evil", uid=0, gid=0, mode=0o644)
    assert e.value.reason == "bad_path" and "symlink" in str(e.value)
    assert list(elsewhere.iterdir()) == []


def test_symlink_final_component_refused(tmp_path):
    (tmp_path / "etc").mkdir()
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "etc/passwd").symlink_to(target)
    with pytest.raises(Refusal) as e:
        write_atomic(str(tmp_path), "/etc/passwd", b"evil", uid=0, gid=0, mode=0o644)
    assert e.value.reason == "bad_path"
    assert target.read_text() == "keep" and os.path.islink(tmp_path / "etc/passwd")


def test_stale_temp_files_are_cleaned(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/.f.four11-dead").write_text("partial")
    write_atomic(str(tmp_path), "/etc/f", b"new", uid=0, gid=0, mode=0o644)
    assert os.listdir(tmp_path / "etc") == ["f"]


def test_read_current(tmp_path):
    assert read_current(str(tmp_path), "/etc/none") is None
    write_atomic(str(tmp_path), "/etc/f", b"abc", uid=0, gid=0, mode=0o600)
    assert read_current(str(tmp_path), "/etc/f") == b"abc"


@pytest.mark.parametrize("dest", ["etc/passwd", "/etc/../root/x", "/etc/./x", "/etc//x", "/etc/x\x00",
                                  "/root/.ssh/authorized_keys", "/etcx/passwd", ""])
def test_destination_refusals(dest):
    with pytest.raises(Refusal) as e:
        check_allowed(dest, ["/etc/"])
    assert e.value.reason == "bad_path"


def test_message_names():
    assert message_name("/etc/passwd") == "etc.passwd"
    assert message_name("/etc/auto.home") == "etc.auto..home"


LOCAL_PASSWD = "root:x:0:0:root:/root:/bin/bash\nslurm:x:990:990::/var/lib/slurm:/bin/false\n" \
               "olduser:x:1001:1001::/home/old:/bin/bash\n"
MASTER_PASSWD = "alice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1002:1002::/home/bob:/bin/bash\n" \
                "root:x:0:0:HACKED:/root:/bin/sh\n"


def test_merge_passwd_keeps_node_system_users():
    out = merge.merge("passwd", LOCAL_PASSWD, MASTER_PASSWD, 1000, None)
    lines = out.splitlines()
    assert lines[0] == "root:x:0:0:root:/root:/bin/bash"
    assert "slurm:x:990:990::/var/lib/slurm:/bin/false" in lines
    assert not any(ln.startswith("olduser") for ln in lines)
    assert "alice:x:1000:1000::/home/alice:/bin/bash" in lines and len(lines) == 4


def test_merge_shadow_by_local_system_names():
    local_shadow = "root:$6$local:1::::::\nslurm:!:1::::::\nolduser:$6$x:1::::::\n"
    master_shadow = "root:$6$master:1::::::\nalice:$6$a:1::::::\n"
    out = merge.merge("shadow", local_shadow, master_shadow, 1000, LOCAL_PASSWD).splitlines()
    assert out == ["root:$6$local:1::::::", "slurm:!:1::::::", "alice:$6$a:1::::::"]


def test_publisher_filter_drops_master_system_entries():
    assert merge.filter_master("passwd", MASTER_PASSWD, 1000) == (
        "alice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1002:1002::/home/bob:/bin/bash\n")
    shadow = "root:$6$secret:1::::::\nalice:$6$a:1::::::\n"
    assert merge.filter_master("shadow", shadow, 1000, MASTER_PASSWD) == "alice:$6$a:1::::::\n"
    with pytest.raises(Refusal):
        merge.filter_master("shadow", shadow, 1000, None)


def test_merge_refuses_malformed_master():
    with pytest.raises(Refusal) as e:
        merge.merge("passwd", LOCAL_PASSWD, "alice:x:notanumber:1::/:/bin/sh\n", 1000, None)
    assert e.value.reason == "bad_format"
