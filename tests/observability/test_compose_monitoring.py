"""The compose `monitoring` profile: Prometheus and Grafana provisioned from deploy/."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from obs_helpers import DASHBOARDS, ROOT, RULES, promtool

from testlib import BIN

COMPOSE = BIN.parent / "docker" / "cli-plugins" / "docker-compose"  # see scripts/ci-deps.sh
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def compose(*args: str) -> subprocess.CompletedProcess:
    if not COMPOSE.exists():
        pytest.fail(f"{COMPOSE} is missing: run scripts/ci-deps.sh first", pytrace=False)
    return subprocess.run([str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_profile_adds_prometheus_and_grafana_wired_to_deploy_files():
    plain = json.loads(compose("config", "--format", "json").stdout)["services"]
    assert not {"prometheus", "grafana"} & set(plain), "monitoring must stay opt-in"
    r = compose("--profile", "monitoring", "--profile", "node", "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    svcs = json.loads(r.stdout)["services"]
    prom, graf = svcs["prometheus"], svcs["grafana"]
    binds = {n: {v["target"]: v for v in s["volumes"] if v["type"] == "bind"} for n, s in svcs.items()
             if n in ("prometheus", "grafana")}
    assert binds["prometheus"]["/etc/prometheus/prometheus.yml"]["source"] == str(PROM_CONFIG)
    assert binds["prometheus"]["/etc/prometheus/four11/rules.yml"]["source"] == str(RULES)
    assert binds["grafana"]["/etc/grafana/provisioning"]["source"] == str(PROVISIONING)
    assert binds["grafana"]["/var/lib/grafana/dashboards/four11"]["source"] == str(DASHBOARDS)
    assert all(v["read_only"] for b in binds.values() for v in b.values())
    for s in (prom, graf):  # published on loopback only unless the admin says otherwise
        assert s["profiles"] == ["monitoring"]
        assert [p["host_ip"] for p in s["ports"]] == ["127.0.0.1"]
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"]
    assert graf["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # no secret of four11 reaches them
    for s in (prom, graf):
        assert not {v.get("source") for v in s["volumes"]} & {"keys", "node-keys", "messages"}


def test_prometheus_config_scrapes_every_service_at_its_default_port_and_loads_the_rules(tmp_path):
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    assert cfg["rule_files"] == ["/etc/prometheus/four11/rules.yml"]
    targets = {j["job_name"]: t for j in cfg["scrape_configs"] for sc in j["static_configs"]
               for t in sc["targets"]}
    assert targets == {"four11-publisher": "publisher:9411", "four11-fileserver": "fileserver:8411",
                       "four11-alerter": "host.docker.internal:9412",
                       "four11-agent": "host.docker.internal:9413"}
    cfg["rule_files"] = [str(RULES)]  # where the container sees it, here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    r = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_prometheus():
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"], d["isDefault"]) for d in ds] == [
        ("prometheus", "http://prometheus:9090", True)]
    [prov] = yaml.safe_load((PROVISIONING / "dashboards" / "four11.yml").read_text())["providers"]
    assert prov["type"] == "file" and prov["options"]["path"] == "/var/lib/grafana/dashboards/four11"
    env = json.loads(compose("--profile", "monitoring", "config", "--format", "json").stdout)
    home = env["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/four11/four11.json"
    assert (DASHBOARDS / "four11.json").exists()
