"""SCA discovery (X.1125 11.1) on the pure core: a terminal no SCA speaks for is probed with
a signed SCAProbeRequest (where and how often to report); after `no_sca_after` unanswered
probes it is "no SCA" and gets the policy's agentless control; an answer ends that."""
import yaml
from corekit import C1, ROOT, T0, authenticate, settings

from controller import topology
from controller.core import Core
from controller.crs import messages as crsap
from controller.openflow.flowsim import FlowSim

IDENT = "c1t1@crs.example"
PEER = {"eth_src": C1, "eth_dst": "02:00:0a:00:01:02", "eth_type": 0x0800,
        "ipv4_src": "10.0.1.1", "ipv4_dst": "10.0.1.2", "ip_proto": 6, "tcp_dst": 5000}


def boot(tmp_path):
    policy = yaml.safe_load((ROOT / "config/crs_policy.yaml").read_text())
    policy["discovery"] = {"probe_after_s": 5, "probe_every_s": 5, "no_sca_after": 2,
                           "agentless": {"actions": ["permit"]}}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    s = settings(tmp_path, crs=True)
    s.crs_policy_file = str(tmp_path / "policy.yaml")
    core = Core(s, topology.load(ROOT / "topologies/minimal.yaml"), now=T0)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, {1, 2, 3, 4}, T0))
    return core, sim


def probes(core):
    return [p for p in core.take_http() if b"SCAProbeRequest" in p.body]


def test_a_silent_terminal_is_probed_then_agentless_until_its_sca_answers(tmp_path):
    core, sim = boot(tmp_path)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    row = core.api.row(IDENT, T0)
    assert row["sca"] == "unknown" and row["level"] == "UNKNOWN"
    assert sim.process(PEER, 2).dropped                     # UNKNOWN: services only
    core.tick(T0 + 2)
    assert probes(core) == []                               # not yet probe_after_s
    core.tick(T0 + 5.5)
    sent = probes(core)
    assert len(sent) == 1 and sent[0].url == "http://10.0.1.1:7125/crsap/v1/messages"
    msg = crsap.decode(sent[0].body)                        # signed with its report key
    crsap.verify(msg, keys.crs_report_key, crsap.ReplayState(), T0 + 5.5)
    assert msg.type == "SCAProbeRequest" and msg.body["report_interval_s"] > 0
    assert msg.body["scs_url"].startswith("http://10.0.100.254:")
    core.tick(T0 + 11)
    assert len(probes(core)) == 1
    out = core.tick(T0 + 16.5)                              # two unanswered: no SCA
    sim.apply(m for _, m in out)
    assert len(probes(core)) == 1                           # (still probed: an SCA may start)
    row = core.api.row(IDENT, T0 + 17)
    assert row["sca"] == "none" and row["probes_unanswered"] == 3
    assert row["decision"]["actions"] == ["permit"] and "no SCA" in row["decision"]["reason"]
    assert not sim.process(PEER, 2).dropped                 # the agentless control: permit
    assert '"no_sca"' in (tmp_path / "audit.jsonl").read_text()
    # its SCA answers a probe: discovered, the UNKNOWN control again
    answer = crsap.encode("SCAProbeResponse", IDENT, 1, T0 + 18,
                          {"ms_id": IDENT, "sca_version": "1.0.0", "nonce": "ab"},
                          keys.crs_report_key)
    status, _, out = core.crsap_message(answer, T0 + 18)
    sim.apply(m for _, m in out)
    row = core.api.row(IDENT, T0 + 18)
    assert status in (200, 204) and row["sca"] == "yes" and row["probes_unanswered"] == 0
    assert sim.process(PEER, 2).dropped
    core.tick(T0 + 30)
    assert probes(core) == []                               # no more probes


def test_discovery_policy_is_validated(tmp_path):
    import pytest

    from controller.config import ConfigError
    from controller.crs.policy import parse_policy
    policy = yaml.safe_load((ROOT / "config/crs_policy.yaml").read_text())
    policy["discovery"] = {"no_sca_after": 0, "agentless": {"actions": ["teleport"]}}
    with pytest.raises(ConfigError) as exc:
        parse_policy(policy, "p.yaml")
    assert "discovery.no_sca_after" in str(exc.value) and "discovery.agentless" in str(exc.value)
