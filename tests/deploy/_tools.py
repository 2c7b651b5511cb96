"""Shared helpers of the deployment tests: the tools scripts/ci-deps.sh installs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHART = ROOT / "charts" / "four11"
K8S_VERSION = "1.30.0"


COMPOSE = "../docker/cli-plugins/docker-compose"  # the static plugin binary, see scripts/ci-deps.sh


def tool(name: str) -> str:
    path = (BIN / name).resolve()
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/ci-deps.sh first", pytrace=False)
    return str(path)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{r.stderr}")
    return r


def render(*args: str) -> list[dict]:
    out = helm("template", "rel", str(CHART), "--namespace", "ops", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def ci_values() -> list[Path]:
    return sorted((CHART / "ci").glob("*-values.yaml"))


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a console script of this package as a user would."""
    prog, *rest = args
    return subprocess.run([str(BIN / prog), *rest], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
