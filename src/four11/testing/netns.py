"""Network namespaces on one bridge: hosts with their own addresses, multicast between
them, and fault injection. Everything made here carries one name prefix, so stale
namespaces of an earlier run (even one killed with SIGKILL) can be found and removed
without touching anything else on the machine."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NETNS_DIR = "/run/netns"
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NetError(RuntimeError):
    """A namespace command failed (the message names the command and its stderr)."""


def ip(*args: str, check: bool = True) -> str:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def ip_batch(lines: list[str], ns: str | None = None) -> None:
    """Many ip commands in one process (K=50 hosts is hundreds of commands)."""
    if not lines:
        return
    p = subprocess.run(["ip", *(["-n", ns] if ns else []), "-force", "-batch", "-"],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise NetError(f"ip -batch: {p.stderr.strip()}")


def exec_in(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise NetError(f"{ns}: {' '.join(cmd)}: {p.stderr.strip()}")
    return p


def list_ns(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def remove_ns(names: list[str]) -> None:
    """Kill what runs inside (only our own processes live there), then delete."""
    for ns in names:
        pids = ip("netns", "pids", ns, check=False).split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", ns, check=False)


def setns(ns: str) -> None:
    """Move the calling thread into a namespace (per thread: other threads stay put)."""
    fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {ns}: {os.strerror(e)}")
    finally:
        os.close(fd)


def in_ns(ns: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run fn in a fresh thread inside ``ns``: sockets it makes belong to that namespace
    and keep belonging to it when used from other threads."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            setns(ns)
            box["v"] = fn(*args, **kw)
        except BaseException as e:  # handed back to the caller's thread
            box["e"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


def socket_in(ns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    return in_ns(ns, socket.socket, family, type)


def child_setup(ns: str) -> Callable[[], None]:
    """preexec_fn: enter ``ns`` and die with the parent (a SIGKILLed test runner leaves no
    service behind)."""
    path = f"{NETNS_DIR}/{ns}"

    def pre() -> None:
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            os._exit(120)
        os.close(fd)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()

    return pre


class Bridge:
    """One bridge namespace ``<prefix>br`` and hosts attached to it by veth pairs.
    Host ``name`` gets namespace ``<prefix><name>``, interface eth0 and its address; the
    bridge side is ``v-<name>``."""

    def __init__(self, prefix: str = "f411-", subnet: str = "10.77.0") -> None:
        self.prefix = prefix
        self.subnet = subnet
        self.br = prefix + "br"
        self.hosts: dict[str, str] = {}  # name -> address

    def ns(self, name: str) -> str:
        return self.prefix + name

    def port(self, name: str) -> str:
        return f"v-{name}"

    def create(self) -> None:
        remove_ns(list_ns(self.prefix))
        ip("netns", "add", self.br)
        ip_batch(["link set lo up", "link add br0 type bridge mcast_snooping 0", "link set br0 up"],
                 self.br)

    def add_hosts(self, hosts: dict[str, int]) -> None:
        """hosts: name -> last octet of its address."""
        root, bridge = [], []
        for name in hosts:
            ns, port = self.ns(name), self.port(name)
            root += [f"netns add {ns}",
                     f"link add {port} netns {self.br} type veth peer name eth0 netns {ns}"]
            bridge.append(f"link set {port} master br0 up")
        ip_batch(root)
        ip_batch(bridge, self.br)
        for name, octet in hosts.items():
            addr = f"{self.subnet}.{octet}"
            ip_batch(["link set lo up", f"addr add {addr}/24 dev eth0", "link set eth0 up",
                      "route add 224.0.0.0/4 dev eth0"], self.ns(name))
            self.hosts[name] = addr

    def destroy(self) -> None:
        remove_ns(list_ns(self.prefix))
        self.hosts.clear()

    # -- faults ------------------------------------------------------------------------------

    def link(self, name: str, up: bool) -> None:
        """Cut a host off the bridge (or reconnect it): its cable is pulled, it sees nothing."""
        ip("-n", self.br, "link", "set", self.port(name), "up" if up else "down")

    @contextlib.contextmanager
    def cut(self, *names: str) -> Iterator[None]:
        for n in names:
            self.link(n, False)
        try:
            yield
        finally:
            for n in names:
                self.link(n, True)

    def iptables(self, name: str, *rule: str) -> None:
        exec_in(self.ns(name), "iptables", "-w", *rule)

    @contextlib.contextmanager
    def _rule_on(self, names: list[str], rule: list[str]) -> Iterator[None]:
        """An iptables rule on each host for the duration of the block."""
        for n in names:
            self.iptables(n, "-A", *rule)
        try:
            yield
        finally:
            for n in names:
                self.iptables(n, "-D", *rule)

    def drop_udp(self, names: list[str], port: int = 8411) -> contextlib.AbstractContextManager[None]:
        """Alerts to these hosts are lost (their UDP port drops everything)."""
        return self._rule_on(names, ["INPUT", "-i", "eth0", "-p", "udp", "--dport", str(port),
                                     "-j", "DROP"])

    def loss(self, names: list[str], probability: float) -> contextlib.AbstractContextManager[None]:
        """Random loss of every packet a host receives. Every packet on the bridge enters
        exactly one host, so applying it to all hosts is ``probability`` loss on the bridge.
        (tc netem would do the same, but needs the sch_netem module, which not every
        kernel has; iptables' statistic match is always there.)"""
        return self._rule_on(names, ["INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random",
                                     "--probability", str(probability), "-j", "DROP"])

    def netem_supported(self) -> bool:
        p = exec_in(self.br, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                    check=False)
        if p.returncode == 0:
            exec_in(self.br, "tc", "qdisc", "del", "dev", "lo", "root", check=False)
        return p.returncode == 0

    @contextlib.contextmanager
    def netem(self, names: list[str], spec: str) -> Iterator[None]:
        """tc netem on the bridge ports towards these hosts, e.g. ``"delay 50ms loss 5%"``.
        Raises NetError naming the missing sch_netem module where the kernel lacks it."""
        if not self.netem_supported():
            raise NetError("tc netem is not available here (kernel module sch_netem missing); "
                           "use loss() for packet loss")
        for n in names:
            exec_in(self.br, "tc", "qdisc", "add", "dev", self.port(n), "root", "netem", *spec.split())
        try:
            yield
        finally:
            for n in names:
                exec_in(self.br, "tc", "qdisc", "del", "dev", self.port(n), "root", check=False)

    def take_over(self, victim: str, thief: str) -> None:
        """``thief`` answers for ``victim``'s address from now on (a man in the middle):
        the victim's port goes down, the thief takes its MAC and address, so the
        nodes' ARP caches and the bridge lead to the thief without any announcement."""
        mac = ip("-n", self.ns(victim), "-br", "link", "show", "eth0").split()[2]
        addr = self.hosts[victim]
        self.link(victim, False)
        ip_batch(["link set eth0 down", f"link set eth0 address {mac}",
                  f"addr add {addr}/24 dev eth0", "link set eth0 up"], self.ns(thief))

    def give_back(self, victim: str, thief: str, thief_mac: str) -> None:
        addr = self.hosts[victim]
        ip_batch([f"addr del {addr}/24 dev eth0", "link set eth0 down",
                  f"link set eth0 address {thief_mac}", "link set eth0 up"], self.ns(thief))
        self.link(victim, True)

    def mac(self, name: str) -> str:
        return ip("-n", self.ns(name), "-br", "link", "show", "eth0").split()[2]
