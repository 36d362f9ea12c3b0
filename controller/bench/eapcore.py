"""The EAP-PSK path's core cost per frame, measured in this process (`crs bench auth`).

On the wire (`auth.breakdown`) a frame costs the running controller 3-4 times what the same
Python costs when it runs back to back. This drives the same core (`Core.eapol_local`: the
LOCAL transport, the shipped credentials, the minimal topology, the store as the controller
opens it, our own supplicant) with no switch and no network, once warm and once with the
CPU's caches evicted before every frame by sweeping a buffer larger than them (what the
switch and the supplicant do to them between two messages on a 2-vCPU machine), so the
README can tell the Python work from the price of running it cold.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from controller import topology
from controller.admission import local_port
from controller.admission.credentials import load_credentials
from controller.admission.supplicant import Supplicant
from controller.core import Core
from controller.openflow.ofmsg import LocalFrame
from controller.settings import Settings
from controller.store import Store

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "topologies" / "minimal.yaml"
CREDENTIALS = ROOT / "config" / "credentials.yaml"
TERMINAL = "c1t1"
FRAMES = ("start", "identity", "psk2", "psk4")     # what the supplicant sends, in order
T0 = 1_000_000.0
_ZEROS = bytes(1 << 20)      # enough for a 64 MiB buffer's cache lines


class _Bench:
    """A core with one switch whose edge ports answer through LOCAL, and one terminal."""

    def __init__(self, work: Path):
        topo = topology.load(str(TOPOLOGY))
        host = topo.host(TERMINAL)
        s = Settings(db_path=str(work / "crs.db"), audit_log=str(work / "audit.jsonl"),
                     topology_file=str(TOPOLOGY), admission_mode="authenticate",
                     credentials_file=str(CREDENTIALS),
                     authorization_file=str(ROOT / "config" / "authorization.yaml"),
                     eapol_transport="local")
        self.core = Core(s, topo, now=T0, store=Store(s.db_path, pipelined=True))
        self.dpid, self.port, self.mac = 1, host.port, host.mac
        self.identity = f"{TERMINAL}@crs.example"
        self.psk = load_credentials(str(CREDENTIALS)).demo_psk(self.identity)
        self.service_mac = bytes.fromhex(topo.service_mac.replace(":", ""))
        self.port_mac = bytes.fromhex(local_port.port_mac(self.port).replace(":", ""))
        self.core.switch_up(self.dpid, set(), T0, eapol_local=True)
        for port in sorted({h.port for h in topo.hosts if h.switch == "s1"}):
            self.core.port_status(self.dpid, port, True, T0)
        self.now = T0 + 10       # past the LOCAL flows' settling time: answers go by LOCAL

    def exchange(self, times: dict[str, list[float]], evict: memoryview | None,
                 first: bool = False) -> bool:
        """One authentication (after a logoff when `first`); each frame's core time into
        `times`. True when it ended in an EAP Success."""
        self.now += 10
        sup = Supplicant(self.identity, self.mac, psk=self.psk)
        if first:
            self.core.eapol_local(self.dpid, [self.port_mac + sup.logoff()[6:]], self.now)
        frames, i, step = [sup.start()], 0, None
        while frames and i < 2 * len(FRAMES):
            answers = []
            for f in frames:
                if evict is not None:
                    evict[:] = _ZEROS[:len(evict)]      # one byte a cache line
                t0 = time.perf_counter()
                out = self.core.eapol_local(self.dpid, [self.port_mac + f[6:]], self.now)
                dt = (time.perf_counter() - t0) * 1e6
                times.setdefault(FRAMES[i] if i < len(FRAMES) else f"frame{i}", []).append(dt)
                i += 1
                answers += [m.data[:6] + self.service_mac + m.data[12:]
                            for _, m in out if isinstance(m, LocalFrame)]
            frames = []
            for a in answers:
                step = sup.handle(a)
                frames += step.frames
        return step is not None and step.status == "success"


def measure(exchanges: int = 60, evict_mib: int = 32) -> dict[str, Any]:
    """Median core microseconds per supplicant frame: re-authentications warm and with the
    caches evicted before each frame, and first authentications (after a logoff) warm. The
    first few exchanges of each series warm the code up and are not counted."""
    if exchanges < 2 or not 1 <= evict_mib <= 64:
        raise ValueError("exchanges >= 2, 1 <= evict_mib <= 64")
    skip = min(5, exchanges // 2)
    evict = memoryview(bytearray(evict_mib << 20))[::64]
    out: dict[str, Any] = {"exchanges": exchanges, "evict_mib": evict_mib,
                           "frames": list(FRAMES), "store": "SQLite, pipelined (as the controller)"}
    with tempfile.TemporaryDirectory(prefix="crs-bench-eapcore-") as tmp:
        b = _Bench(Path(tmp))
        ok = b.exchange({}, None, first=True)
        for label, cold, first in (("reauth_warm_us", False, False),
                                   ("reauth_cold_us", True, False),
                                   ("first_warm_us", False, True)):
            times: dict[str, list[float]] = {}
            for _ in range(exchanges):
                ok = b.exchange(times, evict if cold else None, first) and ok
            out[label] = {k: round(statistics.median(v[skip:]), 1) for k, v in times.items()}
        out["all_succeeded"] = ok
        out["admitted"] = b.core.counters["dot1x_admitted"]
        b.core.store.close()
    for label in ("reauth_warm_us", "reauth_cold_us", "first_warm_us"):
        out[label.replace("_us", "_total_us")] = round(sum(out[label].values()), 1)
    return out


def table(res: dict[str, Any]) -> list[list[Any]]:
    """Rows for the printed report: frame, warm, cold (re-authentication), first (warm)."""
    return [[f, res["reauth_warm_us"].get(f), res["reauth_cold_us"].get(f),
             res["first_warm_us"].get(f)] for f in res["frames"]] + \
        [["all four", res["reauth_warm_total_us"], res["reauth_cold_total_us"],
          res["first_warm_total_us"]]]
