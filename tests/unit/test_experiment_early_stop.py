"""The runner ends a run early ("contained") only when no infected terminal can infect any
more: every one decided silent (isolated, or scope none) at an edge that enforces. A
terminal confined to its group, metered, or decided in a cell that does not enforce keeps
the run going (it still infects), which is what cell_seal, the rate limit and partial
deployment measure."""
from __future__ import annotations

from pathlib import Path

from controller.crs.decision import Decision, Level
from controller.experiment import runner
from controller.experiment import scenario as scn

ROOT = Path(__file__).resolve().parents[2]


def entry(name: str, d: Decision | None) -> dict:
    return {"id": name, "decision": d.summary() if d else None}


ISOLATED = Decision(Level.INFECTED, ("isolate",), isolate=True)
SCOPE_NONE = Decision(Level.INFECTED, ("permit",), scope="none")
CONFINED = Decision(Level.INFECTED, ("permit",), scope="group", group_sealed=True)
METERED = Decision(Level.INFECTED, ("rate_limit",), meter_pps=1)
PERMITTED = Decision(Level.UNKNOWN)


def test_only_a_terminal_cut_off_from_all_others_is_silenced():
    assert runner.silenced(entry("a", ISOLATED))
    assert runner.silenced(entry("a", SCOPE_NONE))
    for d in (CONFINED, METERED, PERMITTED, None):
        assert not runner.silenced(entry("a", d))
    assert not runner.silenced({"id": "a", "decision": "isolate"})   # not a decision


class FakeController:
    def __init__(self, entries):
        self.entries = entries

    def get(self, path):
        assert path == "/crs/v1/terminals"
        return self.entries


def scope_sweep_spec(coverage: float) -> tuple[scn.Scenario, scn.RunSpec, list]:
    sc = scn.load_scenario(ROOT / "scenarios" / "scope_sweep.yaml")
    spec = next(s for s in scn.expand(sc) if s.defence == "crs_isolate"
                and s.params.get("coverage_fraction") == coverage)
    return sc, spec, scn.plan_hosts(sc, spec.seed)


def test_partial_deployment_enforces_in_the_first_cells_only():
    metro = ROOT / "topologies" / "metro.yaml"
    sc, spec, plan = scope_sweep_spec(0.5)
    hosts = runner.enforcing_hosts(metro, sc, spec, plan)
    assert {h.cell for h in plan if h.name in hosts} == {1, 2, 3}     # round(0.5 x 6)
    sc, spec, plan = scope_sweep_spec(1.0)
    assert runner.enforcing_hosts(metro, sc, spec, plan) == {h.name for h in plan}


def test_early_stop_needs_every_infected_terminal_silenced_where_it_is_enforced():
    prog = runner.Progress()
    prog.feed([{"host": "c1t1", "event": "infected", "t": 0.0},
               {"host": "c2t3", "event": "infected", "t": 1.0}])
    everyone = {"c1t1", "c2t3", "c5t1"}
    ctl = FakeController([entry("c1t1", ISOLATED), entry("c2t3", ISOLATED)])
    assert runner._all_silenced(ctl, prog, everyone)
    # the second confined to its group (cell_seal), or metered: it still infects
    for d in (CONFINED, METERED):
        ctl = FakeController([entry("c1t1", ISOLATED), entry("c2t3", d)])
        assert not runner._all_silenced(ctl, prog, everyone)
    # decided isolated, but its cell does not enforce (partial deployment)
    ctl = FakeController([entry("c1t1", ISOLATED), entry("c2t3", ISOLATED)])
    assert not runner._all_silenced(ctl, prog, {"c1t1"})
    # the controller does not answer: no early stop
    assert not runner._all_silenced(FakeController(None), prog, everyone)
