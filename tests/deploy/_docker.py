"""A private Docker engine for the compose test: own data/exec root and socket, torn down after."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ._tools import COMPOSE, ROOT, tool

BASE_TAG = "local/python:3.12-slim"


def docker_cli() -> str:
    # Prefer the client that comes with Debian's docker.io, the engine's own version.
    for c in ("/usr/bin/docker", shutil.which("docker")):
        if c and os.path.exists(c):
            return c
    pytest.fail("no docker client: run scripts/ci-deps.sh (installs docker.io)", pytrace=False)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    def __init__(self) -> None:
        dockerd = shutil.which("dockerd")
        if not dockerd:
            pytest.fail("dockerd is not installed: run scripts/ci-deps.sh (apt docker.io)", pytrace=False)
        self.dir = Path(tempfile.mkdtemp(prefix="f411-engine-", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}",
                    "DOCKER_CONFIG": str(self.dir / "config")}
        self.log = self.dir / "dockerd.log"
        self.proc = subprocess.Popen(
            [dockerd, "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "dockerd.pid"), "-H", f"unix://{self.sock}"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.sock.exists() and self.run("info", check=False).returncode == 0:
                return
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"dockerd did not start (a Docker engine is required for this test):\n{tail}",
                    pytrace=False)

    def run(self, *args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run([docker_cli(), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def base_image(self) -> None:
        r = subprocess.run(["bash", str(ROOT / "scripts" / "make-base-image.sh")],
                           env={**self.env, "DOCKER": docker_cli(), "TAG": BASE_TAG},
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.fail(f"making the base image failed:\n{r.stdout}\n{r.stderr}", pytrace=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        netns = self.dir / "exec" / "netns" / "default"
        if netns.exists():
            subprocess.run(["umount", str(netns)], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Compose:
    """docker compose (the v2 plugin binary) on the repository's docker-compose.yml."""

    def __init__(self, engine: Engine, project: str, env: dict[str, str]) -> None:
        self.engine, self.project = engine, project
        self.env = {**engine.env, **env}

    def __call__(self, *args: str, check: bool = True, timeout: float = 900,
                 node: bool = True) -> subprocess.CompletedProcess:
        cmd = [tool(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "-p", self.project,
               *(("--profile", "node") if node else ()), *args]
        r = subprocess.run(cmd, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            logs = subprocess.run([*cmd[:-len(args)], "logs", "--no-color", "--tail", "40"], env=self.env,
                                  cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{r.stderr[-3000:]}\n{logs}")
        return r

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"
