"""The operator API behind the REST endpoints: terminals, actions, policy, EAC inquiries.

It reads the owners' state and asks them to act; it checks every request first and answers
a refusal as an `ApiError` (HTTP status, reason), which the Ryu shell turns into JSON.
"""
from __future__ import annotations

import re
from typing import Any

from controller.admission import eac_rest
from controller.config import ConfigError
from controller.effects import Out


class ApiError(Exception):
    def __init__(self, status: int, reason: str, **extra: Any):
        super().__init__(reason)
        self.status, self.reason, self.extra = status, reason, extra


class OperatorApi:
    def __init__(self, admission, security, topology, settings):
        self.admission, self.security = admission, security
        self.topology, self.settings = topology, settings
        self._ip_by_mac = {h.mac: h.ip for h in topology.hosts} if topology else {}

    def terminals(self, now: float) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        if self.security is not None:
            for st in self.security.status_rows():
                rows[st["id"]] = {**st, "identity": st["id"]}
        if self.admission is not None:
            for b in self.admission.bindings(now):
                row = rows.setdefault(b.identity, {
                    "id": b.identity, "identity": b.identity, "dpid": b.dpid, "port": b.port,
                    "mac": b.mac, "ip": b.ip or self._ip_by_mac.get(b.mac, ""),
                    "level": None})
                row.update({"authenticated": True, "isr_id": b.isr_id, "method": b.method,
                            "session_expires": b.expires, "group": b.group})
        for row in rows.values():
            row.setdefault("authenticated", False)
            row["name"] = row["identity"].split("@")[0]
        return sorted(rows.values(), key=lambda r: r["identity"])

    def resolve(self, who: str, now: float) -> str:
        """A terminal by identity, name (identity's local part), IP or MAC."""
        who = who.lower()
        for row in self.terminals(now):
            if who in (row["identity"].lower(), row["name"].lower(),
                       str(row.get("ip") or "").lower(), str(row.get("mac") or "").lower()):
                return row["identity"]
        raise ApiError(404, f"no terminal {who!r} (give its name, identity, IP or MAC)")

    def portal(self, ip: str, now: float) -> dict[str, Any]:
        """What the update host's portal page tells the terminal at `ip` about itself: its
        level, why, what restricts it and what to do. Nothing about anyone else (not who
        accused it), only the terminal online at that address, and no store access: the
        page is asked for by whoever browses."""
        sec = self.security
        tid = sec.scs.by_ip.get(ip) if sec is not None else None
        t = sec.scs.terminals.get(tid) if tid else None
        if t is None or not t.online:
            raise ApiError(404, f"no terminal online at {ip}")
        st = t.status()
        d = st.get("decision") or {}
        reason = re.sub(r"accused by [^;]*", "reported by other terminals or the network",
                        d.get("reason") or "no security report yet")
        return {"name": tid.split("@")[0], "level": st["level"], "reason": reason,
                "actions": d.get("actions") or [], "update": d.get("update"),
                "sca": st.get("sca", "unknown"), "authenticated": True}

    def row(self, tid: str, now: float) -> dict[str, Any]:
        return next(r for r in self.terminals(now) if r["identity"] == tid)

    def act(self, action: str, who: str, body: dict[str, Any] | None,
            now: float) -> tuple[dict[str, Any], Out]:
        if self.security is None:
            raise ApiError(409, "the reacting system is not enabled (crs.enabled: false)")
        tid = self.resolve(who, now)
        if tid not in self.security.scs.terminals:
            raise ApiError(409, f"{tid} is authenticated but has not connected to the SCS")
        kbps = None
        if action == "rate-limit":
            kbps = (body or {}).get("kbps")
            if not isinstance(kbps, int) or isinstance(kbps, bool) or not 8 <= kbps <= 10**7:
                raise ApiError(400, "rate-limit needs {\"kbps\": integer 8..10000000}")
        elif action not in ("quarantine", "release"):
            raise ApiError(404, f"unknown action {action!r}")
        t = self.security.scs.terminals[tid]
        if action != "release" and not self.security.enforced_at(t.dpid):
            raise ApiError(409, f"{tid} is at a switch without enforcement (crs.enforce): "
                                "nothing there would hold the restriction")
        out = self.security.act(action, tid, kbps, now)
        return self.row(tid, now), out

    def policy_show(self) -> dict[str, Any]:
        if self.security is None:
            raise ApiError(409, "the reacting system is not enabled")
        p = self.security.scs.policy
        return {"version": p.version, "source": str(p.source),
                "file": self.settings.crs_policy_file}

    def policy_reload(self, now: float) -> tuple[dict[str, Any], Out]:
        if self.security is None:
            raise ApiError(409, "the reacting system is not enabled")
        out = self.security.reload_policy(now)
        if isinstance(out, ConfigError):
            raise ApiError(400, "policy not reloaded; the old one stays in force",
                           problems=str(out).splitlines())
        return self.policy_show(), out

    def eac_request(self, method: str, path: str, body: bytes,
                    now: float) -> tuple[int, dict[str, Any]]:
        if self.admission is None:
            return 409, {"error": "authentication is not enabled (admission.mode: open)"}
        return eac_rest.handle(method, path, body, now, self.admission.eac)


def core_status(core) -> dict[str, Any]:
    """`GET /crs/v1/status` (`crs status`): what runs, counters, and how much state is held."""
    eac = core.admission.eac if core.admission else None
    sizes = {"log_keys": len(core.warn.keys)}
    for owner in (core.admission, core.security):
        if owner is not None:
            for k, v in owner.sizes().items():
                sizes[k] = sizes.get(k, 0) + v
    out = {
        "switches": sorted(core.switches),
        "admission": "open" if core.mode.open else "authenticate",
        "crs": core.security is not None,
        "throttle": core.throttle is not None,
        "counters": {**core.counters, **(core.throttle.counters if core.throttle else {}),
                     **(eac.counters if eac else {})},
        "hosts_learned": {f"{d:016x}": len(t) for d, t in core.forwarding.macs.items()},
        # how much per-source state is held: bounded by terminals, never by the
        # addresses frames or reports claim (an operator's check against floods)
        "state_sizes": sizes,
        # the EAC's only SP-challenge state (bounded; issuing a challenge adds nothing)
        "eac_spent_challenges": eac.spent_challenges() if eac else 0,
    }
    if core.standalone is not None:     # no topology file: what LLDP and frames taught
        out["standalone"] = core.standalone.status()
    return out
