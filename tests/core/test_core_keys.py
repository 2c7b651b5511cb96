from __future__ import annotations

import os
import stat

import pytest

from four11.core.errors import ConfigError
from four11.core.keys import (
    load_decryption_key,
    load_keyring,
    load_recipient_key,
    load_signing_key,
    recipient_for_group,
)
from testlib import cli


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_keygen_writes_pairs_with_safe_modes(tmp_path):
    r = cli("411", "keygen", "--out", str(tmp_path / "k"), "--group", "/compute/light")
    assert r.returncode == 0, r.stderr
    k = tmp_path / "k"
    for priv in ["master.key", "cluster.key", "groups/compute/light.key"]:
        assert mode(k / priv) == 0o400
    for pub in ["master.pub", "cluster.pub", "groups/compute/light.pub"]:
        assert mode(k / pub) == 0o444
    assert load_recipient_key(k / "cluster.pub").kem == "MLKEM768_X25519"
    assert load_signing_key(k / "master.key").kid in load_keyring(k)


def test_keygen_x25519_and_refuses_overwrite(tmp_path):
    k = tmp_path / "k"
    assert cli("411", "keygen", "--out", str(k), "--kem", "x25519").returncode == 0
    assert load_recipient_key(k / "cluster.pub").kem == "X25519"
    before = (k / "master.key").read_bytes()
    r = cli("411", "keygen", "--out", str(k))
    assert r.returncode != 0
    assert "refusing to overwrite existing key" in r.stderr and "--force" in r.stderr
    assert (k / "master.key").read_bytes() == before
    assert cli("411", "keygen", "--out", str(k), "--force").returncode == 0
    assert (k / "master.key").read_bytes() != before
    assert mode(k / "master.key") == 0o400


@pytest.mark.parametrize(("name", "bad_mode", "fix"), [
    ("master.key", 0o440, "0400"), ("cluster.key", 0o604, "0400"), ("master.pub", 0o666, "0444"),
])
def test_unsafe_modes_refused_with_file_and_fix(master_keys, tmp_path, name, bad_mode, fix):
    import shutil

    k = tmp_path / "k"
    shutil.copytree(master_keys, k)
    os.chmod(k / name, bad_mode)
    loader = {"master.key": load_signing_key, "cluster.key": load_decryption_key,
              "master.pub": lambda p: load_keyring(p.parent)}[name]
    with pytest.raises(ConfigError) as e:
        loader(k / name)
    msg = str(e.value)
    assert str(k / name) in msg and f"{bad_mode:04o}" in msg and f"chmod {fix}" in msg


def test_unsafe_key_via_cli_is_one_line_error(master_keys, tmp_path):
    import shutil

    k = tmp_path / "k"
    shutil.copytree(master_keys, k)
    os.chmod(k / "master.key", 0o644)
    src = tmp_path / "motd"
    src.write_text("x\n")
    r = cli("411put", "--411dir", str(tmp_path / "d"), "--keys", str(k), str(src))
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "chmod 0400" in r.stderr
    assert not (tmp_path / "d" / "index").exists()


def test_group_key_selection_nearest_ancestor(master_keys):
    cluster = load_recipient_key(master_keys / "cluster.pub").kid
    compute = load_recipient_key(master_keys / "groups/compute.pub").kid
    assert recipient_for_group(master_keys, "/compute").kid == compute
    assert recipient_for_group(master_keys, "/compute/light/x").kid == compute
    assert recipient_for_group(master_keys, "/").kid == cluster
    assert recipient_for_group(master_keys, "/comp").kid == cluster
    assert recipient_for_group(master_keys, "/other").kid == cluster
