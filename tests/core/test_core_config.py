"""Layered config: defaults < YAML file < FOUR11_* environment < flags; unknown keys refused."""

from __future__ import annotations

import pytest

from four11.core import config as c
from four11.core import nodeconfig
from four11.core.errors import ConfigError
from testlib import cli


def test_precedence_flag_env_file(tmp_path):
    f = tmp_path / "agent.yaml"
    f.write_text("uid_min: 500\npoll_mean_s: 30\nmulticast:\n  port: 9000\n")
    env = {"FOUR11_POLL_MEAN_S": "20", "FOUR11_MULTICAST_GROUP": "239.1.1.1"}
    cfg = c.load(nodeconfig.SCHEMA, f, env=env)
    assert cfg["uid_min"] == 500 and cfg["poll_mean_s"] == 20.0
    assert cfg["multicast"] == {"enabled": True, "group": "239.1.1.1", "port": 9000, "interface": "0.0.0.0"}
    cfg = c.load(nodeconfig.SCHEMA, f, flags={"uid_min": 2000, "root": None},
                 env={"FOUR11_UID_MIN": "700"})
    assert cfg["uid_min"] == 2000 and cfg["root"] == "/"


@pytest.mark.parametrize(("text", "needle"), [
    ("masterz: [x]\n", "unknown key 'masterz'"),
    ("multicast:\n  groop: 1\n", "unknown key 'multicast.groop'"),
    ("uid_min: lots\n", "uid_min must be of type int"),
    ("poll_mean_s: -1\n", "poll_mean_s: must be greater than 0"),
    ("groups: ['/a/../b']\n", "groups: invalid group name"),
    ("allow_paths: ['etc/']\n", "allow_paths: must be absolute"),
    ("metrics_listen: nope\n", "metrics_listen: must be host:port"),
    ("- a list\n", "top level must be a mapping"),
    ("a: [unclosed\n", "line 2: not valid YAML"),
])
def test_bad_file_names_key_and_reason(tmp_path, text, needle):
    f = tmp_path / "agent.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        c.load(nodeconfig.SCHEMA, f, env={})
    assert needle in str(e.value) and str(f) in str(e.value)


def test_bad_env_names_variable():
    with pytest.raises(ConfigError, match="environment FOUR11_UID_MIN: uid_min must be of type int"):
        c.load(nodeconfig.SCHEMA, None, env={"FOUR11_UID_MIN": "many"})


def test_411get_reports_config_typo_in_one_line(tmp_path):
    f = tmp_path / "agent.yaml"
    f.write_text("keys_dri: /x\n")
    r = cli("411get", "--conf", str(f), "--master", str(tmp_path))
    assert r.returncode == 2
    assert f"{f}: unknown key 'keys_dri' (known: " in r.stderr
    assert r.stderr.count("\n") == 1 and "keys_dri" in r.stderr
