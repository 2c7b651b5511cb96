"""The harness itself: nothing survives a SIGKILLed runner, the next start removes stale
namespaces, and the latency helper either works or says why it cannot."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from four11.testing import netns
from four11.testing.cluster import wait_until

PREFIX = "f411k-"  # not the shared cluster's prefix: its namespaces must stay untouched

RUNNER = """
import sys, time
from pathlib import Path
from four11.testing.cluster import Cluster
c = Cluster(Path(sys.argv[1]), k=2, masters=1, attacker=False, publisher=False, prefix=sys.argv[2])
c.start()
print("up", flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkilled_runner_leaves_no_process_and_next_start_removes_its_namespaces(tmp_path):
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path), PREFIX],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline()
        assert line.strip() == "up", runner.stderr.read() if runner.stderr else ""
        names = netns.list_ns(PREFIX)
        assert {f"{PREFIX}{h}" for h in ("br", "m1", "n01", "n02")} <= set(names)
        pids = [int(p) for ns in names for p in netns.ip("netns", "pids", ns).split()]
        assert len(pids) >= 4  # fileserver, alerter, two agents
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        wait_until(lambda: not any(_alive(p) for p in pids), 20, "the services to die with the runner")
        assert netns.list_ns(PREFIX) == names  # a SIGKILL runs no clean-up...
        br = netns.Bridge(PREFIX)
        br.create()  # ...so the next start does it
        assert netns.list_ns(PREFIX) == [f"{PREFIX}br"]
    finally:
        runner.kill()
        netns.remove_ns(netns.list_ns(PREFIX))
    assert netns.list_ns(PREFIX) == []


def test_latency_helper_adds_delay_or_names_the_missing_module(tmp_path):
    br = netns.Bridge(PREFIX)
    br.create()
    try:
        br.add_hosts({"a": 1, "b": 2})
        srv = netns.socket_in(br.ns("b"))
        srv.bind(("10.77.0.2", 0))
        srv.listen()
        port = srv.getsockname()[1]

        def connect_time() -> float:
            def go() -> float:
                t0 = time.monotonic()
                with socket.create_connection(("10.77.0.2", port), timeout=5):
                    return time.monotonic() - t0
            return netns.in_ns(br.ns("a"), go)

        if br.netem_supported():
            with br.netem(["b"], "delay 100ms"):
                assert connect_time() >= 0.1
        else:
            try:
                with br.netem(["b"], "delay 100ms"):
                    raise AssertionError("netem() did not refuse without sch_netem")
            except netns.NetError as e:
                assert "sch_netem" in str(e)
            assert connect_time() < 0.1  # and nothing was changed
        srv.close()
    finally:
        br.destroy()
    assert netns.list_ns(PREFIX) == []
