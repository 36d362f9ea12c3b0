"""Partial deployment (`crs.enforce`): every terminal is evaluated, only the listed cells'
edges restrict; checked on a simulated switch."""
import pytest
from corekit import C1, C2, CLEAN, INFECTED, T0, TOPO, authenticate, ip_pkt, report, settings

from controller import topology
from controller.core import Core
from controller.crs import messages as crsap
from controller.openflow.flowsim import FlowSim
from controller.settings import validate

PEER = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)


def boot(tmp_path, enforce):
    s = settings(tmp_path, crs=True)
    s.crs_enforce = enforce
    core = Core(s, topology.load(TOPO), now=T0)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, {1, 2, 3, 4}, T0))
    return core, sim


@pytest.mark.parametrize("enforce, isolated", [(None, True), (["cell1"], True), (["s1"], True),
                                               ([], False)])
def test_an_infected_terminal_is_restricted_only_where_enforcement_is_deployed(
        tmp_path, enforce, isolated):
    core, sim = boot(tmp_path, enforce)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    for seq, posture in ((1, CLEAN), (2, INFECTED)):
        status, body, out = core.crsap_message(report(keys, ident, seq, T0 + seq, posture),
                                               T0 + seq)
        sim.apply(m for _, m in out)
    assert crsap.decode(body).body["level"] == "INFECTED"          # evaluated everywhere
    assert sim.process(PEER, 2).dropped == isolated
    row = core.api.row(ident, T0 + 3)
    assert row["level"] == "INFECTED" and row["enforced"] is isolated
    assert (core.counters["crs_decision_not_enforced"] > 0) is not isolated
    # a reconnect rebuilds what is deployed, no more
    sim2 = FlowSim()
    sim2.apply(m for _, m in core.switch_up(1, {1, 2, 3, 4}, T0 + 4))
    sim2.apply(m for _, m in core.port_status(1, 2, True, T0 + 4))
    assert any(f.table_id == 1 and f.cookie & 0xFFFFFF for f in sim2.flows) == isolated


def test_enforce_names_must_be_cells_or_switches(tmp_path):
    from controller.config import ConfigError
    s = settings(tmp_path, crs=True)
    s.crs_enforce = ["cell1", "cell9"]
    with pytest.raises(ConfigError, match="cell9"):
        validate(s)


def test_an_empty_list_is_refused_and_an_operator_restriction_without_enforcement_is_409(
        tmp_path):
    from controller.config import ConfigError
    from controller.core import ApiError
    s = settings(tmp_path, crs=True)
    s.crs_enforce = []
    with pytest.raises(ConfigError, match="empty list"):
        validate(s)
    core, sim = boot(tmp_path, [])          # (the core alone: nothing enforced)
    authenticate(core, sim, 2, C1, "c1t1")
    core.crsap_message(report(authenticate(core, sim, 2, C1, "c1t1")[1], "c1t1@crs.example",
                              1, T0 + 1, CLEAN), T0 + 1)
    with pytest.raises(ApiError) as exc:
        core.api.act("quarantine", "c1t1", {}, T0 + 2)
    assert exc.value.status == 409
