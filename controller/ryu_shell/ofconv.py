"""Turn the core's message dataclasses into Ryu OF1.3 messages (the Ryu seam for output)."""
from __future__ import annotations

from controller.openflow.ofmsg import (
    OFP_NO_BUFFER,
    Apply,
    Barrier,
    FlowMod,
    Goto,
    Message,
    Meter,
    MeterMod,
    Output,
    PacketOut,
    SetField,
)
from controller.ryu_shell.framework import ofproto_v1_3 as ofp
from controller.ryu_shell.framework import ofproto_v1_3_parser as parser

_COMMANDS = {
    "add": ofp.OFPFC_ADD, "modify": ofp.OFPFC_MODIFY, "modify_strict": ofp.OFPFC_MODIFY_STRICT,
    "delete": ofp.OFPFC_DELETE, "delete_strict": ofp.OFPFC_DELETE_STRICT,
}
_METER_COMMANDS = {"add": ofp.OFPMC_ADD, "modify": ofp.OFPMC_MODIFY, "delete": ofp.OFPMC_DELETE}


def to_ryu(dp, msg: Message):
    if isinstance(msg, FlowMod):
        return _flow_mod(dp, msg)
    if isinstance(msg, MeterMod):
        bands = [] if msg.command == "delete" else [
            parser.OFPMeterBandDrop(rate=msg.rate, burst_size=msg.burst)]
        flags = ofp.OFPMF_PKTPS if msg.pps else ofp.OFPMF_KBPS
        if msg.burst:
            flags |= ofp.OFPMF_BURST
        return parser.OFPMeterMod(dp, command=_METER_COMMANDS[msg.command], flags=flags,
                                  meter_id=msg.meter_id, bands=bands)
    if isinstance(msg, PacketOut):
        return parser.OFPPacketOut(dp, buffer_id=OFP_NO_BUFFER, in_port=msg.in_port,
                                   actions=[_action(a) for a in msg.actions], data=msg.data)
    if isinstance(msg, Barrier):
        return parser.OFPBarrierRequest(dp)
    raise TypeError(f"cannot convert {msg!r}")


def _flow_mod(dp, m: FlowMod):
    insts = []
    for ins in m.instructions:
        if isinstance(ins, Apply):
            insts.append(parser.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [_action(a) for a in ins.actions]))
        elif isinstance(ins, Goto):
            insts.append(parser.OFPInstructionGotoTable(ins.table_id))
        elif isinstance(ins, Meter):
            insts.append(parser.OFPInstructionMeter(ins.meter_id))
    flags = ofp.OFPFF_SEND_FLOW_REM if m.send_flow_rem else 0
    return parser.OFPFlowMod(
        dp, cookie=m.cookie, cookie_mask=m.cookie_mask, table_id=m.table_id,
        command=_COMMANDS[m.command], idle_timeout=m.idle_timeout,
        hard_timeout=m.hard_timeout, priority=m.priority, buffer_id=OFP_NO_BUFFER,
        out_port=m.out_port, out_group=ofp.OFPG_ANY, flags=flags,
        match=parser.OFPMatch(**m.match), instructions=insts)


def _action(a):
    if isinstance(a, Output):
        return parser.OFPActionOutput(a.port, a.max_len)
    if isinstance(a, SetField):
        return parser.OFPActionSetField(**{a.field: a.value})
    raise TypeError(f"cannot convert action {a!r}")
