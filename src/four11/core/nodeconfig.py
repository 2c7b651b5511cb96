"""The node's configuration schema (/etc/411/agent.yaml), shared by 411get and the agent."""

from __future__ import annotations

import socket
from pathlib import Path

from . import config as c
from . import groups as grp
from .errors import ConfigError
from .index import DEFAULT_MAX_INDEX
from .message import DEFAULT_MAX_MESSAGE
from .sync import NodePolicy

DEFAULT_CONF = "/etc/411/agent.yaml"


def _groups_ok(v: list) -> str | None:
    try:
        for g in v:
            grp.normalize(g)
    except ConfigError as e:
        return str(e)
    return None


def _abs_prefixes(v: list) -> str | None:
    bad = [p for p in v if not isinstance(p, str) or not p.startswith("/") or ".." in p.split("/")]
    return f"must be absolute paths without '..', not {bad[0]!r}" if bad else None


def _post_apply_ok(v: dict) -> str | None:
    for path, cmd in v.items():
        if not isinstance(path, str) or not path.startswith("/"):
            return f"keys must be absolute destination paths, not {path!r}"
        ok = (isinstance(cmd, str) and cmd.strip()) or (
            isinstance(cmd, list) and cmd and all(isinstance(x, str) and x for x in cmd))
        if not ok:
            return f"command for {path} must be a non-empty string or list of strings"
    return None


MULTICAST = c.Schema(
    enabled=c.Opt(bool, True, "listen for multicast alerts"),
    group=c.Opt(str, "239.2.11.71", "multicast group"),
    port=c.Opt(int, 8411, "UDP port"),
    interface=c.Opt(str, "0.0.0.0", "address of the interface to join on"),
)

SCHEMA = c.Schema(
    masters=c.Opt(list, [], "master URLs, e.g. http://frontend:8411/411.d/"),
    node_id=c.Opt(str, None, "node name reported to the fileserver (default: hostname)"),
    groups=c.Opt(list, [], "411 groups this node is registered in", _groups_ok),
    membership=c.Opt(str, None, "membership group, e.g. Compute"),
    keys_dir=c.Opt(str, "/etc/411-security", "master.pub and this node's group keys"),
    state_dir=c.Opt(str, "/var/lib/four11/agent", "applied serials, accepted index version"),
    root=c.Opt(str, "/", "prefix every destination is written under (e.g. /host)"),
    allow_paths=c.Opt(list, ["/etc/"], "destination prefixes this node accepts", _abs_prefixes),
    uid_min=c.Opt(int, 1000, "merge mode: users from here up come from the master", c.non_negative),
    gid_min=c.Opt(int, 1000, "merge mode: groups from here up come from the master", c.non_negative),
    multicast=c.Opt(MULTICAST),
    unicast_port=c.Opt(int, 8411, "UDP port for unicast alerts (0: off)"),
    poll_mean_s=c.Opt(float, 600.0, "mean poll interval, seconds", c.positive),
    watch=c.Opt(bool, True, "hold a long-poll watch on the best master"),
    concurrency=c.Opt(int, 8, "target concurrent fetches at a master (C in the backoff)", c.positive),
    post_apply=c.Opt(dict, {}, "destination path -> local command run after it changes",
                     _post_apply_ok),
    post_apply_timeout_s=c.Opt(float, 60.0, "timeout of a post_apply command", c.positive),
    metrics_listen=c.Opt(str, "0.0.0.0:9413", "host:port of /metrics and /healthz", c.host_port),
    max_message=c.Opt(int, DEFAULT_MAX_MESSAGE, "largest message accepted, bytes", c.positive),
    max_index=c.Opt(int, DEFAULT_MAX_INDEX, "largest index accepted, bytes", c.positive),
    alert_verify_rate=c.Opt(float, 100.0, "alert signature checks per second, all sources", c.positive),
    alert_verify_per_source=c.Opt(float, 5.0, "alert signature checks per second per source address",
                                  c.positive),
    connect_timeout_s=c.Opt(float, 5.0, "HTTP connect timeout", c.positive),
    read_timeout_s=c.Opt(float, 30.0, "HTTP read timeout", c.positive),
)


def memberships(cfg: dict) -> list[str]:
    out = [grp.ROOT] + [grp.normalize(g) for g in cfg["groups"]]
    if cfg.get("membership"):
        out.append(grp.normalize(cfg["membership"]))
    return out


def policy(cfg: dict) -> NodePolicy:
    return NodePolicy(
        memberships=memberships(cfg), root=cfg["root"], allow_paths=list(cfg["allow_paths"]),
        uid_min=cfg["uid_min"], gid_min=cfg["gid_min"], max_message=cfg["max_message"],
        max_index=cfg["max_index"],
    )


def node_id(cfg: dict) -> str:
    return cfg.get("node_id") or socket.gethostname()


def state_dir(cfg: dict) -> Path:
    return Path(cfg["state_dir"])
