"""CRS policy loading (errors name file, key, problem), evaluation rules and control."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from controller.config import ConfigError
from controller.crs import policy as pol
from controller.crs.control import Override, decide
from controller.crs.decision import Level, Service
from controller.crs.evaluation import evaluate, version_tuple

POLICY_FILE = Path(__file__).resolve().parents[2] / "config" / "crs_policy.yaml"


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(POLICY_FILE.read_text())


@pytest.fixture(scope="module")
def policy():
    return pol.load_policy(POLICY_FILE)


def sci(patch=12, sig=2041, agent="1.0.0", fw=True, threats=(), attackers=()):
    return {"os": {"name": "MobileOS", "patch_level": patch},
            "antivirus": {"engine": "1.0", "signature_version": sig},
            "agent_version": agent, "firewall": fw, "threats": list(threats),
            "attackers": list(attackers)}


WORM = {"name": "Worm.Demo", "count": 1, "cleaned": False}


def test_shipped_policy_loads(policy):
    assert policy.version == 1
    assert [r.name for r in policy.rules][0] == "infected"
    vul = policy.levels[Level.VULNERABLE]
    assert vul.restrict_apps == (Service("tcp", 25),) and vul.rate_limit_kbps == 2000
    assert policy.levels[Level.INFECTED].scope == "none"
    assert policy.control_for(Level.VULNERABLE, "ops").scope == "all"
    assert policy.control_for(Level.VULNERABLE, "staff") == vul
    assert policy.correlation.accusers_k == 2 and policy.correlation.seal_release_below == 2
    assert policy.update_url("clean") == "http://10.0.100.20/updates/clean"


@pytest.mark.parametrize("edit,key,problem", [
    (lambda d: d.pop("version"), "version", "missing required key"),
    (lambda d: d["evaluation"]["rules"][0].update(level="BAD"), "evaluation.rules[0].level",
     "not one of"),
    (lambda d: d["evaluation"]["rules"][1]["when"].update(colour=1),
     "evaluation.rules[1].when.colour", "unknown key"),
    (lambda d: d["control"]["levels"].pop("UNKNOWN"), "control.levels.UNKNOWN", "missing"),
    (lambda d: d["control"]["levels"]["VULNERABLE"].update(restrict_apps=["smtp"]),
     "control.levels.VULNERABLE.restrict_apps[0]", "not a service"),
    (lambda d: d["control"]["levels"]["VULNERABLE"].pop("rate_limit_kbps"),
     "control.levels.VULNERABLE.rate_limit_kbps", "the rate_limit action needs rate_limit_kbps or"),
    (lambda d: d["control"]["levels"]["INFECTED"].update(update="nosuch"),
     "control.levels.INFECTED.update", "not in updates.items"),
    (lambda d: d["control"]["groups"]["ops"]["VULNERABLE"].update(scope="world"),
     "control.groups.ops.VULNERABLE.scope", "not one of"),
    (lambda d: d["correlation"].update(accusers_k=1), "correlation.accusers_k", "outside"),
    (lambda d: d["correlation"]["scan"]["trw"].update(theta1=0.9), "correlation.scan.trw",
     "theta1 < theta0"),
    (lambda d: d["correlation"]["group_seal"].update(release_below=9),
     "correlation.group_seal.release_below", "at most"),
    (lambda d: d["control"]["levels"]["COMPLIANT"].update(actions=["permit", "isolate"]),
     "control.levels.COMPLIANT.actions", "cannot be combined"),
])
def test_errors_name_file_key_problem(doc, edit, key, problem):
    bad = copy.deepcopy(doc)
    edit(bad)
    with pytest.raises(ConfigError) as err:
        pol.parse_policy(bad, "crs_policy.yaml")
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"crs_policy.yaml: {key}: ") and problem in line
               for line in lines), lines


def test_reload_keeps_old_policy_on_error(tmp_path, doc, policy):
    path = tmp_path / "p.yaml"
    path.write_text("version: [\n")
    result = pol.reload(path)
    assert isinstance(result, ConfigError) and "invalid YAML" in str(result)
    newer = copy.deepcopy(doc)
    newer["version"] = 2
    newer["evaluation"]["rules"][3]["when"]["signature_version_below"] = 2050
    path.write_text(yaml.safe_dump(newer))
    result = pol.reload(path)
    assert isinstance(result, pol.Policy) and result.version == 2
    assert evaluate(sci(sig=2041), result)[0] is Level.VULNERABLE
    assert evaluate(sci(sig=2041), policy)[0] is Level.COMPLIANT


def test_evaluation_first_match_wins(policy):
    assert evaluate(sci(), policy) == (Level.COMPLIANT, "default")
    assert evaluate(None, policy)[0] is Level.UNKNOWN
    # infected beats everything else that is also wrong
    assert evaluate(sci(sig=1, fw=False, threats=[WORM]), policy) == (Level.INFECTED,
                                                                       "rule infected")
    assert evaluate(sci(threats=[dict(WORM, cleaned=True)]), policy)[0] is Level.COMPLIANT
    assert evaluate(sci(sig=2040), policy) == (Level.VULNERABLE, "rule old-signatures")
    assert evaluate(sci(patch=11), policy) == (Level.VULNERABLE, "rule old-patches")
    assert evaluate(sci(fw=False), policy) == (Level.VULNERABLE, "rule firewall-off")
    assert evaluate(sci(agent="0.9.9"), policy) == (Level.VULNERABLE, "rule old-agent")
    assert evaluate(sci(agent="1.0.10"), policy)[0] is Level.COMPLIANT
    assert evaluate({"firewall": True}, policy)[0] is Level.VULNERABLE  # nothing reported


def test_version_tuple():
    assert version_tuple("1.10") > version_tuple("1.9") and version_tuple("x") == (-1,)


def test_control_levels_and_overrides(policy):
    d = decide(Level.COMPLIANT, "staff", policy)
    assert d.unrestricted and d.policy_version == 1
    d = decide(Level.VULNERABLE, "staff", policy, "rule old-signatures")
    assert d.scope == "group" and d.meter_kbps == 2000 and d.update == "baseline"
    assert d.restricted == (Service("tcp", 25),) and not d.isolate
    assert decide(Level.VULNERABLE, "ops", policy).scope == "all"
    d = decide(Level.INFECTED, "staff", policy)
    assert d.isolate and d.scope == "none" and d.update == "clean"
    assert decide(Level.UNKNOWN, None, policy).redirect_web
    q = decide(Level.COMPLIANT, "staff", policy, override=Override("quarantine"))
    assert q.isolate and q.operator == "quarantine" and "isolate" in q.actions
    r = decide(Level.VULNERABLE, "staff", policy, override=Override("rate_limit", 100))
    assert r.meter_kbps == 100 and r.operator == "rate_limit"
    s = decide(Level.COMPLIANT, "staff", policy, sealed=True)
    assert s.scope == "group" and s.group_sealed and s.outside_kbps is None


def test_meter_seal_mode(doc):
    d = copy.deepcopy(doc)
    d["correlation"]["group_seal"]["mode"] = "meter"
    p = pol.parse_policy(d)
    s = decide(Level.COMPLIANT, "staff", p, sealed=True)
    assert s.outside_kbps == 500 and s.scope == "group"


@pytest.mark.parametrize("rates, problem", [({}, "needs rate_limit_kbps or rate_limit_pps"),
                                            ({"rate_limit_kbps": 64, "rate_limit_pps": 2},
                                             "not both"),
                                            ({"rate_limit_pps": 0}, "rate_limit_pps")])
def test_a_rate_limit_has_one_meter_in_kbps_or_pps(doc, rates, problem):
    doc["control"]["levels"]["INFECTED"] = {"actions": ["rate_limit"], **rates}
    with pytest.raises(ConfigError, match=problem):
        pol.parse_policy(doc, "p.yaml")
