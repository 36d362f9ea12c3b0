"""`make demo` (= `crs demo`): the default containment experiment on the mobile core.

Every terminal of `topologies/mobile_core.yaml` authenticates (X.1124, our supplicant
against the controller's EAC), an emulated worm starts at one terminal, and the outbreak
runs once without a defence and once with the reacting system (X.1125, `crs_isolate`:
agents report, victims accuse attackers, the controller isolates). Scenario:
`scenarios/demo.yaml` (controller.experiment.runner does the work). Prints a table with the
infected fraction, time to containment, reaction latency and authentication time of each,
writes `results/demo/summary.json` (`runs`: one object per defence) and the PNG figures, and
checks the demo's claim: with a 1 s detection delay the reacting system keeps the infected
fraction below 10 % while the undefended run exceeds 80 %.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controller.emulation.processes import ROOT

SCENARIO = ROOT / "scenarios" / "demo.yaml"
DEFENDED_MAX = 0.10      # the reacting system: infected fraction below this
UNDEFENDED_MIN = 0.80    # no defence: infected fraction above this


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p


def _fmt(x: Any, unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x * scale:.{digits}f}{unit}"


def demo_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One table row per defence of a runner summary (the demo's four numbers and more)."""
    rows = []
    for c in summary.get("runs", []):
        rows.append([
            c["configuration"], str(c["runs"]),
            f"{c['infected_fraction']:.0%} ({c['infected_fraction_p95']:.0%})",
            _fmt(c.get("time_to_containment_s"), " s"),
            _fmt(c.get("reaction_latency_s"), " ms", 1000, 0),
            _fmt(c.get("reaction_time_s"), " s", 1, 2),
            _fmt(c.get("authentication_ms"), " ms", 1, 2),
            _fmt(c.get("t50_s"), " s"),
        ])
    return rows


DEMO_HEAD = ["defence", "runs", "infected (p95)", "time to containment", "reaction latency",
             "R (infection->flows)", "authentication", "t50"]


def format_demo_table(summary: dict[str, Any]) -> str:
    rows = demo_rows(summary)
    widths = [max(len(x) for x in col) for col in zip(DEMO_HEAD, *rows)]
    line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(DEMO_HEAD), line(["-" * w for w in widths])] + [line(r) for r in rows])


def verdict(summary: dict[str, Any]) -> tuple[bool, str]:
    """The demo's claim checked on the summary: (holds, one line saying why)."""
    by = {c["defence"]: c for c in summary.get("runs", [])}
    none, iso = by.get("none"), by.get("crs_isolate")
    if none is None or iso is None:
        return False, "both runs (none, crs_isolate) are needed"
    ok_none = none["infected_fraction"] > UNDEFENDED_MIN
    ok_iso = iso["infected_fraction"] < DEFENDED_MAX
    text = (f"no defence {none['infected_fraction']:.0%} "
            f"({'>' if ok_none else 'NOT >'} {UNDEFENDED_MIN:.0%}), reacting system "
            f"{iso['infected_fraction']:.0%} ({'<' if ok_iso else 'NOT <'} {DEFENDED_MAX:.0%})")
    return ok_none and ok_iso, text


def demo_scenario(topology_file: str | Path, scenario_file: str | Path, tmp: Path,
                  runs: int | None = None) -> Path:
    """The demo scenario pointed at `topology_file` (absolute), written into tmp."""
    data = yaml.safe_load(_resolve(scenario_file).read_text())
    data["topology"] = str(_resolve(topology_file).resolve())
    if runs:
        data["runs"] = int(runs)
    out = tmp / "demo.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def network_check(topology_file: str | Path) -> dict[str, Any]:
    """First, that the emulated core forwards: under the controller (admission open), every
    host reaches every other host and the controller's service address, and TCP flows from
    a terminal to the web server."""
    import time

    from controller import topology
    from controller.emulation.net import Emulation, Options
    from controller.emulation.processes import ControllerProcess
    from controller.emulation.traffic import all_pairs, iperf3
    topo = topology.load(_resolve(topology_file))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="crs-check-") as tmp, \
            ControllerProcess(Path(tmp), ["--topology", str(_resolve(topology_file))]) as ctl, \
            Emulation(topo, Options(controller_port=ctl.ofp_port)) as emu:
        emu.wait_connected(60)
        up_s = time.time() - t0
        failed = all_pairs(emu, [topo.service_ip])
        tcp = iperf3(emu, topo.terminals()[0].name, "web", seconds=2)
    n = len(topo.hosts)
    pairs = n * (n - 1) + n
    return {"hosts": n, "switches": len(topo.switches), "network_up_s": round(up_s, 2),
            "pairs_tested": pairs, "pairs_reachable": pairs - len(failed),
            "unreachable": [f"{a} -> {b}" for a, b in failed],
            "tcp_terminal_to_web_mbps": round(tcp["mbps"], 1)}


def run_demo(topology_file: str = "topologies/mobile_core.yaml", out_dir: str = "results/demo",
             scenario_file: str | Path = SCENARIO, runs: int | None = None,
             progress: bool = True) -> int:
    """Run the demo; 0 when every run worked and the claim holds, 1 otherwise."""
    from controller.config import ConfigError
    from controller.experiment import runner
    if os.geteuid() != 0:
        print("crs demo needs root (Mininet): sudo make demo", file=sys.stderr)
        return 1
    from controller.emulation.record import openvswitch_problem
    problem = openvswitch_problem()
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 1
    out = Path(out_dir).resolve()
    check = network_check(topology_file)
    print(f"network check: {check['switches']} switches, {check['hosts']} hosts, "
          f"{check['pairs_reachable']}/{check['pairs_tested']} pairs reachable, "
          f"TCP terminal -> web {check['tcp_terminal_to_web_mbps']} Mbit/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="crs-demo-") as tmp:
        try:
            path = demo_scenario(topology_file, scenario_file, Path(tmp), runs)
            summary = runner.run_scenario(path, out, progress=progress)
        except (ConfigError, runner.RunnerError, runner.dfs.DefenceError) as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
    ok, text = verdict(summary)
    summary["network_check"] = check
    ok = ok and not check["unreachable"]
    summary["demo"] = {"claim_holds": ok, "claim": text,
                       "defended_max_fraction": DEFENDED_MAX,
                       "undefended_min_fraction": UNDEFENDED_MIN}
    from controller.experiment import results
    results.write_summary(summary, out / "summary.json")
    print()
    print(format_demo_table(summary))
    print(("claim holds: " if ok else "claim does NOT hold: ") + text)
    print(f"written: {out / 'summary.json'} and figures in {out}")
    return 0 if ok and not summary["runner"]["failed_runs"] else 1
