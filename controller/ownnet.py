"""The reacting system on a network `crs net up` did not build (e.g. `mn --topo tree,2,3`).

Three small tools, each undone by its opposite:
- `crs keys issue`: pre-provisioned report keys (`crs.provisioned`), one keys file per
  terminal for its agent, and a clean posture file to start from;
- `crs service attach SWITCH`: the controller's service address on that switch, as an Open
  vSwitch internal port in this (root) namespace, so the terminals' agents reach the SCS
  through the data plane; `crs service detach SWITCH` removes exactly that port;
- `crs posture FILE --infected/--clean`: what the agent will report next.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

from controller import jsonfile
from controller.crs import provisioned
from controller.owners.standalone import SERVICE_PORT_NAME

CLEAN_POSTURE = {"os": {"name": "MobileOS", "patch_level": 12},
                 "antivirus": {"engine": "1.0", "signature_version": 2041},
                 "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
THREAT = {"name": "Worm.Demo", "count": 1, "cleaned": False}


def issue_keys(keys_file: str | Path, names: list[str], out_dir: str | Path,
               mininet: bool, mac: str | None, ip: str | None, group: str) -> list[str]:
    """Issue a key for each name: the controller's entry in `keys_file`, the terminal's
    keys file and a clean posture in `out_dir`. Returns what was written."""
    if not mininet and (len(names) != 1 or not mac or not ip):
        raise ValueError("give one NAME with --mac and --ip, or --mininet h1 h2 ...")
    out_dir = Path(out_dir)
    written = []
    for name in names:
        m, a = provisioned.mininet_defaults(name) if mininet else (mac, ip)
        doc = provisioned.issue(keys_file, name, m, a, group)
        jsonfile.write_atomic(out_dir / f"{name}.json", doc, mode=0o600)
        posture = out_dir / f"{name}.posture.json"
        if not posture.exists():
            jsonfile.write_atomic(posture, CLEAN_POSTURE)
        written.append(f"{name}: {m} {a} -> {out_dir / (name + '.json')}")
    return written


def set_posture(path: str | Path, infected: bool) -> dict:
    """Infect (a live threat) or clean (threats marked cleaned) a posture file."""
    path = Path(path)
    doc = jsonfile.read(path) or dict(CLEAN_POSTURE)
    if infected:
        doc["threats"] = [dict(THREAT, detected_at=time.time())]
    else:
        doc["threats"] = [dict(t, cleaned=True) for t in doc.get("threats") or []
                          if isinstance(t, dict)]
    jsonfile.write_atomic(path, doc)
    return doc


def _run(*argv: str) -> str:
    got = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if got.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {got.stderr.strip() or got.returncode}")
    return got.stdout


def attach_service(switch: str, ip: str, mac: str, prefix: int = 24,
                   deadline_s: float = 10.0) -> str:
    """Put the service address on `switch` (an Open vSwitch bridge): an internal port in
    the root namespace with the configured MAC, checksum offloads off (TCP through the
    userspace datapath needs that), IPv6 off. Idempotent."""
    _run("ovs-vsctl", "--may-exist", "add-port", switch, SERVICE_PORT_NAME, "--", "set",
         "interface", SERVICE_PORT_NAME, "type=internal", f'mac="{mac}"')
    end = time.monotonic() + deadline_s
    while not Path(f"/sys/class/net/{SERVICE_PORT_NAME}").exists():
        if time.monotonic() > end:
            raise RuntimeError(f"{SERVICE_PORT_NAME} did not appear on {switch}")
        time.sleep(0.05)
    Path(f"/proc/sys/net/ipv6/conf/{SERVICE_PORT_NAME}/disable_ipv6").write_text("1\n")
    _run("ip", "addr", "replace", f"{ip}/{prefix}", "dev", SERVICE_PORT_NAME)
    _run("ip", "link", "set", SERVICE_PORT_NAME, "address", mac, "up")
    _run("ethtool", "-K", SERVICE_PORT_NAME, "tx", "off", "rx", "off")
    ofport = _run("ovs-vsctl", "get", "interface", SERVICE_PORT_NAME, "ofport").strip()
    return f"{ip}/{prefix} on {switch} port {ofport} ({SERVICE_PORT_NAME}, {mac})"


def detach_service(switch: str) -> None:
    _run("ovs-vsctl", "--if-exists", "del-port", switch, SERVICE_PORT_NAME)

