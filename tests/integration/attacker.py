"""Frames a dishonest terminal sends, written raw to its interface (run inside a Mininet host).

    python attacker.py IFACE arp --src-mac M --spa IP --tpa IP [--sha M] [--op 1] [--count N]
    python attacker.py IFACE udp --src-mac M --dst-mac M --src-ip IP --dst-ip IP [--count N]
    python attacker.py IFACE random-sources --count N [--src-mac M]  (random source IPs, and
                                                             MACs unless one is given)
    python attacker.py IFACE eapol-start --seconds S       (EAPOL-Start as fast as it can)
    python attacker.py IFACE eapol --eapol-type T [--src-mac M] [--dst-mac M] [--body HEX]
                                                          [--count N]  (one EAPOL frame, N times)

Prints one line "sent N" when done. Only the standard library: it must start fast.
"""
from __future__ import annotations

import argparse
import os
import socket
import struct
import time


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def ip(s: str) -> bytes:
    return socket.inet_aton(s)


def arp_frame(src_mac: str, sha: str, spa: str, tpa: str, op: int,
              dst_mac: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    tha = "00:00:00:00:00:00" if op == 1 else dst_mac
    return (mac(dst_mac) + mac(src_mac) + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
            + mac(sha) + ip(spa) + mac(tha) + ip(tpa))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, dport: int = 9,
              payload: bytes = b"x" * 18) -> bytes:
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, ip(src_ip),
                      ip(dst_ip))
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + hdr + udp


def eapol_start(src_mac: str) -> bytes:
    return mac("01:80:c2:00:00:03") + mac(src_mac) + b"\x88\x8e" + b"\x01\x01\x00\x00" + \
        b"\x00" * 42


def eapol(src_mac: str, dst_mac: str, ptype: int, body: bytes = b"") -> bytes:
    frame = mac(dst_mac) + mac(src_mac) + b"\x88\x8e" + struct.pack("!BBH", 2, ptype,
                                                                     len(body)) + body
    return frame + b"\x00" * max(0, 60 - len(frame))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("iface")
    p.add_argument("kind", choices=["arp", "udp", "random-sources", "eapol-start", "eapol"])
    p.add_argument("--eapol-type", type=int, default=1)
    p.add_argument("--body", default="")
    p.add_argument("--src-mac")
    p.add_argument("--dst-mac", default="ff:ff:ff:ff:ff:ff")
    p.add_argument("--sha")
    p.add_argument("--spa")
    p.add_argument("--tpa")
    p.add_argument("--op", type=int, default=1)
    p.add_argument("--src-ip")
    p.add_argument("--dst-ip")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((a.iface, 0))
    own = ":".join(f"{b:02x}" for b in sock.getsockname()[4][:6])
    src = a.src_mac or own
    sent = 0
    if a.kind == "eapol-start":
        frame = eapol_start(src)
        end = time.time() + a.seconds
        while time.time() < end:          # about 10,000 frames/s
            for _ in range(100):
                sock.send(frame)
            sent += 100
            time.sleep(0.01)
    elif a.kind == "random-sources":
        for _ in range(a.count):
            r = os.urandom(10)
            smac = a.src_mac or ":".join(f"{b:02x}" for b in bytes([r[0] & 0xFE | 0x02]) + r[1:6])
            sip = socket.inet_ntoa(r[6:10])
            try:
                sock.send(udp_frame(smac, a.dst_mac, sip, a.dst_ip or "10.0.100.20"))
            except OSError:
                time.sleep(0.001)      # the interface queue is full: let it drain
                continue
            sent += 1
    else:
        if a.kind == "arp":
            frame = arp_frame(src, a.sha or src, a.spa, a.tpa, a.op, a.dst_mac)
        elif a.kind == "eapol":
            frame = eapol(src, a.dst_mac, a.eapol_type, bytes.fromhex(a.body))
        else:
            frame = udp_frame(src, a.dst_mac, a.src_ip, a.dst_ip)
        for _ in range(a.count):
            sock.send(frame)
            sent += 1
            if a.interval:
                time.sleep(a.interval)
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
