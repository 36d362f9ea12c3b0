"""Packet-socket helpers shared by the controller's shell (EAPOL through LOCAL ports) and the
benchmarks (wire times on a terminal's interface): a kernel filter that keeps one ethertype,
and a socket opened inside another network namespace.

A socket bound with ETH_P_ALL sees the frames an interface sends as well as those it
receives (a socket bound to one protocol sees only received ones); the filter keeps the
Python side from waking up for every other frame.
"""
from __future__ import annotations

import ctypes
import os
import socket
import struct

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4       # (a received frame's packet type: one this host sent)
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def attach_ethertype_filter(sock: socket.socket, ethertype: int) -> None:
    """Classic BPF: accept a frame whose ethertype (bytes 12-13) is `ethertype`, else drop."""
    prog = [(0x28, 0, 0, 12), (0x15, 0, 1, ethertype), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0)]
    code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def bound_socket(ifname: str, ethertype: int, new=None,
                 rcvbuf: int | None = None) -> socket.socket:
    """A packet socket that receives the `ethertype` frames `ifname` receives and nothing
    else (never its own writes): created without a protocol, it receives nothing until its
    filter is set and it is bound (one created with ETH_P_ALL takes every interface's
    frames until then, and keeps them queued). `new` makes the socket (default: the socket
    module's class as it is at the call, green under eventlet's patching). OSError if it
    cannot be made."""
    sock = (new or socket.socket)(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_ethertype_filter(sock, ethertype)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:     # kernels before 4.20: readers skip PACKET_OUTGOING themselves
            pass
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((ifname, ETH_P_ALL))
    except BaseException:
        sock.close()
        raise
    return sock


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(netns: str, family: int, kind: int, proto: int) -> socket.socket:
    """A socket created inside the network namespace `netns` (a path such as
    /var/run/netns/NAME); it stays there, and this thread comes back to its own."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, kind, proto)
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
