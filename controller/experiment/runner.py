"""`crs experiment run SCENARIO --out DIR`: run a containment scenario on Mininet + controller.

For every run of the scenario (defence x sweep value x detection delay x run index) it starts a
fresh controller process configured for the defence (controller.experiment.defences), brings
up the scenario's topology, gives every terminal static neighbour entries (live terminals with
their MACs, dark addresses of the scanned space with a sink MAC, so dark probes leave the host
as IP packets instead of ARP floods), prepares posture files, for CRS defences authenticates
every terminal and starts its agent, starts every worm listener, then the seed; it shows a
progress line, stops at the duration or when everything is infected / contained, collects the
worms' events, and tears down exactly what it started. Then results.write_outputs,
plots.plot_all and the printed table.

Runs in the Mininet process: never import Ryu here. Ryu's start-up monkey-patches the standard
library with eventlet, whose `select` has no `poll()`, which Mininet needs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from controller import jsonfile
from controller.config import ConfigError
from controller.crs.filewatch import NO_NOTIFICATIONS
from controller.emulation.processes import ROOT, ControllerProcess, Timeout, wait_until
from controller.emulation.record import openvswitch_problem
from controller.experiment import defences as dfs
from controller.experiment import reaction, results
from controller.experiment import scenario as scn
from controller.worm.targets import parse_space

SINK_MAC = "02:00:de:ad:be:ef"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
TAIL_S = 1.0                    # keep running this long after the last vulnerable host fell
CONTAIN_MARGIN_S = 2.0          # early stop: quiet for quiet_s + this, all infected silenced
SETUP_ATTEMPTS = 2              # a run whose setup lost a race with another network is retried
AUTH_WAVE = 25                  # supplicants started together (one cell of metro)
AGENT_CMD = [PYTHON, "-m", "controller.crs.agent"]


def say(line: str) -> None:
    """Print a line at once (the run takes minutes; a pipe must see progress)."""
    print(line, flush=True)


class RunnerError(RuntimeError):
    """A run that could not be set up (reason in the message)."""


# --- pure helpers ------------------------------------------------------------------------

def slug(label: str) -> str:
    """A file-name-safe form of a configuration label."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_") or "run"


def neighbour_batch(intf: str, live: dict[str, str], space: list[str], own_ip: str,
                    sink_mac: str = SINK_MAC) -> list[str]:
    """`ip -batch` lines giving a terminal permanent neighbours: every live terminal with
    its MAC and every other address of the scanned space with the sink MAC."""
    lines = [f"neigh replace {ip} lladdr {mac} nud permanent dev {intf}"
             for ip, mac in sorted(live.items()) if ip != own_ip]
    omega = parse_space(space)
    for ip in omega.addresses():
        if ip not in live and ip != own_ip:
            lines.append(f"neigh replace {ip} lladdr {sink_mac} nud permanent dev {intf}")
    return lines


def initial_posture() -> dict[str, Any]:
    """A compliant terminal: only the worm makes it INFECTED (the experiment policies have
    only the `threats_uncleaned` rule, the shipped policy would also check these values)."""
    return {"os": {"name": "emulated", "patch_level": 12},
            "antivirus": {"engine": "emulated", "signature_version": 2041},
            "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}


def with_duration(argv: list[str], seconds: float) -> list[str]:
    """The worm command with its own --duration replaced (a safety net; the runner stops it)."""
    out = list(argv)
    i = out.index("--duration")
    out[i + 1] = f"{seconds:g}"
    return out


def silenced(entry: dict[str, Any]) -> bool:
    """Whether a GET /crs/v1/terminals entry decides the terminal cut off from every other
    terminal (isolated, or scope none): only then can it infect nobody. A meter slows it;
    a group scope or a sealed group confines it among terminals it can still infect."""
    d = entry.get("decision")
    if isinstance(d, dict):
        return bool(d.get("isolate") or d.get("scope") == "none")
    return False


def enforcing_hosts(topo_file: Path, sc: scn.Scenario, spec: scn.RunSpec,
                    plan: list[scn.HostPlan]) -> set[str]:
    """The terminals whose edge enforces decisions: those in the cells that
    defences.enforced_cells gives the controller (all of them at full coverage)."""
    cov = float(spec.params.get("coverage_fraction", 1.0))
    n = len(dfs.enforced_cells(topo_file, cov, sc.cells))
    return {h.name for h in plan if h.cell <= n}


class EventTail:
    """Incremental reader of one JSON-lines events file (complete lines only)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.buf = path, 0, b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        self.buf += data
        complete, _, self.buf = self.buf.rpartition(b"\n")
        return jsonfile.parse_lines(complete)[0]


@dataclass
class Progress:
    """What the runner knows while a run is going, from the events files."""

    started: set[str] = field(default_factory=set)
    infected: dict[str, float] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)

    def feed(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            host, ev = r.get("host"), r.get("event")
            if ev == "start":
                self.started.add(host)
            elif ev == "infected":
                self.infected.setdefault(host, float(r.get("t", 0.0)))
            elif ev == "stop":
                self.stopped.add(host)


# --- one run -----------------------------------------------------------------------------

@dataclass
class RunContext:
    sc: scn.Scenario
    spec: scn.RunSpec
    topo_file: Path
    run_dir: Path
    progress: bool = True
    log: Callable[[str], None] = say


def _sh(host: Any, cmd: str) -> str:
    return host.cmd(cmd)


def run_one(ctx: RunContext) -> tuple[results.RunResult, dict[str, Any]]:
    """One run on a fresh controller and network; returns its result and runner facts."""
    from controller import topology
    from controller.emulation.net import Emulation, start_network
    sc, spec, run_dir = ctx.sc, ctx.spec, ctx.run_dir
    # Each run starts from nothing: a controller database or audit log left by an earlier run
    # in the same folder would be restored (the controller never forgets a quarantine).
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    events_dir = run_dir / "events"
    events_dir.mkdir(exist_ok=True)
    for old in events_dir.glob("*.jsonl"):
        old.unlink()
    topo = topology.load(ctx.topo_file, terminals_per_cell=sc.terminals_per_cell)
    files = dfs.write_defence_files(spec.defence, spec.params, sc.cells, ctx.topo_file,
                                    run_dir / "config", authenticate=sc.authenticate,
                                    audit_log=run_dir / "audit.jsonl",
                                    terminals_per_cell=sc.terminals_per_cell)
    plan = scn.plan_hosts(sc, spec.seed)
    facts: dict[str, Any] = {"configuration": spec.label, "run": spec.run, "seed": spec.seed,
                             "seed_host": next(h.name for h in plan if h.seed_host)}
    procs: list[tuple[str, subprocess.Popen]] = []
    t_setup = time.time()
    with tempfile.TemporaryDirectory(prefix="crs-exp-") as tmp:
        tmpd = Path(tmp)
        # one network at a time: Emulation.start() queues on the machine-wide lock in arrival
        # order (polling for free bridges instead would let every next test jump the queue)
        ctl = ControllerProcess(run_dir / "controller", ["--config", str(files.controller_config),
                                                         "--topology", str(ctx.topo_file)])
        emu = None
        try:
            ctl.start(timeout=60)
            t_wait = time.time()
            emu = start_network(topo, ctl, shaping=sc.shaping, emulation_cls=_timed(Emulation))
            facts["waited_s"] = round(emu.locked_at - t_wait, 2)   # someone else's network
            t_setup += emu.locked_at - t_wait
            facts["network_up_s"] = round(time.time() - t_setup, 2)
            facts["neighbours"] = _static_neighbours(emu, topo, sc, tmpd)
            postures = {}
            for h in plan:
                (tmpd / h.name).mkdir()
                postures[h.name] = tmpd / h.name / "posture.json"
                postures[h.name].write_text(json.dumps(initial_posture(), indent=1))
            if files.agents:
                facts["inotify"] = ensure_inotify_instances(len(plan))
            if files.authenticate:
                facts["authentication_s"] = _authenticate(emu, ctl, topo, plan, tmpd, postures,
                                                          procs, ctx.log, agents=files.agents)
                facts["authentication"] = _authentication_facts(plan, tmpd)
            t_seed = _start_worms(emu, sc, spec, plan, postures, events_dir, procs)
            facts["setup_s"] = round(t_seed - t_setup, 2)
            # it stops early only when every infected terminal is silenced (_all_silenced):
            # a metered, confined or unenforced one still infects
            facts["stop_reason"] = _watch(ctx, ctl, plan, events_dir, t_seed, files.agents)
            st = _safe(ctl.status) or {}
            facts["controller_counters"] = st.get("counters", {})
        finally:
            _stop_procs(procs)
            if files.agents:
                facts["agents_polling"] = _safe(lambda: agents_polling(plan, tmpd))
            if emu is not None:
                emu.stop()
            ctl.stop()
    paths = sorted(events_dir.glob("*.jsonl"))
    result = results.load_run(paths, spec.defence, spec.run, configuration=spec.label,
                              params=spec.params, seed=spec.seed)
    if files.agents:
        worm_records, _ = results.read_events(paths)
        hosts = reaction.per_host(worm_records, jsonfile.read_lines(run_dir / "audit.jsonl"))
        (run_dir / "reaction.json").write_text(json.dumps(hosts, indent=1))
        facts["reaction"] = reaction.summarize_hosts(hosts)
    return result, facts


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def ensure_inotify_instances(agents: int, path: Path = INOTIFY_INSTANCES) -> dict[str, Any]:
    """Every agent wakes on its posture file through an inotify instance of its own, and
    all of them run as one user: the kernel's default of 128 instances per user left 72 of
    200 agents polling every 100 ms (up to 0.1 s more reaction time each). Like Mininet's
    own limits, raised (never lowered) to what the run needs: agents + 256 for the rest of
    the machine. Returns what it found and set."""
    want = agents + 256
    try:
        had = int(path.read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {path}: {exc}"}
    if had >= want:
        return {"max_user_instances": had}
    try:
        path.write_text(f"{want}\n")
    except OSError as exc:
        say(f"  cannot raise {path} to {want} ({exc}): agents beyond it poll every 100 ms")
        return {"max_user_instances": had, "error": str(exc)}
    return {"max_user_instances": want, "raised_from": had}


def agents_polling(plan: list[scn.HostPlan], tmpd: Path) -> int:
    """How many agents of a run had no file notifications (their log says so)."""
    return sum(NO_NOTIFICATIONS in _read_text(tmpd / h.name / "agent.log") for h in plan)


def _authentication_facts(plan: list[scn.HostPlan], tmpd: Path) -> dict[str, Any]:
    """Per-terminal EAP time (supplicant's EAP-SUCCESS line; keys file as fallback)."""
    logs, keys, started = {}, {}, {}
    for h in plan:
        d = tmpd / h.name
        logs[h.name] = _read_text(d / "supplicant.log")
        k = jsonfile.read(d / "keys.json")
        if k is not None:
            keys[h.name] = k
        st = _read_text(d / "supplicant.started")
        if st:
            started[h.name] = float(st)
    per = reaction.authentication_times(logs, keys, started)
    vals = sorted(per.values())
    return {"per_terminal_s": per, "terminals": len(per),
            "median_ms": round(vals[len(vals) // 2] * 1000, 3) if vals else None,
            "max_ms": round(vals[-1] * 1000, 3) if vals else None}


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _timed(emulation_cls: type) -> type:
    """The Emulation class noting when it got the machine-wide lock (`locked_at`), so that
    setup times do not include waiting for someone else's network."""
    class TimedEmulation(emulation_cls):
        def _lock(self) -> None:
            super()._lock()
            self.locked_at = time.time()
    return TimedEmulation


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # the controller may be gone; facts are best effort
        return None


def _static_neighbours(emu: Any, topo: Any, sc: scn.Scenario, tmpd: Path) -> dict[str, Any]:
    """Permanent neighbour entries on every terminal (see module doc)."""
    live = {h.ip: h.mac for h in topo.terminals()}
    entries = 0
    t0 = time.time()
    for h in topo.terminals():
        lines = neighbour_batch(f"{h.name}-eth0", live, list(sc.space), h.ip)
        batch = tmpd / f"neigh-{h.name}"
        batch.write_text("\n".join(lines) + "\n")
        node = emu.host(h.name)
        if len(lines) > 900:   # permanent entries count against gc_thresh3 on older kernels
            _sh(node, f"sysctl -qw net.ipv4.neigh.default.gc_thresh3={len(lines) + 1024} "
                      f"net.ipv4.neigh.default.gc_thresh2={len(lines) + 512}")
        out = _sh(node, f"ip -batch {batch} 2>&1 | head -3")
        if out.strip():
            raise RunnerError(f"{h.name}: ip -batch failed: {out.strip()}")
        entries += len(lines)
    return {"entries": entries, "sink_mac": SINK_MAC, "seconds": round(time.time() - t0, 2)}


def _authenticate(emu: Any, ctl: ControllerProcess, topo: Any, plan: list[scn.HostPlan],
                  tmpd: Path, postures: dict[str, Path], procs: list, log: Callable,
                  agents: bool = True) -> float:
    """Supplicant (then, with `agents`, the agent) on every participating terminal; wait
    until the controller lists all of them as authenticated. Returns the seconds it took."""
    t0 = time.time()
    svc = f"http://{topo.service_ip}:{ctl.rest_port}"
    keys = {}
    # 200 terminals start 200 Python supplicants (then agents) at once: on 2 cores their
    # start-up alone takes about a minute, so the waits grow with the number of terminals
    wait_s = max(60.0, 0.75 * len(plan))
    for i, h in enumerate(plan):
        if i and i % AUTH_WAVE == 0:
            # start supplicants in waves: a wave's Python start-up must not starve the last
            wave = [keys[p.name] for p in plan[i - AUTH_WAVE:i]]
            try:
                wait_until(lambda: all(k.exists() for k in wave), 30, "a wave of supplicants")
            except Timeout:
                log(f"  a wave of {AUTH_WAVE} supplicants is slow; starting the next anyway")
        keys[h.name] = tmpd / h.name / "keys.json"
        identity = dfs.identity_of(h.name)
        argv = [PYTHON, "-m", "controller.admission.supplicant_main",
                "--interface", f"{h.name}-eth0", "--identity", identity,
                "--psk", dfs.demo_psk_hex(identity), "--keys-out", str(keys[h.name]),
                "--once", "--timeout-s", f"{wait_s:g}"]     # exits after EAP-SUCCESS: 200 terminals
        # do not keep 200 idle Python processes (the session lasts an hour; runs are shorter)
        (tmpd / h.name / "supplicant.started").write_text(repr(time.time()))
        procs.append((h.name, _popen(emu, h.name, argv, tmpd / h.name / "supplicant.log")))
    wait_until(lambda: all(k.exists() for k in keys.values()), wait_s,
               "every terminal's keys file (supplicant_main)")
    for h in plan if agents else []:
        argv = AGENT_CMD + ["--posture", str(postures[h.name]), "--keys", str(keys[h.name]),
                            "--scs", svc, "--name", dfs.identity_of(h.name), "--interval", "5",
                            "--state-dir", str(tmpd / h.name)]
        procs.append((h.name, _popen(emu, h.name, argv, tmpd / h.name / "agent.log")))
    names = {h.name for h in plan}

    def all_in() -> bool:
        ts = ctl.get("/crs/v1/terminals")
        if not isinstance(ts, list):
            return False
        ok = {t.get("id") for t in ts if t.get("authenticated")} | \
             {t.get("identity", "").split("@")[0] for t in ts if t.get("authenticated")}
        return names <= ok
    wait_until(all_in, wait_s, "every terminal authenticated (GET /crs/v1/terminals)",
               interval=0.5)
    log(f"  {len(names)} terminals authenticated{' with agents' if agents else ''} "
        f"in {time.time() - t0:.1f} s")
    return round(time.time() - t0, 2)


def _popen(emu: Any, host: str, argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return emu.popen(host, argv, cwd=str(ROOT), stdout=f, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)


def _start_worms(emu: Any, sc: scn.Scenario, spec: scn.RunSpec, plan: list[scn.HostPlan],
                 postures: dict[str, Path], events_dir: Path, procs: list) -> float:
    """Every listener first (early probes must not be lost), then the seed. Returns the
    wall time the seed was started."""
    safety = sc.duration_s + 600       # the runner stops them; this only ends orphans
    argvs = {h.name: with_duration(scn.worm_argv(sc, spec, h, postures[h.name],
                                                 events_dir / f"{h.name}.jsonl",
                                                 python=PYTHON), safety) for h in plan}
    tails = {h.name: EventTail(events_dir / f"{h.name}.jsonl") for h in plan}
    prog = Progress()
    seed = next(h for h in plan if h.seed_host)
    for h in plan:
        if h is not seed:
            procs.append((h.name, _popen(emu, h.name, argvs[h.name],
                                         postures[h.name].parent / "worm.log")))

    def listeners_up() -> bool:
        for t in tails.values():
            prog.feed(t.read())
        return len(prog.started) >= len(plan) - 1
    wait_until(listeners_up, 60, "every worm listener started", interval=0.1)
    t_seed = time.time()
    procs.append((seed.name, _popen(emu, seed.name, argvs[seed.name],
                                    postures[seed.name].parent / "worm.log")))
    return t_seed


def _watch(ctx: RunContext, ctl: ControllerProcess, plan: list[scn.HostPlan], events_dir: Path,
           t_seed: float, crs: bool) -> str:
    """Progress line until the duration, all vulnerable infected, or (CRS) contained."""
    sc = ctx.sc
    vulnerable = sum(h.vulnerable for h in plan)
    tails = [EventTail(events_dir / f"{h.name}.jsonl") for h in plan]
    prog = Progress()
    deadline = t_seed + sc.duration_s
    reason = "duration"
    all_since: float | None = None
    tty, shown = sys.stdout.isatty(), -1
    enforcing = enforcing_hosts(ctx.topo_file, sc, ctx.spec, plan) if crs else set()
    while True:
        now = time.time()
        for t in tails:
            prog.feed(t.read())
        n = len(prog.infected)
        if ctx.progress and (tty or n != shown):
            line = (f"  {ctx.spec.label} run {ctx.spec.run + 1}: {now - t_seed:5.1f}/"
                    f"{sc.duration_s:g} s  infected {n}/{vulnerable}")
            sys.stdout.write(f"\r{line}   " if tty else line + "\n")
            sys.stdout.flush()
            shown = n
        if now >= deadline:
            break
        if n >= vulnerable:
            all_since = all_since or now
            if now - all_since >= TAIL_S:
                reason = "all infected"
                break
        if crs and prog.infected and now - max(prog.infected.values()) >= \
                results.DEFAULT_QUIET_S + CONTAIN_MARGIN_S and \
                _all_silenced(ctl, prog, enforcing):
            reason = "contained"
            break
        time.sleep(0.25)
    if ctx.progress and tty:
        sys.stdout.write("\n")
    return reason


def _all_silenced(ctl: ControllerProcess, prog: Progress, enforcing: set[str]) -> bool:
    """Every infected terminal is decided silent at an edge that enforces: the outbreak is
    over (early stop). A confined, metered or unenforced terminal keeps the run going."""
    if not set(prog.infected) <= enforcing:
        return False
    ts = _safe(lambda: ctl.get("/crs/v1/terminals"))
    if not isinstance(ts, list):
        return False
    state = {str(t.get("identity") or t.get("id") or "").split("@")[0]: silenced(t)
             for t in ts if isinstance(t, dict)}
    return all(state.get(h) for h in prog.infected)


def _stop_procs(procs: list[tuple[str, subprocess.Popen]], grace_s: float = 5.0) -> None:
    """SIGTERM what this run started (worms write their `stop` record), then SIGKILL."""
    for _, p in reversed(procs):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + grace_s
    for _, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    procs.clear()


# --- the whole scenario ------------------------------------------------------------------

def resolve_topology(sc: scn.Scenario) -> Path:
    found = scn._find(sc.topology, Path(sc.file).parent)
    if found is None:
        raise ConfigError([(sc.file, "topology", f"file {sc.topology!r} not found")])
    return found.resolve()


def check_topology(sc: scn.Scenario, topo_file: Path) -> None:
    """The topology must have the scenario's cells (terminals c<cell>t<n> at 10.0.<cell>.<n>)."""
    from controller import topology
    topo = topology.load(topo_file, terminals_per_cell=sc.terminals_per_cell)
    problems = []
    if len(topo.cells) < sc.cells:
        problems.append((sc.file, "cells", f"{sc.cells} cells, but {topo_file.name} has only "
                         f"{len(topo.cells)}"))
    else:
        have = {h.name: h.ip for h in topo.terminals()}
        for c in range(1, sc.cells + 1):
            for t in range(1, sc.terminals_per_cell + 1):
                name, ip = scn.terminal_name(c, t), scn.terminal_ip(c, t)
                if have.get(name) != ip:
                    problems.append((sc.file, "topology", f"terminal {name} is not at {ip} "
                                     f"in {topo_file.name}"))
                    break
    if problems:
        raise ConfigError(problems)


def run_scenario(path: str | Path, out_dir: str | Path, progress: bool = True,
                 quick: bool = False, runs: int | None = None,
                 log: Callable[[str], None] = say, resume: bool = False) -> dict[str, Any]:
    """Run every configuration of a scenario; write timeline.csv, summary.json (with a
    `runner` section: per-run facts, machine, commit) and the figures into out_dir; return
    the summary. `quick`: one run per configuration. `resume`: keep the runs an earlier
    invocation finished in out_dir (`finished_run`), run only the others. Raises
    ConfigError on a bad scenario."""
    sc = scn.load_scenario(path)
    if quick or runs:
        sc = replace(sc, runs=1 if quick else int(runs))
    topo_file = resolve_topology(sc)
    check_topology(sc, topo_file)
    specs = scn.expand(sc)
    for spec in {s.label: s for s in specs}.values():     # fail before anything starts
        with tempfile.TemporaryDirectory() as t:
            dfs.write_defence_files(spec.defence, spec.params, sc.cells, topo_file, t,
                                    authenticate=sc.authenticate,
                                    terminals_per_cell=sc.terminals_per_cell)
    problem = openvswitch_problem()     # before any run: every run would fail on it
    if problem:
        raise RunnerError(problem)
    out = Path(out_dir).resolve()       # the controller gets absolute file names
    out.mkdir(parents=True, exist_ok=True)
    log(f"{sc.name}: {len(specs)} runs ({len({s.label for s in specs})} configurations), "
        f"{sc.terminals} terminals, V = {sc.vulnerable}, Omega = {sc.omega}, "
        f"s = {sc.scan_rate:g}/s, {sc.duration_s:g} s per run")
    done: list[results.RunResult] = []
    facts: list[dict[str, Any]] = []
    t0 = time.time()
    for i, spec in enumerate(specs):
        log(f"[{i + 1}/{len(specs)}] {spec.label} run {spec.run + 1} (seed {spec.seed})")
        run_dir = out / "runs" / slug(spec.label) / f"run{spec.run + 1}"
        kept = finished_run(spec, run_dir) if resume else None
        if kept is not None:
            log(f"  finished before: {kept[0].infected}/{kept[0].vulnerable} infected")
            done.append(kept[0])
            facts.append(kept[1])
            continue
        ctx = RunContext(sc, spec, topo_file, run_dir, progress, log)
        r = None
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            try:
                r, f = run_one(ctx)
                break
            except Exception as exc:
                err = f"{type(exc).__name__}: {exc}".strip()
                log(f"  run failed (attempt {attempt}/{SETUP_ATTEMPTS}): {err.splitlines()[0]}")
        if r is None:
            facts.append({"configuration": spec.label, "run": spec.run, "seed": spec.seed,
                          "error": err})
            continue
        f.update(infected=r.infected, vulnerable=r.vulnerable,
                 infected_fraction=round(r.infected_fraction, 4), end_s=round(r.end_s, 2))
        log(f"  {r.infected}/{r.vulnerable} infected, {f['stop_reason']}, "
            f"{r.probes_sent} probes, packet-ins "
            f"{f.get('controller_counters', {}).get('packet_ins', '?')}")
        _safe(lambda: jsonfile.write_atomic(run_dir / "facts.json", f))   # for --resume
        done.append(r)
        facts.append(f)
    if not done:
        raise RunnerError("no run succeeded: " + "; ".join(f.get("error", "") for f in facts))
    return _finish(sc, done, facts, out, {"wall_s": round(time.time() - t0, 1),
                                           "quick": quick}, log)


def analyze_existing(path: str | Path, out_dir: str | Path,
                     log: Callable[[str], None] = say) -> dict[str, Any]:
    """summary.json and the figures from the runs an earlier `run` of the scenario left in
    out_dir, without running anything: a sweep stopped half-way (a long night cut short)
    still gives its finished configurations. A run counts when it finished: every worm
    wrote its stop record, and for the reacting system's defences its reaction.json exists."""
    sc = scn.load_scenario(path)
    out = Path(out_dir).resolve()
    done: list[results.RunResult] = []
    facts: list[dict[str, Any]] = []
    missing = 0
    for spec in scn.expand(sc):
        got = finished_run(spec, out / "runs" / slug(spec.label) / f"run{spec.run + 1}")
        if got is None:
            missing += 1
            continue
        done.append(got[0])
        facts.append(got[1])
    if not done:
        raise RunnerError(f"no finished run of {sc.name} in {out}")
    log(f"{sc.name}: {len(done)} finished runs analyzed, {missing} missing")
    return _finish(sc, done, facts, out, {"analyzed_from_disk": True, "missing_runs": missing},
                   log)


def finished_run(spec: scn.RunSpec, run_dir: Path
                 ) -> tuple[results.RunResult, dict[str, Any]] | None:
    """A run an earlier invocation finished in `run_dir` (every worm wrote its stop record;
    for the reacting system's defences, reaction.json was written after them), as
    (result, facts); None if it is missing or was cut off."""
    paths = sorted((run_dir / "events").glob("*.jsonl"))
    agents = spec.defence not in ("none", "throttle")
    records = results.read_events(paths)[0] if paths else []
    stopped = {r.get("host") for r in records if r.get("event") == "stop"}
    if not paths or len(stopped) < len(paths) or \
            (agents and not (run_dir / "reaction.json").exists()):
        return None
    r = results.load_run(paths, spec.defence, spec.run, configuration=spec.label,
                         params=spec.params, seed=spec.seed)
    kept = jsonfile.read(run_dir / "facts.json")    # what the run itself recorded
    f: dict[str, Any] = {**(kept if isinstance(kept, dict) else {}),
                         "configuration": spec.label, "run": spec.run, "seed": spec.seed,
                         "infected": r.infected, "vulnerable": r.vulnerable,
                         "infected_fraction": round(r.infected_fraction, 4),
                         "end_s": round(r.end_s, 2), "from_disk": True}
    if agents:
        try:
            rows = json.loads((run_dir / "reaction.json").read_text())
        except (OSError, ValueError):
            rows = []
        f["reaction"] = reaction.summarize_hosts(rows if isinstance(rows, list) else [])
    return r, f


def _finish(sc: scn.Scenario, done: list[results.RunResult], facts: list[dict[str, Any]],
            out: Path, extra: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The outputs of a scenario's runs: summary.json, timeline.csv, the figures, the table."""
    summary = results.write_outputs(done, out, scenario=scn.describe(sc))
    for conf in summary["runs"]:
        mine = [f for f in facts if f.get("configuration") == conf["configuration"]
                and "error" not in f]
        if any("authentication" in f or "reaction" in f for f in mine):
            conf.update(reaction.merge_configuration(mine))
    from controller.bench import common
    summary["runner"] = {"runs": facts, "failed_runs": sum("error" in f for f in facts),
                         **extra, "sink_mac": SINK_MAC, "machine": _safe(common.machine),
                         "commit": _safe(common.commit)}
    results.write_summary(summary, out / "summary.json")
    from controller.experiment import plots
    made = plots.plot_all(summary, done, out, overhead_s=1.0)
    log(results.format_table(summary))
    written = [out / "summary.json", out / "timeline.csv", *made]
    log("written: " + ", ".join(str(p) for p in written))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crs experiment run",
                                description="Run a worm-containment scenario on Mininet.")
    p.add_argument("scenario", help="scenario file, e.g. scenarios/demo.yaml")
    p.add_argument("--out", help="output folder (default: results/<scenario name>)")
    p.add_argument("--quick", action="store_true", help="one run per configuration")
    p.add_argument("--runs", type=int, help="override the scenario's runs per configuration")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already finished in --out, run only the rest")
    p.add_argument("--analyze", action="store_true",
                   help="run nothing: summarize the finished runs already in --out (an "
                        "interrupted sweep)")
    return p


def main(argv: list[str] | None = None) -> int:
    """`run` (Mininet) or `simulate` (controller.experiment.simulate).
    0: done (every run succeeded); 1: some or all runs failed; 2: bad scenario/arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:     # no Mininet, no root: the discrete-event simulation
        from controller.experiment import simulate
        return simulate.main(argv[1:])
    if argv[:1] == ["compare"]:      # an emulated sweep against the simulation at its R
        from controller.experiment import compare
        return compare.main(argv[1:])
    if argv[:1] == ["run"]:
        argv = argv[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    if args.analyze:
        try:
            analyze_existing(args.scenario, args.out or str(
                Path("results") / scn.load_scenario(args.scenario).name))
        except (ConfigError, RunnerError) as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    if os.geteuid() != 0:
        print("crs experiment run needs root (Mininet)", file=sys.stderr)
        return 1
    try:
        out = args.out
        if out is None:
            out = str(Path("results") / scn.load_scenario(args.scenario).name)
        summary = run_scenario(args.scenario, out, progress=not args.no_progress,
                               quick=args.quick, runs=args.runs, resume=args.resume)
    except (ConfigError, dfs.DefenceError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if summary["runner"]["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
