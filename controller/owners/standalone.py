"""The reacting system on a network without a topology file or 802.1X (a user's own `mn`).

Admission is open and forwarding learns per switch; what the reacting system needs from
X.1124 comes from elsewhere: report keys are pre-provisioned (`crs.provisioned`), and a
terminal is connected to the SCS (the NAC's MS connect) when a frame from its provisioned
MAC first arrives at an edge port. Which ports are edges is learnt by authenticated LLDP
(`controller.links`).

Its restrictions are written on that port (never on the MAC or address a frame claims), so
the rules here are about where a terminal is, and they fail closed:
- one terminal per edge port, and a terminal at one port at a time: a provisioned MAC seen
  at a second edge port while its port is up, or a second provisioned MAC on a port that
  has one, is refused (counted, logged), so a terminal can neither take a neighbour's place
  nor leave its own quarantined port by changing its MAC;
- a terminal leaves when its port goes down (a real move), never because of a frame;
- a port found to be inter-switch sets its terminal free only if it was not restricted;
  a restricted one stays there (a relayed LLDP frame is not a way out), with an alarm.
"""
from __future__ import annotations

import ipaddress
import logging
import os
from collections import Counter

from controller import packet
from controller.audit import AuditLog
from controller.config import ConfigError
from controller.crs import provisioned
from controller.crs.provisioned import Provisioned
from controller.effects import LogBudget, Out
from controller.links import Links
from controller.openflow.ofmsg import OFPP_TABLE, Output, PacketOut
from controller.settings import Loaded, Settings
from controller.topology import HostSpec, Topology

MAX_PORT = 0xFFFFFF00       # above: reserved OpenFlow ports (LOCAL, CONTROLLER...)


def _mtime(path: str | None) -> float | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def provisioned_keys(settings: Settings, loaded: Loaded | None) -> dict[str, Provisioned]:
    """The keys file `crs.keys` names (as `settings.validate` loaded it, or loaded now;
    none yet: no terminal is connected until keys are issued)."""
    if loaded is not None and loaded.keys is not None:
        return loaded.keys
    return provisioned.load(settings.crs_keys_file, missing_ok=True) \
        if settings.crs_keys_file else {}


def standalone_topology(settings: Settings) -> Topology:
    """What the reacting system needs of a topology when there is no file: the service
    address (`crs.service`), which is also where restricted terminals find updates. No
    cells: the scopes sealed are groups."""
    ip, mac = settings.crs_service_ip or "", settings.crs_service_mac
    return Topology("standalone", settings.config_file or "<command line>",
                    ipaddress.ip_network(f"{ip}/32"), ip, mac, "", 0, [],
                    [HostSpec("controller-service", ip, mac, "", 0, "update")], [], [])


class Standalone:
    def __init__(self, keys: dict[str, Provisioned], security, counters: Counter,
                 audit: AuditLog, secret: bytes | None = None, keys_file: str | None = None):
        self.keys, self.by_mac = keys, {p.mac: p for p in keys.values()}
        self.security, self.counters, self.audit = security, counters, audit
        security.scs.key_lookup = self.key      # reports are verified with these keys
        self.keys_file, self._checked = keys_file, 0.0
        self._mtime = _mtime(keys_file)
        self.links = Links(secret or os.urandom(32))
        self.warn = LogBudget(logging.getLogger("crs.standalone"))
        self.up: dict[int, set[int]] = {}             # dpid -> ports up
        self.at: dict[tuple[int, int], str] = {}      # edge port -> terminal there
        self.where: dict[str, tuple[int, int]] = {}   # terminal -> its edge port
        for tid, t in security.scs.terminals.items():  # after a restart: where they were
            if t.online and tid in keys:
                self.at[(t.dpid, t.port)], self.where[tid] = tid, (t.dpid, t.port)

    def key(self, tid: str) -> bytes | None:
        p = self.keys.get(tid)
        return p.key if p is not None else None

    def tick(self, now: float) -> Out:
        """Keys issued while the controller runs take effect within a second; a broken
        file is logged and the keys in use stay."""
        if self.keys_file is None or now - self._checked < 1.0:
            return []
        self._checked = now
        mtime = _mtime(self.keys_file)
        if mtime == self._mtime:
            return []
        self._mtime = mtime
        try:
            self.keys = provisioned.load(self.keys_file, missing_ok=True)
        except ConfigError as exc:
            self.counters["provisioned_keys_reload_failed"] += 1
            logging.getLogger("crs.standalone").error("keys not reloaded: %s", exc)
            return []
        self.by_mac = {p.mac: p for p in self.keys.values()}
        self.counters["provisioned_keys_reloaded"] += 1
        return []

    # --- switches and ports ---------------------------------------------------------

    def port_up(self, dpid: int, port: int, now: float) -> Out:
        """Say who we are out of a port that came up (LLDP): a switch hearing it is a
        neighbour, and both ports are inter-switch."""
        if port >= MAX_PORT:
            return []
        self.up.setdefault(dpid, set()).add(port)
        self.counters["lldp_sent"] += 1
        return [(dpid, PacketOut(self.links.probe(dpid, port, now), (Output(port),)))]

    def port_down(self, dpid: int, port: int, now: float) -> Out:
        self.up.get(dpid, set()).discard(port)
        self.links.port_down(dpid, port)
        return self._leave((dpid, port), "port down", now)

    def switch_down(self, dpid: int) -> None:
        """Its terminals stay connected (and restricted) until its ports are seen down."""
        self.up.pop(dpid, None)
        self.links.switch_down(dpid)

    def lldp(self, dpid: int, port: int, data: bytes, now: float) -> Out:
        far, how = self.links.heard(dpid, port, data, now)
        self.counters[f"lldp_{how}"] += 1
        if far is None:
            self.warn(now, f"lldp:{dpid}:{port}", "dpid %x port %d: LLDP frame refused (%s)",
                      dpid, port, how)
            return []
        out: Out = []
        for end in ((dpid, port), far):
            tid = self.at.get(end)
            if tid is None:
                continue
            if self._free(tid):
                out += self._leave(end, "port is inter-switch", now)
            else:
                self.counters["attack_trunk_claim_on_restricted_port"] += 1
                self.warn(now, f"trunk:{tid}", "LLDP says %x:%d is inter-switch, but "
                          "restricted %s is there: it stays", end[0], end[1], tid)
                self.audit.write({"event": "alarm", "kind": "trunk_claim", "terminal": tid,
                                  "dpid": end[0], "port": end[1]})
        return out

    # --- frames ---------------------------------------------------------------------

    def seen(self, dpid: int, port: int, frame: packet.Frame, data: bytes,
             now: float) -> Out | None:
        """A table-2 miss: connect a provisioned terminal first seen at an edge port.
        Returns the connect's flows and the frame sent back through the pipeline (so it
        meets them), or None when nothing was connected (forwarding goes on as usual)."""
        p = self.by_mac.get(frame.src)
        here = (dpid, port)
        if p is None or port >= MAX_PORT or self.links.trunk(dpid, port) \
                or self.where.get(p.name) == here:
            return None
        other = self.at.get(here)
        old = self.where.get(p.name)
        if other is not None or (old is not None and old[1] in self.up.get(old[0], ())):
            self.counters["attack_attach_conflict_refused"] += 1
            self.warn(now, f"attach:{p.name}", "%s (%s) seen at %x:%d, but %s: not moved",
                      p.name, p.mac, dpid, port,
                      f"{other} is there" if other else f"its port {old[0]:x}:{old[1]} is up")
            return None
        out = self._leave(old, "moved", now) if old else []
        self.at[here], self.where[p.name] = p.name, here
        self.counters["standalone_connects"] += 1
        out += self.security.connect(p.name, p.group, p.ip, p.mac, dpid, port, now,
                                     old is not None)
        return out + [(dpid, PacketOut(data, (Output(OFPP_TABLE),), port))]

    def status(self) -> dict:
        return {"provisioned": len(self.by_mac), "connected": len(self.at),
                "inter_switch_ports": sorted(f"{d:x}:{p}" for d, p in self.links.peer)}

    # --- internals ------------------------------------------------------------------

    def _free(self, tid: str) -> bool:
        t = self.security.scs.terminals.get(tid)
        d = t.decision if t is not None else None
        return d is not None and d.actions == ("permit",) and d.operator is None

    def _leave(self, where: tuple[int, int], reason: str, now: float) -> Out:
        tid = self.at.pop(where, None)
        if tid is None:
            return []
        self.where.pop(tid, None)
        return self.security.leave(tid, reason, now)
