"""Typed YAML configuration: load, validate against a declared schema, report every problem.

Every configuration file of the project (topologies, policies, credentials, scenarios) is
checked with this module, so a user always gets errors of one form:
``FILE: KEY: PROBLEM``, where KEY is a dotted path such as ``switches[2].dpid``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml


class ConfigError(Exception):
    """One or more problems in one configuration file."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        # An empty key is a problem of the file itself (e.g. its mode): "FILE: PROBLEM".
        super().__init__("\n".join(f"{f}: {k}: {p}" if k else f"{f}: {p}"
                                   for f, k, p in problems))


Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Field:
    """A key of a mapping: its Python type(s), whether it must be present, its default,
    an extra check returning a problem text (or None), and for lists/dicts the element schema."""

    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    check: Check | None = None
    items: "Field | dict[str, Field] | None" = None
    doc: str = ""


Schema = dict[str, Field]


@dataclass
class Validator:
    """Collects problems for one file while walking a document against a schema."""

    file: str
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def problem(self, key: str, text: str) -> None:
        self.problems.append((self.file, key or "<document>", text))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def mapping(self, data: Any, schema: Schema, key: str = "") -> dict[str, Any]:
        """Check a mapping: unknown keys, missing keys, types, checks; fill defaults."""
        if not isinstance(data, Mapping):
            self.problem(key, f"expected a mapping, got {_kind_name(data)}")
            return {}
        out: dict[str, Any] = {}
        for k in data:
            if k not in schema:
                known = ", ".join(sorted(schema))
                self.problem(_join(key, str(k)), f"unknown key (known keys: {known})")
        for name, spec in schema.items():
            sub = _join(key, name)
            if name not in data or data[name] is None:
                if spec.required:
                    self.problem(sub, "missing required key")
                out[name] = _copy_default(spec.default)
                if isinstance(spec.items, dict) and out[name] == {}:
                    out[name] = _defaults(spec.items)   # an absent section: its defaults
                continue
            out[name] = self.value(data[name], spec, sub)
        return out

    def value(self, value: Any, spec: Field, key: str) -> Any:
        kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
        # YAML integers are acceptable where floats are expected; bools are not ints here.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(key, f"expected {_names(kinds)}, got a boolean")
            return _copy_default(spec.default)
        if not isinstance(value, kinds):
            self.problem(key, f"expected {_names(kinds)}, got {_kind_name(value)}")
            return _copy_default(spec.default)
        if isinstance(value, list) and spec.items is not None:
            value = [self._item(v, spec.items, f"{key}[{i}]") for i, v in enumerate(value)]
        elif isinstance(value, dict) and isinstance(spec.items, dict):
            value = self.mapping(value, spec.items, key)
        elif isinstance(value, dict) and isinstance(spec.items, Field):
            value = {k: self.value(v, spec.items, _join(key, str(k))) for k, v in value.items()}
        if spec.check is not None:
            text = spec.check(value)
            if text:
                self.problem(key, text)
        return value

    def _item(self, value: Any, items: "Field | dict[str, Field]", key: str) -> Any:
        if isinstance(items, dict):
            return self.mapping(value, items, key)
        return self.value(value, items, key)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing file or a syntax error becomes a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([(str(path), "<document>", f"cannot read: {exc.strerror}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([(str(path), "<document>", f"invalid YAML: {where}{reason}")]) from None


# --- reusable checks -------------------------------------------------------------------

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def is_name(value: str) -> str | None:
    if not NAME_RE.match(value):
        return "must start with a letter, use letters, digits, '-' or '_', at most 15 characters"
    return None


def is_ipv4(value: str) -> str | None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return f"{value!r} is not an IPv4 address"
    return None


def is_ipv4_network(value: str) -> str | None:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        return f"{value!r} is not an IPv4 network ({exc})"
    return None


def is_mac(value: str) -> str | None:
    if not MAC_RE.match(value.lower()):
        return f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)"
    if int(value.split(":")[0], 16) & 1:
        return f"{value!r} is a group (multicast) address"
    return None


def in_range(lo: float, hi: float) -> Check:
    def check(value: float) -> str | None:
        if not lo <= value <= hi:
            return f"{value} is outside {lo}..{hi}"
        return None
    return check


def one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        if value not in choices:
            return f"{value!r} is not one of {', '.join(choices)}"
        return None
    return check


def _defaults(schema: Schema) -> dict[str, Any]:
    out = {}
    for name, spec in schema.items():
        value = _copy_default(spec.default)
        if isinstance(spec.items, dict) and value == {}:
            value = _defaults(spec.items)
        out[name] = value
    return out


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _kind_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _copy_default(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return type(value)(value)
    return value


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "a list", dict: "a mapping"}
