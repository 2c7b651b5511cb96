"""The alert rules: promtool unit tests, one source shared with the chart, a runbook for each."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from obs_helpers import CHART, DASHBOARDS, DOCS, RULE_TESTS, RULES, alert_rules, promtool

from testlib import BIN

# what the issue asks the rules to cover -> the alerts that do
REQUIRED = {
    "node behind the current index for 15 min": {"Four11NodeBehind", "Four11NodesBehindAtFileserver"},
    "index expiring within 24 h": {"Four11IndexExpiresSoon", "Four11NodeIndexExpiresSoon"},
    "publisher failing or not publishing": {"Four11PublisherFailing", "Four11PublisherNotPublishing",
                                            "Four11PublisherAbsent"},
    "rejected alerts or messages by reason": {"Four11ForgedAlerts", "Four11MessagesRefused",
                                              "Four11IndexRefused", "Four11AlertSpoolRejected"},
    "master unreachable for agents": {"Four11MasterUnreachable", "Four11NodeNotSyncing"},
    "fileserver 5xx": {"Four11FileserverErrors"},
}


def test_rules_parse_and_pass_their_unit_tests():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout
    r = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_is_tested_firing_and_silent():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for t in tests:
        for a in t.get("alert_rule_test", []):
            (fired if a["exp_alerts"] else silent).add(a["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"
    for what, alerts in REQUIRED.items():
        assert alerts <= names, what


def test_the_unit_tests_catch_a_loosened_rule(tmp_path):
    """Proof the tests can fail: a rule that waits longer or a higher threshold breaks them."""
    text = RULES.read_text()
    loose = text.replace("> 5\n", "> 100\n", 1)  # Four11ForgedAlerts
    loose = re.sub(r"(Four11NodeBehind\n(?:.*\n)*?\s+for: )15m", r"\g<1>30m", loose, count=1)
    assert loose.count("> 100") == 1 and "for: 30m" in loose
    (tmp_path / "rules.yml").write_text(loose)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    r = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert r.returncode != 0
    assert "Four11ForgedAlerts" in r.stdout + r.stderr and "Four11NodeBehind" in r.stdout + r.stderr


def test_every_alert_has_severity_summary_and_a_runbook_paragraph():
    runbook = (DOCS / "runbook.md").read_text()
    headings = set(re.findall(r"^## (Four11\w+)$", runbook, re.M))
    for r in alert_rules():
        name = r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), name
        assert len(r["annotations"]["summary"]) > 20, name
        assert r["annotations"]["runbook"] == f"docs/runbook.md#{name.lower()}", name
        assert name in headings, f"docs/runbook.md has no '## {name}'"
        body = runbook.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert len(body.split()) > 30, f"the runbook paragraph of {name} is too thin"
    assert headings == {r["alert"] for r in alert_rules()}, "runbook entries for alerts that do not exist"


def helm_template(*args: str) -> list[dict]:
    helm = BIN / "helm"
    if not helm.exists():
        pytest.fail(f"{helm} is missing: run scripts/ci-deps.sh first", pytrace=False)
    r = subprocess.run([str(helm), "template", "rel", str(CHART), *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def test_the_chart_carries_the_same_rules_and_dashboards():
    assert (CHART / "monitoring" / "rules.yml").read_bytes() == RULES.read_bytes(), \
        "copy deploy/prometheus/rules.yml to charts/four11/monitoring/rules.yml"
    ours = {p.name: p.read_bytes() for p in DASHBOARDS.glob("*.json")}
    chart = {p.name: p.read_bytes() for p in (CHART / "dashboards").glob("*.json")}
    assert chart == ours, "copy deploy/grafana/dashboards/*.json to charts/four11/dashboards/"

    objs = helm_template("--set", "monitoring.prometheusRule.enabled=true",
                         "--set", "monitoring.dashboard.enabled=true",
                         "--set", "monitoring.dashboard.annotations.grafana_folder=four11")
    [rule] = [o for o in objs if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    [cm] = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "four11"}
    assert {k: json.loads(v) for k, v in cm["data"].items()} == {k: json.loads(v) for k, v in ours.items()}
