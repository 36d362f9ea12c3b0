"""X.1125 report benchmark: signed SCI reports per second the SCS evaluates end to end, and
the evaluation cost per report, with 10,000 known terminals (results/bench/reports.json).

Three measurements on the same prepared population (authenticated terminals with their
crs-report keys, each with a fresh clean report and its COMPLIANT decision):

- end to end: a real controller process (no Mininet: its REST listens on 127.0.0.1) whose
  SQLite store holds the population (bindings as `Core._auth_effects` writes them, SCS
  terminals as `Core._persist` writes them; the controller restores them at start), and
  `clients` load-generator processes posting signed clean reports over keep-alive HTTP to
  /crsap/v1/messages for `duration_s` after a warm-up: accepted reports per second, latency;
- in-process, the pure core (`Core.crsap_messages` on a copy of the same store: decode,
  key lookup, verify, evaluate, correlate, decide, SQLite commit, audit line), one message
  per commit and in groups (the controller's group commit), at 100 ... 100,000 terminals;
- in-process, the pure SCS (`SCS.handle`, keys from a dict): steady reports (clean ->
  clean, no decision change) and flips (infected <-> clean, a decision and flows each time),
  at 100 ... 100,000 terminals (a PNG of cost against terminals: it must be flat);
- a breakdown of the pure core's time per report by stage, from a cProfile pass separate
  from the timed ones (`--profile` also writes that profile next to the JSON).
"""
from __future__ import annotations

import hmac
import multiprocessing as mp
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture

CLEAN = {"os": {"name": "bench", "patch_level": 12},
         "antivirus": {"engine": "bench", "signature_version": 2041},
         "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
INFECTED = {**CLEAN, "threats": [{"name": "Worm.Bench", "count": 1, "cleaned": False}]}
TOPOLOGY = "topologies/minimal.yaml"
# a lone report after the controller sat idle: on the VMs this was measured on, code not run
# in the last few milliseconds runs 2-4 times slower (50 ms: cold; 0.5-2 ms: still warm)
IDLE_GAP_S = 0.05
IDLE_REPORTS = 100


@dataclass
class BenchTerminal:
    tid: str
    number: int
    group: str
    ip: str
    mac: str
    dpid: int
    port: int
    key: bytes


def population(n: int, groups: int, seed: int = 1) -> list[BenchTerminal]:
    """`n` terminals in `groups` groups, 48 per (virtual) access switch, random keys."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(BenchTerminal(
            tid=f"t{i:05d}@bench.example", number=i + 1, group=f"g{i % groups}",
            ip=f"10.{1 + i // 65000}.{(i % 65000) // 250}.{i % 250 + 1}",
            mac="02:10:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255,
                                              (i >> 8) & 255, i & 255),
            dpid=100 + i // 48, port=1 + i % 48, key=rng.randbytes(32)))
    return out


def _compliant(policy: Any, group: str) -> tuple[Any, str, Any, dict[str, Any]]:
    from controller.crs.control import decide
    from controller.crs.evaluation import evaluate
    sci = sci_from_posture(CLEAN)
    level, reason = evaluate(sci, policy)
    return level, reason, decide(level, group, policy, reason), sci


def populate_store(db_path: Path, terms: list[BenchTerminal], policy: Any,
                   now: float) -> None:
    """Write bindings and SCS terminals as the controller would, in one transaction."""
    from controller.crs import nac
    from controller.store import Store
    store = Store(db_path)
    decisions: dict[str, tuple] = {}
    store.db.execute("BEGIN")
    for t in terms:
        if t.group not in decisions:
            decisions[t.group] = _compliant(policy, t.group)
        level, reason, decision, sci = decisions[t.group]
        store.put_binding(t.tid, grp=t.group, dpid=t.dpid, port=t.port, mac=t.mac,
                          isr_id=f"isr-{t.number}", crs_key=t.key, method="PSK", start=now,
                          expires=now + 86400)
        state = {"group": t.group, "ip": t.ip, "mac": t.mac, "dpid": t.dpid, "port": t.port,
                 "online": True, "own_level": level.value, "own_reason": reason,
                 "last_report": now, "last_sci": sci, "gen": 0, "override": None}
        store.put_terminal(t.tid, t.number, state, nac.decision_to_dict(decision))
    store.db.execute("COMMIT")
    store.close()


def pure_scs(terms: list[BenchTerminal], policy: Any, now: float) -> Any:
    """An SCS holding `terms`, each fresh and COMPLIANT (as restored from a store)."""
    from controller.crs.scs import SCS, Terminal
    keys = {t.tid: t.key for t in terms}
    scs = SCS(policy, keys.get)
    cache: dict[str, tuple] = {}
    for t in terms:
        if t.group not in cache:
            cache[t.group] = _compliant(policy, t.group)
        level, reason, decision, sci = cache[t.group]
        scs.terminals[t.tid] = Terminal(t.tid, t.number, t.group, t.ip, t.mac, t.dpid, t.port,
                                        own_level=level, own_reason=reason, last_report=now,
                                        last_sci=sci, decision=decision)
    scs._numbers = len(terms)
    return scs


def report(t: BenchTerminal, seq: int, ts: float, infected: bool = False) -> bytes:
    body = {"ms_id": t.tid, "sci": sci_from_posture(INFECTED if infected else CLEAN)}
    return crsap.encode("SCIReport", t.tid, seq, ts, body, t.key)


def time_scs(terms: list[BenchTerminal], policy: Any, reports: int, max_s: float,
             flip: bool, seed: int = 2) -> dict[str, Any]:
    """Microseconds per `SCS.handle` call (encoding is outside the timing). Steady state:
    each terminal timed reported once before, untimed (as in a running SCS)."""
    from controller.crs.scs import Reply
    now = time.time()
    scs = pure_scs(terms, policy, now)
    rng = random.Random(seed)
    us: list[float] = []
    replies = 0
    picks = [rng.choice(terms) for _ in range(reports)]
    for t in {t.tid: t for t in picks}.values():
        scs.handle(None, report(t, 1, now), now)
    deadline = time.perf_counter() + max_s
    for i, t in enumerate(picks):
        ts = now + i * 1e-3
        raws = [report(t, 2 * i + 3, ts, infected=True), report(t, 2 * i + 4, ts)] if flip \
            else [report(t, i + 2, ts)]
        for raw in raws:
            t1 = time.perf_counter()
            effects = scs.handle(None, raw, ts)
            us.append((time.perf_counter() - t1) * 1e6)
            replies += any(isinstance(e, Reply) for e in effects)
        if time.perf_counter() > deadline:
            break
    return {"us": us, "replies": replies}


# Where a report's time goes in the pure core: (stage, module, object, function whose
# time is that stage's). Stages nest (the SCS calls decode and verify), so each stage's own
# time is its time less that of the stages inside it (INNER).
STAGES = [
    ("decode + schema", "controller.crs.messages", None, "decode"),
    ("verify (HMAC, replay)", "controller.crs.messages", None, "verify"),
    ("evaluate (8.1)", "controller.crs.scs", "SCS", "_evaluate"),
    ("correlate + decide", "controller.crs.scs", "SCS", "_recompute"),
    ("answer (encode, sign)", "controller.crs.scs", "SCS", "_response"),
    ("SCS other", "controller.crs.scs", "SCS", "handle"),
    ("store writes + audit", "controller.owners.security", "Security", "_effects"),
    ("commit (disk sync)", "controller.store", "Batch", "__exit__"),
    ("core other", "controller.owners.security", "Security", "messages"),
]
INNER = {"SCS other": ["decode + schema", "verify (HMAC, replay)", "evaluate (8.1)",
                       "correlate + decide", "answer (encode, sign)"],
         "core other": ["SCS other", "store writes + audit", "commit (disk sync)"]}


def _core(db_path: Path, cfg: Path) -> Any:
    from controller import topology
    from controller.core import Core
    from controller.settings import load_settings
    settings = load_settings(str(cfg), db_path=str(db_path))
    return Core(settings, topology.load(settings.topology_file))


def time_core(db_path: Path, cfg: Path, terms: list[BenchTerminal], reports: int,
              max_s: float, group: int = 1, seed: int = 3,
              profile: Any = None, stages: dict[str, float] | None = None,
              gap_s: float = 0.0) -> dict[str, Any]:
    """Microseconds per report through `Core.crsap_messages` (the pure core with its SQLite
    store), `group` messages per call and commit (1: each on its own), and the CPU time
    (`cpu_us`: the wall time less waiting for the disk). Steady state: the terminals timed
    reported once before, untimed, since the core started (as in a running controller,
    where each reports every interval); their first report after a start also fills the
    key cache and the SCI history. `stages`: filled with the microseconds per report of
    each stage of STAGES over the timed reports (`stage_timers`). `gap_s`: the process
    sleeps this long between timed calls, as a controller waits between lone reports (the
    CPU's caches and predictors go cold: `IDLE_GAP_S`)."""
    core = _core(db_path, cfg)
    rng = random.Random(seed)
    us: list[float] = []
    cpu: list[float] = []
    statuses: Counter[int] = Counter()
    # after the highest number this store has seen (an earlier pass may have run ahead of
    # the millisecond clock the numbers start from)
    seq = max(crsap.next_seq(None, time.time()),
              max(core.security.scs.replay.last_seq.values(), default=0))
    picks = [rng.sample(terms, min(group, len(terms))) for _ in range(max(1, reports // group))]
    warm = list({t.tid: t for ts in picks for t in ts}.values())
    for i in range(0, len(warm), 64):
        now = time.time()
        batch = []
        for t in warm[i:i + 64]:
            seq += 1
            batch.append(report(t, seq, now))
        core.crsap_messages(batch, now)
    deadline = time.perf_counter() + max_s
    timers = stage_timers() if stages is not None else None
    spent = timers.__enter__() if timers is not None else {}
    for ts in picks:
        now = time.time()
        raws = []
        for t in ts:
            seq += 1
            raws.append(report(t, seq, now))
        if profile is not None:
            profile.enable()
        t1, c1 = time.perf_counter(), time.thread_time()
        results = core.crsap_messages(raws, now)
        per = (time.perf_counter() - t1) * 1e6 / len(raws)
        per_cpu = (time.thread_time() - c1) * 1e6 / len(raws)
        if profile is not None:
            profile.disable()
        if gap_s:
            time.sleep(gap_s)
        us += [per] * len(raws)
        cpu += [per_cpu] * len(raws)
        statuses.update(status for status, _, _ in results)
        if time.perf_counter() > deadline:
            break
    if timers is not None:
        timers.__exit__(None, None, None)
        for stage, *_ in STAGES:
            total = spent[stage] - sum(spent[sub] for sub in INNER.get(stage, []))
            stages[stage] = max(0.0, total) * 1e6 / max(1, len(us))
    core.store.close()
    return {"us": us, "cpu_us": cpu, "statuses": dict(statuses)}


def controller_breakdown(before: dict[str, Any], after: dict[str, Any], handled: int,
                         total_us: float) -> dict[str, float]:
    """The controller's CPU per report by part, from its CPU-time counters: the CRSAP
    lane (HTTP reading, parsing, answering), the core (SCS, store, audit, commit), the
    flows sent, and the rest (eventlet's hub, the tick, the process as a whole)."""
    parts = {"HTTP lane": "time_crsap_lane_us", "core (SCS, store, audit, commit)":
             "time_crsap_core_us", "flows sent": "time_crsap_send_us"}
    out = {name: (after.get(key, 0) - before.get(key, 0)) / handled
           for name, key in parts.items()}
    out["other (hub, tick, kernel)"] = max(0.0, total_us - sum(out.values()))
    return out


@contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Seconds spent in each stage of STAGES (with the stages inside it) while open: each
    stage's function timed by a wrapper (wall clock, so the commit includes its disk
    sync), far less distorting than a profiler's per-call cost."""
    import importlib
    spent = dict.fromkeys((s[0] for s in STAGES), 0.0)
    saved = []
    for stage, module, owner, name in STAGES:
        holder = importlib.import_module(module)
        if owner is not None:
            holder = getattr(holder, owner)
        fn = getattr(holder, name)

        def timed(*args: Any, _fn: Any = fn, _stage: str = stage, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                spent[_stage] += time.perf_counter() - t0
        saved.append((holder, name, fn))
        setattr(holder, name, timed)
    try:
        yield spent
    finally:
        for holder, name, fn in saved:
            setattr(holder, name, fn)


def plot_scaling(path: Path, sizes: list[int], series: dict[str, list[float]]) -> None:
    """Cost per report against the number of terminals (log x): flat is the target."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, ys in series.items():
        ax.plot(sizes, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("terminals known to the SCS")
    ax.set_ylabel("µs per report (p50)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")


# --- load generator ----------------------------------------------------------------------
# The load shares the 2 cores with the controller, so it must cost little: raw keep-alive
# sockets, one epoll loop per process, and request bytes built around a pre-encoded body.
# Every request is still a real report: a fresh sequence number and timestamp, signed with
# the terminal's key (HMAC-SHA256 over the canonical envelope, as the agent signs it).

REQUEST_HEAD = (b"POST " + crsap.HTTP_PATH.encode() + b" HTTP/1.1\r\nHost: crs\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n")


class Signer:
    """One terminal's clean SCIReport with only sequence number, timestamp and MAC left to
    fill in: `message(seq, ts)` is byte for byte `report(t, seq, ts)` (a unit test holds
    them equal), at a fraction of its cost."""

    def __init__(self, t: BenchTerminal):
        body = crsap.canonical({"ms_id": t.tid, "sci": sci_from_posture(CLEAN)})
        self.head = b'{"body":' + body + b',"crsap":"' + crsap.VERSION.encode() + b'"'
        self.tail = ',"sender":"' + t.tid + '","seq":%d,"ts":%s,"type":"SCIReport"}'
        self.key = t.key

    def message(self, seq: int, ts: float) -> bytes:
        tail = (self.tail % (seq, repr(ts))).encode()
        mac = hmac.digest(self.key, self.head + tail, "sha256").hex().encode()
        return self.head + b',"mac":"' + mac + b'"' + tail


def parse_response(buf: bytes | bytearray) -> tuple[int, int, int] | None:
    """(status, where the body starts, where the response ends) once `buf` holds a
    complete response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    i = head.find(b"content-length:")
    n = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
    return (int(head[9:12]), end + 4, end + 4 + n) if len(buf) >= end + 4 + n else None


def _worker(port: int, terms: list[BenchTerminal], connections: int, start_at: float,
            warmup_s: float, duration_s: float, out: Any) -> None:
    """One client process: `connections` keep-alive connections, each with one report
    outstanding at a time (an agent waits for its answer), driven by one epoll loop.
    Latencies of requests sent in the measured window; this process's CPU time."""
    import selectors
    import socket
    signers = [Signer(t) for t in terms]
    sel = selectors.DefaultSelector()
    conns: list[dict[str, Any]] = []
    for k in range(connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = {"sock": s, "mine": signers[k::connections], "i": 0, "buf": bytearray(),
             "t1": 0.0, "measured": False}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    seqs: dict[int, int] = {}
    lat: list[float] = []
    statuses: Counter[str] = Counter()
    begin, end = start_at + warmup_s, start_at + warmup_s + duration_s
    verified = answered = 0

    def send(c: dict[str, Any]) -> None:
        signer = c["mine"][c["i"] % len(c["mine"])]
        c["i"] += 1
        now = time.time()
        seqs[id(signer)] = seq = crsap.next_seq(seqs.get(id(signer)), now)
        msg = signer.message(seq, now)
        c["signer"], c["measured"] = signer, now >= begin
        c["t1"] = time.perf_counter()
        c["sock"].sendall(REQUEST_HEAD % len(msg) + msg)   # small: fits the send buffer

    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    for c in conns:
        send(c)
    live = len(conns)
    while live:
        for key, _ in sel.select(timeout=5):
            c = key.data
            try:
                chunk = c["sock"].recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError("the controller closed a connection")
            c["buf"] += chunk
            got = parse_response(c["buf"])
            if got is None:
                continue
            status, body_at, size = got
            answered += 1
            if c["measured"]:
                lat.append((time.perf_counter() - c["t1"]) * 1e3)
                statuses[str(status)] += 1
                if status == 200 and verified < 3:  # a few answers checked in full
                    answer = crsap.decode(bytes(c["buf"][body_at:size]))
                    crsap.verify(answer, c["signer"].key, crsap.ReplayState(), time.time())
                    verified += 1
            del c["buf"][:size]
            if time.time() >= end:
                sel.unregister(c["sock"])
                c["sock"].close()
                live -= 1
            else:
                send(c)
    out.put({"lat_ms": lat, "statuses": dict(statuses), "verified": verified,
             "cpu_s": time.process_time() - cpu0, "answered": answered})


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used (from /proc)."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, terms: list[BenchTerminal], clients: int, connections: int,
         warmup_s: float, duration_s: float) -> dict[str, Any]:
    """`clients` processes with `connections` connections in all share the terminals
    (disjoint slices: per-sender sequence numbers stay increasing); returns accepted
    reports per second, latencies and the load generator's CPU per report."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 1.0
    per = [connections // clients + (k < connections % clients) for k in range(clients)]
    procs = [ctx.Process(target=_worker, args=(port, terms[k::clients], per[k], start_at,
                                               warmup_s, duration_s, q), daemon=True)
             for k in range(clients)]
    for p in procs:
        p.start()
    results = [q.get(timeout=warmup_s + duration_s + 120) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    lat = [x for r in results for x in r["lat_ms"]]
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
    return {"lat_ms": lat, "statuses": dict(statuses),
            "accepted_per_s": statuses.get("200", 0) / duration_s,
            "answers_verified": sum(r["verified"] for r in results),
            # the generator's own CPU (time.process_time, warm-up included) per answer
            "client_cpu_us_per_report": sum(r["cpu_s"] for r in results) * 1e6
            / max(1, sum(r["answered"] for r in results))}


# --- the benchmark ------------------------------------------------------------------------

def run(out_dir: str = "results/bench", terminals: int = 10_000, groups: int = 10,
        clients: int = 1, connections: int = 32, light_connections: int = 4,
        warmup_s: float = 3.0,
        duration_s: float = 20.0,
        scs_reports: int = 2000, scs_max_s: float = 20.0, core_reports: int = 512,
        core_max_s: float = 20.0, core_group: int = 32,
        scaling: tuple[int, ...] = (100, 1000, 10_000, 100_000),
        keep_dir: str | None = None, profile: bool = False) -> dict[str, Any]:
    """Prepare the populations, measure the three ways, write reports.json (and the PNG of
    cost against terminals; with `profile`, the pure core's cProfile as reports.prof)."""
    if min(terminals, groups, clients, scs_reports, core_reports, core_group) < 1 \
            or connections < clients or light_connections < 1 \
            or duration_s <= 0 or any(n < 1 for n in scaling):
        raise ValueError("terminals, groups, clients, report counts, group and scaling "
                         "sizes must be >= 1, connections >= clients and duration_s > 0")
    import cProfile

    from controller.bench import common
    from controller.bench.reaction import write_configs
    from controller.crs.policy import load_policy
    from controller.emulation.processes import ControllerProcess

    tmp = tempfile.TemporaryDirectory(prefix="crs-reports-") if keep_dir is None else None
    run_dir = Path(keep_dir or tmp.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    sizes = sorted({*scaling, terminals})
    try:
        cfg = write_configs(run_dir, TOPOLOGY)
        policy = load_policy(run_dir / "crs_policy.yaml")
        everyone = population(max(sizes), groups)
        t1 = time.perf_counter()
        base_db = run_dir / "population.db"
        populate_store(base_db, everyone[:terminals], policy, time.time())
        prepare_s = time.perf_counter() - t1
        print(f"prepared {terminals} terminals in {prepare_s:.1f} s", flush=True)

        scs: dict[str, Any] = {}
        core_by: dict[str, Any] = {}
        prof = cProfile.Profile()
        stages: dict[str, float] = {}
        for n in sizes:
            sub = everyone[:n]
            steady = time_scs(sub, policy, scs_reports, scs_max_s, flip=False)
            flips = time_scs(sub, policy, max(1, scs_reports // 4), scs_max_s / 2, flip=True)
            scs[str(n)] = {"steady_us": common.summary(steady["us"]),
                           "flip_us": common.summary(flips["us"]),
                           "replies": steady["replies"] + flips["replies"]}
            db = run_dir / f"core-{n}" / "crs.db"
            db.parent.mkdir(parents=True, exist_ok=True)
            if n == terminals:
                shutil.copy(base_db, db)
            else:
                populate_store(db, sub, policy, time.time())
            one = time_core(db, cfg, sub, core_reports, core_max_s, group=1)
            grouped = time_core(db, cfg, sub, core_reports, core_max_s, group=core_group)
            core_by[str(n)] = {"group_1_us": common.summary(one["us"]),
                               f"group_{core_group}_us": common.summary(grouped["us"]),
                               "group_1_cpu_us": common.summary(one["cpu_us"]),
                               f"group_{core_group}_cpu_us": common.summary(grouped["cpu_us"]),
                               "statuses": one["statuses"],
                               "grouped_statuses": grouped["statuses"]}
            if n == terminals:      # the breakdown: separate passes, timed by stage, in
                # groups (the controller's way) and alone; with `profile`, a cProfile too
                for g in (core_group, 1):
                    stages[f"group_{g}"] = {}
                    time_core(db, cfg, sub, core_reports, core_max_s, group=g, seed=4,
                              stages=stages[f"group_{g}"])
                if profile:
                    time_core(db, cfg, sub, core_reports, core_max_s, group=1, seed=5,
                              profile=prof)
                # alone, as a lone report meets a controller idle since the last one
                idle = time_core(db, cfg, sub, min(core_reports, IDLE_REPORTS), core_max_s,
                                 group=1, seed=6, gap_s=IDLE_GAP_S)
                core_by[str(n)]["group_1_after_idle_us"] = common.summary(idle["us"])
                core_by[str(n)]["group_1_after_idle_cpu_us"] = common.summary(idle["cpu_us"])
            print(f"{n} terminals: pure SCS steady p50 "
                  f"{scs[str(n)]['steady_us']['p50']:.0f} us; pure core p50 "
                  f"{core_by[str(n)]['group_1_us']['p50']:.0f} us alone, "
                  f"{core_by[str(n)][f'group_{core_group}_us']['p50']:.0f} us in groups "
                  f"of {core_group}", flush=True)
        if profile:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            prof.dump_stats(str(Path(out_dir) / "reports.prof"))

        ctl_dir = run_dir / "controller"
        ctl_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(base_db, ctl_dir / "crs.db")
        terms = everyone[:terminals]
        with ControllerProcess(ctl_dir, ["--config", str(cfg), "--rest-host", "127.0.0.1"]) \
                as ctl:
            restored = sum(1 for r in ctl.get("/crs/v1/terminals") if r.get("level"))
            before, cpu0 = ctl.status()["counters"], _cpu_s(ctl.proc.pid)
            e2e = load(ctl.rest_port, terms, clients, connections, warmup_s, duration_s)
            cpu1 = _cpu_s(ctl.proc.pid)
            counters = ctl.status()["counters"]
            # the floor: the controller's CPU per report handled (warm-up included), and
            # where it goes (the controller's own CPU-time counters, same window)
            handled = max(1, counters.get("crs_msg_SCIReport", 0)
                          - before.get("crs_msg_SCIReport", 0))
            e2e["controller_cpu_us_per_report"] = (cpu1 - cpu0) * 1e6 / handled
            e2e["controller_cpu_breakdown_us"] = controller_breakdown(
                before, counters, handled, e2e["controller_cpu_us_per_report"])
            # latency below saturation: fewer reports in flight (a closed loop's latency
            # at saturation is its connections over its rate)
            light = load(ctl.rest_port, terms, 1, light_connections, 1.0,
                         max(1.0, duration_s / 4))
    finally:
        if tmp is not None:
            tmp.cleanup()
    big = scs[str(terminals)]
    core = core_by[str(terminals)]
    result = {
        "parameters": {"terminals": terminals, "groups": groups, "clients": clients,
                       "connections": connections,
                       "warmup_s": warmup_s, "duration_s": duration_s,
                       "scs_reports": scs_reports, "core_reports": core_reports,
                       "core_group": core_group, "sizes": sizes,
                       "report": "clean SCIReport (COMPLIANT, no decision change)",
                       "transport": "HTTP/1.1 keep-alive on 127.0.0.1, one report "
                                    "outstanding per connection (raw sockets, epoll)"},
        "prepare_s": prepare_s,
        "terminals_restored": restored,
        "end_to_end": {"accepted_per_s": e2e["accepted_per_s"],
                       "latency_ms": common.summary(e2e["lat_ms"]),
                       "statuses": e2e["statuses"],
                       "controller_cpu_us_per_report": e2e["controller_cpu_us_per_report"],
                       "client_cpu_us_per_report": e2e["client_cpu_us_per_report"],
                       "controller_cpu_breakdown_us": e2e["controller_cpu_breakdown_us"],
                       "answers_verified": e2e["answers_verified"],
                       "light_load": {"connections": light_connections,
                                      "accepted_per_s": light["accepted_per_s"],
                                      "latency_ms": common.summary(light["lat_ms"]),
                                      "statuses": light["statuses"]},
                       "messages_per_commit": counters.get("crs_msg_SCIReport", 0)
                       / max(1, counters.get("crsap_group_commits", 0)),
                       "controller_counters": {k: v for k, v in counters.items()
                                               if k.startswith(("crs_", "crsap_"))}},
        "core_in_process": {"us": core["group_1_us"], "statuses": core["statuses"],
                            "after_idle_us": core["group_1_after_idle_us"],
                            "after_idle_cpu_us": core["group_1_after_idle_cpu_us"],
                            "idle_gap_s": IDLE_GAP_S,
                            f"group_{core_group}_us": core[f"group_{core_group}_us"],
                            "reports_per_s": (1e6 / core["group_1_us"]["p50"])
                            if core["group_1_us"]["p50"] else None},
        "core_breakdown_us": stages,
        "core_by_terminals": core_by,
        "scs_in_process": {"steady_us": big["steady_us"], "flip_us": big["flip_us"],
                           "reports_per_s": (1e6 / big["steady_us"]["p50"])
                           if big["steady_us"]["p50"] else None},
        "scs_by_terminals": scs,
    }
    path = common.write(out_dir, "reports", result)
    plot_scaling(Path(out_dir) / "reports_scaling.png", sizes, {
        "pure SCS, steady": [scs[str(n)]["steady_us"]["p50"] for n in sizes],
        "pure SCS, flip": [scs[str(n)]["flip_us"]["p50"] for n in sizes],
        "pure core, alone": [core_by[str(n)]["group_1_us"]["p50"] for n in sizes],
        f"pure core, groups of {core_group}":
            [core_by[str(n)][f"group_{core_group}_us"]["p50"] for n in sizes]})
    lat = result["end_to_end"]["latency_ms"]
    rows = [["end to end (HTTP, controller)", "reports/s", e2e["accepted_per_s"], None, None,
             None],
            ["", f"latency ms ({connections} in flight)", None, lat["p50"], lat["p99"],
             lat["n"]],
            ["", f"reports/s, latency ms ({light_connections} in flight)",
             light["accepted_per_s"], common.percentile(light["lat_ms"], 50),
             common.percentile(light["lat_ms"], 99), len(light["lat_ms"])],
            ["", "messages per commit", result["end_to_end"]["messages_per_commit"], None,
             None, None],
            ["", "controller CPU us/report", e2e["controller_cpu_us_per_report"], None, None,
             None],
            ["", "load generator CPU us/report", e2e["client_cpu_us_per_report"], None, None,
             None]]
    for n in sizes:
        for kind in ("group_1_us", f"group_{core_group}_us"):
            c = core_by[str(n)][kind]
            rows.append([f"pure core, {n} terminals", kind.replace("_us", "") + " us/report",
                         None, c["p50"], c["p99"], c["n"]])
    c = core["group_1_after_idle_us"]
    rows.append([f"pure core, {terminals} terminals",
                 f"alone, {IDLE_GAP_S * 1e3:.0f} ms after the last us/report", None, c["p50"],
                 c["p99"], c["n"]])
    for n in sizes:
        for kind in ("steady_us", "flip_us"):
            c = scs[str(n)][kind]
            rows.append([f"pure SCS.handle, {n} terminals", kind.replace("_us", "") + " us",
                         None, c["p50"], c["p99"], c["n"]])
    print(common.table(rows, ["measurement", "unit", "rate", "p50", "p99", "n"]))
    print(common.table([[k, v] for k, v in e2e["controller_cpu_breakdown_us"].items()],
                       ["controller, end to end", "CPU us/report"]))
    print(common.table([[k, stages[f"group_{core_group}"][k], stages["group_1"][k]]
                        for k in stages["group_1"]],
                       [f"pure core, {terminals} terminals", f"us/report, groups of {core_group}",
                        "alone"]))
    print(f"written: {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="crs bench reports", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--terminals", type=int, default=10_000)
    ap.add_argument("--duration-s", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--keep-dir")
    ap.add_argument("--profile", action="store_true",
                    help="write the pure core's cProfile next to the JSON")
    a = ap.parse_args(argv)
    run(a.out, terminals=a.terminals, duration_s=a.duration_s, clients=a.clients,
        connections=a.connections, keep_dir=a.keep_dir, profile=a.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
