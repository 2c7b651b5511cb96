"""The chart's key volumes as the kubelet lays them out, read by the real key loaders.

A Secret volume is an atomic-writer directory: the items live in a timestamped directory,
`..data` links to it, and each top-level name links into `..data`. These tests build that
layout from the rendered items and modes, run the master's init container script on it,
and load the results with four11's key loaders, which refuse unsafe modes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from four11.cli.keybundle import secret_data
from four11.core.errors import ConfigError
from four11.core.keys import (
    load_keyring,
    load_node_keys,
    load_recipient_key,
    load_signing_key,
)

from ._tools import render

MASTER_UID = 10411


def secret_volume(root: Path, data: dict[str, bytes], volume: dict, fs_group: int | None) -> Path:
    """Lay out a Secret volume like the kubelet: items, modes, ..data links, fsGroup bits."""
    ts = root / "..2026_01_01_00_00_00.000000001"
    ts.mkdir(parents=True)
    default = volume["defaultMode"]
    for item in volume["items"]:
        f = ts / item["path"]
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data[item["key"]])
        mode = item.get("mode", default)
        if fs_group is not None:  # the kubelet adds group read for fsGroup (read-only volume)
            os.chown(f, 0, fs_group)
            mode |= 0o440
        os.chmod(f, mode)
    (root / "..data").symlink_to(ts.name)
    for top in {Path(i["path"]).parts[0] for i in volume["items"]}:
        (root / top).symlink_to(f"..data/{top}")
    return root


@pytest.fixture(scope="module")
def chart_keys(tmp_path_factory, master_keys) -> dict[str, bytes]:
    return secret_data(master_keys)


def rendered(*sets: str) -> list[dict]:
    args = ["--set", "keys.groups={/compute,/nas}"]
    for s in sets:
        args += ["--set", s]
    return render(*args)


def test_agent_pool_volume_loads_with_only_its_groups_keys(tmp_path, chart_keys, master_keys):
    objs = rendered("agent.pools[0].name=compute", "agent.pools[0].groups={/compute}")
    [ds] = [o for o in objs if o["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    assert "fsGroup" not in spec["securityContext"]
    [vol] = [v["secret"] for v in spec["volumes"] if "secret" in v]
    d = secret_volume(tmp_path / "agent-keys", chart_keys, vol, fs_group=None)
    node = load_node_keys(d)
    want = {load_recipient_key(master_keys / p).kid for p in ("cluster.pub", "groups/compute.pub")}
    assert set(node) == want
    assert load_keyring(d)
    assert not (d / "master.key").exists() and not (d / "groups" / "nas.key").exists()


@pytest.fixture
def shared_tmp():
    """A directory the master uid can reach (pytest's tmp_path is below a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="f411-vol-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def test_fsgroup_secret_files_would_be_refused_so_the_master_copies_them(shared_tmp, chart_keys):
    tmp_path = shared_tmp
    [dep] = [o for o in rendered() if o["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    assert spec["securityContext"]["fsGroup"] == MASTER_UID
    [vol] = [v["secret"] for v in spec["volumes"] if "secret" in v]
    secret = secret_volume(tmp_path / "secret", chart_keys, vol, fs_group=MASTER_UID)
    with pytest.raises(ConfigError, match="lets group/others read a private key"):
        load_signing_key(secret / "master.key")
    # the init container's script, run as the master uid with the fsGroup as its group
    [init] = spec["initContainers"]
    script = init["command"][2].replace("/secret", str(secret)).replace("/keys", str(tmp_path / "keys"))
    (tmp_path / "keys").mkdir()
    os.chown(tmp_path / "keys", MASTER_UID, MASTER_UID)
    r = subprocess.run(["setpriv", f"--reuid={MASTER_UID}", f"--regid={MASTER_UID}", "--clear-groups",
                        "/bin/sh", "-ec", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    keys = tmp_path / "keys"
    assert sorted(str(p.relative_to(keys)) for p in keys.rglob("*") if p.is_file()) == [
        "cluster.pub", "groups/compute.pub", "groups/nas.pub", "master.key", "master.pub"]
    assert (keys / "master.key").stat().st_uid == MASTER_UID
    assert oct((keys / "master.key").stat().st_mode & 0o777) == "0o400"
    load_signing_key(keys / "master.key")
    load_recipient_key(keys / "groups" / "nas.pub")
