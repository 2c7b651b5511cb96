"""Node agent figures: idle RSS and CPU, and alert-to-apply time for 20 changed files.

Runs a real fileserver (``411 fileserver``) and a real agent (``411 agent``) on 127.0.0.1,
publishes with core's Four11Dir and sends the alert datagram itself.

    .venv/bin/python bench/agent.py [--idle-seconds 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from four11.core.keys import keygen
from four11.core.publish import Four11Dir, PutItem

BIN = Path(sys.executable).parent


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.001)
    raise SystemExit(f"timed out waiting for {what}")


class Proc:
    def __init__(self, argv: list[str], ready: str) -> None:
        self.lines: list[str] = []
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: any(re.search(ready, ln) for ln in list(self.lines)) or self._dead(), 30, argv[1])

    def _dead(self):
        if self.p.poll() is not None:
            raise SystemExit(f"{self.p.args[1]} exited:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        for ln in self.p.stderr:  # type: ignore[union-attr]
            self.lines.append(ln.rstrip())

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=20)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="four11-bench-agent-"))
    try:
        keys = tmp / "keys"
        keygen(keys, [])
        node_keys = tmp / "nodekeys"
        node_keys.mkdir()
        for n in ("master.pub", "cluster.key"):
            shutil.copy2(keys / n, node_keys / n)
        http = free_port(socket.SOCK_STREAM)
        url = f"http://127.0.0.1:{http}/411.d/"
        d = Four11Dir(tmp / "411", keys, master_urls=[url])
        src = tmp / "src"
        src.mkdir()

        def publish(tag: str) -> Path:
            items = []
            for i in range(a.files):
                p = src / f"f{i}.conf"
                p.write_text(f"# {tag}\nkey{i} = {tag}\n")
                items.append(PutItem(source=p, dest=f"/etc/bench/f{i}.conf", uid=0, gid=0, perm=0o644))
            res = d.put(items)
            assert res.alert_file is not None
            return res.alert_file

        publish("initial")
        fs = Proc([str(BIN / "411"), "fileserver", "--411dir", str(tmp / "411"),
                   "--listen", f"127.0.0.1:{http}"], r"serving")
        root = tmp / "root"
        root.mkdir()
        udp = free_port(socket.SOCK_DGRAM)
        cfg = {"masters": [url], "node_id": "bench", "keys_dir": str(node_keys),
               "state_dir": str(tmp / "state"), "root": str(root), "metrics_listen": "127.0.0.1:0",
               "unicast_port": udp, "watch": True, "concurrency": 1000,
               "multicast": {"enabled": True, "group": "239.2.11.71", "port": free_port(socket.SOCK_DGRAM),
                             "interface": "127.0.0.1"}}
        def start_agent(**over) -> Proc:
            (tmp / "agent.yaml").write_text(yaml.safe_dump({**cfg, **over}))
            return Proc([str(BIN / "411"), "agent", "--config", str(tmp / "agent.yaml")], r"started")

        agent = start_agent()
        last = root / f"etc/bench/f{a.files - 1}.conf"
        wait_for(lambda: last.exists(), 30, "the start sync")
        time.sleep(2)  # settle: imports done, watch held
        pid = agent.p.pid
        c0, t0 = proc_cpu(pid), time.monotonic()
        rss_max = 0.0
        while time.monotonic() - t0 < a.idle_seconds:
            rss_max = max(rss_max, proc_rss_mb(pid))
            time.sleep(1)
        cpu = (proc_cpu(pid) - c0) / (time.monotonic() - t0) * 100
        print(f"idle agent over {a.idle_seconds:.0f} s (watch held, multicast + unicast listening): "
              f"RSS {rss_max:.1f} MB, CPU {cpu:.2f}% (targets: < 40 MB, < 0.5%)")
        agent.stop()

        # the watch would see each publish before the alert is sent: measure alerts alone
        agent = start_agent(watch=False)
        times = []
        paths = [root / f"etc/bench/f{i}.conf" for i in range(a.files)]
        for r in range(a.rounds):
            tag = f"round{r}"
            alert = publish(tag).read_bytes()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                t = time.monotonic()
                s.sendto(alert, ("127.0.0.1", udp))
            wait_for(lambda tag=tag: all(tag in p.read_text() for p in paths), 30, f"apply of {tag}")
            times.append(time.monotonic() - t)
            time.sleep(0.5)
        print(f"alert -> last of {a.files} changed files applied (C=1000, so no backoff), "
              f"{a.rounds} rounds: median {statistics.median(times) * 1000:.0f} ms, "
              f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
        agent.stop()
        fs.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
