"""Compose file, Dockerfiles and systemd units, checked without a Docker engine."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ._tools import COMPOSE, ROOT, tool

SERVICES = ("publisher", "fileserver", "alerter", "agent")
UNITS = sorted((ROOT / "contrib" / "systemd").glob("*.service"))


def compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tool(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_compose_config_is_valid_with_and_without_the_node_profile():
    for args in ((), ("--profile", "node")):
        r = compose(*args, "config", "-q")
        assert r.returncode == 0, r.stderr


def test_compose_wiring_keeps_keys_away_from_fileserver_and_alerter():
    r = compose("--profile", "node", "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    svcs = json.loads(r.stdout)["services"]
    vols = {n: {v["source"]: v for v in s.get("volumes", [])} for n, s in svcs.items()}
    assert set(vols["fileserver"]) == {"messages"} and vols["fileserver"]["messages"]["read_only"]
    assert set(vols["alerter"]) == {"messages"} and vols["alerter"]["messages"]["read_only"]
    assert vols["publisher"]["keys"]["read_only"] and "node-keys" not in vols["publisher"]
    assert "keys" not in vols["agent"] and vols["agent"]["node-keys"]["read_only"]
    assert svcs["keygen"]["restart"] == "no"
    assert svcs["publisher"]["depends_on"]["keygen"]["condition"] == "service_completed_successfully"
    for s in ("fileserver", "alerter"):
        assert svcs[s]["depends_on"]["publisher"]["condition"] == "service_healthy"
    assert svcs["agent"]["depends_on"]["fileserver"]["condition"] == "service_healthy"
    assert svcs["agent"]["profiles"] == ["node"] and svcs["agent"]["network_mode"] == "host"
    assert svcs["alerter"]["network_mode"] == "host"
    assert svcs["fileserver"]["ports"][0]["published"] == "8411"
    for s in SERVICES:
        assert svcs[s]["read_only"] is True and svcs[s]["cap_drop"] == ["ALL"], s
        assert svcs[s]["build"]["args"]["BASE_IMAGE"] == "python:3.12-slim"
    # the demo agent writes into a demo directory, never the machine's /
    assert [v["target"] for v in vols["agent"].values() if v["type"] == "bind" and
            v["target"] == "/host"] == ["/host"]
    assert vols["agent"][str(ROOT / "demo-root")]["target"] == "/host"


def test_compose_rejects_a_typo_in_a_service_key(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    bad.write_text((ROOT / "docker-compose.yml").read_text().replace("read_only: true", "read_onyl: true", 1))
    r = subprocess.run([tool(COMPOSE), "-f", str(bad), "config", "-q"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "read_onyl" in r.stderr


@pytest.mark.parametrize("svc", SERVICES)
def test_dockerfile_contract(svc):
    text = (ROOT / "services" / svc / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "ARG BASE_IMAGE=python:3.12-slim"
    froms = [ln for ln in lines if ln.startswith("FROM")]
    assert froms == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"]
    assert "COPY --from=build /opt/four11 /opt/four11" in lines
    entry = "agent" if svc == "agent" else svc
    assert f'ENTRYPOINT ["411", "{entry}"]' in lines
    assert any(ln.startswith("HEALTHCHECK") for ln in lines)
    assert re.search(r"org\.opencontainers\.image\.title=\"four11-" + svc, text)
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "PYTHONUNBUFFERED=1" in text
    [user] = [ln for ln in lines if ln.startswith("USER")]
    assert user == ("USER 0:0" if svc == "agent" else "USER 10411:10411")
    readme = (ROOT / "services" / svc / "README.md").read_text()
    for section in ("Volumes", "Ports", "Environment", "Metrics", "Capabilities"):
        assert f"## {section}" in readme, f"services/{svc}/README.md lacks {section}"


def test_dockerignore_keeps_the_context_small():
    text = (ROOT / ".dockerignore").read_text().split()
    assert text[text.index("*")] == "*" and {"!pyproject.toml", "!README.md", "!src/"} <= set(text)


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if not path:
        pytest.fail("systemd-analyze is missing: run scripts/ci-deps.sh (apt systemd)", pytrace=False)
    return path


def installed_copies(tmp_path: Path) -> list[Path]:
    """The units as installed next to this venv's 411 (verify checks that ExecStart exists)."""
    out = []
    for u in UNITS:
        dst = tmp_path / u.name
        dst.write_text(u.read_text().replace("/usr/local/bin/411", str(Path(sys.executable).parent / "411")))
        out.append(dst)
    return out


def test_units_exist_for_every_service():
    assert [u.name for u in UNITS] == [f"four11-{s}.service" for s in sorted(SERVICES)]


def test_units_pass_systemd_analyze_verify_without_a_warning(tmp_path):
    units = installed_copies(tmp_path)
    r = subprocess.run([systemd_analyze(), "verify", *map(str, units)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # the check can fail: a mistyped value is reported
    bad = tmp_path / "bad.service"
    bad.write_text(units[0].read_text().replace("ProtectSystem=strict", "ProtectSystem=strictt"))
    r = subprocess.run([systemd_analyze(), "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "strictt" in r.stderr


def test_units_exposure_is_low(tmp_path):
    for u in installed_copies(tmp_path):
        r = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--threshold=30", str(u)],
                           capture_output=True, text=True, timeout=60)
        score = float(re.search(r"exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr).group(1))
        assert r.returncode == 0 and score <= 3.0, f"{u.name}: exposure {score}"


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read_string(path.read_text())
    return cp


def test_units_hardening_and_key_isolation():
    for u in UNITS:
        s = unit(u)["Service"]
        assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict", u.name
        assert s["ExecStart"].startswith("/usr/local/bin/411 "), u.name
        assert unit(u)["Install"]["WantedBy"] == "multi-user.target"
    agent = unit(ROOT / "contrib/systemd/four11-agent.service")["Service"]
    assert agent["ReadWritePaths"] == "/etc" and agent["User"] == "root"
    assert agent["CapabilityBoundingSet"] == "CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE"
    for svc in ("fileserver", "alerter"):
        s = unit(ROOT / f"contrib/systemd/four11-{svc}.service")["Service"]
        assert s["InaccessiblePaths"] == "-/etc/411-security" and s["CapabilityBoundingSet"] == ""
        assert "ReadWritePaths" not in s
