"""CRS policy (X.1125 clause 8) from YAML, validated with controller.config.

One file holds: the security evaluation policy (ordered rules, first match wins, a default),
the security control policy (per level, with optional per-group overrides), the correlation
parameters, report staleness, update items and pacing, and a version. Every problem is
reported as ``FILE: KEY: PROBLEM``; `reload` never lets a broken file replace a working one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config import (
    ConfigError,
    Field,
    Validator,
    in_range,
    is_name,
    load_yaml,
    one_of,
)
from controller.crs.decision import ACTIONS, SCOPES, Level, Service

LEVEL_NAMES = tuple(lv.value for lv in Level)
VERSION_RE = re.compile(r"^\d{1,6}(\.\d{1,6}){0,3}$")
SERVICE_RE = re.compile(r"^(tcp|udp)/(\d{1,5})$")

# Conditions a rule may test. All conditions of one rule must hold (AND).
CONDITIONS: dict[str, Field] = {
    "threats_uncleaned": Field(bool, doc="some reported threat is not cleaned"),
    "threats_present": Field(bool, doc="any threat reported, cleaned or not"),
    "patch_level_below": Field(int, check=in_range(0, 2 ** 31), doc="os.patch_level < N"),
    "signature_version_below": Field(int, check=in_range(0, 2 ** 31),
                                     doc="antivirus.signature_version < N"),
    "agent_version_below": Field(str, check=lambda v: None if VERSION_RE.match(v) else
                                 f"{v!r} is not a version like 1.2.3",
                                 doc="agent_version < V (numeric, dotted)"),
    "firewall": Field(bool, doc="firewall on (true) / off (false)"),
    "os_name_in": Field(list, items=Field(str), doc="os.name is one of the list"),
    "attackers_reported": Field(bool, doc="the terminal reports being probed"),
}


def _is_service(value: str) -> str | None:
    mo = SERVICE_RE.match(value)
    if not mo or not 1 <= int(mo.group(2)) <= 65535:
        return f"{value!r} is not a service like tcp/25 or udp/53"
    return None


def _is_version(value: str) -> str | None:
    return None if VERSION_RE.match(value) else f"{value!r} is not a version like 1.2.3"


def _is_url(value: str) -> str | None:
    return None if re.match(r"^https?://[^\s/]+", value) else f"{value!r} is not an http URL"


# --- typed result (the schema below takes its defaults from these classes) -------------

@dataclass(frozen=True)
class Rule:
    name: str
    level: Level
    when: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class LevelControl:
    actions: tuple[str, ...]
    restrict_apps: tuple[Service, ...] = ()
    rate_limit_kbps: int | None = None
    rate_limit_pps: int | None = None       # packets/s instead of kbit/s (one or the other)
    scope: str = "all"
    update: str | None = None


@dataclass(frozen=True)
class TRWParams:
    enabled: bool = True
    theta0: float = 0.8
    theta1: float = 0.2
    alpha: float = 0.01
    beta: float = 0.99


@dataclass(frozen=True)
class CorrelationParams:
    accusers_k: int = 2
    window_s: float = 60.0
    accused_level: Level = Level.INFECTED
    scan_weight: int = 1
    scan_hold_s: float = 60.0
    trw: TRWParams = TRWParams()
    new_dest_enabled: bool = True
    new_dest_max: int = 20
    new_dest_window_s: float = 10.0
    seal_enabled: bool = True
    seal_m: int = 3
    seal_release_below: int = seal_m    # unseal when the count drops below this (<= m)
    seal_mode: str = "drop"
    seal_meter_kbps: int = 500


@dataclass(frozen=True)
class Discovery:
    """SCA discovery (X.1125 11.1): a terminal that has not spoken is probed; one that
    answers no probe is "no SCA" and gets the agentless control."""

    probe_after_s: float = 10.0     # silent this long after connecting: probed
    probe_every_s: float = 10.0
    no_sca_after: int = 3           # unanswered probes that make it "no SCA"
    agentless: LevelControl | None = None     # None: what UNKNOWN gets
    groups: dict[str, LevelControl] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    version: int
    rules: tuple[Rule, ...]
    default_level: Level
    levels: dict[Level, LevelControl]
    groups: dict[str, dict[Level, LevelControl]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    update_server_url: str = "http://10.0.100.20/updates"
    update_max_concurrent: int = 5
    update_per_second: float = 2.0
    update_timeout_s: float = 60.0
    report_interval_s: float = 10.0
    stale_after_s: float = 45.0
    correlation: CorrelationParams = CorrelationParams()
    discovery: Discovery = Discovery()
    source: str = "<policy>"

    def control_for(self, level: Level, group: str | None,
                    agentless: bool = False) -> LevelControl:
        """The control of `level`, with the group's override when it has one (8.3); for a
        terminal without an SCA (`agentless`) that has no level of its own (UNKNOWN), the
        discovery section's control, its group's first."""
        if agentless and level == Level.UNKNOWN:
            d = self.discovery
            ctl = d.groups.get(group or "") or d.agentless
            if ctl is not None:
                return ctl
        if group and level in self.groups.get(group, {}):
            return self.groups[group][level]
        return self.levels[level]

    def update_url(self, item: str) -> str:
        return f"{self.update_server_url.rstrip('/')}/{item}"


# --- schema ----------------------------------------------------------------------------

LEVEL_CONTROL: dict[str, Field] = {
    "actions": Field(list, required=True, items=Field(str, check=one_of(*ACTIONS))),
    "restrict_apps": Field(list, default=[], items=Field(str, check=_is_service)),
    "rate_limit_kbps": Field(int, check=in_range(8, 10_000_000)),
    # a worm's probes are small: a packets/s meter holds its scan rate, kbit/s does not
    "rate_limit_pps": Field(int, check=in_range(1, 10_000_000)),
    "scope": Field(str, default=LevelControl.scope, check=one_of(*SCOPES)),
    "update": Field(str, check=is_name),
}

_C, _T = CorrelationParams, TRWParams     # the defaults below are theirs

SCHEMA: dict[str, Field] = {
    "version": Field(int, required=True, check=in_range(0, 2 ** 31)),
    "report": Field(dict, default={}, items={
        "interval_s": Field(float, default=Policy.report_interval_s, check=in_range(0.1, 86400)),
        "stale_after_s": Field(float, default=Policy.stale_after_s,
                               check=in_range(0.1, 86400 * 7)),
    }),
    "evaluation": Field(dict, required=True, items={
        "default": Field(str, default="COMPLIANT", check=one_of(*LEVEL_NAMES)),
        "rules": Field(list, default=[], items={
            "name": Field(str, required=True, check=is_name),
            "level": Field(str, required=True, check=one_of(*LEVEL_NAMES)),
            "when": Field(dict, default={}, items=CONDITIONS),
        }),
    }),
    "control": Field(dict, required=True, items={
        "levels": Field(dict, required=True,
                        items={lv: Field(dict, required=True, items=LEVEL_CONTROL)
                               for lv in LEVEL_NAMES}),
        "groups": Field(dict, default={}, items=Field(dict)),
    }),
    "updates": Field(dict, default={}, items={
        "server_url": Field(str, default=Policy.update_server_url, check=_is_url),
        "items": Field(dict, default={}, items=Field(dict, items={
            "patch_level": Field(int, check=in_range(0, 2 ** 31)),
            "signature_version": Field(int, check=in_range(0, 2 ** 31)),
            "agent_version": Field(str, check=_is_version),
            "clean": Field(bool, default=False),
            "firewall": Field(bool),
        })),
        "max_concurrent": Field(int, default=Policy.update_max_concurrent,
                                check=in_range(1, 100_000)),
        "per_second": Field(float, default=Policy.update_per_second,
                            check=in_range(0.001, 100_000)),
        "timeout_s": Field(float, default=Policy.update_timeout_s, check=in_range(1, 86400)),
    }),
    "discovery": Field(dict, default={}, items={
        "probe_after_s": Field(float, default=Discovery.probe_after_s,
                               check=in_range(0.1, 86400)),
        "probe_every_s": Field(float, default=Discovery.probe_every_s,
                               check=in_range(0.1, 86400)),
        "no_sca_after": Field(int, default=Discovery.no_sca_after, check=in_range(1, 1000)),
        "agentless": Field(dict, items=LEVEL_CONTROL),
        "groups": Field(dict, default={}, items=Field(dict, items=LEVEL_CONTROL)),
    }),
    "correlation": Field(dict, default={}, items={
        "accusers_k": Field(int, default=_C.accusers_k, check=in_range(2, 1000)),
        "window_s": Field(float, default=_C.window_s, check=in_range(1, 86400)),
        "accused_level": Field(str, default=_C.accused_level.value, check=one_of(*LEVEL_NAMES)),
        "scan": Field(dict, default={}, items={
            "weight": Field(int, default=_C.scan_weight, check=in_range(0, 1000)),
            "hold_s": Field(float, default=_C.scan_hold_s, check=in_range(1, 86400)),
            "trw": Field(dict, default={}, items={
                "enabled": Field(bool, default=_T.enabled),
                "theta0": Field(float, default=_T.theta0, check=in_range(0.0, 1.0)),
                "theta1": Field(float, default=_T.theta1, check=in_range(0.0, 1.0)),
                "alpha": Field(float, default=_T.alpha, check=in_range(0.0, 1.0)),
                "beta": Field(float, default=_T.beta, check=in_range(0.0, 1.0)),
            }),
            "new_destinations": Field(dict, default={}, items={
                "enabled": Field(bool, default=_C.new_dest_enabled),
                "max": Field(int, default=_C.new_dest_max, check=in_range(1, 1_000_000)),
                "window_s": Field(float, default=_C.new_dest_window_s,
                                  check=in_range(0.1, 86400)),
            }),
        }),
        "group_seal": Field(dict, default={}, items={
            "enabled": Field(bool, default=_C.seal_enabled),
            "infected_m": Field(int, default=_C.seal_m, check=in_range(1, 1_000_000)),
            # 0: the same as infected_m
            "release_below": Field(int, default=0, check=in_range(0, 1_000_000)),
            "mode": Field(str, default=_C.seal_mode, check=one_of("drop", "meter")),
            "meter_kbps": Field(int, default=_C.seal_meter_kbps, check=in_range(8, 10_000_000)),
        }),
    }),
}


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raises ConfigError listing every problem."""
    return parse_policy(load_yaml(path), str(path))


def reload(path: str | Path) -> Policy | ConfigError:
    """The new policy, or the ConfigError that keeps the old one in force."""
    try:
        return load_policy(path)
    except ConfigError as exc:
        return exc


def parse_policy(data: Any, file: str = "<policy>") -> Policy:
    """Validate a loaded YAML document and build the typed Policy."""
    v = Validator(file)
    doc = v.mapping(data, SCHEMA)
    if v.problems:
        v.raise_if_any()
    items = doc["updates"]["items"]
    for name in items:
        if is_name(str(name)):
            v.problem(f"updates.items.{name}", is_name(str(name)) or "")
    levels = {Level(k): _level_control(v, c, f"control.levels.{k}", items)
              for k, c in doc["control"]["levels"].items()}
    groups: dict[str, dict[Level, LevelControl]] = {}
    for gname, over in doc["control"]["groups"].items():
        key = f"control.groups.{gname}"
        if is_name(str(gname)):
            v.problem(key, is_name(str(gname)) or "")
        schema = {lv: Field(dict, items=LEVEL_CONTROL) for lv in LEVEL_NAMES}
        checked = v.mapping(over, schema, key)
        groups[str(gname)] = {Level(k): _level_control(v, c, f"{key}.{k}", items)
                              for k, c in checked.items() if c}
    rules = []
    for i, r in enumerate(doc["evaluation"]["rules"]):
        if not r["when"] or all(val is None for val in r["when"].values()):
            v.problem(f"evaluation.rules[{i}].when", "a rule needs at least one condition "
                      "(use evaluation.default for the fall-through level)")
        when = tuple((k, tuple(val) if isinstance(val, list) else val)
                     for k, val in r["when"].items() if val is not None)
        rules.append(Rule(r["name"], Level(r["level"]), when))
    names = [r.name for r in rules]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        v.problem("evaluation.rules", f"rule name {dup!r} used twice")
    corr = _correlation(v, doc["correlation"])
    disc = doc["discovery"]
    discovery = Discovery(
        disc["probe_after_s"], disc["probe_every_s"], disc["no_sca_after"],
        _level_control(v, disc["agentless"], "discovery.agentless", items)
        if disc.get("agentless") else None,
        {str(g): _level_control(v, c, f"discovery.groups.{g}", items)
         for g, c in disc["groups"].items()})
    v.raise_if_any()
    return Policy(
        version=doc["version"], rules=tuple(rules),
        default_level=Level(doc["evaluation"]["default"]), levels=levels, groups=groups,
        items={k: {f: val for f, val in it.items() if val is not None} for k, it in items.items()},
        update_server_url=doc["updates"]["server_url"],
        update_max_concurrent=doc["updates"]["max_concurrent"],
        update_per_second=doc["updates"]["per_second"],
        update_timeout_s=doc["updates"]["timeout_s"],
        report_interval_s=doc["report"]["interval_s"],
        stale_after_s=doc["report"]["stale_after_s"],
        correlation=corr, discovery=discovery, source=file)


def _level_control(v: Validator, c: dict[str, Any], key: str,
                   items: dict[str, Any]) -> LevelControl:
    actions = tuple(dict.fromkeys(c.get("actions") or ()))
    if not actions:
        v.problem(f"{key}.actions", "needs at least one action")
    if "permit" in actions and len(actions) > 1:
        v.problem(f"{key}.actions", "permit cannot be combined with other actions")
    rates = [k for k in ("rate_limit_kbps", "rate_limit_pps") if c.get(k) is not None]
    if "rate_limit" in actions and len(rates) != 1:
        v.problem(f"{key}.rate_limit_kbps", "the rate_limit action needs rate_limit_kbps or "
                  "rate_limit_pps (one meter per terminal: not both)")
    if "restrict_apps" in actions and not c.get("restrict_apps"):
        v.problem(f"{key}.restrict_apps", "required (non-empty) by the restrict_apps action")
    if c.get("update") is not None and c["update"] not in items:
        v.problem(f"{key}.update", f"{c['update']!r} is not in updates.items")
    services = []
    for s in c.get("restrict_apps") or ():
        mo = SERVICE_RE.match(s)
        if mo:
            services.append(Service(mo.group(1), int(mo.group(2))))
    return LevelControl(
        actions=actions,
        restrict_apps=tuple(services) if "restrict_apps" in actions else (),
        rate_limit_kbps=c.get("rate_limit_kbps") if "rate_limit" in actions else None,
        rate_limit_pps=c.get("rate_limit_pps") if "rate_limit" in actions else None,
        scope="none" if "isolate" in actions else (c.get("scope") or "all"),
        update=c.get("update"))


def _correlation(v: Validator, c: dict[str, Any]) -> CorrelationParams:
    trw = c["scan"]["trw"]
    if trw["enabled"] and not 0 < trw["theta1"] < trw["theta0"] < 1:
        v.problem("correlation.scan.trw", "needs 0 < theta1 < theta0 < 1")
    if trw["enabled"] and not 0 < trw["alpha"] < trw["beta"] < 1:
        v.problem("correlation.scan.trw", "needs 0 < alpha < beta < 1")
    seal = c["group_seal"]
    release = seal["release_below"] or seal["infected_m"]
    if release > seal["infected_m"]:
        v.problem("correlation.group_seal.release_below",
                  f"must be at most infected_m ({seal['infected_m']})")
    nd = c["scan"]["new_destinations"]
    return CorrelationParams(
        accusers_k=c["accusers_k"], window_s=c["window_s"],
        accused_level=Level(c["accused_level"]), scan_weight=c["scan"]["weight"],
        scan_hold_s=c["scan"]["hold_s"],
        trw=TRWParams(trw["enabled"], trw["theta0"], trw["theta1"], trw["alpha"], trw["beta"]),
        new_dest_enabled=nd["enabled"], new_dest_max=nd["max"], new_dest_window_s=nd["window_s"],
        seal_enabled=seal["enabled"], seal_m=seal["infected_m"], seal_release_below=release,
        seal_mode=seal["mode"], seal_meter_kbps=seal["meter_kbps"])
