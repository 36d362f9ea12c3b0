"""The Ryu application: a thin adapter between Ryu events and the pure core.

It receives OpenFlow events, hands them to `controller.core.Core`, converts what the core
returns with `ofconv` and sends it. It also serves the REST API through Ryu's WSGI server.
No decision is made here.
"""
from __future__ import annotations

import json
import logging
import time

from ryu.app.wsgi import ControllerBase, Response, WSGIApplication, route
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import (
    CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls,
)
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from controller import settings as settings_mod
from controller import topology as topology_mod
from controller.core import Core
from controller.ryu_shell.ofconv import to_ryu

log = logging.getLogger("crs.app")
API = "crs_api"
TICK_S = 0.1


class CrsController(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = settings_mod.CURRENT or settings_mod.Settings()
        topo = topology_mod.load(settings.topology_file) if settings.topology_file else None
        self.core = Core(settings, topo)
        self.datapaths: dict[int, object] = {}
        kwargs["wsgi"].register(RestApi, {API: self})
        self._ticker = hub.spawn(self._tick_loop)
        log.info("controller up: admission %s, topology %s", settings.admission_mode,
                 topo.name if topo else "none (learning only)")

    # --- sending -----------------------------------------------------------------------

    def send(self, out) -> None:
        for dpid, msg in out:
            dp = self.datapaths.get(dpid)
            if dp is None:
                continue
            dp.send_msg(to_ryu(dp, msg))

    # --- OpenFlow events ---------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev):
        dp = ev.msg.datapath
        self.datapaths[dp.id] = dp
        log.info("switch %016x connected", dp.id)
        self.send(self.core.switch_up(dp.id, set()))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state(self, ev):
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER and dp.id is not None:
            if self.datapaths.get(dp.id) is dp:
                del self.datapaths[dp.id]
                self.core.switch_down(dp.id)
                log.info("switch %016x disconnected", dp.id)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        try:
            in_port = msg.match["in_port"]
        except KeyError:
            return
        self.send(self.core.packet_in(msg.datapath.id, in_port, msg.table_id, msg.data))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        desc = msg.desc
        up = msg.reason != ofp.OFPPR_DELETE and not (desc.state & ofp.OFPPS_LINK_DOWN)
        self.send(self.core.port_status(msg.datapath.id, desc.port_no, up))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        self.core.counters["of_errors"] += 1
        log.warning("switch %016x: OpenFlow error type %d code %d", msg.datapath.id,
                    msg.type, msg.code)

    def _tick_loop(self):
        while True:
            hub.sleep(TICK_S)
            try:
                tick = getattr(self.core, "tick", None)
                if tick is not None:
                    self.send(tick(time.time()))
            except Exception:  # a bug in one tick must not stop the controller
                log.exception("tick failed")


def _json(body, status: int = 200) -> Response:
    return Response(status=status, content_type="application/json",
                    body=json.dumps(body, sort_keys=True).encode())


class RestApi(ControllerBase):
    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.app: CrsController = data[API]

    @route("crs", "/crs/v1/status", methods=["GET"])
    def status(self, req, **_):
        return _json(self.app.core.status())
