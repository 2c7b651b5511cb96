"""What the services export, against what the rules, dashboards and docs/metrics.md name.

The four services run in one event loop on loopback, each with a fresh registry, and are
scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from obs_helpers import DOCS, RULES, all_queries, dashboards, free_port, metric_names, promtool
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from four11.alerter.service import Alerter
from four11.core import config as cfgmod
from four11.core import nodeconfig
from four11.fileserver.server import FileServer
from four11.nodeagent.agent import Agent
from four11.publisher.service import Publisher
from testlib import node_key_dir

SERVICES = ("publisher", "fileserver", "alerter", "agent")
LABELS = {"result", "reason", "channel", "code", "trigger", "scope", "master", "version", "service"}
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


@dataclass
class Family:
    name: str  # as written in PromQL: counters with _total
    type: str
    service: str
    samples: set[str] = field(default_factory=set)
    labels: dict[str, set[str]] = field(default_factory=dict)


async def _scrape(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def _collect(tmp: Path, master_keys: Path) -> dict[str, str]:
    msgs, src = tmp / "msgs", tmp / "hosts"
    msgs.mkdir()
    src.write_text("10.0.0.1 a\n")
    (tmp / "root" / "etc").mkdir(parents=True)
    pub = Publisher({"four11_dir": str(msgs), "keys_dir": str(master_keys), "state_dir": str(tmp / "pst"),
                     "metrics_listen": "127.0.0.1:0", "files": [{"source": str(src), "dest": "/etc/hosts"}]},
                    registry=CollectorRegistry())
    fs = FileServer(msgs, registry=CollectorRegistry())
    al = Alerter({"four11_dir": str(msgs), "metrics_listen": "127.0.0.1:0",
                  "verify_key": str(master_keys / "master.pub"), "multicast": {"enabled": False},
                  "unicast": ["127.0.0.1:9"]}, registry=CollectorRegistry())
    await pub.start()
    port = await fs.start("127.0.0.1", 0)
    await al.start()
    agent_cfg = cfgmod.from_mapping(nodeconfig.SCHEMA, {
        "masters": [f"http://127.0.0.1:{port}/411.d/"], "node_id": "node-1",
        "keys_dir": str(node_key_dir(master_keys, tmp / "nodekeys", ["/compute"])),
        "state_dir": str(tmp / "ast"), "root": str(tmp / "root"), "metrics_listen": "127.0.0.1:0",
        "unicast_port": free_port(socket.SOCK_DGRAM), "multicast": {"enabled": False}, "watch": False,
        "poll_mean_s": 3600})
    agent = Agent(agent_cfg, registry=CollectorRegistry())
    await agent.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while agent.last_ok is None:  # its first sync: every histogram and gauge has moved once
            assert asyncio.get_running_loop().time() < deadline, "the agent never synced"
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as s:
            ports = {"publisher": pub.metrics_port, "fileserver": port, "alerter": al.metrics_port,
                     "agent": agent.metrics_port}
            return {svc: await _scrape(s, p) for svc, p in ports.items()}
    finally:
        await agent.stop()
        await al.stop()
        await fs.stop()
        await pub.stop()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, master_keys) -> dict[str, Family]:
    texts = asyncio.run(_collect(tmp_path_factory.mktemp("catalogue"), master_keys))
    out: dict[str, Family] = {}
    for service, text in texts.items():
        families = list(text_string_to_metric_families(text))
        created = {f.name + "_created" for f in families if f.type in ("counter", "histogram")}
        for f in families:
            if f.name in created:  # prometheus-client's creation time of a counter or histogram
                continue
            name = f.name + "_total" if f.type == "counter" else f.name
            fam = out.setdefault(name, Family(name, f.type, service))
            if f.name == "four11_build_info":
                fam.service = "all"
            for s in f.samples:
                fam.samples.add(s.name)
                for k, v in s.labels.items():
                    fam.labels.setdefault(k, set()).add(v)
    return out


def sample_names(exported: dict[str, Family]) -> set[str]:
    return {s for f in exported.values() for s in f.samples}


def test_every_service_exports_build_info_and_its_own_prefix(exported):
    assert exported["four11_build_info"].labels["service"] == set(SERVICES)
    for name, f in exported.items():
        if name == "four11_build_info":
            continue
        assert name.startswith(f"four11_{f.service}_"), f"{name} exported by the {f.service}"


def test_metric_names_and_labels_follow_the_conventions(exported):
    for name, f in exported.items():
        assert re.fullmatch(r"four11_[a-z0-9_]+", name), name
        if f.type == "counter":
            assert name.endswith("_total"), name
        if f.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: histograms here measure time in seconds"
        if "timestamp" in name or "duration" in name or name.endswith(("_lag", "_age", "_window")):
            assert name.endswith("_seconds"), f"{name}: base unit missing"
        for label, values in f.labels.items():
            if label in ("le", "quantile"):
                continue
            assert label in LABELS, f"{name}: label {label} is not one of the fixed-value labels"
            assert len(values) <= 20, f"{name}: label {label} has {len(values)} values"


def test_every_metric_in_the_rules_and_dashboards_is_exported(exported):
    have = sample_names(exported)
    used: dict[str, str] = {}
    for where, expr in all_queries():
        names = metric_names(expr)
        assert names, f"{where} names no four11 metric: {expr}"
        for n in names:
            used.setdefault(n, where)
    missing = {n: where for n, where in used.items() if n not in have}
    assert not missing, f"named but exported by no service: {missing}"
    assert "four11_agent_no_such_metric" not in have  # the check can fail
    # and the checker finds names where PromQL puts them
    assert metric_names('sum by (reason) (rate(four11_x_total{reason!="a"}[5m])) / four11_y') == \
        {"four11_x_total", "four11_y"}


def test_every_query_parses(tmp_path):
    records = [{"record": f"four11:query_{i}", "expr": expr} for i, (_, expr) in enumerate(all_queries())]
    f = tmp_path / "queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": records}]}))
    r = promtool("check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(records)} rules found" in r.stdout
    f.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [
        {"record": "four11:bad", "expr": "sum by (reason (rate(four11_agent_syncs_total[5m]))"}]}]}))
    r = promtool("check", "rules", str(f))
    assert r.returncode != 0


def documented() -> dict[str, str]:
    """Metric name -> its row in docs/metrics.md (rows are `| `name` | type | ...`)."""
    rows = re.findall(r"^\| `(four11_[a-z0-9_]+)` \| (\w+) \|", (DOCS / "metrics.md").read_text(), re.M)
    return dict(rows)


def test_docs_list_every_exported_metric_with_its_type(exported):
    docs = documented()
    assert set(docs) == set(exported), (
        f"exported, not documented: {sorted(set(exported) - set(docs))}; "
        f"documented, not exported: {sorted(set(docs) - set(exported))}")
    for name, f in exported.items():
        assert docs[name] == f.type, f"{name} is a {f.type}, docs/metrics.md says {docs[name]}"


def test_rules_file_names_only_documented_metrics():
    docs = documented()
    for n in metric_names(RULES.read_text()):
        assert n in docs or (n.endswith(SUFFIXES) and n.rsplit("_", 1)[0] in docs), n


def test_dashboards_overview_and_node_drill_down():
    d = dashboards()
    assert set(d) == {"four11.json", "four11-node.json"}
    for name, dash in d.items():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        assert dash["templating"]["list"][0] == {"name": "datasource", "label": "Data source",
                                                 "type": "datasource", "query": "prometheus", "current": {},
                                                 "hide": 0}
        for p in dash["panels"]:
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, p["title"]
            assert p["targets"], p["title"]
    titles = " | ".join(p["title"].lower() for p in d["four11.json"]["panels"])
    for topic in ("convergence", "nodes behind", "lag distribution", "alerts sent", "alerts received",
                  "alerts rejected", "fetch latency", "bytes sent", "in flight", "publisher rounds"):
        assert topic in titles, f"the overview has no panel about {topic}"
    node = d["four11-node.json"]
    [var] = [v for v in node["templating"]["list"] if v["name"] == "instance"]
    assert var["query"]["query"] == "label_values(four11_agent_index_version, instance)"
    for p in node["panels"]:
        for t in p["targets"]:
            if "four11_agent_" in t["expr"] or "build_info" in t["expr"]:
                assert 'instance="$instance"' in t["expr"], f"{p['title']}: {t['expr']}"
