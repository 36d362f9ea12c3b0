"""Pre-provisioned report keys: the reacting system without X.1124 (`crs keys issue`).

On a network the controller does not authenticate (a user's own `mn --topo tree,2,3`,
`admission.mode: open`), a terminal's reports are signed with a key issued ahead of time,
like a SIM's: `crs keys issue NAME --mac MAC --ip IP` adds NAME to the controller's keys file
and writes the terminal's own keys file (the format the X.1124 supplicant writes, so the
same agent reads it). The controller connects NAME when a frame from MAC first arrives at an
edge port (`owners.standalone`); the MAC and address are fixed here, never taken from a
frame, and a key is 32 random bytes that only this file and the terminal's file hold.

The file is YAML, mode 0600 (the loader refuses group/others access, as for credentials):

    terminals:
      h1: {key: <64 hex>, mac: "00:00:00:00:00:01", ip: 10.0.0.1, group: default}
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from controller import jsonfile
from controller.admission.credentials import HEX64, private_file_problem
from controller.config import Field, Validator, is_ipv4, is_mac, load_yaml
from controller.crs.messages import ID_RE

_ID = re.compile(rf"^{ID_RE}$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
SCHEMA = {"terminals": Field(dict, required=True, items=Field(dict, items={
    "key": Field(str, required=True, check=lambda v: None if HEX64.match(v)
                 else "must be 64 hex digits (32 bytes)"),
    "mac": Field(str, required=True, check=lambda v: is_mac(v.lower())),
    "ip": Field(str, required=True, check=is_ipv4),
    "group": Field(str, default="default", check=lambda v: None if _GROUP.match(v)
                   else "letters, digits, _ . - (at most 32)"),
}))}


@dataclass(frozen=True)
class Provisioned:
    name: str
    key: bytes
    mac: str
    ip: str
    group: str


def load(path: str | Path, missing_ok: bool = False) -> dict[str, Provisioned]:
    """The keys file, checked: names, keys, one MAC and one address per terminal, 0600.
    Raises ConfigError naming the file, the key and the problem. `missing_ok`: no file
    yet is no terminal (a controller may start before the first `crs keys issue`)."""
    path = str(path)
    if missing_ok and not os.path.exists(path):
        return {}
    v = Validator(path)
    loose = private_file_problem(path, "every terminal's report key")
    if loose:
        v.problems.append((path, "", loose))
    doc = v.mapping(load_yaml(path), SCHEMA)
    out: dict[str, Provisioned] = {}
    seen: dict[str, str] = {}
    for name, t in (doc.get("terminals") or {}).items():
        where = f"terminals.{name}"
        if not isinstance(name, str) or not _ID.match(name):
            v.problem(where, "a terminal name is letters, digits and _ . @ : - (at most 64)")
            continue
        if not t or not t.get("key") or v.problems:
            continue
        mac = t["mac"].lower()
        for what, value in (("mac", mac), ("ip", t["ip"])):
            other = seen.setdefault(f"{what}:{value}", name)
            if other != name:
                v.problem(f"{where}.{what}", f"{value} is also {other}'s")
        out[name] = Provisioned(name, bytes.fromhex(t["key"]), mac, t["ip"], t["group"])
    v.raise_if_any()
    return out


def issue(path: str | Path, name: str, mac: str, ip: str, group: str = "default") -> dict:
    """Add (or re-key) `name` in the keys file at `path` (created 0600) and return the
    terminal's keys document (for its agent's --keys file). A new key every time: issuing
    again revokes the old one."""
    problems = [p for p in ((None if _ID.match(name) else f"bad terminal name {name!r}"),
                            is_mac(mac.lower()), is_ipv4(ip),
                            None if _GROUP.match(group) else f"bad group {group!r}") if p]
    if problems:
        raise ValueError("; ".join(problems))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # two issuers at once: neither entry is lost
        return _issue(path, name, mac, ip, group)


def _issue(path: Path, name: str, mac: str, ip: str, group: str) -> dict:
    current = {}
    if path.exists():
        current = {n: {"key": p.key.hex(), "mac": p.mac, "ip": p.ip, "group": p.group}
                   for n, p in load(path).items()}
    for other, t in current.items():
        if other != name and (t["mac"] == mac.lower() or t["ip"] == ip):
            raise ValueError(f"{mac if t['mac'] == mac.lower() else ip} is already {other}'s")
    key = os.urandom(32)
    current[name] = {"key": key.hex(), "mac": mac.lower(), "ip": str(ipaddress.ip_address(ip)),
                     "group": group}
    text = ("# Pre-provisioned report keys (crs keys issue): secret, keep it 0600\n"
            + yaml.safe_dump({"terminals": current}, sort_keys=True))
    jsonfile.write_text_atomic(path, text, mode=0o600)
    return {"identity": name, "method": "provisioned", "isr_id": None,
            "crs_report_key": key.hex(), "expires": None}


def mininet_defaults(name: str) -> tuple[str, str]:
    """MAC and address `mn --mac` gives host hN (h1: 00:00:00:00:00:01, 10.0.0.1)."""
    m = re.fullmatch(r"h(\d+)", name)
    if not m or not 1 <= int(m.group(1)) <= 253:
        raise ValueError(f"{name!r} is not a Mininet host name h1..h253")
    n = int(m.group(1))
    return f"00:00:00:00:{n >> 8:02x}:{n & 0xff:02x}", f"10.0.0.{n}"
