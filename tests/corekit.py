"""Helpers for the tests (not a test module, not a conftest): the repository's root, and for the
pure core's tests (tests/unit/test_core_*.py) the demo topology's addresses, a core booted on a
simulated switch, EAP authentication through packet-ins and signed CRSAP reports.

pytest's default import mode puts tests/ on sys.path (tests/conftest.py lives there), so test
modules import this as `corekit` whatever the working directory; the `boot` fixture in
tests/conftest.py binds `boot_core` to the test's tmp_path."""
from __future__ import annotations

from pathlib import Path

from controller import topology
from controller.admission.credentials import load_credentials
from controller.admission.supplicant import Supplicant
from controller.core import Core
from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import PacketOut
from controller.settings import Settings

ROOT = Path(__file__).resolve().parents[1]          # the repository
TOPO = str(ROOT / "topologies" / "minimal.yaml")
CREDENTIALS = str(ROOT / "config" / "credentials.yaml")
C1, C2 = "02:00:0a:00:01:01", "02:00:0a:00:01:02"
WEB_MAC = "02:00:0a:00:64:14"
T0 = 1_000_000.0
# The tests' PostgreSQL lives on tmpfs: their several controllers hold 1 s leases (renewed
# every 1/3 s, each renewal a commit), and a commit's disk sync on this kind of VM stalls for
# a tenth of a second and more in its slow phases: a test of leadership must not step down
# for the disk. (The failover benchmark's cluster stays on the disk: what it measures.)
PG_ROOT = "/dev/shm"

CLEAN = {"os": {"patch_level": 12}, "antivirus": {"signature_version": 2041},
         "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
INFECTED = {**CLEAN, "threats": [{"name": "Worm.Demo", "count": 1, "cleaned": False}]}


def settings(tmp_path, crs=False):
    return Settings(db_path=str(tmp_path / "crs.db"), audit_log=str(tmp_path / "audit.jsonl"),
                    topology_file=TOPO, admission_mode="authenticate",
                    credentials_file=CREDENTIALS,
                    authorization_file=str(ROOT / "config" / "authorization.yaml"),
                    crs_enabled=crs, crs_policy_file=str(ROOT / "config" / "crs_policy.yaml"))


def boot_core(tmp_path, crs=False, now=T0, db=None):
    """A core whose database (unless `db` names another store) and audit log are in
    `tmp_path`, and a simulated switch that holds what it installed at the switch's
    connection. Tests use the `boot` fixture; this is for the ones that cannot take
    tmp_path (hypothesis tests)."""
    s = settings(tmp_path, crs)
    if db is not None:
        s.db_path = db
    core = Core(s, topology.load(TOPO), now=now)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, {1, 2, 3, 4}, now))
    return core, sim


def ip_pkt(src_mac, dst_mac, src_ip, dst_ip, dport=80):
    return {"eth_src": src_mac, "eth_dst": dst_mac, "eth_type": 0x0800, "ipv4_src": src_ip,
            "ipv4_dst": dst_ip, "ip_proto": 6, "tcp_dst": dport}


def boot_eapol(tmp_path, transport, eapol_local=True, direct=()):
    """A core with `admission.eapol_transport: transport` on the minimal topology's switch
    and its four ports, and the simulated switch: `eapol_local`, whether the shell could
    open the switch's LOCAL interface; `direct`, the ports it reads on their own
    interfaces (`port`)."""
    s = settings(tmp_path)
    s.eapol_transport = transport
    core = Core(s, topology.load(TOPO), now=T0)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, set(), T0, eapol_local=eapol_local))
    for port in (1, 2, 3, 4):
        sim.apply(m for _, m in core.port_status(1, port, True, T0,
                                                 eapol_direct=port in direct))
    return core, sim


def run_exchange(sup, deliver, steps=10):
    """Drive the supplicant `sup` from its Start until it has nothing more to send:
    `deliver(frame)` hands one of its frames to the core and returns the answers as the
    terminal receives them. The supplicant's last step."""
    frames, step = [sup.start()], None
    for _ in range(steps):
        if not frames:
            break
        answers = [a for f in frames for a in deliver(f)]
        frames = []
        for a in answers:
            step = sup.handle(a)
            frames += step.frames
    return step


def authenticate(core, sim, port, mac, host, now=T0, dpid=1):
    ident = f"{host}@crs.example"
    psk = load_credentials(CREDENTIALS).demo_psk(ident)
    sup = Supplicant(ident, mac, psk=psk)

    def deliver(frame: bytes) -> list[bytes]:
        msgs = core.packet_in(dpid, port, 0, frame, now)
        sim.apply(m for _, m in msgs)
        return [m.data for _, m in msgs if isinstance(m, PacketOut)]
    step = run_exchange(sup, deliver, steps=20)
    assert step is not None and step.status == "success", step
    return sup, step.keys


def report(keys, ident, seq, now, posture):
    body = {"ms_id": ident, "sci": sci_from_posture(posture)}
    return crsap.encode("SCIReport", ident, seq, now, body, keys.crs_report_key)
