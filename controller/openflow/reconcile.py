"""Rebuild a switch that still holds flows without a gap (make before break).

A cold rebuild deletes each owner's flows and adds them again: between the two, a restricted
terminal's drop flow and an admitted terminal's allow flow are both gone. When a controller
takes over from another (or finds a switch that kept its tables), it reads the switch's flow
table first and turns the cold rebuild into: every wanted flow added (an identical flow is
overwritten in place), then only what is not wanted removed.

Only what the cold rebuild would have wiped (an owner's flows in a table it deletes before
adding), and the reacting system's table 1, may be removed; what is stale is decided by
cookie first (exact: owners give every terminal, binding and decision generation its own
cookie value), then, for a cookie that is wanted, by match. A flow deleted by match whose
cookie is wanted has its cookie's flows added once more after the deletes: if our comparison
of matches ever disagreed with the switch's, the wanted twin comes straight back instead of
staying deleted.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

from controller.openflow.ofmsg import OFPP_ANY, FlowMod, Message, MeterMod
from controller.openflow.tables import SECURITY

ALL_BITS = (1 << 64) - 1


@dataclass(frozen=True)
class Installed:
    """One flow the switch reported (flow stats): what identifies it."""

    table_id: int
    priority: int
    match: dict[str, Any]
    cookie: int


def _norm(v: Any) -> Any:
    if isinstance(v, (tuple, list)) and len(v) == 2:
        value, mask = _norm(v[0]), _norm(v[1])
        if isinstance(mask, str) and mask in ("255.255.255.255", "ff:ff:ff:ff:ff:ff"):
            return value            # a full mask is no mask (the switch reports it so)
        return (value, mask)
    return v.lower() if isinstance(v, str) else v


def match_id(table_id: int, priority: int, match: dict[str, Any]) -> tuple:
    """A flow's identity on a switch (table, priority, match), in one spelling."""
    return (table_id, priority, tuple(sorted((k, _norm(v)) for k, v in match.items())))


def _owner_wide_delete(m: FlowMod) -> bool:
    """A cold rebuild's "delete everything this owner has in the table"."""
    return m.command == "delete" and not m.match and m.cookie_mask != ALL_BITS


def make_before_break(cold: Sequence[Message], installed: Iterable[Installed]) -> list[Message]:
    """The messages of a cold rebuild (`cold`), reordered and completed for a switch that
    holds `installed`: adds (meters added and modified, never deleted: a deleted meter takes
    its flows with it), then the deletes of stale flows, then the re-adds described above.
    Other messages of the cold rebuild (deletes of one cookie) keep their place."""
    adds: list[Message] = []
    # what the cold rebuild would have wiped, and table 1: a cold rebuild never deletes a
    # restriction first (that would open access), but knowing what the switch holds, stale
    # ones (a decision committed whose flows never left) are removed after the adds
    owned: list[FlowMod] = [SECURITY.delete_all()]
    wanted_ids: set[tuple] = set()
    wanted_cookies: dict[tuple[int, int], list[FlowMod]] = {}
    for m in cold:
        if isinstance(m, FlowMod):
            if m.command == "add":
                adds.append(m)
                wanted_ids.add(match_id(m.table_id, m.priority, m.match))
                wanted_cookies.setdefault((m.table_id, m.cookie), []).append(m)
            elif _owner_wide_delete(m):
                owned.append(m)
            else:
                adds.append(m)
        elif isinstance(m, MeterMod):
            if m.command == "add":
                adds += [m, replace(m, command="modify")]
            elif m.command != "delete":
                adds.append(m)
        else:
            adds.append(m)
    deletes: list[Message] = []
    stale_cookies: set[tuple[int, int]] = set()
    readd: list[tuple[int, int]] = []
    for f in installed:
        if not any(f.table_id == o.table_id and f.cookie & o.cookie_mask == o.cookie
                   & o.cookie_mask for o in owned):
            continue        # not ours to remove (another owner's, or never wiped)
        key = (f.table_id, f.cookie)
        if key not in wanted_cookies:
            if key not in stale_cookies:
                stale_cookies.add(key)
                deletes.append(FlowMod(table_id=f.table_id, command="delete", cookie=f.cookie,
                                       cookie_mask=ALL_BITS, out_port=OFPP_ANY))
        elif match_id(f.table_id, f.priority, f.match) not in wanted_ids:
            deletes.append(FlowMod(table_id=f.table_id, command="delete_strict",
                                   priority=f.priority, match=dict(f.match), cookie=f.cookie,
                                   cookie_mask=ALL_BITS, out_port=OFPP_ANY))
            if key not in readd:
                readd.append(key)
    return adds + deletes + [m for key in readd for m in wanted_cookies[key]]
