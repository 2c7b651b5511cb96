"""What a node admin sees: config errors at start, merge mode keeping local system users,
local post_apply commands, a corrupt state file, SIGHUP reload and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import yaml
from agent_helpers import BIN, AgentProc, send_unicast, wait_until

from four11.nodeagent.__main__ import main as agent_main


def _start_fails(config) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "411"), "agent", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("over, key", [
    ({"masters": []}, "masters"),
    ({"multicst": {"enabled": True}}, "multicst"),
    ({"multicast": {"enabled": True, "group": "10.0.0.1"}}, "multicast.group"),
    ({"multicast": {"enabled": True, "interface": "eth0"}}, "multicast.interface"),
    ({"post_apply": {"etc/hosts": "true"}}, "post_apply"),
    ({"poll_mean_s": 0}, "poll_mean_s"),
    ({"groups": ["/a/../b"]}, "/a/../b"),
    ({"root": "/nonexistent/root"}, "root"),
    ({"masters": ["ftp://x/"]}, "masters"),
])
def test_invalid_config_is_refused_at_start_naming_the_key(cluster, capsys, over, key):
    cluster.master.publish("/etc/hosts", b"v1\n")
    assert agent_main(["--config", str(cluster.config(**over))]) == 2  # the `411 agent` entry point
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("411 agent: ") and key in lines[0], lines
    assert not (cluster.root / "etc/hosts").exists()


def test_unsafe_key_mode_is_refused_at_start(cluster):
    os.chmod(cluster.keys / "cluster.key", 0o644)
    r = _start_fails(cluster.config())
    assert r.returncode == 2
    assert "cluster.key" in r.stderr and "chmod 0400" in r.stderr


def test_flags_and_environment_override_the_file(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    cfg = cluster.config(masters=["http://127.0.0.1:9/411.d/"])
    a = AgentProc(cfg, "--masters", cluster.server.url,
                  env={"FOUR11_NODE_ID": "from-env", "FOUR11_MASTERS": "http://127.0.0.1:9/"}).start()
    cluster.agents.append(a)
    wait_until(lambda: (cluster.root / "etc/hosts").exists(), what="sync from the flag's master")
    assert cluster.server.log[0][1]["X-Four11-Node"] == "from-env"


def test_merge_keeps_local_system_users_and_takes_the_masters(cluster, tmp_path):
    local = ("root:x:0:0:root:/root:/bin/bash\n"
             "munge:x:998:995::/run/munge:/sbin/nologin\n"
             "olduser:x:1500:1500::/home/olduser:/bin/sh\n")
    (cluster.root / "etc/passwd").write_text(local)
    master = ("root:x:0:0:master root:/root:/bin/zsh\n"  # the master's own system users stay there
              "alice:x:1001:1001::/home/alice:/bin/bash\n"
              "bob:x:1002:1002::/home/bob:/bin/bash\n")
    cluster.master.publish("/etc/passwd", master.encode(), apply="merge")
    cluster.agent()
    passwd = cluster.root / "etc/passwd"
    wait_until(lambda: "alice" in passwd.read_text(), what="merged passwd")
    got = passwd.read_text().splitlines()
    assert got[:2] == ["root:x:0:0:root:/root:/bin/bash", "munge:x:998:995::/run/munge:/sbin/nologin"]
    assert [ln.split(":")[0] for ln in got if int(ln.split(":")[2]) >= 1000] == ["alice", "bob"]
    assert "olduser" not in passwd.read_text()


def test_post_apply_runs_the_nodes_own_command_with_a_timeout(cluster, tmp_path):
    marker = tmp_path / "reloaded"
    script = tmp_path / "reload.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> {marker}\n")
    script.chmod(0o755)
    cluster.master.publish("/etc/auto.home", b"* nas:/home/&\n")
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent(post_apply={"/etc/auto.home": [str(script), "autofs"],
                                  "/etc/hosts": "sleep 30"},
                      post_apply_timeout_s=0.5)
    wait_until(lambda: marker.exists(), what="post_apply ran")
    assert marker.read_text() == "autofs\n"
    wait_until(lambda: a.value("four11_agent_post_apply_total", result="timeout") == 1)
    assert a.value("four11_agent_post_apply_total", result="ok") == 1
    assert (cluster.root / "etc/hosts").read_bytes() == b"v1\n"  # a failing command undoes nothing


def test_corrupt_state_is_reported_and_rebuilt_by_a_full_sync(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    cluster.state.mkdir()
    (cluster.state / "state.json").write_text("{not json")
    a = cluster.agent()
    wait_until(lambda: (cluster.root / "etc/hosts").exists(), what="full sync")
    assert a.value("four11_agent_state_rebuilt_total") == 1
    assert any("corrupt" in ln for ln in a.lines)
    assert (cluster.state / "state.json.corrupt").read_text() == "{not json"
    wait_until(lambda: a.value("four11_agent_applied_index_version") > 0)
    assert a.stop() == 0
    b = cluster.agent()  # the rebuilt state is good: no second rebuild
    wait_until(lambda: b.value("four11_agent_syncs_total", trigger="start", result="ok") == 1)
    assert b.value("four11_agent_state_rebuilt_total") == 0


def test_sighup_reloads_and_a_bad_reload_keeps_running(cluster):
    cluster.master.publish("/etc/hosts", b"v1\n")
    cluster.master.publish("/etc/exports", b"/nas\n", group="/nas")
    a = cluster.agent()
    wait_until(lambda: (cluster.root / "etc/hosts").exists())
    assert not (cluster.root / "etc/exports").exists()
    cfg = yaml.safe_load(a.config.read_text())
    a.config.write_text(yaml.safe_dump({**cfg, "typo_key": 1}))
    a.signal(signal.SIGHUP)
    wait_until(lambda: a.value("four11_agent_config_reloads_total", result="failed") == 1)
    assert any("typo_key" in ln for ln in a.lines)
    # now join /nas with its key: the reload syncs the new group's files
    (cluster.keys / "groups").mkdir(exist_ok=True)
    src = cluster.master.keys / "groups/nas.key"
    (cluster.keys / "groups/nas.key").write_bytes(src.read_bytes())
    os.chmod(cluster.keys / "groups/nas.key", 0o400)
    a.config.write_text(yaml.safe_dump({**cfg, "groups": ["/compute", "/nas"]}))
    a.signal(signal.SIGHUP)
    wait_until(lambda: (cluster.root / "etc/exports").exists(), what="reloaded groups")
    assert a.value("four11_agent_config_reloads_total", result="ok") == 1
    res = cluster.master.publish("/etc/hosts", b"v2\n")
    send_unicast(res.alert_file.read_bytes(), a.unicast_port)  # still listening
    wait_until(lambda: (cluster.root / "etc/hosts").read_bytes() == b"v2\n")
    assert a.stop() == 0
    assert any("agent stopped" in ln for ln in a.lines)


def test_index_expiring_while_polls_see_no_change_freezes_and_alarms(cluster):
    cluster.master.d.index_expiry_s = 2  # the publisher stops re-signing after this
    cluster.master.publish("/etc/hosts", b"v1\n")
    a = cluster.agent(poll_mean_s=0.3)
    hosts = cluster.root / "etc/hosts"
    wait_until(lambda: hosts.exists() and a.healthz()[0] == 200, what="start sync")
    wait_until(lambda: a.value("four11_agent_index_expired") == 1, what="freeze noticed")
    status, text = a.healthz()
    assert status == 503 and "expired" in text
    assert hosts.read_bytes() == b"v1\n"  # the files stay
    assert any("expired index" in ln for ln in a.lines)
    cluster.master.d.index_expiry_s = 3600
    cluster.master.d.resign()  # the publisher is back
    wait_until(lambda: a.healthz()[0] == 200, what="thawed")
    assert a.value("four11_agent_index_expired") == 0
