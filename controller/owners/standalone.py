"""The reacting system on a network without a topology file or 802.1X (a user's own `mn`).

Admission is open and forwarding learns per switch; what the reacting system needs from
X.1124 comes from elsewhere: report keys are pre-provisioned (`crs.provisioned`), and a
terminal is connected to the SCS (the NAC's MS connect) when a frame from its provisioned
MAC first arrives at an edge port. Which ports are edges is learnt by authenticated LLDP
(`controller.links`).

Its restrictions are written on that port (never on the MAC or address a frame claims), so
the rules here are about where a terminal is, and they fail closed:
- one terminal per edge port, and one port per terminal: a provisioned MAC seen anywhere
  else, or a second provisioned MAC on a port that has one, is refused and its frames
  dropped (counted, logged), so a terminal can neither take a neighbour's place nor leave
  its own quarantined port by changing its MAC;
- a free terminal leaves when its port goes down (then it may come back anywhere, with
  its level); a restricted one stays held on its port, restrictions and all, until its own
  clean report frees it: unplugging and coming back with a new MAC is no way out;
- a port that carries a terminal never becomes inter-switch (a relayed LLDP frame is
  refused, with an alarm), and the controller's service address may be claimed (source
  MAC, ARP) only from its own port, which the switch names (`crs service attach`).
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
from controller.openflow.ofmsg import (
    ETH_TYPE_ARP,
    ETH_TYPE_EAPOL,
    ETH_TYPE_LLDP,
    OFPP_CONTROLLER,
    OFPP_TABLE,
    Apply,
    Message,
    Meter,
    MeterMod,
    Output,
    PacketOut,
)
from controller.openflow.tables import ADMISSION, Priority
from controller.pipeline import infra_port_flow
from controller.settings import Loaded, Settings
from controller.topology import HostSpec, Topology

MAX_PORT = 0xFFFFFF00       # above: reserved OpenFlow ports (LOCAL, CONTROLLER...)
SERVICE_PORT_NAME = "crs-svc"   # the port `crs service attach` adds (the switch names it)
LLDP_METER_ID = 0x00D00002      # LLDP's own packets/s meter (pipeline.py lists the ids)
LLDP_PPS = 50
REPROBE_S = 15.0                # LLDP again out of every port without a terminal


def _mtime(path: str | None) -> tuple | None:
    """What changes when the keys file does (a chmod too, and a file replaced in place)."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return st and (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


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
        self.svc_ip, self.svc_mac = security.svc.controller_ip, security.svc.update_mac
        self.keys_file, self._checked, self._probed = keys_file, 0.0, 0.0
        self._mtime = _mtime(keys_file)
        self.links = Links(secret or os.urandom(32))
        self.warn = LogBudget(logging.getLogger("crs.standalone"))
        self.up: dict[int, set[int]] = {}             # dpid -> ports up
        self.service: tuple[int, int] | None = None   # the service address's port
        self.at: dict[tuple[int, int], str] = {}      # edge port -> terminal there
        self.where: dict[str, tuple[int, int]] = {}   # terminal -> its edge port
        for tid, t in security.scs.terminals.items():  # after a restart: where they were
            if t.online:         # (keys revoked since or not: held, never lost)
                self.at[(t.dpid, t.port)], self.where[tid] = tid, (t.dpid, t.port)

    def key(self, tid: str) -> bytes | None:
        p = self.keys.get(tid)
        return p.key if p is not None else None

    def tick(self, now: float) -> Out:
        """Keys issued while the controller runs take effect within a second (a broken
        file is logged and the keys in use stay); ports without a terminal are probed by
        LLDP again now and then (a first probe may have found the far switch away)."""
        out: Out = []
        if now - self._probed >= REPROBE_S:
            self._probed = now
            out = [m for dpid, ports in self.up.items() for p in sorted(ports)
                   for m in self._probe(dpid, p, now)]
        if self.keys_file is None or now - self._checked < 1.0:
            return out
        self._checked = now
        mtime = _mtime(self.keys_file)
        if mtime == self._mtime:
            return out
        try:
            keys = provisioned.load(self.keys_file, missing_ok=True)
        except (ConfigError, OSError, ValueError) as exc:   # (UnicodeDecodeError too)
            self.counters["provisioned_keys_reload_failed"] += 1
            logging.getLogger("crs.standalone").error("keys not reloaded: %s", exc)
            return out                   # tried again when the file changes again
        finally:
            self._mtime = mtime
        self.keys, self.by_mac = keys, {p.mac: p for p in keys.values()}
        self.counters["provisioned_keys_reloaded"] += 1
        return out

    # --- switches and ports ---------------------------------------------------------

    def switch_up(self, dpid: int) -> list[Message]:
        """Table 0 of a switch without a topology file (after `pipeline.admission_base`):
        LLDP to the controller through its own meter, EAPOL dropped (nothing answers it),
        the service address claimed (source MAC, ARP) only from its own port, and the
        inter-switch ports known so far passed on as admitted at their own edge."""
        up = [Meter(LLDP_METER_ID), Apply((Output(OFPP_CONTROLLER),))]
        msgs: list[Message] = [
            MeterMod(LLDP_METER_ID, "delete"),
            MeterMod(LLDP_METER_ID, "add", rate=LLDP_PPS, burst=LLDP_PPS // 5, pps=True),
            ADMISSION.flow(Priority.ADM_CONTROL + 1, {"eth_type": ETH_TYPE_LLDP}, up),
            ADMISSION.flow(Priority.ADM_CONTROL + 1, {"eth_type": ETH_TYPE_EAPOL}, []),
            ADMISSION.flow(Priority.ADM_OPEN + 20, {"eth_src": self.svc_mac}, []),
            ADMISSION.flow(Priority.ADM_OPEN + 10, {"eth_type": ETH_TYPE_ARP,
                                                    "arp_spa": self.svc_ip}, []),
        ]
        ports = {p for d, p in self.links.peer if d == dpid}
        if self.service is not None and self.service[0] == dpid:
            ports.add(self.service[1])
        return msgs + [infra_port_flow(p) for p in sorted(ports)]

    def port_up(self, dpid: int, port: int, now: float, name: str | None = None) -> Out:
        """A port came up: the service port (named so by the switch) is admitted; any
        other is told who we are (LLDP): a switch hearing it is a neighbour."""
        if port >= MAX_PORT:
            return []
        if name == SERVICE_PORT_NAME and (dpid, port) not in self.at:
            self.service = (dpid, port)
            self.counters["service_port_found"] += 1
            return [(dpid, infra_port_flow(port))]
        self.up.setdefault(dpid, set()).add(port)
        return self._probe(dpid, port, now)

    def port_down(self, dpid: int, port: int, now: float) -> Out:
        self.up.get(dpid, set()).discard(port)
        out: Out = [(d, ADMISSION.delete_match({"in_port": p}, Priority.ADM_INFRA))
                    for d, p in self.links.port_down(dpid, port)]
        tid = self.at.get((dpid, port))
        if tid is None:
            return out
        if not self._free(tid):
            self.counters["standalone_restricted_held"] += 1
            self.audit.write({"event": "held", "terminal": tid, "dpid": dpid, "port": port,
                              "reason": "port down while restricted"})
            return out
        return out + self._leave((dpid, port), "port down", now)

    def switch_down(self, dpid: int) -> None:
        """Its terminals stay where they are (and restricted) until its ports are seen
        down; its inter-switch ports stay known."""
        self.up.pop(dpid, None)

    def lldp(self, dpid: int, port: int, data: bytes, now: float) -> Out:
        far, how = self.links.heard(dpid, port, data, now)
        self.counters[f"lldp_{how}"] += 1
        if far is None:
            self.warn(now, f"lldp:{dpid}:{port}", "dpid %x port %d: LLDP frame refused (%s)",
                      dpid, port, how)
            return []
        ends = ((dpid, port), far)
        taken = [(e, self.at[e]) for e in ends if e in self.at] + \
            [(e, "the service address") for e in ends if e == self.service]
        if taken:
            (d, p), who = taken[0]
            self.counters["attack_trunk_claim_refused"] += 1
            self.warn(now, f"trunk:{d}:{p}", "LLDP says %x:%d is inter-switch, but %s is "
                      "there: refused", d, p, who)
            self.audit.write({"event": "alarm", "kind": "trunk_claim", "terminal": who,
                              "dpid": d, "port": p})
            return []
        return [(d, infra_port_flow(p)) for d, p in self.links.add(*ends)]

    # --- frames ---------------------------------------------------------------------

    def seen(self, dpid: int, port: int, frame: packet.Frame, data: bytes,
             now: float) -> Out | None:
        """A table-2 miss: connect a provisioned terminal first seen at an edge port.
        Returns the connect's flows and the frame sent back through the pipeline (so it
        meets them), [] for a frame refused, or None when it is no terminal's business
        (forwarding goes on as usual)."""
        p = self.by_mac.get(frame.src)
        here = (dpid, port)
        if p is None or port >= MAX_PORT or self.links.trunk(dpid, port) \
                or here == self.service or self.where.get(p.name) == here:
            return None
        other, old = self.at.get(here), self.where.get(p.name)
        if other is not None or old is not None:
            self.counters["attack_attach_conflict_refused"] += 1
            self.warn(now, f"attach:{p.name}", "%s (%s) seen at %x:%d, but %s: dropped",
                      p.name, p.mac, dpid, port,
                      f"{other} is there" if other else f"it is at {old[0]:x}:{old[1]}")
            return []
        self.at[here], self.where[p.name] = p.name, here
        self.counters["standalone_connects"] += 1
        out = self.security.connect(p.name, p.group, p.ip, p.mac, dpid, port, now, False)
        return out + [(dpid, PacketOut(data, (Output(OFPP_TABLE),), port))]

    def status(self) -> dict:
        return {"provisioned": len(self.by_mac), "connected": len(self.at),
                "service_port": f"{self.service[0]:x}:{self.service[1]}" if self.service
                else None,
                "inter_switch_ports": sorted(f"{d:x}:{p}" for d, p in self.links.peer)}

    # --- internals ------------------------------------------------------------------

    def _probe(self, dpid: int, port: int, now: float) -> Out:
        if (dpid, port) in self.at or (dpid, port) == self.service:
            return []
        self.counters["lldp_sent"] += 1
        return [(dpid, PacketOut(self.links.probe(dpid, port, now), (Output(port),)))]

    def _free(self, tid: str) -> bool:
        t = self.security.scs.terminals.get(tid)
        d = t.decision if t is not None else None
        return d is not None and d.unrestricted and d.operator is None

    def _leave(self, where: tuple[int, int], reason: str, now: float) -> Out:
        tid = self.at.pop(where, None)
        if tid is None:
            return []
        self.where.pop(tid, None)
        return self.security.leave(tid, reason, now)

