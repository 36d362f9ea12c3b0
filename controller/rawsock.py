"""Packet-socket helpers shared by the controller's shell (EAPOL through LOCAL ports) and the
benchmarks (wire times on a terminal's interface): a kernel filter that keeps one ethertype.

A socket bound with ETH_P_ALL sees the frames an interface sends as well as those it
receives (a socket bound to one protocol sees only received ones); the filter keeps the
Python side from waking up for every other frame.
"""
from __future__ import annotations

import ctypes
import socket
import struct

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26


def attach_ethertype_filter(sock: socket.socket, ethertype: int) -> None:
    """Classic BPF: accept a frame whose ethertype (bytes 12-13) is `ethertype`, else drop."""
    prog = [(0x28, 0, 0, 12), (0x15, 0, 1, ethertype), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0)]
    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
