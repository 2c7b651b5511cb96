"""`411 export-node-keys` (a node's key bundle) and `411 keygen-secret` (the chart's key Secret)."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ._tools import K8S_VERSION, cli, render


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def files_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_export_node_keys_holds_only_the_nodes_keys(master_keys, tmp_path):
    out = tmp_path / "bundle"
    r = cli("411", "export-node-keys", "--keys", str(master_keys), "--group", "/compute/light",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert files_under(out) == ["cluster.key", "groups/compute.key", "master.pub"]
    assert mode(out) == 0o700
    assert mode(out / "master.pub") == 0o444
    assert mode(out / "cluster.key") == 0o400 and mode(out / "groups/compute.key") == 0o400
    assert (out / "groups/compute.key").read_bytes() == (master_keys / "groups/compute.key").read_bytes()


def test_a_node_with_the_bundle_reads_its_group_only(master_keys, tmp_path):
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/compute.conf").write_text("for compute\n")
    (src / "etc/nas.conf").write_text("for nas\n")
    d411 = tmp_path / "411.d"
    for name, group in (("compute.conf", "/compute"), ("nas.conf", "/nas")):
        r = cli("411put", "--411dir", str(d411), "--keys", str(master_keys), "--group", group, "--noalert",
                "--chroot", str(src), str(src / "etc" / name))
        assert r.returncode == 0, r.stderr
    out = tmp_path / "bundle"
    assert cli("411", "export-node-keys", "--keys", str(master_keys), "--group", "/compute",
               "--out", str(out)).returncode == 0
    listing = cli("411get", "--master", str(d411), "--keys", str(out), "--state-dir", str(tmp_path / "st"))
    assert listing.returncode == 0, listing.stderr
    names = {ln.split()[0] for ln in listing.stdout.splitlines() if ln.strip()}
    compute = next(n for n in names if "compute" in n)
    nas = next(n for n in names if "nas" in n)
    common = ("--master", str(d411), "--keys", str(out), "--state-dir", str(tmp_path / "st"),
              "--group", "/compute")
    r = cli("411get", *common, compute)
    assert r.returncode == 0 and r.stdout == "for compute\n", r.stderr
    r = cli("411get", *common, nas)
    assert r.returncode != 0 and "for nas" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # even claiming the group does not help: the bundle has no /nas key
    r = cli("411get", *common, "--group", "/nas", nas)
    assert r.returncode != 0 and "for nas" not in r.stdout, r.stdout
    assert "no_key" in r.stderr


def test_export_refuses_bad_input_with_one_line_and_writes_nothing(master_keys, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "other").write_text("x")
    r = cli("411", "export-node-keys", "--keys", str(master_keys), "--group", "/compute", "--out", str(out))
    assert r.returncode == 2 and "non-empty" in r.stderr and len(r.stderr.splitlines()) == 1
    assert files_under(out) == ["other"]
    r = cli("411", "export-node-keys", "--keys", str(tmp_path / "nope"), "--out", str(tmp_path / "b2"))
    assert r.returncode == 2 and "master.pub does not exist" in r.stderr
    assert not (tmp_path / "b2").exists()
    r = cli("411", "export-node-keys", "--keys", str(master_keys), "--group", "/a/../b",
            "--out", str(tmp_path / "b3"))
    assert r.returncode == 2 and "invalid group name" in r.stderr and not (tmp_path / "b3").exists()


def test_export_refuses_a_key_others_can_read(tmp_path):
    keys = tmp_path / "keys"
    assert cli("411", "keygen", "--out", str(keys), "--kem", "x25519").returncode == 0
    os.chmod(keys / "cluster.key", 0o644)
    r = cli("411", "export-node-keys", "--keys", str(keys), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "chmod 0400" in r.stderr and "cluster.key" in r.stderr
    assert not (tmp_path / "b").exists()


CHART_ITEMS = {"master.key", "master.pub", "cluster.key", "cluster.pub",
               "group.compute.key", "group.compute.pub", "group.nas.key", "group.nas.pub"}


def test_manifest_is_a_valid_secret_with_the_items_the_chart_mounts(master_keys):
    r = cli("411", "keygen-secret", "--name", "four11-keys", "--namespace", "ops", "--manifest",
            "--from", str(master_keys))
    assert r.returncode == 0, r.stderr
    secret = yaml.safe_load(r.stdout)
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == CHART_ITEMS
    assert data["group.nas.key"] == (master_keys / "groups/nas.key").read_bytes()
    # every item any pod of the chart mounts exists in this Secret
    objs = render("--set", "keys.existingSecret=four11-keys", "--set", "keys.groups={/compute,/nas}",
                  "--set", "agent.pools[0].name=all", "--set", "agent.pools[0].groups={/compute,/nas}")
    mounted = {i["key"] for o in objs for spec in pod_specs(o) for v in spec["volumes"]
               if "secret" in v for i in v["secret"]["items"]}
    assert mounted <= set(data) and {"master.key", "group.nas.key", "group.nas.pub"} <= mounted


def pod_specs(o: dict) -> list[dict]:
    if o["kind"] in ("Deployment", "DaemonSet", "Job"):
        return [o["spec"]["template"]["spec"]]
    return [o["spec"]] if o["kind"] == "Pod" else []


class FakeApiServer:
    """Kubernetes' API on 127.0.0.1: answers GET/POST of one Secret and records what it got."""

    def __init__(self, get_status: int, post_status: int = 201):
        self.requests: list[tuple[str, str, dict, dict | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int) -> None:
                body = json.dumps({"kind": "Status", "code": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                outer.requests.append(("GET", self.path, dict(self.headers), None))
                self._answer(get_status)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(("POST", self.path, dict(self.headers), body))
                self._answer(post_status)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token(tmp_path) -> Path:
    t = tmp_path / "token"
    t.write_text("sa-token-123\n")
    return t


def keygen_secret(api: FakeApiServer, token: Path, *extra: str):
    return cli("411", "keygen-secret", "--name", "rel-four11-keys", "--namespace", "ops", "--api-server",
               api.url, "--token-file", str(token), "--kem", "x25519", *extra)


def test_keygen_secret_creates_the_secret_when_missing(token):
    api = FakeApiServer(get_status=404)
    try:
        r = keygen_secret(api, token, "--group", "/compute")
    finally:
        api.close()
    assert r.returncode == 0, r.stderr
    assert "created with 6 keys" in r.stdout
    (m1, p1, h1, _), (m2, p2, h2, body) = api.requests
    assert (m1, p1) == ("GET", "/api/v1/namespaces/ops/secrets/rel-four11-keys")
    assert (m2, p2) == ("POST", "/api/v1/namespaces/ops/secrets")
    assert h1["Authorization"] == h2["Authorization"] == "Bearer sa-token-123"
    kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    assert body["metadata"]["name"] == "rel-four11-keys"
    assert set(body["data"]) == {"master.key", "master.pub", "cluster.key", "cluster.pub",
                                 "group.compute.key", "group.compute.pub"}
    assert b"PRIVATE KEY" in base64.b64decode(body["data"]["master.key"])


def test_keygen_secret_leaves_an_existing_secret_alone(token):
    api = FakeApiServer(get_status=200)
    try:
        r = keygen_secret(api, token)
    finally:
        api.close()
    assert r.returncode == 0 and "exists: keys left as they are" in r.stdout
    assert [m for m, *_ in api.requests] == ["GET"]


@pytest.mark.parametrize(("get_status", "post_status", "words"), [
    (403, 201, "reading Secret ops/rel-four11-keys: API server answered HTTP 403"),
    (404, 403, "creating Secret ops/rel-four11-keys: API server answered HTTP 403"),
])
def test_keygen_secret_reports_api_refusals_in_one_line(token, get_status, post_status, words):
    api = FakeApiServer(get_status, post_status)
    try:
        r = keygen_secret(api, token)
    finally:
        api.close()
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.splitlines()) == 1


def test_keygen_secret_outside_a_pod_says_what_is_missing(tmp_path):
    env = {"KUBERNETES_SERVICE_HOST": ""}
    r = cli("411", "keygen-secret", "--name", "x", "--namespace", "ops", env=env)
    assert r.returncode == 2 and "KUBERNETES_SERVICE_HOST unset" in r.stderr
    r = cli("411", "keygen-secret", "--name", "x", "--api-server", "http://127.0.0.1:9",
            "--token-file", str(tmp_path / "none"), "--service-account-dir", str(tmp_path))
    assert r.returncode == 2 and "namespace file" in r.stderr
