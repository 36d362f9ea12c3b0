"""Traffic measurements between emulated hosts: reachability, iperf3 TCP, ping RTT.

Used by the demo, the benchmarks and the integration tests, so all of them measure the
same way. Every function waits with deadlines, never fixed sleeps.
"""
from __future__ import annotations

import json
import re
from typing import Any

from controller.emulation.processes import wait_until


def all_pairs(emu: Any, extra_ips: list[str] | None = None) -> list[tuple[str, str]]:
    """Ping every other host (and `extra_ips`) once from every host, all sources at once
    (each pings its targets in turn); return the failed pairs."""
    hosts = emu.hosts()
    for src in hosts:
        targets = [h.IP() for h in hosts if h is not src] + list(extra_ips or [])
        src.sendCmd("for ip in " + " ".join(targets) +
                    "; do ping -c1 -W2 -q $ip >/dev/null || echo FAIL $ip; done")
    failed: list[tuple[str, str]] = []
    for src in hosts:
        out = src.waitOutput()
        failed += [(src.name, line.split()[1]) for line in out.splitlines()
                   if line.startswith("FAIL")]
    return failed


def iperf3(emu: Any, client: str, server: str, seconds: float = 3.0,
           udp_mbps: float | None = None) -> dict[str, float]:
    """One iperf3 run client -> server. Returns received Mbit/s and TCP retransmits."""
    srv, cli = emu.host(server), emu.host(client)
    proc = emu.popen(server, ["iperf3", "-s", "-1", "-J"])
    wait_until(lambda: ":5201" in srv.cmd("ss -ltn 'sport = :5201'"), 10,
               f"iperf3 server on {server}")
    mode = f"-u -b {udp_mbps}M" if udp_mbps else ""
    out = cli.cmd(f"iperf3 -c {srv.IP()} -t {seconds} -J {mode}")
    proc.wait(timeout=30)
    data = json.loads(out)
    if "error" in data:
        raise RuntimeError(f"iperf3 {client} -> {server}: {data['error']}")
    end = data["end"]
    if udp_mbps:
        s = end["sum"]
        return {"mbps": s["bits_per_second"] / 1e6, "lost_fraction": s["lost_percent"] / 100}
    return {"mbps": end["sum_received"]["bits_per_second"] / 1e6,
            "retransmits": float(end["sum_sent"].get("retransmits", 0))}


_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_RTT_ONE = re.compile(r"time=([\d.]+) ms")


def ping_rtts(emu: Any, src: str, dst_ip: str, count: int = 20,
              interval_s: float = 0.05) -> list[float]:
    """Round-trip times in ms of `count` pings (lost ones are left out)."""
    out = emu.host(src).cmd(f"ping -c {count} -i {interval_s} -W 2 {dst_ip}")
    return [float(x) for x in _RTT_ONE.findall(out)]
