"""Where an EAP exchange's time goes, from two packet captures: one on the terminal's
interface, one on its switch's LOCAL interface (the controller's side of the LOCAL-port
EAPOL transport). Every frame is seen twice, so each message splits into the leg from the
terminal to the controller, the controller's work, the leg back, and the terminal's work
before its next message. Both captures use the same kernel clock.
"""
from __future__ import annotations

import statistics
import struct
from pathlib import Path
from typing import Any

EAP_REQUEST, EAP_RESPONSE, EAP_SUCCESS, EAP_FAILURE = 1, 2, 3, 4
TYPE_IDENTITY, TYPE_PSK = 1, 47


def read_pcap(path: str | Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of a classic pcap file (micro- or nanosecond timestamps)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        out.append((sec + frac * scale, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def eap_key(frame: bytes) -> tuple[int, int, int, int] | None:
    """(code, identifier, type, PSK T flag) of an EAPOL EAP-Packet frame; None otherwise."""
    if len(frame) < 22 or frame[12:14] != b"\x88\x8e" or frame[15] != 0:
        return None
    code, ident = frame[18], frame[19]
    etype = frame[22] if code in (EAP_REQUEST, EAP_RESPONSE) and len(frame) > 22 else 0
    t = frame[23] >> 6 if etype == TYPE_PSK and len(frame) > 23 else 0
    return code, ident, etype, t


def message_name(key: tuple[int, int, int, int]) -> str:
    code, _, etype, t = key
    if etype == TYPE_IDENTITY:
        return "identity"
    if etype == TYPE_PSK:
        return f"psk{t + 1}"
    return {EAP_SUCCESS: "success", EAP_FAILURE: "failure"}.get(code, f"type{etype}")


def legs(terminal: list[tuple[float, bytes]],
         local: list[tuple[float, bytes]]) -> dict[str, dict[str, list[float]]]:
    """For each terminal message (identity, psk2, psk4): microseconds of the leg to the
    controller, the controller's answer, the leg back, and the terminal's next message."""
    seen_local: dict[tuple, list[float]] = {}
    for t, f in local:
        k = eap_key(f)
        if k is not None:
            seen_local.setdefault(k, []).append(t)
    term: dict[tuple, list[float]] = {}
    for t, f in terminal:
        k = eap_key(f)
        if k is not None:
            term.setdefault(k, []).append(t)
    out: dict[str, dict[str, list[float]]] = {}
    for k, sent in term.items():
        if k[0] != EAP_RESPONSE:
            continue
        for t_sent in sent:
            t_in = _next(seen_local.get(k, ()), t_sent)
            if t_in is None:
                continue
            # the controller's answer: the next request (identifier + 1) or Success/Failure
            answer = [(a, ts) for a, ts in seen_local.items() if a[0] != EAP_RESPONSE
                      and (a[1] == (k[1] + 1) % 256 or (a[0] in (EAP_SUCCESS, EAP_FAILURE)
                                                         and a[1] == k[1]))]
            cands = [(t, a) for a, ts in answer for t in ts if t >= t_in]
            if not cands:
                continue
            t_out, a = min(cands)
            t_back = _next(term.get(a, ()), t_out)
            row = out.setdefault(message_name(k), {"to_controller_us": [], "controller_us": [],
                                                   "to_terminal_us": [], "terminal_us": []})
            row["to_controller_us"].append((t_in - t_sent) * 1e6)
            row["controller_us"].append((t_out - t_in) * 1e6)
            if t_back is not None:
                row["to_terminal_us"].append((t_back - t_out) * 1e6)
                nxt = [t for kk, ts in term.items() if kk[0] == EAP_RESPONSE
                       and kk[1] == a[1] for t in ts if t >= t_back]
                if nxt and a[0] == EAP_REQUEST:
                    row["terminal_us"].append((min(nxt) - t_back) * 1e6)
    return out


def _next(times, after: float) -> float | None:
    later = [t for t in times if t >= after]
    return min(later) if later else None


def summary(per: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Medians per message and leg, and their sums over the exchange (what wpa_supplicant's
    EAP-STARTED to EAP-SUCCESS spans: from its Identity response to the Success)."""
    out: dict[str, Any] = {}
    totals: dict[str, float] = {}
    for name, row in sorted(per.items()):
        out[name] = {k: (round(statistics.median(v)) if v else None) for k, v in row.items()}
        out[name]["n"] = len(row["controller_us"])
        for k, v in out[name].items():
            if k != "n" and v is not None:
                totals[k] = totals.get(k, 0.0) + v
    out["sum_of_medians_us"] = {k: round(v, 1) for k, v in totals.items()}
    return out
