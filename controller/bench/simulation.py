"""Simulation benchmark (results/bench/simulation.json): what one simulated run costs.

- engine: the same undefended uniform outbreak with a scheduled report per infected host
  (V = 50,000, reports doing nothing), driven by our heap loop (`outbreak.run`) and by SimPy
  (a hit process racing `env.timeout`s, interrupted when a report is due), same random
  draws; SimPy is measured only when it is importable (it is not a dependency);
- one undefended run at Code-Red size (V = 360,000, Omega = 2^32, s = 10/s, 24 h);
- the SCS decision path per infected host: `CrsReactor.infected` (MS connect) plus
  `CrsReactor.report` (the agent's SCI), over 20,000 hosts, as the simulation runs it (one
  report in SIGNED_EVERY signed and through `SCS.handle`, the others at `SCS.accept`) and
  with every report signed (`--signed`);
- one run at Code-Red size in which every host reports (8 kbit/s rate limit, R = 10 min:
  the meter slows the worm, never stops it): CPU per infected host, engine included.
"""
from __future__ import annotations

import random
import sys
import time
from typing import Any

from controller.bench import common
from controller.experiment import outbreak, reactors

V_ENGINE = 50_000
OMEGA_ENGINE = round(10 * V_ENGINE * 2 ** 32 / (10 * 360_000))


class _Silent(reactors.NoDefence):
    """Reports scheduled R after each infection that change nothing: queue cost only."""

    reaction_s = 600.0


def heap_engine(seed: int) -> int:
    pop = outbreak.Population(V_ENGINE, OMEGA_ENGINE)
    return len(outbreak.run(pop, outbreak.Worm(10.0), _Silent(10.0), 86_400.0,
                            random.Random(seed)).infection_times)


def simpy_engine(seed: int) -> int:
    """The same process in SimPy: reports are timeouts, the next hit a timeout that a due
    report interrupts (then redrawn: memoryless)."""
    import simpy
    rng = random.Random(seed)
    env = simpy.Environment()
    sus = list(range(V_ENGINE))
    state = {"infected": 0, "hitter": None}
    rate = 10.0 / OMEGA_ENGINE

    def report(env: Any) -> Any:
        yield env.timeout(_Silent.reaction_s)
        if state["hitter"] is not None and state["hitter"].is_alive:
            state["hitter"].interrupt()

    def infect(i: int) -> None:            # the susceptible at position i (swap-remove)
        sus[i] = sus[-1]
        sus.pop()
        state["infected"] += 1
        env.process(report(env))

    def hitter(env: Any) -> Any:
        while sus:
            lam = rate * state["infected"] * len(sus)
            try:
                yield env.timeout(rng.expovariate(lam))
            except simpy.Interrupt:
                continue
            infect(rng.randrange(len(sus)))

    infect(rng.randrange(len(sus)))
    state["hitter"] = env.process(hitter(env))
    env.run(until=86_400.0)
    return state["infected"]


def _time(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def scs_path(n: int = 20_000, signed_every: int = reactors.SIGNED_EVERY) -> dict[str, float]:
    pop = outbreak.Population(n, 2 ** 32, 100, 65536)
    r = reactors.CrsReactor("crs_isolate", {}, pop, 10.0, 600.0, signed_every)
    t_conn, _ = _time(lambda: [r.infected(h, 1.0) for h in range(n)])
    t_rep, _ = _time(lambda: [r.report(h, 601.0) for h in range(n)])
    return {"connect_us": 1e6 * t_conn / n, "report_us": 1e6 * t_rep / n,
            "per_infected_host_us": 1e6 * (t_conn + t_rep) / n, "signed_every": signed_every}


def reporting_run(seed: int = 1) -> dict[str, float]:
    """One Code-Red-sized run in which every infected host reports (crs_rate_limit 8 kbit/s,
    R = 10 min), engine and SCS together: CPU seconds and microseconds per infected host."""
    from controller.experiment.simulate import without_gc
    pop = outbreak.Population(360_000, 2 ** 32, 100, 65536)
    t0 = time.process_time()
    with without_gc():                      # as `crs experiment simulate` runs it
        r = reactors.CrsReactor("crs_rate_limit", {"rate_kbps": 8}, pop, 10.0, 600.0)
        ob = outbreak.run(pop, outbreak.Worm(10.0), r, 86_400.0, random.Random(seed))
    cpu = time.process_time() - t0
    n = len(ob.infection_times)
    return {"cpu_s": cpu, "infected": n, "reports": r.reports,
            "per_infected_host_us": 1e6 * cpu / n}


def run(out_dir: str = "results/bench", repeat: int = 3) -> dict[str, Any]:
    res: dict[str, Any] = {"parameters": {"engine_vulnerable": V_ENGINE,
                                          "engine_omega": OMEGA_ENGINE, "repeat": repeat}}
    heap_s = [_time(heap_engine, s)[0] for s in range(repeat)]
    res["engine_heap_s"] = common.summary(heap_s)
    try:
        import simpy  # noqa: F401
        simpy_s = [_time(simpy_engine, s)[0] for s in range(repeat)]
        res["engine_simpy_s"] = common.summary(simpy_s)
        res["simpy_over_heap"] = min(simpy_s) / min(heap_s)
    except ImportError:
        res["engine_simpy_s"] = None
    pop = outbreak.Population(360_000, 2 ** 32, 100, 65536)
    t_full, ob = _time(lambda: outbreak.run(pop, outbreak.Worm(10.0), reactors.NoDefence(10.0),
                                            86_400.0, random.Random(1)))
    res["undefended_full_scale_run_s"] = t_full
    res["undefended_full_scale_infected"] = len(ob.infection_times)
    res["scs_path"] = scs_path()
    res["scs_path_signed"] = scs_path(signed_every=1)
    res["reporting_full_scale_run"] = reporting_run()
    path = common.write(out_dir, "simulation", res)
    rows = [["heap engine, V=50,000 (s)", res["engine_heap_s"]["median"]],
            ["SimPy engine, same (s)", (res["engine_simpy_s"] or {}).get("median")],
            ["undefended run, V=360,000, 24 h (s)", t_full],
            ["SCS connect per host (us)", res["scs_path"]["connect_us"]],
            ["SCS report per host (us)", res["scs_path"]["report_us"]],
            ["SCS report per host, all signed (us)", res["scs_path_signed"]["report_us"]],
            ["run where all report, V=360,000: CPU (s)", res["reporting_full_scale_run"]["cpu_s"]],
            ["  the same per infected host (us)",
             res["reporting_full_scale_run"]["per_infected_host_us"]]]
    print(common.table(rows, ["measurement", "value"]))
    print(f"written: {path}")
    return res


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="crs bench simulation",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    run(a.out, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
