"""The shell's answer when a lost port's interface may be read again (`PortEapol`'s retry,
`CrsController._port_regained`): only a leading controller with that switch connected reads
it, re-checked as at a port status, and only then moves the port's EAPOL back to it; a
standby or a gone switch stops the retries."""
from types import SimpleNamespace

from controller.ryu_shell.app import CrsController


class Ports:
    def __init__(self):
        self.closed = []

    def close(self, dpid, port):
        self.closed.append((dpid, port))


def shell(active=True, connected=True, qualifies=True):
    sent, checked = [], []
    app = SimpleNamespace(
        datapaths={1: object()} if connected else {}, active=active, port_eapol=Ports(),
        core=SimpleNamespace(eapol_transport=lambda d, p, direct: [("flows", d, p, direct)]),
        send=sent.append,
        _read_port=lambda d, p, n, m: checked.append((d, p, n, m)) or qualifies)
    return app, sent, checked


def test_a_leader_reads_a_qualifying_port_again_and_moves_its_eapol_back():
    app, sent, checked = shell()
    assert CrsController._port_regained(app, 1, 5, "s1-eth5", "02:00:00:00:00:05") is True
    assert checked == [(1, 5, "s1-eth5", "02:00:00:00:00:05")]
    assert sent == [[("flows", 1, 5, True)]] and app.port_eapol.closed == []


def test_a_port_that_no_longer_qualifies_keeps_local():
    app, sent, checked = shell(qualifies=False)
    assert CrsController._port_regained(app, 1, 5, "s1-eth5", "m") is False
    assert checked and sent == []


def test_a_standby_or_a_gone_switch_reads_nothing_and_ends_the_retries():
    for app, sent, checked in (shell(active=False), shell(connected=False)):
        assert CrsController._port_regained(app, 1, 5, "s1-eth5", "m") is False
        assert sent == [] and checked == [] and app.port_eapol.closed == [(1, 5)]
