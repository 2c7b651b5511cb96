"""``411 demo``: the four services as local processes on loopback, and a file converging.

For machines without Docker and for newcomers: keys, a file list, a publisher, a fileserver,
an alerter and one node agent in a temporary directory, all on 127.0.0.1; the node applies the
demo file, then a change to it, and everything is stopped again.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from ..core.keys import KEM_HYBRID, keygen
from .common import EXIT_OK, EXIT_REFUSED, fail, run
from .keybundle import write_bundle

PROG = "411 demo"
GROUP = "/compute"
DEST = "/etc/411-demo/hello.conf"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(cond: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``cond()`` held, or None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Demo:
    def __init__(self, base: Path, timeout: float, out: Callable[[str], None]):
        self.base, self.timeout, self.out = base, timeout, out
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {"http": free_port(), "publisher": free_port(), "alerter": free_port(),
                      "agent": free_port(), "alerts": free_port(socket.SOCK_DGRAM)}

    def prepare(self) -> None:
        b = self.base
        keygen(b / "keys", [GROUP], KEM_HYBRID)
        write_bundle(b / "keys", [GROUP], b / "node-keys")
        (b / "sources").mkdir()
        self.source.write_text("# published by 411 demo\ngreeting = hello from the 411 master\n")
        url = f"http://127.0.0.1:{self.ports['http']}/411.d/"
        self._yaml("publisher.yaml", {
            "keys_dir": str(b / "keys"), "four11_dir": str(b / "messages"),
            "state_dir": str(b / "publisher-state"), "master_urls": [url],
            "metrics_listen": f"127.0.0.1:{self.ports['publisher']}",
            "files": [{"source": str(self.source), "dest": DEST, "group": GROUP, "perm": "0644"}]})
        self._yaml("alerter.yaml", {
            "four11_dir": str(b / "messages"), "interval_s": 2.0,
            "metrics_listen": f"127.0.0.1:{self.ports['alerter']}",
            "multicast": {"interface": "127.0.0.1", "port": self.ports["alerts"]}})
        self._yaml("agent.yaml", {
            "masters": [url], "groups": [GROUP], "node_id": "demo-node",
            "keys_dir": str(b / "node-keys"), "state_dir": str(b / "agent-state"),
            "root": str(self.node_root), "allow_paths": ["/etc/411-demo/"],
            "multicast": {"interface": "127.0.0.1", "port": self.ports["alerts"]}, "unicast_port": 0,
            "metrics_listen": f"127.0.0.1:{self.ports['agent']}"})
        (b / "logs").mkdir()
        self.node_root.mkdir()

    @property
    def source(self) -> Path:
        return self.base / "sources" / "hello.conf"

    @property
    def node_root(self) -> Path:
        return self.base / "node"

    @property
    def applied(self) -> Path:
        return self.node_root / DEST.lstrip("/")

    def _yaml(self, name: str, data: dict) -> None:
        (self.base / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def start(self, name: str, *args: str) -> None:
        log = (self.base / "logs" / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "four11.cli.main", *args],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def start_all(self) -> str | None:
        b = self.base
        self.start("publisher", "publisher", "--config", str(b / "publisher.yaml"))
        self.start("fileserver", "fileserver", "--411dir", str(b / "messages"),
                   "--listen", f"127.0.0.1:{self.ports['http']}")
        self.start("alerter", "alerter", "--config", str(b / "alerter.yaml"))
        self.start("agent", "agent", "--config", str(b / "agent.yaml"))
        for name, port in (("publisher", self.ports["publisher"]), ("fileserver", self.ports["http"]),
                           ("alerter", self.ports["alerter"]), ("agent", self.ports["agent"])):
            p = self.procs[name]
            if wait(lambda p=p, port=port: p.poll() is not None or healthy(port), self.timeout) is None \
                    or p.poll() is not None:
                return f"{name} did not become healthy: {self.log_tail(name)}"
            self.out(f"{name:<11} pid {p.pid:<7} http://127.0.0.1:{port}/healthz ok")
        return None

    def log_tail(self, name: str) -> str:
        lines = (self.base / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def converge(self, label: str) -> str | None:
        want = self.source.read_bytes()
        took = wait(lambda: self.applied.exists() and self.applied.read_bytes() == want, self.timeout)
        if took is None:
            return f"the node did not apply {DEST} within {self.timeout:.0f} s ({self.log_tail('agent')})"
        self.out(f"{label}: the node has {DEST} ({self.applied}) after {took:.2f} s")
        return None

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="Run publisher, fileserver, alerter and one node "
                                "agent on 127.0.0.1 in a temporary directory and show a file converge.")
    p.add_argument("--dir", help="work here instead of a new temporary directory (must not exist)")
    p.add_argument("--keep", action="store_true", help="keep the directory (keys, logs, node files)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each step (30)")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        if a.dir and Path(a.dir).exists():
            return fail(PROG, f"{a.dir} exists: give a new directory")
        base = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="411-demo-"))
        base.mkdir(parents=True, exist_ok=True)
        demo = Demo(base, a.timeout, print)
        print(f"{PROG}: working in {base}")
        try:
            demo.prepare()
            print(f"keys: {base / 'keys'} (master), {base / 'node-keys'} (the node's bundle, group {GROUP})")
            err = demo.start_all() or demo.converge("published")
            if err is None:
                demo.source.write_text(demo.source.read_text() + f"changed = {time.ctime()}\n")
                print(f"edited {demo.source}")
                err = demo.converge("changed  ")
        finally:
            demo.stop()
            if not a.keep:
                shutil.rmtree(base, ignore_errors=True)
        if err:
            return fail(PROG, err, EXIT_REFUSED)
        print(f"{PROG}: all four services stopped; "
              + (f"files kept in {base}" if a.keep else "temporary directory removed"))
        return EXIT_OK

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
