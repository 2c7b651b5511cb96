"""Every refusal of design.md, over real HTTP from a server that serves tampered or
hostile (but master-signed) bytes: the node's file stays byte-for-byte the same on the
same inode, and the agent's metric names the reason."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import CollectorRegistry

from four11.core import config as cfgmod
from four11.core import nodeconfig
from four11.core.index import encode_index
from four11.core.keys import SigningKey, load_recipient_key, load_signing_key
from four11.nodeagent.agent import Agent


def _cfg(c, **over) -> dict:
    cfg = cfgmod.load(nodeconfig.SCHEMA, None, {
        "masters": [c.server.url], "keys_dir": str(c.keys), "state_dir": str(c.state),
        "root": str(c.root), "metrics_listen": "127.0.0.1:0", "unicast_port": 0, "watch": False,
        "groups": ["/compute"], "read_timeout_s": 2.0, "node_id": "n1"}, env={})
    cfg["multicast"]["enabled"] = False
    cfg.update(over)
    return cfg


def _syncs(agent: Agent) -> float:
    return sum(s.value for m in agent.registry.collect() if m.name == "four11_agent_syncs"
               for s in m.samples if s.name.endswith("_total"))


async def _sync(agent: Agent) -> None:
    """Ask for a sync and wait until one more has finished (a failed one schedules retries,
    so the scheduler is not idle afterwards)."""
    n = _syncs(agent)
    agent.sched.request("alert")
    end = time.monotonic() + 20
    while _syncs(agent) <= n:
        assert time.monotonic() < end, "no sync finished within 20 s"
        await asyncio.sleep(0.01)


def _resign(c, signer, **changes) -> bytes:
    idx = c.master.d.current_index()
    return encode_index(dataclasses.replace(idx, **changes), signer)


# Each case prepares the hostile answer after the node holds /etc/hosts "v1" and returns
# (metric, reason, destination that must not change or appear, tamper to set after the
# node first synced the genuine state or None).


def bad_signature(c, keys):
    c.master.publish("/etc/hosts", b"v2\n")
    c.server.tamper["index"] = lambda b: b[:-1] + bytes([b[-1] ^ 0x40])
    return "index", "bad_signature", "/etc/hosts", None


def unknown_key(c, keys):
    c.master.publish("/etc/hosts", b"v2\n")
    other = SigningKey.from_private(ed25519.Ed25519PrivateKey.generate())
    c.server.tamper["index"] = _resign(c, other)
    return "index", "unknown_key", "/etc/hosts", None


def rollback(c, keys):
    old = (c.master.dir / "index").read_bytes()
    c.master.publish("/etc/hosts", b"v2\n")
    return "index", "rollback", "/etc/hosts", {"index": old}  # older, genuinely signed


def expired(c, keys):
    c.master.publish("/etc/hosts", b"v2\n")
    idx = c.master.d.current_index()
    c.server.tamper["index"] = _resign(c, load_signing_key(keys / "master.key"),
                                       version=idx.version + 1, expires=int(time.time()) - 10)
    return "index", "expired", "/etc/hosts", None


def mix_and_match(c, keys):
    other = c.master.publish("/etc/motd", b"hello\n").entries[0]
    e = c.master.publish("/etc/hosts", b"v2\n" + b"#" * 300).entries[0]
    c.server.tamper[e.file] = (c.master.dir / other.file).read_bytes()  # genuine, but another file
    return "file", "mismatch", "/etc/hosts", None


def endless_data(c, keys):
    e = c.master.publish("/etc/hosts", b"v2\n").entries[0]
    c.server.tamper[e.file] = lambda b: b * 50
    return "file", "too_large", "/etc/hosts", None


def stale_serial(c, keys):
    old = c.master.d.current_index().find("etc.hosts", "/")
    c.master.publish("/etc/hosts", b"v2\n")
    idx = c.master.d.current_index()
    entries = [old if e.name == "etc.hosts" else e for e in idx.entries]
    signed = _resign(c, load_signing_key(keys / "master.key"), version=idx.version + 1, entries=entries)
    return "file", "stale_serial", "/etc/hosts", {"index": signed}


def outside_allowed(c, keys):
    c.master.publish("/usr/local/bin/tool", b"#!/bin/sh\n")
    return "file", "bad_path", "/usr/local/bin/tool", None


def symlink_parent(c, keys):
    (c.tmp / "elsewhere").mkdir()
    os.symlink(c.tmp / "elsewhere", c.root / "etc/ssh")
    c.master.publish("/etc/ssh/ssh_known_hosts", b"host key\n")
    return "file", "bad_path", "/etc/ssh/ssh_known_hosts", None


def no_key(c, keys):
    c.master.d.set_recipient("/compute", load_recipient_key(keys / "groups/nas.pub"))
    c.master.publish("/etc/slurm.conf", b"x\n", group="/compute")
    return "file", "no_key", "/etc/slurm.conf", None


def decrypt_failed(c, keys):
    mine = load_recipient_key(keys / "groups/compute.pub")
    nas = load_recipient_key(keys / "groups/nas.pub")  # sealed to another key under my key's id
    c.master.d.set_recipient("/compute", dataclasses.replace(nas, kid=mine.kid))
    c.master.publish("/etc/slurm.conf", b"x\n", group="/compute")
    return "file", "decrypt_failed", "/etc/slurm.conf", None


CASES = [bad_signature, unknown_key, rollback, expired, mix_and_match, endless_data, stale_serial,
         outside_allowed, symlink_parent, no_key, decrypt_failed]


def _snapshot(path):
    return (path.read_bytes(), os.stat(path).st_ino) if path.exists() else None


@pytest.mark.parametrize("case", CASES, ids=[f.__name__ for f in CASES])
def test_refused_answer_changes_nothing(cluster, master_keys, case):
    c = cluster
    c.master.publish("/etc/hosts", b"v1\n")

    async def main() -> None:
        reg = CollectorRegistry()
        agent = Agent(_cfg(c), reg)
        await agent.start()
        try:
            await _sync(agent)
            assert (c.root / "etc/hosts").read_bytes() == b"v1\n"
            kind, reason, dest, later = case(c, master_keys)
            if later is not None:
                await _sync(agent)  # the node takes the genuine newer state first
                c.server.tamper.update(later)
            target = c.root / dest.lstrip("/")
            before = _snapshot(target)
            await _sync(agent)
            assert _snapshot(target) == before
            if kind == "index":
                assert reg.get_sample_value("four11_agent_index_refused_total", {"reason": reason}) >= 1
            else:
                assert reg.get_sample_value("four11_agent_files_total",
                                            {"result": "refused", "reason": reason}) >= 1
            if reason == "expired":
                assert agent.health()[0] is False and "expired" in agent.health()[1]
                assert reg.get_sample_value("four11_agent_index_expired") == 1
            if case is symlink_parent:
                assert os.listdir(c.tmp / "elsewhere") == []
        finally:
            await agent.stop()

    asyncio.run(main())
