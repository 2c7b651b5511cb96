"""The publisher's configuration (/etc/411/files.yaml): settings plus the file list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import config as c
from ..core.errors import ConfigError
from ..core.index import DEFAULT_EXPIRY_S
from ..core.publish import DEFAULT_URLDIR
from .filelist import FileSpec, load_text, parse_files

DEFAULT_CONFIG = "/etc/411/files.yaml"

SCHEMA = c.Schema(
    files=c.Opt(list, [], "files to publish: {source, dest|chroot, group, comment, mode, owner, perm}"),
    keys_dir=c.Opt(str, "/etc/411-security", "master.key, cluster.pub and groups/*.pub"),
    four11_dir=c.Opt(str, "/var/lib/four11/messages", "message directory shared with the fileserver"),
    urldir=c.Opt(str, DEFAULT_URLDIR, "URL path the fileserver serves the message dir under"),
    master_urls=c.Opt(list, [], "master URLs written into the index and alerts"),
    index_expiry_s=c.Opt(int, DEFAULT_EXPIRY_S, "validity of a signed index, seconds", c.positive),
    resign_s=c.Opt(int, 86400, "re-sign the index when it is this old, seconds", c.positive),
    full_check_s=c.Opt(float, 3600.0, "check every source even without a seen change", c.positive),
    poll_s=c.Opt(float, 0.5, "stat-poll interval of the sources and this file", c.positive),
    debounce_s=c.Opt(float, 0.3, "wait this long after a change before publishing", c.non_negative),
    state_dir=c.Opt(str, "/var/lib/four11/publisher",
                    "private state (fingerprints of published sources, control socket)"),
    control_socket=c.Opt(str, "", "unix socket for 411 commit/restart (default <state_dir>/control.sock)"),
    metrics_listen=c.Opt(str, "0.0.0.0:9411", "host:port of /metrics and /healthz", c.host_port),
    log_level=c.Opt(str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
)


@dataclass
class PublisherConfig:
    settings: dict[str, Any]
    files: list[FileSpec]
    path: Path | None = None  # the file it came from, watched for edits

    @property
    def control_socket(self) -> Path:
        return control_socket(self.settings)


def control_socket(settings: Mapping[str, Any]) -> Path:
    if settings.get("control_socket"):
        return Path(settings["control_socket"])
    return Path(settings["state_dir"]) / "control.sock"


def check(settings: dict[str, Any], origin: str) -> None:
    if settings["resign_s"] >= settings["index_expiry_s"]:
        raise ConfigError(
            f"{origin}: resign_s ({settings['resign_s']}) must be shorter than index_expiry_s "
            f"({settings['index_expiry_s']}), or nodes would see the index expire"
        )


def load(path: str | Path | None, flags: Mapping[str, Any] | None = None,
         env: Mapping[str, str] | None = None) -> PublisherConfig:
    """Defaults < file < FOUR11_* environment < flags; the file list with line numbers."""
    settings = c.load(SCHEMA, path, flags, env)
    origin = str(path) if path else "configuration"
    text = load_text(Path(path)) if path else None
    files = parse_files(settings["files"], origin, text)
    check(settings, origin)
    return PublisherConfig(settings, files, Path(path) if path else None)


def from_dict(cfg: Mapping[str, Any]) -> PublisherConfig:
    """A config given as a dict (the programmatic API): same checks as a file."""
    settings = c.from_mapping(SCHEMA, cfg)
    files = parse_files(settings["files"], "configuration")
    check(settings, "configuration")
    return PublisherConfig(settings, files, None)
