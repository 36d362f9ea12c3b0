"""Controller settings: defaults written once (schema -> Settings, policy classes -> policy
schema), one `validate`, the controller configuration tests and benchmarks write, and the
JSON / JSON-lines readers."""
import dataclasses
import os

import pytest
import yaml

from controller import jsonfile, launcher
from controller.config import ConfigError
from controller.crs import policy as pol
from controller.emulation.processes import ROOT, controller_config
from controller.settings import KEYS, PATHS, Settings, load_settings, schema_field, validate


def test_settings_defaults_are_the_schema_defaults(tmp_path):
    s = Settings()
    for attr, key in KEYS.items():
        default = schema_field(key).default
        if attr in PATHS and default is not None:
            default = os.path.normpath(os.path.join("config", default))
        assert getattr(s, attr) == default, attr
    # an empty file in a config/ folder names the same files as no file at all
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "empty.yaml").write_text("{}\n")
    loaded = load_settings(str(tmp_path / "config" / "empty.yaml"))
    for attr in KEYS:
        mine, theirs = getattr(loaded, attr), getattr(s, attr)
        if attr in PATHS and mine is not None:
            mine = os.path.relpath(mine, tmp_path)
        assert mine == theirs, attr


def test_policy_classes_hold_the_schema_defaults():
    minimal = {"version": 1, "evaluation": {},
               "control": {"levels": {lv: {"actions": ["permit"]} for lv in pol.LEVEL_NAMES}}}
    p = pol.parse_policy(minimal)
    assert p.correlation == pol.CorrelationParams()
    assert p.correlation.trw == pol.TRWParams()
    for f in ("update_server_url", "update_max_concurrent", "update_per_second",
              "update_timeout_s", "report_interval_s", "stale_after_s"):
        assert getattr(p, f) == next(x.default for x in dataclasses.fields(pol.Policy)
                                     if x.name == f), f
    assert p.levels[pol.Level.COMPLIANT].scope == pol.LevelControl.scope


def test_validate_lists_every_problem_as_file_key_problem(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("admission: {mode: open}\ncrs: {enabled: true}\nthrottle: {enabled: true}\n")
    s = load_settings(str(cfg))          # the file itself fits the schema
    with pytest.raises(ConfigError) as e:
        validate(s)
    lines = str(e.value).splitlines()
    assert f"{cfg}: crs.enabled: the reacting system needs admission.mode: authenticate" \
        in lines[0]
    assert f"{tmp_path / 'crs_policy.yaml'}: <document>: cannot read" in str(e.value)
    assert f"{cfg}: topology: the reacting system needs a topology file" in lines
    assert any(x.startswith(f"{cfg}: topology: the throttle needs a topology") for x in lines)
    # command-line values are checked against the schema too
    with pytest.raises(ConfigError, match=r"<command line>: admission.session_s: 5 is outside"):
        validate(Settings(session_s=5))
    assert launcher.check(Settings()) == validate(Settings())    # the launcher uses it


def test_the_local_eapol_transports_need_authentication_and_a_topology(tmp_path):
    cfg = tmp_path / "c.yaml"
    for transport in ("local", "port"):
        cfg.write_text(f"admission: {{mode: open, eapol_transport: {transport}}}\n")
        with pytest.raises(ConfigError, match=rf"c.yaml: admission.eapol_transport: {transport} "
                                              r"needs admission.mode: authenticate and a topology"):
            validate(load_settings(str(cfg)))
    cfg.write_text("admission: {eapol_transport: socket}\n")
    with pytest.raises(ConfigError, match=r"admission.eapol_transport"):
        load_settings(str(cfg))
    _, ok = controller_config(tmp_path / "d.yaml", ROOT / "topologies/minimal.yaml")
    assert load_settings(ok).eapol_transport == "port"      # what tests and benches run
    validate(load_settings(ok))


def test_validate_needs_an_update_server_for_the_reacting_system(tmp_path):
    topo = yaml.safe_load((ROOT / "topologies/minimal.yaml").read_text())
    for h in topo["hosts"]:
        if h.get("role") == "update":
            h["role"] = "server"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(topo))
    _, cfg = controller_config(tmp_path / "c.yaml", tmp_path / "t.yaml", crs=True)
    with pytest.raises(ConfigError, match="t.yaml: hosts: the reacting system needs a host"):
        validate(load_settings(cfg))


def test_controller_config_for_tests_and_benchmarks(tmp_path):
    args = controller_config(tmp_path / "ctl" / "c.yaml", ROOT / "topologies/minimal.yaml",
                             crs=True, session_s=600, extra={"admission": {"eapol_pps": 50}})
    assert args == ["--config", str(tmp_path / "ctl" / "c.yaml")]
    doc = yaml.safe_load((tmp_path / "ctl" / "c.yaml").read_text())
    assert doc["demo"] is True and doc["audit_log"] == str(tmp_path / "ctl" / "audit.jsonl")
    s = load_settings(args[1])
    assert (s.admission_mode, s.crs_enabled, s.session_s, s.eapol_pps) == \
        ("authenticate", True, 600, 50)
    assert s.crs_policy_file == str(ROOT / "config" / "crs_policy.yaml")
    loaded = validate(s)                 # the shipped demo secrets pass with demo: true
    assert loaded.policy is not None and loaded.credentials is not None
    plain = yaml.safe_load(open(controller_config(tmp_path / "p.yaml", "t.yaml")[1]))
    assert "crs" not in plain and plain["admission"]["mode"] == "authenticate"


def test_json_readers(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n\n[1]\n{"b": 2}\n{"c": ')
    assert jsonfile.read_lines(p) == [{"a": 1}, {"b": 2}]          # torn last line skipped
    assert jsonfile.parse_lines(p.read_text()) == ([{"a": 1}, {"b": 2}], 2)
    assert jsonfile.read_lines(tmp_path / "missing.jsonl") == []
    p.write_bytes(b'{"a": 1}\n{"b": "\xc3')                          # torn in a character
    assert jsonfile.read_lines(p) == [{"a": 1}]
    jsonfile.write_atomic(tmp_path / "o.json", {"x": [1]})
    assert jsonfile.read(tmp_path / "o.json") == {"x": [1]}
    (tmp_path / "l.json").write_text("[1]")
    assert jsonfile.read(tmp_path / "l.json") is None and jsonfile.read(tmp_path / "n") is None


def test_the_controller_knows_the_terminals_the_network_has(tmp_path):
    """scale200 builds metro with 25 terminals a cell where the file says 8: the run's
    controller config says so too, and the throttle covers all 25 (it had covered the
    file's 8, so 136 of 200 terminals scanned unthrottled)."""
    from controller.core import Core
    from controller.experiment import defences
    from controller.openflow.tables import Priority
    metro = ROOT / "topologies/metro.yaml"
    files = defences.write_defence_files("throttle", {"working_set": 5, "new_dest_per_s": 1},
                                         8, metro, tmp_path, terminals_per_cell=25)
    s = load_settings(str(files.controller_config))
    loaded = validate(s)
    assert s.terminals_per_cell == 25 and len(loaded.topology.terminals()) == 200
    core = Core(s, loaded.topology, now=1.0)
    throttled = {m.match["in_port"] for _, m in core.switch_up(11, set(), 1.0)
                 if getattr(m, "priority", None) == Priority.SEC_THROTTLE}
    bs1 = loaded.topology.switch("bs1")
    assert throttled == {h.port for h in loaded.topology.terminals() if h.switch == bs1.name}
    assert len(throttled) == 25
    # without the key the file's count holds; a count outside 1-250 is refused
    plain = defences.write_defence_files("throttle", {}, 8, metro, tmp_path / "plain")
    assert len(validate(load_settings(str(plain.controller_config))).topology.terminals()) == 64
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"topology: {metro}\nterminals_per_cell: 0\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: terminals_per_cell: 0 is outside"):
        load_settings(str(cfg))
    assert validate(load_settings(None, topology_file=str(metro),
                                  terminals_per_cell=25)).topology.terminals()[-1].name == "c8t25"
