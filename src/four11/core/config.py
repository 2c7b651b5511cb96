"""Layered configuration: YAML file, then FOUR11_* environment, then command-line flags.

A schema maps each key to a type and default. Unknown keys in the file are an error that
names the key, so typos never pass silently. Nested mappings (e.g. ``multicast``) have
their own schema; their env variables are FOUR11_<PARENT>_<KEY>.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class Opt:
    type: type | Schema  # str, int, float, bool, list, dict, or a nested Schema
    default: Any = None
    help: str = ""
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


class Schema(dict):
    """Key -> Opt."""


def _coerce(key: str, opt: Opt, value: Any, origin: str) -> Any:
    t = opt.type
    if isinstance(t, Schema):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{origin}: {key} must be a mapping")
        return _apply_schema(t, value, origin, prefix=f"{key}.")
    if value is None:
        return None
    try:
        if t is bool:
            if isinstance(value, bool):
                out = value
            elif isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                out = True
            elif isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                out = False
            else:
                raise ValueError
        elif t is list:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError
            out = value
        elif t is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, Mapping):
                raise ValueError
            out = dict(value)
        elif t is int:
            if isinstance(value, (bool, float)):
                raise ValueError
            out = int(value)
        elif t is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        else:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            out = str(value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{origin}: {key} must be of type {t.__name__}, got {value!r}"
        ) from None
    if opt.check is not None:
        err = opt.check(out)
        if err:
            raise ConfigError(f"{origin}: {key}: {err}")
    return out


def _apply_schema(schema: Schema, values: Mapping, origin: str, prefix: str = "") -> dict:
    unknown = [k for k in values if k not in schema]
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key {prefix + unknown[0]!r} (known: {', '.join(sorted(schema))})"
        )
    return {k: _coerce(prefix + k, schema[k], v, origin) for k, v in values.items()}


def defaults(schema: Schema) -> dict:
    return {
        k: defaults(o.type) if isinstance(o.type, Schema) else _copy(o.default)
        for k, o in schema.items()
    }


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v


def _env_values(schema: Schema, env: Mapping[str, str], prefix: str) -> dict:
    out: dict[str, Any] = {}
    for k, o in schema.items():
        name = f"{prefix}{k.upper()}"
        if isinstance(o.type, Schema):
            sub = _env_values(o.type, env, name + "_")
            if sub:
                out[k] = sub
        elif name in env:
            out[k] = _coerce(k, o, env[name], f"environment {name}")
    return out


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load(
    schema: Schema,
    file: str | Path | None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    required_file: bool = True,
) -> dict:
    """Defaults < file < environment < flags (flags set to None are ignored)."""
    cfg = defaults(schema)
    if file:
        path = Path(file)
        try:
            text = path.read_text()
        except FileNotFoundError:
            if required_file:
                raise ConfigError(f"config file {path} does not exist") from None
            text = ""
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        cfg = _merge(cfg, _apply_schema(schema, data, str(path)))
    cfg = _merge(cfg, _env_values(schema, os.environ if env is None else env, "FOUR11_"))
    if flags:
        given = {k: v for k, v in flags.items() if v is not None and k in schema}
        cfg = _merge(cfg, _apply_schema(schema, given, "command line"))
    return cfg


def from_mapping(schema: Schema, values: Mapping, origin: str = "configuration") -> dict:
    """Defaults < values, checked like a file (for a service configured from code)."""
    return _merge(defaults(schema), _apply_schema(schema, values, origin))


def add_flags(parser: argparse.ArgumentParser, schema: Schema, skip: tuple[str, ...] = ()) -> None:
    """One --flag-with-dashes per top-level scalar/list key; default None so the file and
    environment are not overridden unless the flag is given."""
    for k, o in schema.items():
        if k in skip or isinstance(o.type, Schema) or o.type is dict:
            continue
        flag = "--" + k.replace("_", "-")
        if o.type is bool:
            parser.add_argument(flag, dest=k, default=None, action=argparse.BooleanOptionalAction,
                                help=o.help)
        elif o.type is list:
            parser.add_argument(flag, dest=k, default=None, action="append", help=o.help)
        else:
            parser.add_argument(flag, dest=k, default=None, type=o.type, help=o.help)


def positive(v: Any) -> str | None:
    return None if v > 0 else "must be greater than 0"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def host_port(v: Any) -> str | None:
    _host, sep, port = str(v).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be host:port"
    return None
