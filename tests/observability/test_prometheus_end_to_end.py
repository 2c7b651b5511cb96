"""The four services as an admin runs them, scraped by a real Prometheus on loopback.

Publisher, fileserver, alerter and two agents run as `411 <service>` processes with their
metrics on free loopback ports; the alerter reaches the agents by unicast on 127.0.0.1. A
Prometheus server (the Debian package) with its own config and data dir scrapes them every
second and loads deploy/prometheus/rules.yml. Everything is asserted through its HTTP API:
targets up, convergence after a publish, forged alerts in the refusal counter by reason, and
the real rules raising Four11ForgedAlerts and Four11TargetDown (and nothing in a healthy
cluster)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml
from obs_helpers import RULES, Proc, Prometheus, free_port, wait_until

from four11.core.alert import Alert, encode_alert
from four11.core.index import peek_version
from four11.core.keys import KEM_X25519, keygen, load_signing_key
from testlib import node_key_dir

TIMEOUT = 60.0  # generous: a loaded 2-core machine runs five processes and Prometheus here


def _yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


class Cluster:
    def __init__(self, tmp: Path, master_keys: Path) -> None:
        self.tmp, self.keys = tmp, master_keys
        self.msgs = tmp / "msgs"
        self.msgs.mkdir()
        self.src = tmp / "src" / "hosts"
        self.src.parent.mkdir()
        self.src.write_text("10.0.0.1 frontend\n")
        self.procs: list[Proc] = []
        self.agent_udp: list[int] = []
        self.roots: list[Path] = []
        self.ports: dict[str, list[int]] = {}

    def _start(self, name: str, *args: str) -> Proc:
        p = Proc(name, *args)
        self.procs.append(p)
        return p

    def start(self) -> None:
        fs = self._start("fileserver", "411", "fileserver", "--411dir", str(self.msgs),
                         "--listen", "127.0.0.1:0")
        fs_port = int(fs.wait_for(r"serving .* at http://127\.0\.0\.1:(\d+)/411\.d/").group(1))
        self.master = f"http://127.0.0.1:{fs_port}/411.d/"
        pub = self._start("publisher", "411", "publisher", "--config", _yaml(self.tmp / "files.yaml", {
            "four11_dir": str(self.msgs), "keys_dir": str(self.keys), "state_dir": str(self.tmp / "pub"),
            "metrics_listen": "127.0.0.1:0", "master_urls": [self.master], "poll_s": 0.2,
            "debounce_s": 0.1, "files": [{"source": str(self.src), "dest": "/etc/hosts"}]}))
        pub_port = int(pub.wait_for(r"publisher running: .* metrics on port (\d+)").group(1))
        agent_ports = []
        nodekeys = node_key_dir(self.keys, self.tmp / "nodekeys", ["/compute"])
        for i in (1, 2):
            root = self.tmp / f"node{i}"
            (root / "etc").mkdir(parents=True)
            self.roots.append(root)
            udp = free_port(socket.SOCK_DGRAM)
            self.agent_udp.append(udp)
            a = self._start(f"agent{i}", "411", "agent", "--config", _yaml(self.tmp / f"agent{i}.yaml", {
                "masters": [self.master], "node_id": f"node-{i}", "groups": ["/compute"],
                "keys_dir": str(nodekeys), "state_dir": str(self.tmp / f"state{i}"), "root": str(root),
                "metrics_listen": "127.0.0.1:0", "unicast_port": udp, "multicast": {"enabled": False},
                "watch": False, "poll_mean_s": 3600, "connect_timeout_s": 2, "read_timeout_s": 5}))
            agent_ports.append(int(a.wait_for(r"metrics on port (\d+)").group(1)))
        al = self._start("alerter", "411", "alerter", "--config", _yaml(self.tmp / "alerter.yaml", {
            "four11_dir": str(self.msgs), "metrics_listen": "127.0.0.1:0", "interval_s": 1.0,
            "spool_poll_s": 0.1, "verify_key": str(self.keys / "master.pub"),
            "multicast": {"enabled": False}, "unicast": [f"127.0.0.1:{p}" for p in self.agent_udp]}))
        al_port = int(al.wait_for(r"alerter running: .* metrics on port (\d+)").group(1))
        self.ports = {"four11-publisher": [pub_port], "four11-fileserver": [fs_port],
                      "four11-alerter": [al_port], "four11-agent": agent_ports}

    def index_version(self) -> int:
        return peek_version((self.msgs / "index").read_bytes())

    def stop(self) -> dict[str, int]:
        return {p.name: p.stop() for p in reversed(self.procs)}


@pytest.fixture
def cluster(tmp_path, master_keys):
    c = Cluster(tmp_path, master_keys)
    try:
        c.start()
        yield c
    finally:
        codes = c.stop()
    assert set(codes.values()) == {0}, codes  # every service stopped cleanly on SIGTERM


@pytest.fixture
def prometheus(tmp_path, cluster):
    d = tmp_path / "prometheus"
    d.mkdir()
    jobs = {job: [f"127.0.0.1:{p}" for p in ports] for job, ports in cluster.ports.items()}
    prom = Prometheus(d, jobs, [RULES])
    try:
        yield prom.start()
    finally:
        prom.stop()


def forged_alerts(tmp: Path, master_keys: Path, version: int) -> dict[str, bytes]:
    now = int(time.time())
    alert = Alert(version, ["http://127.0.0.1:9/411.d/"], ["/"], now, now + 600)
    # signed by a key the nodes do not trust
    keygen(tmp / "attacker", [], KEM_X25519)
    unknown = encode_alert(alert, load_signing_key(tmp / "attacker" / "master.key"))
    # the master's key id, but the signature does not cover these bytes
    genuine = bytearray(encode_alert(alert, load_signing_key(master_keys / "master.key")))
    genuine[-1] ^= 0x01
    return {"unknown_key": unknown, "bad_signature": bytes(genuine)}


def test_prometheus_sees_every_service_convergence_and_a_forged_alert(cluster, prometheus, tmp_path,
                                                                      master_keys):
    prom = prometheus
    n_targets = sum(len(p) for p in cluster.ports.values())

    def all_up():
        ts = prom.targets()
        return len(ts) == n_targets and all(t["health"] == "up" for t in ts) and ts

    targets = wait_until(all_up, TIMEOUT, "every target up in Prometheus")
    assert {t["labels"]["job"] for t in targets} == set(cluster.ports)
    assert prom.value("count(up == 1)") == n_targets
    builds = prom.query("four11_build_info")
    assert sorted(r["metric"]["service"] for r in builds) == ["agent", "agent", "alerter", "fileserver",
                                                                "publisher"]

    # the rules file loads into a real server and every rule evaluates without error
    groups = prom.api("rules")["groups"]  # type: ignore[index]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len([r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]])
    wait_until(lambda: all(r["health"] == "ok" for g in prom.api("rules")["groups"] for r in g["rules"]),
               TIMEOUT, "every rule evaluated")

    # the first publish has converged; then publish a change
    v1 = cluster.index_version()
    converged = ("count(four11_agent_applied_index_version == on() group_left() "
                 "max(four11_publisher_index_version))")
    wait_until(lambda: prom.value("max(four11_publisher_index_version)") == v1 and
               prom.value(converged) == 2, TIMEOUT, f"both agents at version {v1} in Prometheus")
    cluster.src.write_text("10.0.0.1 frontend\n10.0.0.2 node-2\n")
    v2 = wait_until(lambda: (v := cluster.index_version()) > v1 and v, TIMEOUT, "a new index")
    wait_until(lambda: prom.value("max(four11_publisher_index_version)") == v2, TIMEOUT,
               f"the publisher's version {v2} in Prometheus")
    wait_until(lambda: prom.value(converged) == 2, TIMEOUT, f"both agents' applied version at {v2}")
    accepted = converged.replace("four11_agent_applied_index_version", "four11_agent_index_version")
    wait_until(lambda: prom.value(accepted) == 2, TIMEOUT, f"both agents' accepted version at {v2}")
    by_node = {r["metric"]["instance"]: float(r["value"][1])
               for r in prom.query("four11_agent_applied_index_version")}
    assert by_node == {f"127.0.0.1:{p}": float(v2) for p in cluster.ports["four11-agent"]}
    for root in cluster.roots:  # what the admin really wanted: the file on each node
        assert (root / "etc" / "hosts").read_text() == "10.0.0.1 frontend\n10.0.0.2 node-2\n"
    # the change reached the nodes by the alert: the alerter sent it and the agents took it
    wait_until(lambda: (prom.value('sum(four11_alerter_datagrams_sent_total{channel="unicast",result="ok"})')
                        or 0) >= 2, TIMEOUT, "unicast alerts counted")
    wait_until(lambda: (prom.value('sum(four11_agent_syncs_total{trigger="alert",result="ok"})') or 0) >= 2,
               TIMEOUT, "alert-triggered syncs counted")
    wait_until(lambda: prom.value("four11_fileserver_index_version") == v2, TIMEOUT,
               "the fileserver serving the new version")

    # nothing is firing in a healthy cluster (a rule that fires here would page an admin for nothing)
    assert firing(prom) == []

    # forged alerts at the first node: counted as refused with their reason, nothing fetched
    refused = ('sum(four11_agent_alerts_received_total'
               '{{result="refused",reason="{}",instance="127.0.0.1:{}"}})')
    node1 = cluster.ports["four11-agent"][0]
    for reason in ("unknown_key", "bad_signature"):
        assert prom.value(refused.format(reason, node1)) == 0
    forged = forged_alerts(tmp_path, master_keys, v2 + 1000)
    sent = {"unknown_key": 6, "bad_signature": 1}  # six of one reason: a spike (more than 5 in 10 min)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for reason, n in sent.items():
            for _ in range(n):
                s.sendto(forged[reason], ("127.0.0.1", cluster.agent_udp[0]))
    for reason, n in sent.items():
        try:
            wait_until(lambda r=reason, n=n: prom.value(refused.format(r, node1)) == n, TIMEOUT,
                       f"the forged alerts counted as refused/{reason}")
        except AssertionError as e:
            seen = {tuple(sorted(r["metric"].items())): r["value"][1]
                    for r in prom.query("four11_agent_alerts_received_total > 0")}
            raise AssertionError(f"{e}; alert counters: {seen}") from None
    node = f'instance="127.0.0.1:{node1}"'
    assert prom.value(f'sum(four11_agent_alerts_received_total{{result="accepted",{node}}})') >= 1
    assert prom.value(f"four11_agent_applied_index_version{{{node}}}") == v2
    assert prom.value("sum(four11_agent_files_total{result=\"refused\"})") == 0
    # the spike raises the rule, for that reason only
    wait_until(lambda: firing(prom) == [("Four11ForgedAlerts", "unknown_key")], TIMEOUT,
               "Four11ForgedAlerts firing for unknown_key")

    # an agent that goes away: its target is down and the rule names the service
    agent2 = next(p for p in cluster.procs if p.name == "agent2")
    assert agent2.stop() == 0
    gone = ("agent", f"127.0.0.1:{cluster.ports['four11-agent'][1]}")

    def down() -> list[tuple[str, str]]:
        return [(a["labels"]["service"], a["labels"]["instance"]) for a in prom.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "Four11TargetDown"]

    wait_until(lambda: down() == [gone], TIMEOUT, "Four11TargetDown pending for the stopped agent")


def firing(prom: Prometheus) -> list[tuple[str, str | None]]:
    return sorted((a["labels"]["alertname"], a["labels"].get("reason"))
                  for a in prom.api("alerts")["alerts"] if a["state"] == "firing")  # type: ignore[index]
