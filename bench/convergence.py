"""Convergence benchmark: time from ``411put`` returning to the last node's apply.

    sudo .venv/bin/python bench/convergence.py [--publishes 10] [--k 20,50] [--n 1000,5000]

Needs root (network namespaces). Prints one table row per cluster size:

* K process nodes: ``four11.testing.cluster`` with K ``411 agent`` processes, each in its
  own namespace with its own address, on a bridge with one master namespace running
  ``411 fileserver`` and ``411 alerter``; alerts by multicast.
* N simulated nodes: N instances of the real agent (``four11.nodeagent.agent.Agent``),
  each with its own node id, state dir, root dir, metrics server, multicast socket and
  HTTP connections, all in ONE process, in one namespace ("sim", one address), sharing one
  asyncio event loop (the standard one, as the real agent) and so one CPU core (the GIL),
  the imported code, and the key directory (each agent still loads and holds its own copy
  of the keys). Their root and state dirs are on tmpfs (/dev/shm): they share one disk,
  where each real node's fsyncs run on its own disk in parallel with the others'. The
  master is the same real ``411 fileserver`` + ``411 alerter`` processes as above.
  The bench prints the simulator thread's CPU time per node and publish: N times that is
  a floor for the simulated rows' time to the last node, whatever the protocol does.

The agents hold no long-poll watch here (multicast alerts only) so the fileserver's
peaks (``four11_fileserver_requests_in_flight_peak``, ``..._connections_open_peak``)
count fetches, not held watchers. The agents' start syncs (all at once, by design) would
set those peaks, so the fileserver is
restarted after them; the bench then tells the fresh fileserver every node id with one
sequential request each (what it would have learned in 24 h), so the agents' cluster
size estimate N is right from the first measured publish. The time of each apply is the
ctime of the file the agent renamed into place.

Simulated nodes and the fetch time t: an agent measures t as the wall time of its own
syncs. In one shared loop that time includes the work of every other agent, so N agents
would measure about N times a real node's t, and their backoff W = N*t/C would grow with
N squared. The simulated agents therefore get t from one agent that ran alone first
(the median of five lone syncs, ``fetch_ewma`` set before each publish); everything else
is the agent's own code path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from four11.core.source import HttpSource, Timeouts
from four11.testing import netns
from four11.testing.cluster import Cluster, Published, metric_sum, wait_until

ORIGINAL = (124, 20.0)  # Rocks 411 manual: 124 nodes converge in about 20 s
DEST = "/etc/cluster.conf"
PREFIX = "f411b-"
SHM = "/dev/shm"  # not the tests' prefix: a test run must not remove a running benchmark


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def restart_fileserver(c: Cluster) -> None:
    m = c.masters[0]
    c.stop_master(m, ["fileserver"])
    c.start_master(m, ["fileserver"])
    m.procs["fileserver"].wait_ready()


def teach_nodes(c: Cluster, ids: list[str]) -> None:
    """One sequential request per node id, so the fresh fileserver knows the cluster size."""
    import http.client

    m = c.masters[0]

    def go() -> None:
        conn = http.client.HTTPConnection(m.addr, 8411, timeout=10)
        for node_id in ids:
            conn.request("HEAD", "/411.d/index", headers={"X-Four11-Node": node_id})
            conn.getresponse().read()
        conn.close()

    netns.in_ns(m.ns, go)


def peak(c: Cluster) -> tuple[float, float]:
    """The fileserver's peaks since its restart: requests in flight, open connections.
    Each includes the scrape that reads it (one request on one connection)."""
    m = c.masters[0].metrics()
    return (metric_sum(m, "four11_fileserver_requests_in_flight_peak"),
            metric_sum(m, "four11_fileserver_connections_open_peak"))


def run_processes(k: int, publishes: int, work: Path) -> tuple[list[float], tuple[float, float], int | None]:
    with Cluster(work, k=k, masters=1, attacker=False, publisher=False, watch=False,
                 poll_mean_s=600, prefix=PREFIX) as c:
        c.wait_converged(c.publish(DEST, b"warm-up\n"), timeout=120)
        restart_fileserver(c)
        teach_nodes(c, [n.name for n in c.nodes])
        lasts = []
        for i in range(publishes):
            t = c.wait_converged(c.publish(DEST, f"publish {i}\n".encode()), timeout=300)
            lasts.append(max(t.values()))
        return lasts, peak(c), None


class CountingSource(HttpSource):
    """The agent's HTTP source, counting requests sent and not yet answered over all agents."""

    def __init__(self, sim: Simulated, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.sim = sim

    async def get(self, *args, **kw):
        sim = self.sim
        sim.in_flight += 1
        sim.peak_in_flight = max(sim.peak_in_flight, sim.in_flight)
        try:
            return await super().get(*args, **kw)
        finally:
            sim.in_flight -= 1


class Simulated:
    """N real agents sharing one event loop in a thread inside the "sim" namespace."""

    def __init__(self, c: Cluster, n: int) -> None:
        from four11.core import config as cfgmod
        from four11.core import nodeconfig

        self.c, self.n = c, n
        c.net.add_hosts({"sim": 11})
        self.ns, self.addr = c.net.ns("sim"), c.net.hosts["sim"]
        keys = c.work / "sim-keys"
        for rel in ("master.pub", "cluster.key", "groups/compute.key"):
            (keys / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(c.keys / rel, keys / rel)
        base = cfgmod.load(nodeconfig.SCHEMA, None, {}, {})
        base.update(masters=c.master_urls(), groups=["/compute"], keys_dir=str(keys), watch=False,
                    poll_mean_s=600.0, unicast_port=0, metrics_listen="127.0.0.1:0",
                    multicast={"enabled": True, "group": "239.2.11.71", "port": 8411,
                               "interface": self.addr})
        self.cfgs = []
        self.roots = []
        # node roots and state on tmpfs: the nodes share one disk here, where a real node's
        # fsyncs run on its own disk in parallel with every other node's
        self.base = Path(tempfile.mkdtemp(prefix="f411-sim-", dir=SHM if Path(SHM).is_dir() else None))
        for i in range(n):
            d = self.base / f"s{i:05d}"
            (d / "root" / "etc").mkdir(parents=True)
            (d / "state").mkdir()
            self.cfgs.append({**base, "node_id": f"sim-{i:05d}", "state_dir": str(d / "state"),
                              "root": str(d / "root")})
            self.roots.append(d / "root")
        self.loop = asyncio.new_event_loop()
        self.agents: list = []
        self.in_flight = 0  # HTTP requests sent and not yet answered, over all agents
        self.peak_in_flight = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        netns.setns(self.ns)
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, first: int, last: int) -> None:
        from four11.nodeagent.agent import Agent

        if not self.thread.is_alive():
            self.thread.start()

        async def up() -> None:
            for cfg in self.cfgs[first:last]:
                a = Agent(cfg)
                # the agent's own HttpSource, counting the requests in flight over all agents
                for url in cfg["masters"]:
                    a._sources[url] = CountingSource(self, url, cfg["node_id"], Timeouts(
                        cfg["connect_timeout_s"], cfg["read_timeout_s"]))
                await a.start()
                self.agents.append(a)

        asyncio.run_coroutine_threadsafe(up(), self.loop).result(600)

    def stop(self) -> None:
        async def down() -> None:
            await asyncio.gather(*(a.stop() for a in self.agents), return_exceptions=True)

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(600)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        shutil.rmtree(self.base, ignore_errors=True)

    def cpu_s(self) -> float:
        """CPU time of the thread running every simulated agent."""
        assert self.thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))

    def converged(self, pub: Published, timeout: float) -> float:
        # cheap to poll (no I/O): then read the apply times off the files
        wait_until(lambda: all(a.synced_version >= pub.version for a in self.agents), timeout,
                   f"{len(self.agents)} simulated nodes", interval=0.05)
        times = []
        for r in self.roots[:len(self.agents)]:
            p = r / DEST.lstrip("/")
            assert p.read_bytes() == pub.content
            times.append(p.stat().st_ctime - pub.returned)
        return max(times)


def run_simulated(n: int, publishes: int, work: Path) -> tuple[list[float], tuple[float, float], int]:
    with Cluster(work, k=0, masters=1, attacker=False, publisher=False, watch=False,
                 prefix=PREFIX) as c:
        sim = Simulated(c, n)
        c.publish(DEST, b"initial\n")
        sim.start(0, 1)  # one agent alone: its t is a real node's t
        lone, ts = sim.agents[0], []
        for i in range(5):
            lone.fetch_ewma = 0.0  # so that after one sync it holds 0.3 * that sync's t
            sim.converged(c.publish(DEST, f"lone {i}\n".encode()), 60)
            time.sleep(0.2)  # the agent sets t just after it marks the version synced
            ts.append(lone.fetch_ewma / 0.3)
        t_lone = statistics.median(ts)
        t0 = time.monotonic()
        sim.start(1, n)
        # N agents' objects in one heap make every full collection of the cyclic GC scan
        # N times what a node's would; the agents' start-up objects are frozen out of it
        gc.collect()
        gc.freeze()
        print(f"  N={n}: {n} agents started in {time.monotonic() - t0:.1f} s; a lone agent's "
              f"fetch time t = {t_lone * 1000:.1f} ms", flush=True)
        try:
            for a in sim.agents:  # their start syncs all ran at once in the shared loop
                a.fetch_ewma = t_lone
            sim.converged(c.publish(DEST, b"warm-up\n"), 600)
            restart_fileserver(c)
            teach_nodes(c, [cfg["node_id"] for cfg in sim.cfgs])
            lasts: list[float] = []
            cpus: list[float] = []
            sim.peak_in_flight = 0
            for i in range(publishes):
                for a in sim.agents:
                    a.fetch_ewma = t_lone
                ws = sorted(a.window() for a in sim.agents)
                cpu0 = sim.cpu_s()
                lasts.append(sim.converged(c.publish(DEST, f"publish {i}\n".encode()), 600))
                cpus.append((sim.cpu_s() - cpu0) / n)
                print(f"  N={n} publish {i}: last node {lasts[-1]:.2f} s; backoff window W median "
                      f"{ws[len(ws) // 2]:.2f} s; simulator CPU {cpus[-1] * 1000:.2f} ms per node; "
                      f"most requests in flight so far {sim.peak_in_flight}", flush=True)
            print(f"  N={n}: the one simulator thread needs N x {statistics.median(cpus) * 1000:.2f} ms "
                  f"= {n * statistics.median(cpus):.2f} s of CPU per publish (alert, fetch, verify, "
                  "decrypt, write), a floor for the time to the last node here", flush=True)
            return lasts, peak(c), sim.peak_in_flight
        finally:
            sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishes", type=int, default=10)
    ap.add_argument("--k", default="20,50", help="process-node cluster sizes ('' for none)")
    ap.add_argument("--n", default="1000,5000", help="simulated-node cluster sizes ('' for none)")
    a = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.ERROR)  # N agents' start-up warnings would drown the table
    runs = [("process", int(k)) for k in a.k.split(",") if k]
    runs += [("simulated", int(n)) for n in a.n.split(",") if n]
    rows = []
    for kind, size in runs:
        with tempfile.TemporaryDirectory(prefix="f411-bench-") as tmp:
            t0 = time.monotonic()
            fn = run_processes if kind == "process" else run_simulated
            lasts, pk, syncs = fn(size, a.publishes, Path(tmp))
            rows.append((kind, size, lasts, pk, syncs))
            print(f"  {kind} {size}: done in {time.monotonic() - t0:.0f} s", flush=True)
    on, ot = ORIGINAL
    print(f"\n411put returned -> last node applied, over {a.publishes} publishes "
          f"(original 411: {on} nodes in about {ot:.0f} s)")
    print(f"{'nodes':>10} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'fs in-flight':>13} {'fs conns':>9} "
          f"{'agents in-flight':>16} {'vs original':>12} {'nodes/s ratio':>14}")
    for kind, size, lasts, (pk, conns), syncs in rows:
        label = f"{size} {'proc' if kind == 'process' else 'sim'}"
        ratio = ot / max(statistics.median(lasts), 1e-3)
        sy = "-" if syncs is None else f"{syncs:.0f}"
        rate = (size / max(statistics.median(lasts), 1e-3)) / (on / ot)
        print(f"{label:>10} {pct(lasts, .5):7.2f} {pct(lasts, .99):7.2f} {max(lasts):7.2f} {pk:13.0f} "
              f"{conns:9.0f} {sy:>16} {ratio:11.1f}x {rate:13.1f}x")
    print("fs in-flight: the fileserver's four11_fileserver_requests_in_flight_peak; fs conns: its "
          "four11_fileserver_connections_open_peak\n  (each counts the scrape that reads it; an agent "
          "opens one connection per sync and closes it after,\n  so fs conns is the most nodes "
          "fetching at once as the master saw it; target <= 2 x C = 16);\n"
          "agents in-flight: HTTP requests the simulated agents had sent and not yet had answered, "
          "at most at once")
    print("vs original: 20 s / our median time to the last node (the original figure is for 124 "
          "nodes; ours for the size in the row);\nnodes/s ratio: our nodes per second (size / p50) "
          "over the original's 124 / 20 s")


if __name__ == "__main__":
    main()
