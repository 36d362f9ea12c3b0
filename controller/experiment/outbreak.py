"""A scanning worm at Internet scale as a discrete-event simulation (issue 14, item 3).

Only the events that change something are simulated: hits on susceptible hosts and
scheduled reactions. Probes that miss (almost all of Omega = 2^32) are never drawn one by
one: with I infected hosts the hits form a Poisson process whose rate is the sum over
scanners of rate x susceptible / addresses, so the time to the next hit is one exponential
draw, redrawn whenever a scheduled event (a host's report reaching the SCS) changes the
rates first (memorylessness makes that exact). The scheduled events (reports, each a fixed
reaction time after its infection) come due in the order they were made: a FIFO queue holds them
(docs/experiments.md, "Simulation": measured against SimPy).

Scanning (Staniford et al. 2002; Code Red II style local preference): each probe goes with
probability p into the scanner's own cell (Omega_c addresses) and otherwise uniformly into
Omega. A host's control says how fast it scans and where its probes may go:
scope "all", "group" (only its group's hosts are reachable: a sealed scope; a group is
`group_cells` consecutive cells, as the emulated cell_seal groups them) or "none"
(isolated). Rates per cell are kept as sums, so one event costs O(log cells) (and a
confined scanner's group of cells).

What decides a host's control is not here: a `Reactor` (no defence, the throttle, or the
project's own SCS in controller.experiment.simcrs) answers at each infection and at each
scheduled report. Pure: the caller passes the random generator.
"""
from __future__ import annotations

import functools
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from controller.experiment.model import Outbreak


@dataclass(frozen=True)
class Population:
    """V vulnerable hosts in Omega addresses, spread evenly over `cells` (host h lives in
    cell h * cells // V); each cell spans `cell_space` addresses (local scanning)."""

    vulnerable: int
    omega: int
    cells: int = 1
    cell_space: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.vulnerable <= self.omega:
            raise ValueError(f"need 1 <= vulnerable ({self.vulnerable}) <= omega ({self.omega})")
        if not 1 <= self.cells <= self.vulnerable:
            raise ValueError(f"need 1 <= cells ({self.cells}) <= vulnerable")
        per_cell = -(-self.vulnerable // self.cells)
        if not per_cell <= self.omega_cell <= self.omega:
            raise ValueError(f"cell_space {self.omega_cell} must hold a cell's {per_cell} "
                             f"hosts and fit in omega {self.omega}")

    @property
    def omega_cell(self) -> int:
        return self.cell_space or self.omega // self.cells

    def cell_of(self, host: int) -> int:
        return host * self.cells // self.vulnerable


@dataclass(frozen=True)
class Control:
    """What holds for one infected host: probes/s it sends and where they may go
    (scope "all", "group": its own group of cells only, "none": nowhere)."""

    rate: float
    scope: str = "all"


class Reactor(Protocol):
    """Decides controls: at infection (what already holds for the host) and when its
    report arrives, `reaction_s` after its infection (None: it never reports)."""

    reaction_s: float | None

    def infected(self, host: int, t: float) -> Control: ...

    def report(self, host: int, t: float) -> dict[int, Control]: ...


@dataclass(frozen=True)
class Worm:
    scan_rate: float
    local_preference: float = 0.0
    seeds: int = 1


class Fenwick:
    """Prefix sums over cells with O(log n) update and sampling by cumulative weight."""

    def __init__(self, n: int):
        self.n = n
        self.tree = [0.0] * (n + 1)
        self.top = 1 << max(0, n.bit_length() - 1)

    def add(self, i: int, delta: float) -> None:
        i += 1
        tree, n = self.tree, self.n
        while i <= n:
            tree[i] += delta
            i += i & -i

    def find(self, u: float) -> int:
        """Smallest index whose prefix sum exceeds u (clamped to n - 1)."""
        pos, step, tree = 0, self.top, self.tree
        while step:
            nxt = pos + step
            if nxt <= self.n and tree[nxt] <= u:
                pos = nxt
                u -= tree[nxt]
            step >>= 1
        return min(pos, self.n - 1)


@functools.lru_cache(maxsize=4)
def layout(pop: Population) -> tuple[list[int], list[int], list[list[int]], list[int]]:
    """Each host's cell, the hosts, each cell's hosts and each host's position in its
    cell: the same for every run of a population, so built once per process (0.1 s at
    V = 360,000, most of a contained run) and copied (10 ms) where a run changes them."""
    cell = [h * pop.cells // pop.vulnerable for h in range(pop.vulnerable)]
    pools: list[list[int]] = [[] for _ in range(pop.cells)]
    cpos = [0] * pop.vulnerable
    for h, c in enumerate(cell):
        cpos[h] = len(pools[c])
        pools[c].append(h)
    return cell, list(range(pop.vulnerable)), pools, cpos


def run(pop: Population, worm: Worm, reactor: Reactor, duration_s: float,
        rng: random.Random, group_cells: int = 1) -> Outbreak:
    """One outbreak from `worm.seeds` random hosts until `duration_s`, all hosts infected,
    or nothing can infect any more (reports only ever restrict, so the end is decided).
    The Outbreak's `duration_s` is when it ended: < `duration_s` means it was over.
    A scope-"group" scanner in cell c reaches the cells c // group_cells x group_cells
    onwards, `group_cells` of them: its local probes its own cell, its uniform probes the
    addresses of its group's cells (the rest are dropped)."""
    V, C, p = pop.vulnerable, pop.cells, worm.local_preference
    inv_omega, inv_cell = 1.0 / pop.omega, 1.0 / pop.omega_cell
    cell, hosts, csus_0, cpos_0 = layout(pop)   # shared, read-only
    sus = hosts.copy()                       # susceptible hosts, swap-remove by position
    pos = hosts.copy()
    csus = [pool.copy() for pool in csus_0]  # per cell, swap-remove by position in cell
    cpos = cpos_0.copy()
    ctl: dict[int, Control] = {}
    a_all = [0.0] * C                        # probes/s of scope-"all" scanners per cell
    a_grp = [0.0] * C                        # probes/s of scope-"group" scanners per cell
    g_grp = [0.0] * C                        # the same summed per group (at its first cell)
    G = max(1, group_cells)
    a_tot = 0.0
    w = [0.0] * C                            # cell-targeted hit rate per cell
    fen = Fenwick(C)
    w_sum = 0.0
    w_live = 0                               # cells with w > 0 (none: w_sum is exactly 0)
    local_w = p * inv_cell                   # hit rate per (probe/s, susceptible) in-cell
    uniform_w = (1 - p) * inv_omega          # a group scanner's, on each of its group's cells
    times: list[float] = []
    # reports due, in order: infections come in time order and every report follows its
    # infection by the same reaction time, so the earliest is always at the left
    due: deque[tuple[float, int]] = deque()

    def reweigh(c: int) -> None:
        nonlocal w_sum, w_live
        new = len(csus[c]) * ((a_all[c] + a_grp[c]) * local_w + g_grp[c - c % G] * uniform_w)
        if new < 1e-15:
            new = 0.0                        # a rate sum back at 0 up to float residue
        old = w[c]
        if new != old:
            w[c] = new
            fen.add(c, new - old)
            w_live += (new > 0) - (old > 0)
            w_sum = w_sum + new - old if w_live else 0.0

    def set_control(h: int, new: Control) -> None:
        nonlocal a_tot
        c = cell[h]
        g = c - c % G
        old = ctl.get(h)
        grouped = new.scope == "group"
        if old is not None:
            if old.scope == "all":
                a_all[c] -= old.rate
                a_tot -= old.rate
            elif old.scope == "group":
                a_grp[c] -= old.rate
                g_grp[g] -= old.rate
                grouped = True
        ctl[h] = new
        # a sum back at zero must be exactly zero, or the end of an outbreak is missed
        if a_tot <= 1e-9:
            a_tot = 0.0
        if a_all[c] <= 1e-9:
            a_all[c] = 0.0
        if a_grp[c] <= 1e-9:
            a_grp[c] = 0.0
        if g_grp[g] <= 1e-9:
            g_grp[g] = 0.0
        if new.scope == "all":
            a_all[c] += new.rate
            a_tot += new.rate
        elif new.scope == "group":
            a_grp[c] += new.rate
            g_grp[g] += new.rate
        for gc in range(g, min(g + G, C)) if grouped else (c,):
            reweigh(gc)                      # a group scanner: its group's every cell

    def infect(h: int, t: float) -> None:
        last = sus.pop()                     # swap-remove h from both pools
        if last != h:
            sus[pos[h]] = last
            pos[last] = pos[h]
        pool = csus[cell[h]]
        last = pool.pop()
        if last != h:
            pool[cpos[h]] = last
            cpos[last] = cpos[h]
        times.append(t)
        set_control(h, reactor.infected(h, t))
        if reactor.reaction_s is not None:
            due.append((t + reactor.reaction_s, h))

    for h in rng.sample(range(V), worm.seeds):
        infect(h, 0.0)
    t = 0.0
    expo, rand, randrange = rng.expovariate, rng.random, rng.randrange
    while sus:
        lam_u = (1 - p) * a_tot * len(sus) * inv_omega
        lam = lam_u + max(w_sum, 0.0)
        if lam == 0:
            break                            # nobody can infect: decided (reports restrict)
        horizon = due[0][0] if due else math.inf
        dt = expo(lam)
        if t + dt >= min(horizon, duration_s):
            if horizon > duration_s:
                t = duration_s               # still spreading at the end
                break
            t, h = due.popleft()
            for host, new in reactor.report(h, t).items():
                if host in ctl:
                    set_control(host, new)
            continue
        t += dt
        u = rand() * lam
        if u < lam_u:
            victim = sus[randrange(len(sus))]
        else:
            pool = csus[fen.find(u - lam_u)]
            if not pool:                     # float residue pointed at an empty cell
                continue
            victim = pool[randrange(len(pool))]
        infect(victim, t)
    return Outbreak(tuple(times), V, min(t, duration_s))
