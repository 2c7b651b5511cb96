"""The frontend for real: build the images with the real Dockerfiles on a locally made base,
`docker compose up -d --wait` with the node profile, and check what an admin relies on.

Needs root, dockerd and debootstrap (scripts/ci-deps.sh installs them); fails, never skips,
when the engine cannot start. Everything is torn down afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
import urllib.request

import pytest

from ._docker import BASE_TAG, Compose, Engine, free_port
from ._tools import ROOT

# A fresh machine debootstraps the base and builds every image first: allow for it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
MASTER_SERVICES = ("publisher", "fileserver", "alerter")
PEM_PRIVATE = "PRIVATE KEY-----"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("compose")
    etc = work / "host-etc"
    shutil.copytree(ROOT / "deploy" / "compose" / "demo-etc", etc)
    env = {
        "BASE_IMAGE": BASE_TAG, "FOUR11_TAG": "citest",
        "FOUR11_HOST_ETC": str(etc), "FOUR11_NODE_ROOT": str(work / "node-root"),
        # loopback only: the published port, metrics, multicast on 127.0.0.1, unicast off
        "FOUR11_HTTP_BIND": "127.0.0.1", "FOUR11_HTTP_PORT": str(free_port()),
        "FOUR11_ALERT_IFACE": "127.0.0.1", "FOUR11_ALERT_PORT": str(free_port(socket.SOCK_DGRAM)),
        "FOUR11_ALERTER_METRICS": f"127.0.0.1:{free_port()}",
        "FOUR11_AGENT_METRICS": f"127.0.0.1:{free_port()}", "FOUR11_AGENT_UNICAST_PORT": "0",
    }
    times: dict[str, float] = {}
    t = time.monotonic()
    engine = Engine()
    times["engine"] = time.monotonic() - t
    compose = Compose(engine, "f411ci", env)
    try:
        t = time.monotonic()
        engine.base_image()
        times["base image"] = time.monotonic() - t
        t = time.monotonic()
        compose("build")
        times["build"] = time.monotonic() - t
        # the quick start of docs/deploy.md: the master first, then the node profile
        t = time.monotonic()
        compose("up", "-d", "--wait", "--wait-timeout", "300", node=False)
        times["up --wait (master)"] = time.monotonic() - t
        t = time.monotonic()
        compose("up", "-d", "--wait", "--wait-timeout", "300")
        times["up --wait (node)"] = time.monotonic() - t
        yield compose, env, etc, work / "node-root", times
    finally:
        compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        engine.stop()
        print("docker test phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))


def inspect(compose: Compose, name: str) -> dict:
    return json.loads(compose.engine.run("inspect", name).stdout)[0]


def wait_for(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_stack_is_healthy_and_demo_files_are_applied(stack):
    compose, env, _, root, _ = stack
    ps = compose("ps", "-a", "--format", "json").stdout.splitlines()
    states = {s["Service"]: s for s in map(json.loads, ps)}
    assert states["keygen"]["State"] == "exited" and states["keygen"]["ExitCode"] == 0
    for svc in (*MASTER_SERVICES, "agent"):
        assert states[svc]["Health"] == "healthy", states[svc]
    with urllib.request.urlopen(f"http://127.0.0.1:{env['FOUR11_HTTP_PORT']}/411.d/index", timeout=10) as r:
        assert r.status == 200 and len(r.read()) > 0
    hello, compute = root / "etc/411-demo/hello.conf", root / "etc/411-demo/compute.conf"
    wait_for(lambda: hello.exists() and compute.exists(), 20, "demo files applied")
    src = ROOT / "deploy" / "compose" / "demo-etc" / "411-demo"
    assert hello.read_bytes() == (src / "hello.conf").read_bytes()
    assert compute.read_bytes() == (src / "compute.conf").read_bytes()
    assert stat.S_IMODE(hello.stat().st_mode) == 0o644
    assert stat.S_IMODE(compute.stat().st_mode) == 0o640


def test_a_source_change_is_applied_by_the_node_within_5s(stack):
    _, _, etc, root, times = stack
    src, dst = etc / "411-demo" / "hello.conf", root / "etc/411-demo/hello.conf"
    wait_for(dst.exists, 20, "first apply")
    for i in range(3):
        text = f"greeting = changed {i} at {time.time()}\n"
        tmp = src.with_name(".hello.tmp")
        tmp.write_text(text)
        os.rename(tmp, src)
        took = wait_for(lambda t=text: dst.exists() and dst.read_text() == t, 5.0, f"change {i} on the node")
        times[f"change {i} applied"] = took


def test_containers_run_hardened_as_the_images_say(stack):
    compose = stack[0]
    for svc in (*MASTER_SERVICES, "agent"):
        c = inspect(compose, compose.container(svc))
        assert c["HostConfig"]["ReadonlyRootfs"] is True, svc
        assert c["HostConfig"]["CapDrop"] == ["ALL"], svc
        assert "no-new-privileges:true" in c["HostConfig"]["SecurityOpt"], svc
        img = compose.engine.run("image", "inspect", c["Image"])
        cfg = json.loads(img.stdout)[0]["Config"]
        assert cfg["Labels"]["org.opencontainers.image.title"] == f"four11-{svc}"
        assert cfg["Healthcheck"]["Test"][0] == "CMD"
        assert cfg["Entrypoint"] == ["411", svc]
        assert cfg["User"] == ("0:0" if svc == "agent" else "10411:10411"), svc
    caps = inspect(compose, compose.container("agent"))["HostConfig"]["CapAdd"]
    assert {c.removeprefix("CAP_") for c in caps} == {"CHOWN", "FOWNER", "DAC_OVERRIDE"}


def test_fileserver_cannot_read_the_keys_and_alerter_has_no_key_file(stack):
    compose = stack[0]
    for svc in ("fileserver", "alerter"):
        name = compose.container(svc)
        mounts = inspect(compose, name)["Mounts"]
        assert [(m["Destination"], m["RW"]) for m in mounts] == [("/var/lib/four11/messages", False)], svc
        assert not [m for m in mounts if m.get("Name", "").endswith(("_keys", "_node-keys"))]
        r = compose.engine.run("exec", name, "sh", "-c", "cat /etc/411-security/master.key", check=False)
        assert r.returncode != 0 and "master.key" in r.stderr
        found = compose.engine.run("exec", name, "sh", "-c",
                                   "find / -xdev -name '*.key' 2>/dev/null; "
                                   f"grep -rl -e '{PEM_PRIVATE}' /etc /var /tmp /root 2>/dev/null; true")
        assert found.stdout.strip() == "", f"{svc} holds key material: {found.stdout}"
    # the publisher does hold the signing key, from the keys volume only
    pub = inspect(compose, compose.container("publisher"))
    keys = [m for m in pub["Mounts"] if m["Destination"] == "/etc/411-security"]
    assert len(keys) == 1 and keys[0]["RW"] is False and keys[0]["Name"].endswith("_keys")


def test_keygen_does_nothing_when_the_keys_exist(stack):
    compose = stack[0]

    def master_key_sum() -> str:
        return compose.engine.run("run", "--rm", "-v", f"{compose.project}_keys:/k:ro", "--entrypoint",
                                  "sha256sum", BASE_TAG, "/k/master.key").stdout.split()[0]

    before = master_key_sum()
    r = compose("run", "--rm", "keygen", timeout=120)
    assert "keys exist, nothing to do" in r.stdout
    assert master_key_sum() == before


def test_down_leaves_no_secret_outside_the_key_volumes(stack):
    compose = stack[0]
    compose("down", timeout=300)  # keeps the volumes, as an admin's `down` does
    vols = compose.engine.run("volume", "ls", "-q").stdout.split()
    ours = sorted(v for v in vols if v.startswith("f411ci_"))
    assert ours == ["f411ci_agent-state", "f411ci_keys", "f411ci_messages", "f411ci_node-keys",
                    "f411ci_publisher-state"]
    for v in ours:
        r = compose.engine.run("run", "--rm", "-v", f"{v}:/v:ro", "--entrypoint", "sh", BASE_TAG, "-c",
                               f"find /v -name '*.key'; grep -rl -e '{PEM_PRIVATE}' /v; true")
        holds = r.stdout.split()
        if v == "f411ci_keys":
            assert "/v/master.key" in holds
        elif v == "f411ci_node-keys":
            assert "/v/cluster.key" in holds and "/v/groups/compute.key" in holds
            assert not [h for h in holds if h.endswith("master.key")]
        else:
            assert holds == [], f"{v} holds key material: {holds}"
    # nor do the images
    for svc in (*MASTER_SERVICES, "agent"):
        r = compose.engine.run("run", "--rm", "--entrypoint", "sh", f"four11/{svc}:citest", "-c",
                               f"find / -xdev -name '*.key' 2>/dev/null; "
                               f"grep -rl -e '{PEM_PRIVATE}' /etc /var /tmp /root 2>/dev/null; true")
        assert r.stdout.strip() == "", f"image four11/{svc} holds key material: {r.stdout}"
