"""Before a network is built, a stopped or missing Open vSwitch is one clear error that says
what to do (`sudo make setup`), not Mininet's hint followed by the whole process exiting
(which left a sweep's run folder half-made). The failing daemons are stand-ins on PATH:
the real ones serve every other test on this machine and are not stopped here."""
from __future__ import annotations

import stat

import pytest

from controller.emulation.record import openvswitch_problem
from controller.experiment import runner

REFUSED = ("ovs-vsctl: unix:/var/run/openvswitch/db.sock: database connection failed "
           "(Connection refused)")


def fake(bin_dir, name: str, body: str) -> None:
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def path_of(tmp_path, monkeypatch):
    """PATH holding only the given stand-ins."""
    def make(**tools: str):
        d = tmp_path / "bin"
        d.mkdir(exist_ok=True)
        for name, body in tools.items():
            fake(d, name.replace("_", "-"), body)
        monkeypatch.setenv("PATH", str(d))     # /bin/sh runs them by its full name
        return d
    return make


def test_database_down_is_named_with_the_fix(path_of):
    path_of(ovs_vsctl=f"echo '{REFUSED}' >&2; exit 1", ovs_appctl="exit 0")
    problem = openvswitch_problem()
    assert problem is not None
    assert problem == ("Open vSwitch is not running (ovsdb-server: unix:/var/run/openvswitch/"
                       "db.sock: database connection failed (Connection refused)): start it "
                       "with 'sudo make setup'")


def test_switch_daemon_down_is_caught_even_when_the_database_answers(path_of):
    path_of(ovs_vsctl="exit 0",
            ovs_appctl="echo '2026-12-01T00:29:43Z|00001|daemon_unix|WARN|/var/run/"
                       "openvswitch/ovs-vswitchd.pid: open: No such file or directory' >&2;"
                       " exit 1")
    problem = openvswitch_problem()
    # the daemon named, the log line's text without its time and level
    assert problem == ("Open vSwitch is not running (ovs-vswitchd: /var/run/openvswitch/"
                       "ovs-vswitchd.pid: open: No such file or directory): start it with "
                       "'sudo make setup'")


def test_not_installed(path_of):
    path_of()
    assert "not installed" in openvswitch_problem()


def test_both_answering_is_no_problem(path_of):
    path_of(ovs_vsctl="exit 0", ovs_appctl="exit 0")
    assert openvswitch_problem() is None


def test_a_sweep_stops_before_its_first_run(tmp_path, path_of, monkeypatch):
    path_of(ovs_vsctl=f"echo '{REFUSED}' >&2; exit 1", ovs_appctl="exit 0")
    sc = tmp_path / "s.yaml"
    sc.write_text("name: s\ntopology: topologies/mobile_core.yaml\ncells: 1\n"
                  "terminals_per_cell: 4\nscan_rate: 3.0\nspace: [10.0.1.0/27]\n"
                  "detection_delay: 1.0\ndefences: [none]\nduration_s: 60\nruns: 1\n")

    def must_not_run(ctx):
        raise AssertionError("a run started with Open vSwitch down")
    monkeypatch.setattr(runner, "run_one", must_not_run)
    with pytest.raises(runner.RunnerError, match="sudo make setup"):
        runner.run_scenario(sc, tmp_path / "out", progress=False, log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_a_benchmark_on_the_network_says_so(path_of, capsys):
    from controller import cli
    path_of(ovs_vsctl=f"echo '{REFUSED}' >&2; exit 1", ovs_appctl="exit 0")
    assert cli.main(["bench", "auth", "--out", "unused"]) == 1
    assert "sudo make setup" in capsys.readouterr().err


def test_net_up_says_so_and_claims_no_removal(path_of, capsys):
    import signal

    from controller import cli
    path_of(ovs_vsctl=f"echo '{REFUSED}' >&2; exit 1", ovs_appctl="exit 0")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert cli.main(["net", "up", "topologies/minimal.yaml"]) == 1
    finally:        # net up takes SIGTERM and SIGINT for itself
        for s, h in handlers.items():
            signal.signal(s, h)
    out = capsys.readouterr()
    assert "sudo make setup" in out.err
    assert "removed" not in out.out            # nothing was made, so nothing was removed
