"""Minimal, strict parsing of the frame headers the core decides on (no Ryu, no scapy).

The controller only needs Ethernet addresses, the EtherType (after one optional 802.1Q tag)
and, for IPv4, addresses, protocol and ports. Anything shorter than what it claims to be
raises `BadFrame`, which callers count and drop.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass


class BadFrame(ValueError):
    """A frame too short or inconsistent to act on."""


@dataclass(frozen=True)
class Frame:
    dst: str
    src: str
    eth_type: int
    payload: bytes
    ipv4_src: str | None = None
    ipv4_dst: str | None = None
    ip_proto: int | None = None
    l4_src: int | None = None
    l4_dst: int | None = None
    arp_op: int | None = None
    arp_spa: str | None = None
    arp_tpa: str | None = None
    arp_sha: str | None = None

    @property
    def is_multicast(self) -> bool:
        return int(self.dst[:2], 16) & 1 == 1


def mac_str(raw: bytes) -> str:
    return raw.hex(":")


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def parse(data: bytes) -> Frame:
    if len(data) < 14:
        raise BadFrame(f"frame of {len(data)} bytes is shorter than an Ethernet header")
    dst, src = mac_str(data[0:6]), mac_str(data[6:12])
    (eth_type,) = struct.unpack("!H", data[12:14])
    offset = 14
    if eth_type == 0x8100:
        if len(data) < 18:
            raise BadFrame("truncated 802.1Q tag")
        (eth_type,) = struct.unpack("!H", data[16:18])
        offset = 18
    payload = data[offset:]
    if eth_type == 0x0800:
        return _ipv4(dst, src, payload)
    if eth_type == 0x0806 and len(payload) >= 28:
        op = struct.unpack("!H", payload[6:8])[0]
        return Frame(dst, src, eth_type, payload, arp_op=op,
                     arp_spa=str(ipaddress.IPv4Address(payload[14:18])),
                     arp_tpa=str(ipaddress.IPv4Address(payload[24:28])),
                     arp_sha=mac_str(payload[8:14]))
    return Frame(dst, src, eth_type, payload)


def _ipv4(dst: str, src: str, payload: bytes) -> Frame:
    if len(payload) < 20:
        raise BadFrame("truncated IPv4 header")
    ihl = (payload[0] & 0x0F) * 4
    if payload[0] >> 4 != 4 or ihl < 20 or len(payload) < ihl:
        raise BadFrame("bad IPv4 header length")
    proto = payload[9]
    ip_src = str(ipaddress.IPv4Address(payload[12:16]))
    ip_dst = str(ipaddress.IPv4Address(payload[16:20]))
    l4s = l4d = None
    if proto in (6, 17) and len(payload) >= ihl + 4:
        l4s, l4d = struct.unpack("!HH", payload[ihl:ihl + 4])
    return Frame(dst, src, 0x0800, payload, ip_src, ip_dst, proto, l4s, l4d)


def arp_reply(our_mac: str, our_ip: str, to_mac: str, to_ip: str) -> bytes:
    """An ARP reply "our_ip is at our_mac" to (to_mac, to_ip): the controller answers ARP for
    its service address itself, so such requests are never forwarded (proxy ARP)."""
    return (mac_bytes(to_mac) + mac_bytes(our_mac) + b"\x08\x06"
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
            + mac_bytes(our_mac) + ipaddress.IPv4Address(our_ip).packed
            + mac_bytes(to_mac) + ipaddress.IPv4Address(to_ip).packed)
