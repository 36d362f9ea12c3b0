"""Our YAML topologies for plain `mn`:

    sudo mn --custom mininet/crs_topo.py --topo crs,topologies/minimal.yaml \
            --controller remote,port=6653 \
            --switch ovs,protocols=OpenFlow13,datapath=user,failMode=secure

This folder must never get an __init__.py: it would shadow the real `mininet` package.
Plain `mn` neither turns checksum offloads off (TCP hangs on the userspace datapath: run
`ethtool -K <intf> tx off rx off` in each host) nor adds the controller service address;
`crs net up` does both.
"""
import os
import sys

from mininet.topo import Topo

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from controller import topology


class CrsTopo(Topo):
    def build(self, path="topologies/mobile_core.yaml"):
        t = topology.load(path)
        for s in t.switches:
            self.addSwitch(s.name, dpid=f"{s.dpid:016x}")
        for lk in t.links:
            self.addLink(lk.a, lk.b, port1=lk.a_port, port2=lk.b_port)
        for h in t.hosts:
            self.addHost(h.name, ip=f"{h.ip}/{t.prefixlen}", mac=h.mac)
            self.addLink(h.name, h.switch, port2=h.port)


topos = {"crs": CrsTopo}
