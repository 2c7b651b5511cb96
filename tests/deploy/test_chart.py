"""The Helm chart: lint, render every ci/ scenario, validate, and check what admins rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from four11.cli.keybundle import secret_item

from ._tools import CHART, K8S_VERSION, ci_values, helm, render

CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def master(objs: list[dict]) -> dict:
    [dep] = by_kind(objs, "Deployment")
    return dep


def containers(pod_spec: dict) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec.get("initContainers", []) + pod_spec["containers"]}


def test_lint_strict_default_and_every_scenario():
    helm("lint", "--strict", str(CHART))
    for f in ci_values():
        helm("lint", "--strict", str(CHART), "-f", str(f))


@pytest.mark.parametrize("values", ci_values(), ids=lambda p: p.name)
def test_every_scenario_renders_and_validates_strictly(values):
    objs = render("-f", str(values))
    assert objs, "nothing rendered"
    for o in objs:
        where = f"{values.name}: {o['kind']}/{o['metadata']['name']}"
        if (o["apiVersion"], o["kind"]) in CRD_KINDS:
            # prometheus-operator CRDs carry no bundled schema: check their shape by hand.
            assert o["spec"], where
            continue
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {e.message}")


def test_agent_daemonset_uses_host_network_with_cluster_dns():
    [ds] = by_kind(render(), "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    off = by_kind(render("--set", "agent.hostNetwork=false"), "DaemonSet")[0]["spec"]["template"]["spec"]
    assert "hostNetwork" not in off and "dnsPolicy" not in off


def test_no_secret_reaches_fileserver_or_alerter():
    for values in ci_values():
        dep = master(render("-f", str(values)))
        spec = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        secretish = {n for n, v in volumes.items() if "secret" in v or n == "keys"}
        assert "keys-secret" in secretish
        for name in ("fileserver", "alerter"):
            c = containers(spec)[name]
            mounted = {m["name"] for m in c["volumeMounts"]}
            assert not mounted & secretish, f"{values.name}: {name} mounts {mounted & secretish}"
            assert all(m.get("readOnly") for m in c["volumeMounts"] if m["name"] == "messages")
            assert "envFrom" not in c and "env" not in c
        assert spec["automountServiceAccountToken"] is False


def test_publisher_gets_private_signing_key_but_only_public_encryption_keys():
    spec = master(render("-f", str(CHART / "ci" / "pools-values.yaml")))["spec"]["template"]["spec"]
    [secret] = [v["secret"] for v in spec["volumes"] if "secret" in v]
    items = {i["key"]: i["path"] for i in secret["items"]}
    assert items["master.key"] == "master.key"
    assert items["group.a_space.yellow.pub"] == "groups/a space/yellow.pub"
    assert not [k for k in items if k.endswith(".key") and k != "master.key"]


def test_secure_defaults_everywhere_but_the_agent():
    objs = render("-f", str(CHART / "ci" / "full-values.yaml"))
    pods = [o["spec"]["template"]["spec"] for o in objs if o["kind"] in ("Deployment", "Job")]
    pods += [o["spec"] for o in objs if o["kind"] == "Pod"]
    assert len(pods) == 3  # master, keygen hook Job, helm test pod
    for spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        for name, c in containers(spec).items():
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", [])) or name == "keys"


def test_agent_exceptions_are_the_documented_ones():
    [ds] = by_kind(render(), "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    [c] = spec["containers"]
    sc = c["securityContext"]
    assert spec["securityContext"]["runAsUser"] == 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    text = (CHART / "templates" / "daemonset.yaml").read_text()
    assert text.count("# Exception:") >= 3


def test_selector_labels_carry_no_chart_version():
    for values in ci_values():
        for o in render("-f", str(values)):
            sels = []
            if o["kind"] in ("Deployment", "DaemonSet"):
                sels += [o["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"]]
            if o["kind"] == "Service":
                sels.append(o["spec"]["selector"])
            for s in sels:
                assert "helm.sh/chart" not in s and "app.kubernetes.io/version" not in s, o["metadata"]
                assert not any("0.1.0" in str(v) for v in s.values())
    # and the pods still match their selector
    dep = master(render())
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_schema_rejects_a_wrong_type_naming_the_key():
    r = helm("template", "rel", str(CHART), "--set", "agent.hostNetwork=maybe", check=False)
    assert r.returncode != 0
    assert "hostNetwork" in r.stderr and "boolean" in r.stderr
    r = helm("template", "rel", str(CHART), "--set", "agent.pools[0].name=Bad_Name", check=False)
    assert r.returncode != 0 and "name" in r.stderr
    r = helm("template", "rel", str(CHART), "--set", "agent.allowPaths[0]=/etc/../root", check=False)
    assert r.returncode != 0 and "allowPaths" in r.stderr
    r = helm("template", "rel", str(CHART), "--set", "agnet.hostNetwork=true", check=False)
    assert r.returncode != 0 and "agnet" in r.stderr


def test_pools_get_their_own_daemonset_nodes_and_group_keys_only():
    objs = render("-f", str(CHART / "ci" / "pools-values.yaml"))
    dss = {d["metadata"]["labels"]["four11.io/pool"]: d for d in by_kind(objs, "DaemonSet")}
    assert set(dss) == {"compute", "gpu", "storage"}
    want = {"compute": ["/compute"], "gpu": ["/compute/gpu"], "storage": ["/nas", "a space/yellow"]}
    for pool, ds in dss.items():
        spec = ds["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"four11.io/pool": pool}
        [secret] = [v["secret"] for v in spec["volumes"] if "secret" in v]
        keys = sorted(i["key"] for i in secret["items"])
        assert keys == sorted(["master.pub", "cluster.key", *(f"{secret_item(g)}.key" for g in want[pool])])
        cm = next(o for o in objs if o["kind"] == "ConfigMap"
                  and o["metadata"]["name"] == spec["volumes"][0]["configMap"]["name"])
        cfg = yaml.safe_load(cm["data"]["agent.yaml"])
        assert cfg["groups"] == want[pool] and cfg["root"] == "/host"
        assert cfg["masters"] == ["http://rel-four11.ops.svc.cluster.local:8411/411.d/"]
    gpu_tol = dss["gpu"]["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_tol


def test_host_mounts_are_only_the_allowed_prefixes_and_the_state_dir():
    objs = render("-f", str(CHART / "ci" / "pools-values.yaml"))
    for ds in by_kind(objs, "DaemonSet"):
        spec = ds["spec"]["template"]["spec"]
        host = sorted(v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v)
        assert host == ["/etc", "/var/lib/four11/agent", "/var/lib/four11/files"]
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert {"/host/etc", "/host/var/lib/four11/files"} <= mounts
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            assert not [v for v in o["spec"]["template"]["spec"]["volumes"] if "hostPath" in v]


def test_keygen_hook_and_its_minimal_rbac():
    objs = render()
    hooks = [o for o in objs if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "pre-install"]
    assert sorted(o["kind"] for o in hooks) == ["Job", "Role", "RoleBinding", "ServiceAccount"]
    [role] = by_kind(objs, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["rel-four11-keys"], "verbs": ["get"]},
    ]
    [job] = by_kind(objs, "Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["411", "keygen-secret"]
    assert c["args"] == ["--name", "rel-four11-keys", "--kem", "mlkem768-x25519", "--group", "/compute"]
    # an existing Secret: no hook, no RBAC, and every pod uses that Secret
    objs = render("-f", str(CHART / "ci" / "existing-secret-values.yaml"))
    assert not by_kind(objs, "Job") and not by_kind(objs, "Role") and not by_kind(objs, "RoleBinding")
    names = {v["secret"]["secretName"] for o in objs if o["kind"] in ("Deployment", "DaemonSet")
             for v in o["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert names == {"cluster-411-keys"}


def test_helm_test_pod_verifies_the_index_with_the_public_key_only():
    [pod] = by_kind(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["411get"]
    assert "http://rel-four11.ops.svc.cluster.local:8411/411.d/" in c["args"]
    [secret] = [v["secret"] for v in pod["spec"]["volumes"] if "secret" in v]
    assert secret["items"] == [{"key": "master.pub", "path": "master.pub"}]


def test_agents_headless_service_is_the_alerters_unicast_target():
    objs = render()
    svc = next(o for o in by_kind(objs, "Service") if o["metadata"]["name"] == "rel-four11-agents")
    assert svc["spec"]["clusterIP"] == "None"
    assert {"name": "alerts", "port": 8411, "targetPort": "alerts", "protocol": "UDP"} in svc["spec"]["ports"]
    cm = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "rel-four11-master")
    alerter = yaml.safe_load(cm["data"]["alerter.yaml"])
    assert alerter["unicast"] == ["rel-four11-agents.ops.svc.cluster.local:8411"]
    assert alerter["multicast"]["enabled"] is False
    files = yaml.safe_load(cm["data"]["files.yaml"])
    assert files["resign_s"] < files["index_expiry_s"]


def test_monitoring_is_off_by_default_and_names_only_exported_metrics():
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PersistentVolumeClaim"}
    objs = render("-f", str(CHART / "ci" / "full-values.yaml"))
    [rule] = by_kind(objs, "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dash = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard"))
    panels = json.loads(dash["data"]["four11.json"])["panels"]
    exprs += [t["expr"] for p in panels for t in p["targets"]]
    # that each name is really exported is checked against running services in tests/observability
    names = {n for e in exprs for n in re.findall(r"four11_[a-z_]+", e)}
    assert len(names) >= 6
    for n in names:
        assert re.fullmatch(r"four11_(build_info|(agent|publisher|fileserver|alerter)_[a-z_]+)", n), n
    [sm] = by_kind(objs, "ServiceMonitor")
    assert {e["port"] for e in sm["spec"]["endpoints"]} == {"http", "pub-metrics", "alert-metrics", "metrics"}
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool is missing: run scripts/ci-deps.sh (apt prometheus)", pytrace=False)
    return path


def test_alert_rules_and_dashboard_queries_pass_promtool(tmp_path):
    objs = render("-f", str(CHART / "ci" / "full-values.yaml"))
    [rule] = by_kind(objs, "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    dash = next(o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard"))
    # each panel query of each dashboard as a recording rule (Grafana's variables filled in), so
    # promtool parses it
    queries = [{"record": f"four11:panel_{n}_{p['id']}_{t['refId']}",
                "expr": t["expr"].replace("$__rate_interval", "5m").replace("$instance", "n1")}
               for n, text in enumerate(dash["data"].values())
               for p in json.loads(text)["panels"] for t in p["targets"]]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": queries}]}))
    for f in ("rules.yaml", "dashboard.yaml"):
        r = subprocess.run([promtool(), "check", "rules", str(tmp_path / f)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [{"record": "x:y", "expr": "sum("}]}]}))
    r = subprocess.run([promtool(), "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_alert_rules_fire_as_described(tmp_path):
    """promtool's rule unit test: a node on an expired index for 5 minutes raises the alert."""
    [rule] = by_kind(render("--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": 'four11_agent_index_expired{instance="n1"}', "values": "0 1 1 1 1 1 1 1"},
                {"series": 'four11_agent_index_expired{instance="n2"}', "values": "0 0 0 0 0 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "Four11IndexExpiredOnNode", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "Four11IndexExpiredOnNode", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "instance": "n1"},
                    "exp_annotations": {
                        "summary": "A node froze its files because the master's index expired.",
                        "runbook": "docs/runbook.md#four11indexexpiredonnode"}}]},
            ],
        }],
    }))
    r = subprocess.run([promtool(), "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
