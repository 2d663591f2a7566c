"""Typed run configs: a dataclass, a small TOML file, and ``--key=value`` overrides.

An unknown key or a value of the wrong type stops the run with a message that
names the key, the value received and the type expected.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _coerce(name: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"config key {name!r}: cannot read {value!r} as {typ}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {name!r}: expected a list, got {value!r}")
        inner = args[0] if args else str
        return origin(_coerce(name, v, inner) for v in value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise TypeError(f"config key {name!r}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise TypeError(f"config key {name!r}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise TypeError(f"config key {name!r}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, bool):
            raise TypeError(f"config key {name!r}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise TypeError(f"config key {name!r}: expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise TypeError(f"config key {name!r}: expected a string, got {value!r}")
    return value


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["--lr=3e-4", "epochs=2"]`` → ``{"lr": "3e-4", "epochs": "2"}``."""
    out = {}
    for item in items:
        key, sep, value = item.lstrip("-").partition("=")
        if not sep or not key:
            raise ValueError(f"override must look like --key=value, got {item!r}")
        out[key.replace("-", "_")] = value
    return out


def split_named(item: str, form: str = "NAME=PATH") -> tuple[str, str]:
    """``"v8=runs/model_v8"`` → ``("v8", "runs/model_v8")``, for commands that take named
    models or parts; ``ValueError`` saying ``expected {form}`` when either side is empty."""
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        raise ValueError(f"expected {form}, got {item!r}")
    return name, value


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Build a config dataclass from defaults, a TOML file, then overrides.

    Args:
        cls: the dataclass type.
        path: a TOML file (a bare name is looked up in ``training/configs``).
        overrides: ``{key: value}``; strings are converted to the field's type.

    Raises:
        ValueError: an unknown key.
        TypeError: a value of the wrong type.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / p).exists():
            p = CONFIG_DIR / p
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {path} (also looked in {CONFIG_DIR})")
        with open(p, "rb") as fh:
            values.update(tomllib.load(fh))
    values.update(overrides or {})
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
    return cls(**kwargs)


def config_to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def format_config(cfg) -> str:
    """The resolved config, one ``key = value`` per line, for the start of a run."""
    return "\n".join(f"  {k} = {v!r}" for k, v in dataclasses.asdict(cfg).items())
