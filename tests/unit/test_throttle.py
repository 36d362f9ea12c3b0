"""The virus throttle on a simulated switch: working set passes, new destinations wait."""
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import PacketOut
from controller.pipeline import AdmissionMode, admission_base, security_base
from controller.throttle import Throttle

PORT = 3


def pkt(dst):
    return {"eth_src": "02:00:0a:00:01:01", "eth_dst": "02:00:0a:00:01:09", "eth_type": 0x0800,
            "ipv4_src": "10.0.1.1", "ipv4_dst": dst, "ip_proto": 17}


def setup(ws=2, rate=1.0):
    th, sim = Throttle(working_set=ws, new_dest_per_s=rate), FlowSim()
    sim.apply(admission_base(AdmissionMode(open=True), set()) + security_base())
    sim.apply(th.base_flows(1, PORT, 7))
    return th, sim


def test_new_destinations_are_released_one_per_interval():
    th, sim = setup(ws=2, rate=1.0)
    assert sim.process(pkt("10.0.1.2"), PORT).to_controller
    out = th.packet(1, PORT, "10.0.1.2", b"a", now=0.0)        # idle throttle: at once
    sim.apply(out)
    assert [m.data for m in out if isinstance(m, PacketOut)] == [b"a"]
    assert sim.process(pkt("10.0.1.2"), PORT).tables() == [0, 1]   # on to table 2
    # a burst of new destinations: queued, nothing sent now
    for i, dst in enumerate(["10.0.1.3", "10.0.1.4", "10.0.1.5"]):
        assert th.packet(1, PORT, dst, bytes([i]), now=0.1) == []
    assert th.queue_length(1, PORT) == 3
    assert th.tick(0.5) == []                                   # not yet a second
    released = [m for _, m in th.tick(1.0)]
    sim.apply(released)
    assert [m.data for m in released if isinstance(m, PacketOut)] == [b"\x00"]
    assert not sim.process(pkt("10.0.1.3"), PORT).to_controller
    sim.apply(m for _, m in th.tick(2.0))
    # working set of 2: the oldest (10.0.1.2) was evicted when 10.0.1.4 joined
    assert sim.process(pkt("10.0.1.2"), PORT).to_controller
    assert not sim.process(pkt("10.0.1.4"), PORT).to_controller
    assert th.counters["throttle_released"] == 3


def test_a_scanner_is_slowed_to_the_release_rate():
    th, sim = setup(ws=5, rate=1.0)
    for i in range(200):    # 20 probes/s for 10 s to fresh addresses
        th.packet(1, PORT, f"10.0.{2 + i // 250}.{1 + i % 250}", b"p", now=i * 0.05)
        th.tick(i * 0.05)
    assert th.counters["throttle_released"] == 10       # one per second, the first at once
    assert th.queue_length(1, PORT) == 190
    assert th.counters["throttle_alarm"] == 1
