"""The agent's configuration: core's node SCHEMA plus the checks only a daemon needs.

Everything is checked at start so a bad value is refused with its key and reason before
the agent touches the network or a file.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ..core import config as cfgmod
from ..core import nodeconfig
from ..core.errors import ConfigError, Refusal
from ..core.source import normalize_master


def load(conf: str | None, flags: dict | None = None, env: dict | None = None) -> dict:
    if conf is None and os.path.exists(nodeconfig.DEFAULT_CONF):
        conf = nodeconfig.DEFAULT_CONF
    cfg = cfgmod.load(nodeconfig.SCHEMA, conf, flags, env)
    validate(cfg)
    return cfg


def _port(key: str, v: int) -> None:
    if not 0 <= v <= 65535:
        raise ConfigError(f"{key}: {v} is not a port number (0-65535)")


def validate(cfg: dict) -> None:
    if not cfg["masters"]:
        raise ConfigError("masters: at least one master URL is required")
    for m in cfg["masters"]:
        if not isinstance(m, str):
            raise ConfigError(f"masters: {m!r} is not a URL")
        try:
            normalize_master(m)
        except Refusal as r:
            raise ConfigError(f"masters: {r.message}") from None
    mc = cfg["multicast"]
    _port("multicast.port", mc["port"])
    _port("unicast_port", cfg["unicast_port"])
    if mc["enabled"]:
        try:
            if not ipaddress.IPv4Address(mc["group"]).is_multicast:
                raise ConfigError(f"multicast.group: {mc['group']} is not an IPv4 multicast address")
        except ValueError:
            raise ConfigError(f"multicast.group: {mc['group']!r} is not an IPv4 address") from None
        try:
            ipaddress.IPv4Address(mc["interface"])
        except ValueError:
            raise ConfigError(
                f"multicast.interface: {mc['interface']!r} is not an IPv4 interface address") from None
    if not Path(cfg["root"]).is_dir():
        raise ConfigError(f"root: {cfg['root']} is not a directory")
    if cfg["node_id"] is not None and (not cfg["node_id"].strip() or len(cfg["node_id"]) > 253
                                       or any(ch in cfg["node_id"] for ch in "\r\n\x00")):
        raise ConfigError(f"node_id: {cfg['node_id']!r} must be a short one-line name")
    nodeconfig.memberships(cfg)  # raises ConfigError on a bad group name
