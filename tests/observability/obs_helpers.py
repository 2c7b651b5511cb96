"""Parts of the observability tests: the rule and dashboard files, promtool, a real Prometheus
server on loopback, and the four11 services as real processes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from testlib import BIN

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
CHART = ROOT / "charts" / "four11"
DOCS = ROOT / "docs"
# Grafana's own variables, filled in so promtool can parse a panel's query
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": "node-1:9413"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is missing: run scripts/ci-deps.sh (apt prometheus)", pytrace=False)
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def alert_rules(path: Path = RULES) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r]


def dashboards(where: Path = DASHBOARDS) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(where.glob("*.json"))}


def panel_queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, Grafana variables filled in."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k, v in GRAFANA_VARS.items():
                expr = expr.replace(k, v)
            out.append((f"{dash['uid']} panel {p['id']} ({p['title']}) {t['refId']}", expr))
    return out


def all_queries() -> list[tuple[str, str]]:
    qs = [(f"rule {r['alert']}", r["expr"]) for r in alert_rules()]
    for d in dashboards().values():
        qs += panel_queries(d)
    return qs


# A metric name in PromQL: an identifier starting with four11_ that is not a label name
# (label names are followed by = != =~ !~) and not a recording rule (those contain ':').
_NAME = re.compile(r"(?<![\w:])(four11_[a-z0-9_]+)(?!\s*(?:=|!=|=~|!~)[^=])")


def metric_names(expr: str) -> set[str]:
    return set(_NAME.findall(expr))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond: Callable[[], object], timeout: float, what: str, step: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, ValueError, KeyError) as e:  # not answering yet
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(step)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with _OPENER.open(url, timeout=timeout) as r:
        return r.read()


class Proc:
    """A console script as a real process; stderr lines are collected by a thread."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        rx = re.compile(pattern)

        def found() -> re.Match | None:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader collect the last lines
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n" + self.log())
            return next((m for ln in list(self.lines) if (m := rx.search(ln))), None)

        return wait_until(found, timeout, f"{self.name} to log {pattern!r}:\n{self.log()}", step=0.05)

    def log(self) -> str:
        return "\n".join(self.lines[-40:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._t.join(timeout=5)
        return self.proc.returncode


class Prometheus:
    """The Debian package's server with its own config and data dir on 127.0.0.1."""

    def __init__(self, tmp: Path, jobs: dict[str, list[str]], rule_files: list[Path]) -> None:
        self.dir = tmp
        self.port = free_port()
        cfg = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in jobs.items()],
        }
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.proc: subprocess.Popen | None = None
        self.logfile = tmp / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        r = promtool("check", "config", str(self.config))
        assert r.returncode == 0, r.stdout + r.stderr
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(
                [tool("prometheus"), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, "Prometheus to be ready")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.logfile.read_text()[-3000:]}")
        return http_get(self.url + "/-/ready", 2).startswith(b"Prometheus")

    def api(self, path: str, **params: str) -> object:
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        body = json.loads(http_get(f"{self.url}/api/v1/{path}{q}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]  # type: ignore[index]

    def value(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def targets(self) -> list[dict]:
        return self.api("targets", state="active")["activeTargets"]  # type: ignore[index]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

