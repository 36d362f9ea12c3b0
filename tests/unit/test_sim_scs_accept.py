"""`SCS.accept`, the entry after authentication that the simulation uses, decides exactly as
`SCS.handle` does for the same signed reports, and the simulation's outbreaks are the same
whichever path their reports take (docs/experiments.md, "Simulation at Internet scale")."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.crs.policy import parse_policy
from controller.crs.scs import SCS, Audit, Count, Enforce, Reply, SealGroup, effects_of
from controller.experiment import defences, outbreak, reactors

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_764_300_000.0
S = 10.0
K = S * 360_000 / 2 ** 32


def key_of(tid: str) -> bytes:
    return f"key-{tid}".encode().ljust(32, b"0")


def policies():
    """Every defence the simulation runs, and the shipped policy (updates, correlation)."""
    out = {name: parse_policy(defences.policy_document(name, params))
           for name, params in [("crs_isolate", {}), ("crs_rate_limit", {"rate_kbps": 8}),
                                ("cell_seal", {"scope_cells": 1})]}
    out["crs_policy"] = parse_policy(yaml.safe_load(
        (ROOT / "config" / "crs_policy.yaml").read_text()))
    return out


def script(seed: int, n: int = 12):
    """Connects and reports of n terminals in 3 groups: clean, vulnerable and infected
    SCIs, accusations of bound addresses, in a random order and at increasing times."""
    rng = random.Random(seed)
    events, t = [], 0.0
    for i in range(n):
        t += rng.random()
        events.append(("connect", f"t{i}", f"g{i % 3}", f"10.0.0.{i + 1}", t))
    for _ in range(3 * n):
        t += rng.random()
        i = rng.randrange(n)
        threats = [{"name": "Worm.X", "count": 1, "cleaned": False}] \
            if rng.random() < 0.4 else []
        attackers = [{"source": f"10.0.0.{rng.randrange(n) + 1}", "last_seen": T0 + t}] \
            if rng.random() < 0.5 else []
        sci = {"os": {"name": "MobileOS", "patch_level": rng.choice([1, 12])},
               "antivirus": {"engine": "1.0", "signature_version": 2041},
               "agent_version": "1.0.0", "firewall": True, "threats": threats,
               "attackers": attackers}
        events.append(("report", f"t{i}", sci, t))
    return events


def play(pol, events, signed: bool, records: bool = True):
    scs = SCS(pol, key_of, records=records)
    out, seqs = [], {}
    for ev in events:
        if ev[0] == "connect":
            _, tid, group, ip, t = ev
            out.append(scs.connect(tid, group, ip, "02:00:00:00:00:01", 1, 1, T0 + t))
            continue
        _, tid, sci, t = ev
        seqs[tid] = seqs.get(tid, 0) + 1
        body = {"ms_id": tid, "sci": sci}
        if signed:
            raw = crsap.encode("SCIReport", tid, seqs[tid], T0 + t, body, key_of(tid))
            effects = scs.handle(tid, raw, T0 + t)
            assert len(effects_of(effects, Reply)) == 1
        else:
            effects = scs.accept(crsap.Message("SCIReport", tid, seqs[tid], T0 + t, body),
                                 T0 + t)
            assert effects_of(effects, Reply) == []
        out.append([e for e in effects if not isinstance(e, Reply)])
    return scs, out


@pytest.mark.parametrize("name", ["crs_isolate", "crs_rate_limit", "cell_seal", "crs_policy"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_accept_decides_as_the_signed_path(name, seed):
    pol = policies()[name]
    events = script(seed)
    signed, a = play(pol, events, signed=True)
    direct, b = play(pol, events, signed=False)
    assert a == b                       # every effect but the signed reply, in order
    assert any(effects_of(x, Enforce) for x in a)
    assert {tid: t.decision for tid, t in signed.terminals.items()} == \
        {tid: t.decision for tid, t in direct.terminals.items()}
    assert signed.corr.sealed == direct.corr.sealed
    if name in ("cell_seal", "crs_policy") and seed == 3:     # seals made and lifted
        assert len([e for x in a for e in effects_of(x, SealGroup)]) >= 3


@pytest.mark.parametrize("name", ["crs_isolate", "crs_rate_limit", "cell_seal", "crs_policy"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_without_records_the_decisions_are_the_same(name, seed):
    """records=False (the simulation's SCS) drops the audit records and counters of
    connects, reports and decisions, and nothing else."""
    pol = policies()[name]
    events = script(seed)
    full, a = play(pol, events, signed=True)
    lean, b = play(pol, events, signed=True, records=False)

    def decided(effects):
        return [e for e in effects if not isinstance(e, (Audit, Count))]

    assert [decided(x) for x in a] == [decided(x) for x in b]
    assert any(effects_of(x, Enforce) for x in b)
    for attr in ("decision", "own_level", "own_reason", "last_report"):
        assert {tid: getattr(t, attr) for tid, t in full.terminals.items()} == \
            {tid: getattr(t, attr) for tid, t in lean.terminals.items()}
    assert full.corr.sealed == lean.corr.sealed
    assert full.queue == lean.queue
    assert not [e for x in b for e in effects_of(x, Audit)
                if e.record["event"] in ("connect", "sci_report", "decision")]
    assert sum(map(len, b)) < sum(map(len, a))


def test_the_simulated_sci_is_the_agents():
    sci, threat = reactors.sci_template()
    now = 1234.5
    assert {**sci, "threats": [{**threat, "detected_at": now}]} == \
        sci_from_posture(reactors.posture(now))


@pytest.mark.parametrize("defence,params,rt", [
    ("crs_isolate", {}, 2.5), ("crs_isolate", {"coverage_fraction": 0.5}, 0.5),
    ("crs_rate_limit", {"rate_kbps": 8}, 0.5), ("cell_seal", {"scope_cells": 1}, 0.5)])
def test_outbreaks_are_the_same_whichever_path_the_reports_take(defence, params, rt):
    v = 1500
    pop = outbreak.Population(v, round(S * v / K), 10)
    runs = {}
    for every in (1, 7, 10 ** 9):          # all signed, some, only the first
        r = reactors.CrsReactor(defence, params, pop, S, rt / K, signed_every=every)
        ob = outbreak.run(pop, outbreak.Worm(S, seeds=3), r, 86_400.0, random.Random(5))
        runs[every] = (ob.infection_times, r.reports, r.enforced)
        assert r.signed == (-(-r.reports // every) if r.reports else 0)
    assert runs[1] == runs[7] == runs[10 ** 9]
    assert runs[1][1] > 10                 # reports were made


def test_a_report_the_scs_rejects_stops_the_run():
    pop = outbreak.Population(100, 10 ** 6, 1)
    r = reactors.CrsReactor("crs_isolate", {}, pop, S, 1.0)
    r.infected(3, 0.0)
    r.scs.key_lookup = lambda _tid: b"another-key-than-the-agent-has-32"
    with pytest.raises(RuntimeError, match="rejected"):
        r.report(3, 1.0)
