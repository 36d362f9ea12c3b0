"""The defences of a simulated outbreak, decided by the project's own code.

`CrsReactor` puts the real SCS (controller.crs.scs: CRSAP decoding, HMAC verification, replay
check, evaluation, correlation, group seals, control decisions) behind the simulator, with
the simulated time as its clock (fake clock, no Mininet, no store):

- infection of host h: the NAC's MS connect of its terminal (`SCS.connect`), so a host
  infected inside an already sealed group is confined from the start, as its flows would be;
- R after the infection: the report its agent sends once its posture shows the threat, the
  SCI the agent's own `sci_from_posture` builds, entered at `SCS.accept`: what `SCS.handle`
  does after decoding and authenticating (evaluation, correlation, seals, decisions). The
  simulation makes the reports itself, so the transport (encoding, HMAC both ways, schema
  and replay checks, the signed reply) would only cost time: 136 of a signed report's 165 us
  (`crs bench simulation`). It stays exercised: the first report of every run and every
  `signed_every`-th after it is signed (`crsap.encode`) and goes through `SCS.handle` as an
  agent's would (`--signed`: every report), and a report the SCS rejects stops the run;
  the SCS keeps no records (`records=False`: no audit records or counters of connects,
  reports and decisions, no encoded SCI; nobody reads them here, and the decisions are the
  same: test_sim_scs_accept);
- every `Enforce` effect becomes the host's control the way table 1 would enforce it
  (isolate or scope none: silent; a meter: the probes/s that fit under it; scope group:
  only its group's cells reachable), but only in enforcing cells (partial deployment:
  every terminal is evaluated, only the first round(coverage x cells) cells restrict).

The throttle is not an SCS decision but a mechanism at the edge from the start; its effect
on a scanner (min(s, r) new destinations/s, controller/throttle.py, tested in
test_throttle) is applied at infection in enforcing cells.
"""
from __future__ import annotations

from typing import Any

from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.crs.decision import Decision
from controller.crs.policy import parse_policy
from controller.crs.scs import SCS, Enforce
from controller.effects import Rejected
from controller.experiment import defences, model
from controller.experiment.outbreak import Control, Population

EPOCH = 1_764_300_000.0            # simulated t = 0 on the SCS's clock
KEY = b"simulated-crs-report-key-32bytes"
FRAME_BYTES = 418                  # a probe on the wire (376 B UDP payload), as emulated


def tid(host: int) -> str:
    return f"h{host}"


def ip(host: int) -> str:
    return f"10.{(host >> 16) & 255}.{(host >> 8) & 255}.{host & 255}"


def enforcing_cells(cells: int, coverage: float) -> int:
    """Partial deployment as crs.enforce does it: the first round(coverage x cells)."""
    return round(coverage * cells)


def control_of(decision: Decision, scan_rate: float, frame_bytes: int = FRAME_BYTES) -> Control:
    """What table 1 lets a scanner send under `decision`."""
    if decision.isolate or decision.scope == "none":
        return Control(0.0, "none")
    rate = scan_rate if decision.meter_kbps is None else \
        model.metered_rate(scan_rate, decision.meter_kbps, frame_bytes)
    if decision.meter_pps is not None:       # a packets/s band: at most that many probes
        rate = min(rate, float(decision.meter_pps))
    return Control(rate, "group" if decision.scope == "group" else "all")


class NoDefence:
    """Every infected host scans at s until the end (the baseline; nothing reports)."""

    reaction_s = None

    def __init__(self, scan_rate: float):
        self.control = Control(scan_rate)

    def infected(self, host: int, t: float) -> Control:
        return self.control

    def report(self, host: int, t: float) -> dict[int, Control]:
        return {}


class ThrottleReactor(NoDefence):
    """Williamson's throttle at the enforcing cells' edges: a scanner's new destinations
    (every probe of a random scanner) are released at r per second."""

    def __init__(self, scan_rate: float, new_dest_per_s: float, pop: Population,
                 coverage: float = 1.0):
        super().__init__(scan_rate)
        self.pop, self.enforcing = pop, enforcing_cells(pop.cells, coverage)
        self.slow = Control(model.throttled_rate(scan_rate, new_dest_per_s))

    def infected(self, host: int, t: float) -> Control:
        return self.slow if self.pop.cell_of(host) < self.enforcing else self.control


SIGNED_EVERY = 1000                # one report in this many takes the signed path


def sci_template() -> tuple[dict[str, Any], dict[str, Any]]:
    """The SCI of an infected simulated host, by the agent's `sci_from_posture`, without its
    threat's `detected_at` (the one thing that changes between reports): (SCI, threat)."""
    sci = sci_from_posture(posture(0.0))
    threat = {k: v for k, v in sci["threats"][0].items() if k != "detected_at"}
    return sci, threat


def posture(now: float) -> dict[str, Any]:
    """A simulated host's posture once it shows the worm (uncleaned, detected at `now`)."""
    return {"os": {"name": "SimOS", "patch_level": 1},
            "antivirus": {"engine": "1.0", "signature_version": 1},
            "firewall": True,
            "threats": [{"name": "Worm.Sim", "count": 1, "cleaned": False,
                         "detected_at": now}]}


class CrsReactor:
    """The SCS with a defence's policy (config/defences/<name>.yaml via defences.py)."""

    def __init__(self, defence: str, params: dict[str, Any], pop: Population,
                 scan_rate: float, reaction_s: float, signed_every: int = SIGNED_EVERY):
        self.policy = parse_policy(defences.policy_document(defence, params),
                                   f"config/defences/{defence}.yaml")
        self.scs = SCS(self.policy, lambda _tid: KEY, records=False)
        self.pop, self.scan_rate, self.reaction_s = pop, scan_rate, reaction_s
        self.enforcing = enforcing_cells(pop.cells, float(params.get("coverage_fraction", 1.0)))
        scope = int(params.get("scope_cells", 1)) if defence == "cell_seal" else pop.cells
        self.groups = defences.cell_groups(pop.cells, scope)   # cell number (1..) -> group
        self.group_cells = scope           # what a scope-"group" control reaches (outbreak.run)
        self.signed_every = max(1, signed_every)
        self.sci, self.threat = sci_template()
        self._controls: dict[Decision, Control] = {}
        self.reports = 0
        self.signed = 0
        self.enforced = 0

    def _apply(self, effects: list) -> dict[int, Control]:
        out: dict[int, Control] = {}
        for e in effects:
            if type(e) is Enforce:
                h = int(e.terminal_id[1:])
                if self.pop.cell_of(h) < self.enforcing:
                    ctl = self._controls.get(e.decision)
                    if ctl is None:       # a few distinct decisions in a run: remembered
                        ctl = self._controls[e.decision] = control_of(e.decision,
                                                                      self.scan_rate)
                    out[h] = ctl
                    self.enforced += 1
        return out

    def infected(self, host: int, t: float) -> Control:
        c = self.pop.cell_of(host)
        effects = self.scs.connect(tid(host), self.groups[c + 1], ip(host),
                                   f"02:00:{host >> 24 & 255:02x}:{host >> 16 & 255:02x}:"
                                   f"{host >> 8 & 255:02x}:{host & 255:02x}",
                                   c + 1, host % 65536 + 1, EPOCH + t)
        return self._apply(effects).get(host, Control(self.scan_rate))

    def report(self, host: int, t: float) -> dict[int, Control]:
        """The agent's SCIReport once its posture shows the infection: the SCI of
        `sci_from_posture` (built once, its threat stamped with this report's time). The
        `attackers` list is left empty: its only use, accusing the infector, never counts
        because an infected accuser is not eligible (controller.crs.correlation)."""
        now = EPOCH + t
        name = tid(host)
        body = {"ms_id": name,
                "sci": {**self.sci, "threats": [{**self.threat, "detected_at": now}]}}
        if self.reports % self.signed_every == 0:
            # check=False: the SCS checks the schema when it decodes (as for a real agent)
            effects = self.scs.handle(None, crsap.encode("SCIReport", name, 1, now, body, KEY,
                                                         check=False), now)
            bad = [e for e in effects if isinstance(e, Rejected)]
            if bad:
                raise RuntimeError(f"the SCS rejected a simulated report: {bad[0].reason}")
            self.signed += 1
        else:
            effects = self.scs.accept(crsap.Message("SCIReport", name, 1, now, body), now)
        self.reports += 1
        return self._apply(effects)
