"""``411 keygen-secret --name NAME [--group G]...``: the cluster keys as a Kubernetes Secret.

Run by the Helm chart's pre-install hook Job: if the Secret exists nothing happens (keys are
never replaced behind the admin's back); otherwise fresh keys are generated in a temporary
directory and the Secret is created through the API server with the pod's service account.
``--manifest`` prints the Secret as YAML instead (for an ``existingSecret``), ``--from DIR``
uses keys made earlier by ``411 keygen``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from ..core.errors import ConfigError
from ..core.keys import KEM_HYBRID, KEM_X25519, keygen
from .common import EXIT_OK, run
from .keybundle import secret_data

PROG = "411 keygen-secret"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def manifest(name: str, namespace: str | None, data: dict[str, bytes]) -> dict:
    meta: dict = {"name": name, "labels": {"app.kubernetes.io/part-of": "four11"}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}}


class Api:
    """The few calls needed, with the service account's token (stdlib only)."""

    def __init__(self, server: str, token: str, ca_file: str | None, timeout: float = 15.0):
        self.server, self.token, self.timeout = server.rstrip("/"), token, timeout
        self.ctx = ssl.create_default_context(cafile=ca_file) if server.startswith("https") else None

    def call(self, method: str, path: str, body: dict | None = None) -> int:
        req = urllib.request.Request(
            self.server + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ConfigError(f"cannot reach the API server {self.server}: {reason}") from None


def _keys(a: argparse.Namespace, tmp: str) -> dict[str, bytes]:
    if a.from_dir:
        return secret_data(Path(a.from_dir))
    kem = KEM_X25519 if a.kem == "x25519" else KEM_HYBRID
    keygen(Path(tmp) / "keys", a.group, kem)
    return secret_data(Path(tmp) / "keys")


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the {what} {path}: {e.strerror}") from None


def apply(a: argparse.Namespace) -> int:
    sa = Path(a.service_account_dir)
    ns = a.namespace or _read(sa / "namespace", "namespace file")
    server = a.api_server
    if not server:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host:
            raise ConfigError("not in a pod (KUBERNETES_SERVICE_HOST unset): give --api-server")
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    ca = str(sa / "ca.crt") if server.startswith("https") else None
    api = Api(server, _read(Path(a.token_file or sa / "token"), "token file"), ca)
    path = f"/api/v1/namespaces/{ns}/secrets"
    status = api.call("GET", f"{path}/{a.name}")
    if status == 200:
        print(f"Secret {ns}/{a.name} exists: keys left as they are")
        return EXIT_OK
    if status != 404:
        raise ConfigError(f"reading Secret {ns}/{a.name}: API server answered HTTP {status}")
    with tempfile.TemporaryDirectory(prefix="411-keygen-") as tmp:
        body = manifest(a.name, ns, _keys(a, tmp))
    status = api.call("POST", path, body)
    if status == 409:  # created by a concurrent run in between: theirs stays
        print(f"Secret {ns}/{a.name} exists: keys left as they are")
        return EXIT_OK
    if status not in (200, 201):
        raise ConfigError(f"creating Secret {ns}/{a.name}: API server answered HTTP {status}")
    print(f"Secret {ns}/{a.name} created with {len(body['data'])} keys")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="Create the cluster keys as a Kubernetes Secret.")
    p.add_argument("--name", required=True, help="name of the Secret")
    p.add_argument("--namespace", help="namespace (default: the pod's own)")
    p.add_argument("--group", action="append", default=[], help="also make a key for this group")
    p.add_argument("--kem", choices=("mlkem768-x25519", "x25519"), default="mlkem768-x25519",
                   help="HPKE KEM for the encryption keys")
    p.add_argument("--from", dest="from_dir", help="use the keys of this `411 keygen` dir")
    p.add_argument("--manifest", action="store_true", help="print the Secret as YAML, call no API")
    p.add_argument("--api-server", help="API server URL (default: from the pod's environment)")
    p.add_argument("--token-file", help="bearer token file (default: the service account's)")
    p.add_argument("--service-account-dir", default=str(SA_DIR), help=argparse.SUPPRESS)
    a = p.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        if a.manifest:
            with tempfile.TemporaryDirectory(prefix="411-keygen-") as tmp:
                print(yaml.safe_dump(manifest(a.name, a.namespace, _keys(a, tmp)), sort_keys=False), end="")
            return EXIT_OK
        return apply(a)

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
