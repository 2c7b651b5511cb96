"""What a Prometheus scrape costs each service: body size, series, and answer time.

Starts the publisher, fileserver, alerter and an agent in one process on 127.0.0.1 (each with
its own registry and port, as in production), lets the agent sync once, then scrapes every
/metrics endpoint ``--scrapes`` times in a row over HTTP.

    .venv/bin/python bench/metrics.py [--scrapes 300]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from four11.alerter.service import Alerter
from four11.core import config as cfgmod
from four11.core import nodeconfig
from four11.core.keys import keygen
from four11.fileserver.server import FileServer
from four11.nodeagent.agent import Agent
from four11.publisher.service import Publisher


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(tmp: Path, scrapes: int) -> None:
    keys, msgs = tmp / "keys", tmp / "msgs"
    keygen(keys, ["/compute"])
    msgs.mkdir()
    files = []
    for i in range(20):
        src = tmp / "src" / f"f{i}"
        src.parent.mkdir(exist_ok=True)
        src.write_text(f"file {i}\n")
        files.append({"source": str(src), "dest": f"/etc/bench/f{i}"})
    (tmp / "root" / "etc").mkdir(parents=True)
    pub = Publisher({"four11_dir": str(msgs), "keys_dir": str(keys), "state_dir": str(tmp / "pst"),
                     "metrics_listen": "127.0.0.1:0", "files": files}, registry=CollectorRegistry())
    fs = FileServer(msgs, registry=CollectorRegistry())
    al = Alerter({"four11_dir": str(msgs), "metrics_listen": "127.0.0.1:0", "multicast": {"enabled": False},
                  "verify_key": str(keys / "master.pub"), "unicast": ["127.0.0.1:9"]},
                 registry=CollectorRegistry())
    await pub.start()
    fs_port = await fs.start("127.0.0.1", 0)
    await al.start()
    agent = Agent(cfgmod.from_mapping(nodeconfig.SCHEMA, {
        "masters": [f"http://127.0.0.1:{fs_port}/411.d/"], "node_id": "bench", "keys_dir": str(keys),
        "state_dir": str(tmp / "ast"), "root": str(tmp / "root"), "metrics_listen": "127.0.0.1:0",
        "unicast_port": free_udp_port(), "multicast": {"enabled": False}, "watch": False,
        "allow_paths": ["/etc/bench/"], "poll_mean_s": 3600}), registry=CollectorRegistry())
    await agent.start()
    try:
        while agent.last_ok is None:
            await asyncio.sleep(0.05)
        ports = {"publisher": pub.metrics_port, "fileserver": fs_port, "alerter": al.metrics_port,
                 "agent": agent.metrics_port}
        print(f"{'service':<11} {'bytes':>7} {'series':>7} {'median ms':>10} {'p99 ms':>8}")
        async with aiohttp.ClientSession() as s:
            for svc, port in ports.items():
                times, body = [], b""
                for _ in range(scrapes):
                    t0 = time.perf_counter()
                    async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                        body = await r.read()
                    times.append((time.perf_counter() - t0) * 1000)
                series = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
                times.sort()
                print(f"{svc:<11} {len(body):>7} {series:>7} {statistics.median(times):>10.2f} "
                      f"{times[int(len(times) * 0.99) - 1]:>8.2f}")
    finally:
        await agent.stop()
        await al.stop()
        await fs.stop()
        await pub.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scrapes", type=int, default=300)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(run(Path(d), a.scrapes))


if __name__ == "__main__":
    main()
