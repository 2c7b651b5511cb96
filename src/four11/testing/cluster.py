"""A real multi-node four11 cluster on one machine, for tests and benchmarks.

One network namespace per host on a bridge (see netns.Bridge): masters ``m1`` (and
``m2``) run ``411 fileserver``, ``411 alerter`` and ``411 publisher``; every node runs
``411 agent`` with its own address, root prefix, keys and state; an ``x`` host is the
attacker. Every process is the project's own console script, started in its namespace,
killed with the test runner (PR_SET_PDEATHSIG) and again by namespace at the next start.

Needs root (network namespaces, iptables). Addresses are 10.77.0.0/24 and exist only
inside the namespaces made here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..core.index import peek_version
from ..core.keys import keygen
from . import netns

BIN = Path(sys.executable).parent
URLDIR = "/411.d/"
PORT = 8411
MCAST = "239.2.11.71"
NODE_GROUPS = ["/compute"]
Samples = dict[tuple[str, frozenset], float]


def wait_until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_get(ns: str, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET from inside a namespace (the caller's thread stays where it is)."""

    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    return netns.in_ns(ns, get)


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


class Proc:
    """One service process inside a namespace, its output in a log file."""

    def __init__(self, ns: str, argv: list[str], log: Path, ready: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.ns, self.argv, self.log, self.ready = ns, argv, log, ready
        self.env = {**os.environ, **env} if env else None
        self.p: subprocess.Popen | None = None
        self._offset = 0  # readiness is looked for in this run's output only

    def start(self) -> Proc:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        # Popen from the calling thread only: PDEATHSIG fires when the *thread* that forked
        # the child ends.
        with open(self.log, "ab") as out:
            self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                      preexec_fn=netns.child_setup(self.ns), close_fds=True,
                                      env=self.env)
        return self

    @property
    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_ready(self) -> bool:
        if not self.alive:
            raise RuntimeError(f"{' '.join(self.argv[:2])} in {self.ns} exited:\n{self.text()[-2000:]}")
        return self.ready is None or self.ready in self.text()[self._offset:]

    def wait_ready(self, timeout: float = 30) -> Proc:
        wait_until(self.is_ready, timeout, f"{self.argv[1]} in {self.ns} to start")
        return self

    def stop(self, timeout: float = 20) -> int | None:
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@dataclass
class Node:
    name: str
    addr: str
    ns: str
    dir: Path
    groups: list[str]
    proc: Proc | None = None

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def path(self, dest: str) -> Path:
        return self.root / dest.lstrip("/")

    def read(self, dest: str) -> bytes | None:
        try:
            return self.path(dest).read_bytes()
        except FileNotFoundError:
            return None

    def metrics(self) -> Samples:
        status, body = http_get(self.ns, "http://127.0.0.1:9413/metrics")
        if status != 200:
            raise RuntimeError(f"{self.name}: /metrics answered {status}")
        return parse_metrics(body.decode())

    def files(self) -> dict[str, tuple[int, str]]:
        """Every file under the root: relative path -> (inode, sha256)."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                out[p.relative_to(self.root).as_posix()] = (st.st_ino,
                                                            hashlib.sha256(p.read_bytes()).hexdigest())
        return out


@dataclass
class Master:
    name: str
    addr: str
    ns: str
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{PORT}{URLDIR}"

    def metrics(self) -> Samples:
        status, body = http_get(self.ns, f"http://{self.addr}:{PORT}/metrics")
        if status != 200:
            raise RuntimeError(f"{self.name}: fileserver /metrics answered {status}")
        return parse_metrics(body.decode())


@dataclass
class Published:
    version: int
    returned: float  # time.time() when 411put returned
    content: bytes
    dest: str


class Cluster:
    """Start with ``with Cluster(work, k=20) as c:``; everything is torn down on exit,
    on an exception, and (by namespace prefix) at the next start after a SIGKILL."""

    def __init__(self, work: Path, k: int = 20, masters: int = 2, attacker: bool = True,
                 poll_mean_s: float = 5.0, alert_interval_s: float = 2.0, watch: bool = True,
                 watch_timeout_s: float = 20.0, prefix: str = "f411-", keys: Path | None = None,
                 publisher: bool = True, agent_env: dict[str, str] | None = None) -> None:
        self.work = Path(work)
        self.k = k
        self.n_masters = masters
        self.with_attacker = attacker
        self.poll_mean_s = poll_mean_s
        self.alert_interval_s = alert_interval_s
        self.watch = watch
        self.watch_timeout_s = watch_timeout_s
        self.with_publisher = publisher
        self.agent_env = agent_env or {}
        self.net = netns.Bridge(prefix)
        self.keys = keys or self.work / "keys"
        self.four11 = self.work / "411"
        self.src = self.work / "src"
        self.masters: list[Master] = []
        self.nodes: list[Node] = []
        self.attacker_ns = self.net.ns("x")
        self.published: list[Published] = []

    # -- setup -------------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        if not (self.keys / "master.key").exists():
            keygen(self.keys, ["/compute", "/nas"])
        self.four11.mkdir(exist_ok=True)
        self.net.create()
        hosts = {f"m{i + 1}": i + 1 for i in range(self.n_masters)}
        if self.with_attacker:
            hosts["x"] = 250
        self.net.add_hosts(hosts)
        self.masters = [Master(n, self.net.hosts[n], self.net.ns(n)) for n in hosts if n.startswith("m")]
        for m in self.masters:
            self.start_master(m)
        for m in self.masters:
            for p in m.procs.values():
                p.wait_ready()
        self.add_nodes(self.k)

    def master_urls(self) -> list[str]:
        return [m.url for m in self.masters]

    def _master_procs(self, m: Master) -> dict[str, Proc]:
        d = self.work / m.name
        d.mkdir(exist_ok=True)
        procs = {"fileserver": Proc(m.ns, [str(BIN / "411"), "fileserver", "--411dir", str(self.four11),
                                           "--listen", f"{m.addr}:{PORT}", "--urldir", URLDIR,
                                           "--watch-timeout-s", str(self.watch_timeout_s)],
                                    d / "fileserver.log", "serving ")}
        procs["alerter"] = Proc(m.ns, [str(BIN / "411"), "alerter", "--411dir", str(self.four11),
                                       "--interval-s", str(self.alert_interval_s),
                                       "--multicast-interface", m.addr,
                                       "--verify-key", str(self.keys / "master.pub"),
                                       "--metrics-listen", "127.0.0.1:9412"],
                                d / "alerter.log", "alerter running")
        if self.with_publisher and m is self.masters[0]:
            conf = d / "files.yaml"
            (self.src / "etc").mkdir(parents=True, exist_ok=True)
            watched = self.src / "etc" / "motd"
            if not watched.exists():
                watched.write_text("welcome\n")
            conf.write_text(yaml.safe_dump({
                "files": [{"source": str(watched), "dest": "/etc/motd", "perm": "0644",
                           "owner": "0:0"}],
                "keys_dir": str(self.keys), "four11_dir": str(self.four11),
                "master_urls": self.master_urls(), "state_dir": str(d / "publisher-state"),
                "metrics_listen": "127.0.0.1:9411"}))
            procs["publisher"] = Proc(m.ns, [str(BIN / "411"), "publisher", "--config", str(conf)],
                                      d / "publisher.log", None)
        return procs

    def start_master(self, m: Master, only: Iterable[str] | None = None) -> None:
        fresh = self._master_procs(m)
        for name, p in fresh.items():
            if only is not None and name not in only:
                continue
            if name in m.procs and m.procs[name].alive:
                continue
            m.procs[name] = p.start()

    def stop_master(self, m: Master, only: Iterable[str] = ("fileserver",)) -> None:
        for name in only:
            if name in m.procs:
                m.procs[name].stop()

    def add_nodes(self, count: int, wait: bool = True, groups: list[str] | None = None) -> list[Node]:
        """Start ``count`` more nodes (in parallel: all forked first, then waited on)."""
        first = len(self.nodes)
        new = {f"n{first + i + 1:02d}": 11 + first + i for i in range(count)}
        if 11 + first + count > 249:
            raise ValueError("at most 238 nodes fit in the address plan")
        self.net.add_hosts(new)
        made = []
        for name in new:
            n = Node(name, self.net.hosts[name], self.net.ns(name), self.work / "nodes" / name,
                     list(groups or NODE_GROUPS))
            self._prepare_node(n)
            n.proc = Proc(n.ns, [str(BIN / "411"), "agent", "--config", str(n.dir / "agent.yaml")],
                          n.dir / "agent.log", "metrics on port", self.agent_env)
            made.append(n)
        for n in made:
            assert n.proc is not None
            n.proc.start()
        self.nodes += made
        if wait:
            for n in made:
                assert n.proc is not None
                n.proc.wait_ready(60)
        return made

    def _prepare_node(self, n: Node) -> None:
        if n.dir.exists():
            shutil.rmtree(n.dir)
        keys = n.dir / "keys"
        for rel in ["master.pub", "cluster.key"] + [f"groups/{g.strip('/')}.key" for g in n.groups]:
            (keys / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.keys / rel, keys / rel)
        (n.root / "etc").mkdir(parents=True)
        (n.dir / "state").mkdir()
        (n.dir / "agent.yaml").write_text(yaml.safe_dump({
            "masters": self.master_urls(), "node_id": n.name, "groups": n.groups,
            "keys_dir": str(keys), "state_dir": str(n.dir / "state"), "root": str(n.root),
            "multicast": {"enabled": True, "group": MCAST, "port": PORT, "interface": n.addr},
            "unicast_port": PORT, "poll_mean_s": self.poll_mean_s, "watch": self.watch,
            "metrics_listen": "127.0.0.1:9413", "connect_timeout_s": 2.0, "read_timeout_s": 10.0,
        }))

    def close(self) -> None:
        procs = [n.proc for n in self.nodes if n.proc] + [p for m in self.masters for p in m.procs.values()]
        for p in procs:
            if p.alive:
                assert p.p is not None
                p.p.terminate()
        end = time.monotonic() + 10
        for p in procs:
            if p.p is not None:
                try:
                    p.p.wait(max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
        self.net.destroy()

    # -- publishing --------------------------------------------------------------------------

    def publish(self, dest: str, content: bytes, group: str = "/", perm: str = "0644") -> Published:
        """``411put`` a file, as an admin on the master would; returns when it returned."""
        srcdir = self.work / "put" / group.strip("/")
        f = srcdir / dest.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content)
        argv = [str(BIN / "411put"), "--411dir", str(self.four11), "--keys", str(self.keys),
                "--group", group, "--chroot", str(srcdir), "--owner", "0:0", "--perm", perm]
        for u in self.master_urls():
            argv += ["--master-url", u]
        p = subprocess.run([*argv, str(f)], capture_output=True, text=True, timeout=60)
        returned = time.time()
        if p.returncode != 0:
            raise RuntimeError(f"411put failed ({p.returncode}): {p.stderr.strip()}")
        pub = Published(peek_version((self.four11 / "index").read_bytes()), returned, content, dest)
        self.published.append(pub)
        return pub

    def alert_bytes(self) -> bytes:
        """The newest spooled (genuine, signed) alert, as the alerter repeats it."""
        files = sorted((self.four11 / "alerts").glob("*.alert"))
        return files[-1].read_bytes()

    def snapshot_411(self, dest: Path) -> Path:
        """A copy of the served tree as it is now (for a rollback attacker)."""
        shutil.copytree(self.four11, dest, ignore=shutil.ignore_patterns(".*", "alerts"))
        return dest

    # -- observing ---------------------------------------------------------------------------

    def wait_converged(self, pub: Published, nodes: list[Node] | None = None,
                       timeout: float = 30.0) -> dict[str, float]:
        """Wait until every node holds ``pub``'s content; returns node -> seconds from
        411put returning to the file's rename on that node (its ctime)."""
        nodes = self.nodes if nodes is None else nodes
        done: dict[str, float] = {}

        def check() -> bool:
            for n in nodes:
                if n.name not in done and n.read(pub.dest) == pub.content:
                    done[n.name] = n.path(pub.dest).stat().st_ctime - pub.returned
            return len(done) == len(nodes)

        try:
            wait_until(check, timeout, "convergence", interval=0.01)
        except TimeoutError:
            late = [n.name for n in nodes if n.name not in done]
            raise TimeoutError(f"{len(late)} of {len(nodes)} nodes did not apply index "
                               f"{pub.version} within {timeout:.0f} s: {', '.join(late)}") from None
        return done

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)
