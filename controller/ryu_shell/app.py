"""The Ryu (or os-ken) application: a thin adapter between OpenFlow events and the pure core.

It receives OpenFlow events, hands them to `controller.core.Core`, converts what the core
returns with `ofconv` and sends it; it serves the REST API (`rest`) on its own HTTP server
and makes the core's outgoing HTTP requests in green threads. No decision is made here.
"""
from __future__ import annotations

import logging
import os
import time
import urllib.parse

from eventlet import tpool

from controller import metrics, restguard
from controller import settings as settings_mod
from controller.admission.eapol import FRAME_KINDS, frame_kind
from controller.audit import AuditLog
from controller.core import Core
from controller.crs.messages import HTTP_PATH
from controller.httpserver import Server
from controller.openflow.encode import Unsupported, encode
from controller.openflow.ofmsg import FlowMod, LocalFrame, MeterMod, PacketOut
from controller.openflow.reconcile import Installed
from controller.pipeline import MAX_METERED_PORT
from controller.ryu_shell import direct_write
from controller.ryu_shell.confirmations import Confirmations
from controller.ryu_shell.durable import Outputs
from controller.ryu_shell.framework import App, hub, ofp_event, ofproto_v1_3
from controller.ryu_shell.framework import handler as _handler
from controller.ryu_shell.leadership import Leadership
from controller.ryu_shell.local_eapol import LocalEapol
from controller.ryu_shell.ofconv import to_ryu
from controller.ryu_shell.port_eapol import PortEapol
from controller.ryu_shell.radius_io import RadiusIo
from controller.ryu_shell.rest import RestApi, _standby_body, wsgi
from controller.ryu_shell.service_port import ServicePort
from controller.store import Store
from controller.storedb import Db

CONFIG_DISPATCHER, DEAD_DISPATCHER = _handler.CONFIG_DISPATCHER, _handler.DEAD_DISPATCHER
MAIN_DISPATCHER, set_ev_cls = _handler.MAIN_DISPATCHER, _handler.set_ev_cls
log = logging.getLogger("crs.app")
TICK_S = 0.1
MAX_GROUP = 256     # CRSAP messages committed together at most
FLOW_READ_S = 2.0   # a new leader waits this long for a switch's flow table
# timing counters of frames from the switches: (core us, send us, count), for EAPOL
# (packet-ins and the LOCAL-port transport) and for the rest; EAPOL's also in the thread's
# CPU time (a syscall each, ~0.7 us: not on every packet-in). Wall time well above CPU time:
# the thread was off its vCPU meanwhile.
_TIMED = {kind == "eapol": (f"time_{kind}_core_us", f"time_{kind}_send_us", f"timed_{kind}")
          for kind in ("eapol", "other")}
_CPU = ("cpu_eapol_core_us", "cpu_eapol_send_us")
# and for a lone EAPOL frame, by what the supplicant sent (`eapol.frame_kind`): count, wall and
# CPU us of the core, and the time from the frame to its answer when the answer left from
# inside the core call (`_send_now`: EAP requests, the Success)
_KIND = {k: (f"timed_eapol_{k}", f"time_eapol_{k}_us", f"cpu_eapol_{k}_us",
             f"answered_eapol_{k}", f"time_eapol_{k}_answer_us") for k in FRAME_KINDS}


def _timestamped_logs() -> None:
    """The framework's log handlers print the bare message: give every line its time (to
    the millisecond: a lease, an EAP exchange, a takeover are read on that scale)."""
    fmt = logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                            "%Y-%m-%d %H:%M:%S")
    for h in logging.getLogger().handlers:
        if h.formatter is None:
            h.setFormatter(fmt)


class CrsController(App):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _timestamped_logs()
        settings = settings_mod.CURRENT or settings_mod.Settings()
        loaded = settings_mod.LOADED or settings_mod.validate(settings)
        topo = loaded.topology
        self._settings, self._loaded = settings, loaded
        self.datapaths: dict[int, object] = {}
        # with domains (roaming), the switches this controller owns: others are refused
        self._owned = topo.domain_dpids(settings.domain) if topo and settings.domain else None
        self._send_lock = hub.BoundedSemaphore(1)
        self._answered_at: float | None = None     # an answer left during this core call
        # what leaves waits for the disk sync of the decisions before it (pipelined)
        self.outputs = Outputs(lambda: self.core.store.db.wal, self._emit,
                               lambda: self.core.counters, _store_failed)
        self.local_eapol = LocalEapol(self._local_read)
        self.port_eapol: PortEapol | None = None     # (admission.eapol_transport: port)
        self._local_ifaces: dict[int, str] = {}
        self._flow_reads: dict[int, tuple[object, list[Installed]]] = {}  # dpid -> (dp, so far)
        self.confirm = Confirmations()      # tagged barriers awaiting the switch's reply
        self._audit = AuditLog(settings.audit_log)
        if settings.ha_enabled:     # a standby reads the shared store, never writes it
            Db(settings.db_path).migrate()
        self.core = self._new_core(read_only=settings.ha_enabled)
        self.copy_at = time.time()
        self.operator_token = _operator_token(settings.token_file)
        self._cap = restguard.SourceCap(settings.rest_conn_per_source,
                                        settings.rest_conn_per_loopback, self.core.counters)
        self.radius = RadiusIo(self._radius_datagram) \
            if settings.admission_backend == "radius" and self.core.admission else None
        self._ticker = hub.spawn(self._tick_loop)
        self.crsap = CrsapGroupCommit(self)
        # several controllers: only the leader acts (ryu_shell.leadership), and only the
        # leader listens on the service port (ryu_shell.service_port)
        self.service = ServicePort(settings.rest_host, settings.ha_service_port) \
            if settings.ha_enabled and settings.ha_service_port else None
        self.ha = Leadership(
            settings.db_path, settings.ha_node_id, settings.ofp_port, settings.ha_lease_s,
            self._take_over, self._step_down, self._refresh_copy, settings.ha_refresh_s,
            settings.ha_advertise_url or f"http://127.0.0.1:{settings.rest_port}") \
            if settings.ha_enabled else None
        log.info("controller up: admission %s, crs %s, topology %s", settings.admission_mode,
                 "on" if settings.crs_enabled else "off",
                 topo.name if topo else "none (learning only)")

    def _new_core(self, read_only: bool = False, core: Core | None = None) -> Core:
        """A core loaded from the store (or `core`, loaded already): at start, when this
        controller takes over, and as a standby's copy (`read_only`: the store refuses
        its writes)."""
        core = core or self._load_core(read_only)
        if core.admission is not None:
            self._local_ifaces = core.admission.local_interfaces()
            if self._settings.eapol_transport == "port" and self.port_eapol is None:
                self.port_eapol = PortEapol(self._local_frame, core.admission.auth.mac,
                                            self._settings.eapol_port_pps,
                                            lambda: self.core.counters, self._port_lost,
                                            self._port_regained)
            core.admission.early = self._send_now   # an EAP Success before the commit
        old = getattr(self, "core", None)
        if old is not None:             # counters run on across takeovers and copies
            core.counters.update(old.counters)
            self.outputs.drain(old.store.db.wal)
            old.store.close()
        if getattr(self, "_cap", None) is not None:
            self._cap.counters = core.counters
        return core

    def _load_core(self, read_only: bool) -> Core:
        # with several controllers a call to a store that stopped answering is cut after
        # one lease: this controller must be free to step down in time
        s = self._settings
        return Core(s, self._loaded.topology, loaded=self._loaded, audit=self._audit,
                    store=Store(s.db_path, read_only, s.ha_lease_s if s.ha_enabled else 10.0,
                                pipelined=True))

    def _refresh_copy(self) -> None:
        """A standby's view of the store, re-read (what its REST API shows). Read in a
        native thread: a store that stops answering must not stop this process."""
        if self.active:
            return
        fresh = tpool.execute(self._load_core, True)
        if self.active:     # took over meanwhile: that loaded its own
            fresh.store.close()
            return
        self.core = self._new_core(core=fresh)
        self.copy_at = time.time()

    def start(self):
        """The framework starts the app: the REST API's server starts with it (on the REST
        port; the service port, with several controllers, follows leadership)."""
        thread = super().start()
        s = self._settings
        app, fast = wsgi(RestApi(self)), self._crsap_fast
        lane = (HTTP_PATH, self.crsap.run)      # agents' reports: one thread, batched
        if self.service is not None:
            self.service.make_server = lambda: Server(app, self._cap, s.rest_socket_timeout_s,
                                                      fast, server_port=self.service.port,
                                                      lane=lane, settle=self.outputs.wait)
        import eventlet
        listener = eventlet.listen((s.rest_host, s.rest_port), reuse_addr=True,
                                   reuse_port=False, backlog=1024)
        server = Server(app, self._cap, s.rest_socket_timeout_s, fast, server_port=s.rest_port,
                        lane=lane, settle=self.outputs.wait)
        self._rest_thread = hub.spawn(server.serve, listener)
        log.info("REST API on %s:%d", s.rest_host, s.rest_port)
        return thread

    def _crsap_fast(self, method: str, path: str, headers: dict, body: bytes):
        """POST /crsap/v1/messages straight into the group commit, without the WSGI stack
        (the route stays, for completeness)."""
        if path != HTTP_PATH or method != "POST":
            return None
        status, answer = self.crsap.submit(body)
        return status, "application/json", answer

    @property
    def active(self) -> bool:
        """This controller acts on the network: alone, or the leader of several."""
        return self.ha is None or self.ha.acting

    def _take_over(self, generation: int) -> None:
        """Leading now: the store's state, every switch MASTER under our generation, then
        its flow table read and rebuilt from the store on top of what it holds, without a
        gap (`openflow.reconcile`): admitted terminals keep going, restricted ones stay
        restricted throughout."""
        t0 = time.perf_counter()
        self.core = self._new_core()
        self.core.store.fence = (self.ha.lease.me, generation)   # commits need the lease
        self.core.counters["ha_takeovers"] += 1
        self.takeover_load_ms = (time.perf_counter() - t0) * 1e3
        for dp in list(self.datapaths.values()):
            self.ha.request_role(dp)
            self._read_flows(dp)
        if self.service is not None:
            self.service.open()

    def _read_flows(self, dp) -> None:
        """Ask a switch for its flows; rebuild when they are in. A switch that does not
        answer within FLOW_READ_S is rebuilt cold (its old flows deleted first)."""
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self._flow_reads[dp.id] = (dp, [])
        dp.send_msg(parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                               ofp.OFPG_ANY, 0, 0, parser.OFPMatch()))

        def cold() -> None:
            if self._flow_reads.get(dp.id, (None,))[0] is dp and self.active \
                    and self.datapaths.get(dp.id) is dp:
                del self._flow_reads[dp.id]
                log.warning("switch %016x sent no flow table in %.0f s: rebuilt cold",
                            dp.id, FLOW_READ_S)
                self.core.counters["ha_cold_rebuilds"] += 1
                self._switch_up(dp)
        hub.spawn_after(FLOW_READ_S, cold)

    def _switch_up(self, dp, installed: list[Installed] | None = None) -> None:
        self.send(self.core.switch_up(dp.id, set(), eapol_local=self.local_eapol.can_send(
            dp.id), installed=installed))
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev):
        dp = ev.msg.datapath
        reading, got = self._flow_reads.get(dp.id, (None, []))
        if reading is not dp or not self.active:
            return
        got += [Installed(f.table_id, f.priority, dict(f.match.items()), f.cookie)
                for f in ev.msg.body]
        if ev.msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
            return
        del self._flow_reads[dp.id]
        self.core.counters["ha_flows_read"] += len(got)
        self._switch_up(dp, got)

    def _step_down(self) -> None:
        if self.service is not None:
            self.service.close()
        for dp in list(self.datapaths.values()):
            try:
                self.ha.request_role(dp)
            except Exception:    # a connection on its way down: the switch demotes us anyway
                pass

    # --- sending -----------------------------------------------------------------------

    def send(self, out) -> None:
        """Send what the core returned, with the posts and RADIUS datagrams it left, once
        the decisions committed before it are on disk (`durable.Outputs`: at once when
        they are)."""
        if not self.active:        # a standby changes nothing (the switches would refuse)
            return
        posts = self.core.take_http()
        admission = self.core.admission
        radius = admission.take_radius() if self.radius is not None and admission else []
        if out or posts or radius:
            self.outputs.send((out, posts, radius))

    def _emit(self, bundle) -> None:
        """Send one bundle, in order. One batch at a time: the yield that lets a frame (an
        EAP Success) leave before the flow-mods behind it are converted must not let a
        newer batch (a newer decision for the same terminal) overtake them."""
        out, posts, radius = bundle
        if not self.active:
            return
        last = len(out) - 1
        with self._send_lock:
            run: list = []          # consecutive flow/meter/barrier messages for one switch
            for i, (dpid, msg) in enumerate(out):
                if run and (dpid != run[0][0] or isinstance(msg, (LocalFrame, PacketOut))):
                    self._send_run(run)
                    run = []
                if isinstance(msg, LocalFrame):
                    self._eapol_out(dpid, msg.data)
                    continue
                dp = self.datapaths.get(dpid)
                if dp is None:
                    continue
                if isinstance(msg, PacketOut):
                    _send(dp, msg)
                    if i < last:
                        hub.sleep(0)
                else:
                    run.append((dpid, msg))
            if run:
                self._send_run(run)
        for post in posts:
            if post.route == "roam":     # a peer SCS (its own URL, any route)
                hub.spawn(_post, post.url, post.body, self.roam if post.answer_back else None)
            else:                         # an agent: from the service address only
                hub.spawn(_post, post.url, post.body,
                          self.crsap.submit if post.answer_back else None,
                          self.core.security.svc.controller_ip if self.core.security else None)
        for d in radius:
            self.radius.send(d.host, d.port, d.data)

    def _send_run(self, run: list) -> None:
        """One switch's consecutive messages in one write (one queue entry, one syscall,
        one TCP segment for ~30 flow-mods of an admission), in order, each with its own
        transaction id; a message the encoder does not know goes through Ryu on its own."""
        dpid = run[0][0]
        dp = self.datapaths.get(dpid)
        if dp is None:
            return
        now = time.monotonic()
        buf: list[bytes] = []
        for _, msg in run:
            dp.xid = xid = (dp.xid + 1) & dp.ofproto.MAX_XID
            try:
                buf.append(encode(msg, xid))
            except Unsupported:
                if buf:
                    direct_write.write(dp, b"".join(buf))
                    buf = []
                xid = _send_ryu(dp, msg, xid)
            self._count_sent(msg)
            self.confirm.sent(dpid, xid, msg, now)
        if buf:
            direct_write.write(dp, b"".join(buf))

    def _radius_datagram(self, host: str, port: int, data: bytes) -> None:
        if self.active and self.core.admission is not None:
            self.send(self.core.admission.radius_datagram(host, port, data, time.time()))

    def roam(self, raw: bytes) -> tuple[int, bytes]:
        """A roaming message (a peer's query, or the answer to ours): to the core, then its
        flows out."""
        if not self.active:
            return 503, _standby_body(self)
        try:
            status, body, out = self.core.roam_message(raw, time.time())
        except Exception:  # a bug must not take the caller (a REST handler, a post) down
            log.exception("roaming message failed")
            self.core.counters["crs_roam_failed"] += 1
            return 500, b'{"error": "internal error"}'
        self.send(out)
        return status, body

    def _count_sent(self, msg) -> None:
        c = self.core.counters
        if isinstance(msg, FlowMod):
            c[f"of_flow_mods_table_{msg.table_id}"] += 1
        elif isinstance(msg, MeterMod):
            c["of_meter_mods"] += 1

    def _send_now(self, out) -> bool:
        """Send frames from inside a core call, or say it cannot be done without yielding
        (another batch is being sent, a switch's queue is full): a green thread switch here
        could run other core work in the middle of this one."""
        if not self.active or not self._send_lock.acquire(blocking=False):
            return False
        try:
            if not all(self._sends_at_once(dpid, msg) for dpid, msg in out):
                return False
            for dpid, msg in out:
                if isinstance(msg, LocalFrame):
                    self._eapol_out(dpid, msg.data)
                else:
                    _send(self.datapaths[dpid], msg)
            if self._answered_at is None:
                self._answered_at = time.perf_counter()
            return True
        finally:
            self._send_lock.release()

    def _eapol_out(self, dpid: int, data: bytes) -> None:
        """An answer made for LOCAL: on its port's own interface when that is read here
        (`eapol_transport: port`), else into the switch's LOCAL port."""
        if self.port_eapol is None or not self.port_eapol.send(dpid, data):
            self.local_eapol.send(dpid, data)

    def _sends_at_once(self, dpid: int, msg) -> bool:
        if isinstance(msg, LocalFrame):
            return self.local_eapol.can_send(dpid)
        dp = self.datapaths.get(dpid)
        q = getattr(dp, "send_q", None)     # Ryu's queue to the switch (None: closing)
        return isinstance(msg, PacketOut) and q is not None and not q.full()

    # --- OpenFlow events ---------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev):
        dp = ev.msg.datapath
        if self._owned is not None and dp.id not in self._owned:
            self.core.counters["switch_of_another_domain_refused"] += 1
            log.warning("refused switch %016x: not of domain %s", dp.id, self._settings.domain)
            dp.close()
            return
        old = self.datapaths.get(dp.id)
        if old is not None and old is not dp and getattr(old, "is_active", False):
            # a second connection claiming a connected switch's datapath id would replace
            # it (and receive its flows): refused. If the first connection is in fact dead
            # (the switch restarted without closing it), the echo request sent on it now
            # meets a reset, Ryu marks it dead, and the switch's next attempt is accepted.
            self.core.counters["attack_duplicate_dpid_refused"] += 1
            log.warning("refused a second connection claiming datapath %016x from %s "
                        "(the switch is connected)", dp.id, getattr(dp, "address", "?"))
            old.send_msg(old.ofproto_parser.OFPEchoRequest(old))
            dp.close()
            return
        self.datapaths[dp.id] = dp
        direct_write.track(dp)
        log.info("switch %016x connected", dp.id)
        ifname = self._local_ifaces.get(dp.id)
        if ifname is not None:
            self.local_eapol.open(dp.id, ifname)
        if self.ha is not None:
            self.ha.request_role(dp)
        if self.active:       # (a switch that kept its tables keeps them while rebuilt)
            self._read_flows(dp)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _port_desc(self, ev):
        if not self.active:
            return
        dp = ev.msg.datapath
        ofp = dp.ofproto
        for p in ev.msg.body:
            if p.port_no < ofp.OFPP_MAX:
                name = _port_name(p.name)
                self.send(self.core.port_status(
                    dp.id, p.port_no, not p.state & ofp.OFPPS_LINK_DOWN, name=name,
                    eapol_direct=self._read_port(dp.id, p.port_no, name, p.hw_addr)))

    def _port_lost(self, dpid: int, port: int) -> None:
        """A port's socket failed: the port, no longer read here, gets its EAPOL through
        LOCAL back, and nothing else changes (no other port's flows, no port's state: its
        sessions and hold-off stay; an interface replaced under the port comes back with
        the switch's port status, the same interface after a delay: `_port_regained`).
        Later, in a green thread of its own: this may run
        inside a core call (an answer's write), where nothing may yield."""
        def back() -> None:
            if dpid in self.datapaths and self.active and self.port_eapol is not None:
                # (read again meanwhile, after a port status: its drop flow stays)
                self.send(self.core.eapol_transport(
                    dpid, port, self.port_eapol.reads(dpid, port)))
        hub.spawn(back)

    def _port_regained(self, dpid: int, port: int, name: str, hw_addr: str) -> bool:
        """A lost port's interface is still the same one (`PortEapol`'s retry): read it
        again if the port qualifies as at a port status, and move its EAPOL back to it."""
        if dpid not in self.datapaths or not self.active or self.port_eapol is None:
            if self.port_eapol is not None:     # (a takeover or reconnection reads it anew)
                self.port_eapol.close(dpid, port)
            return False
        if not self._read_port(dpid, port, name, hw_addr):
            return False
        self.send(self.core.eapol_transport(dpid, port, True))
        return True

    def _read_port(self, dpid: int, port: int, name: str, hw_addr: str) -> bool:
        """With `eapol_transport: port`: whether this edge port's own interface is read
        from now on (the switch's LOCAL port is, and the interface is on this host)."""
        adm, pe = self.core.admission, self.port_eapol
        if pe is None:
            return False
        # (LOCAL read and the switch's flows made for it: a switch rebuilt while its LOCAL
        # socket was down uses packet-ins until it connects again)
        if adm is None or not adm.edge(dpid, port) or port > MAX_METERED_PORT or \
                not self.local_eapol.can_send(dpid) or dpid not in adm.local:
            pe.close(dpid, port)        # (read before, no longer: not twice, not stale)
            return False
        return pe.open(dpid, port, name, hw_addr)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state(self, ev):
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER and dp.id is not None:
            if self.datapaths.get(dp.id) is dp:
                del self.datapaths[dp.id]
                self.local_eapol.close(dp.id)
                if self.port_eapol is not None:
                    self.port_eapol.close_switch(dp.id)
                self.confirm.forget(dp.id)
                self.core.switch_down(dp.id)
                log.info("switch %016x disconnected", dp.id)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        in_port = msg.match.get("in_port")
        if in_port is None or not self.active:
            return
        eapol = msg.data[12:14] == b"\x88\x8e"
        if eapol and self.port_eapol is not None and \
                self.port_eapol.reads(msg.datapath.id, in_port):
            # read on the port itself (a switch being rebuilt sends it here too for a
            # moment, before the flow that drops it there is in): not taken twice
            self.core.counters["eapol_packet_in_of_read_port"] += 1
            return
        self._answered_at = None
        t0, c0 = time.perf_counter(), time.thread_time() if eapol else 0.0
        out = self.core.packet_in(msg.datapath.id, in_port, msg.table_id, msg.data)
        self._timed(t0, c0, out, eapol, kind=frame_kind(msg.data) if eapol else None)

    def _local_read(self, dpid: int, frames: list[bytes]) -> None:
        """Frames from a LOCAL port; those of a port read on its own interface are not
        taken twice (the switch's flow that drops them there may not be in yet)."""
        pe = self.port_eapol
        if pe is not None and pe.ports:
            frames = [f for f in frames if not pe.reads(dpid, int.from_bytes(f[2:6], "big"))]
            if not frames:
                return
        self._local_frame(dpid, frames)

    def _local_frame(self, dpid: int, frames: list[bytes]) -> None:
        if not self.active:          # every controller reads LOCAL; only the leader answers
            return
        self._answered_at = None
        t0, c0 = time.perf_counter(), time.thread_time()
        self._timed(t0, c0, self.core.eapol_local(dpid, frames), True, len(frames),
                    frame_kind(frames[0]) if len(frames) == 1 else None)

    def _timed(self, t0: float, c0: float, out, eapol: bool, frames: int = 1,
               kind: str | None = None) -> None:
        """Send what a frame's handling returned; where its time went inside the controller
        (benchmarks read these): the core's decision, then converting and queueing, in wall
        time and, for EAPOL (`c0` its thread time at the start), in the thread's CPU time."""
        t1 = time.perf_counter()
        c1 = time.thread_time() if eapol else 0.0
        self.send(out)
        t2 = time.perf_counter()
        core_key, send_key, n_key = _TIMED[eapol]
        c = self.core.counters
        c[core_key] += int((t1 - t0) * 1e6)
        c[send_key] += int((t2 - t1) * 1e6)
        c[n_key] += frames
        if eapol:
            c[_CPU[0]] += int((c1 - c0) * 1e6)
            c[_CPU[1]] += int((time.thread_time() - c1) * 1e6)
        if kind is not None:
            n, wall, cpu, answered, answer = _KIND[kind]
            c[n] += 1
            c[wall] += int((t1 - t0) * 1e6)
            c[cpu] += int((c1 - c0) * 1e6)
            if self._answered_at is not None:
                c[answered] += 1
                c[answer] += int((self._answered_at - t0) * 1e6)
        if eapol and any(isinstance(m, FlowMod) for _, m in out):
            # an admission (or revocation): its commit and flows, apart from the exchange
            c["time_eapol_flows_core_us"] += int((t1 - t0) * 1e6)
            c["time_eapol_flows_send_us"] += int((t2 - t1) * 1e6)
            c["timed_eapol_flows"] += 1

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        desc = msg.desc
        dpid, name = msg.datapath.id, _port_name(desc.name)
        physical = desc.port_no < ofp.OFPP_MAX      # (not LOCAL: never read as a port)
        if msg.reason == ofp.OFPPR_DELETE and self.port_eapol is not None:
            self.port_eapol.close(dpid, desc.port_no)      # (a standby's too: it may lead next)
        if not self.active:
            return
        up = msg.reason != ofp.OFPPR_DELETE and not (desc.state & ofp.OFPPS_LINK_DOWN)
        direct = up and physical and self._read_port(dpid, desc.port_no, name, desc.hw_addr)
        self.send(self.core.port_status(dpid, desc.port_no, up, name=name,
                                        eapol_direct=direct))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED and self.ha is not None:
            self.core.counters["ha_role_refused"] += 1
            if msg.code == ofp.OFPRRFC_STALE:
                self.ha.stale()
            return
        if msg.type == ofp.OFPET_METER_MOD_FAILED and msg.code in (
                ofp.OFPMMFC_METER_EXISTS, ofp.OFPMMFC_UNKNOWN_METER):
            # meters are added and modified together when a switch may or may not still
            # hold them (deleting one would remove its flows): one of the two fails
            self.core.counters["of_meter_add_or_modify_skipped"] += 1
            return
        self.core.counters["of_errors"] += 1
        log.warning("switch %016x: OpenFlow error type %d code %d", msg.datapath.id,
                    msg.type, msg.code)
        # a decision's flows refused: the barrier reply that follows reports it
        self.confirm.error(msg.datapath.id, msg.xid, f"OpenFlow error type {msg.type} "
                                                      f"code {msg.code}")

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev):
        dpid = ev.msg.datapath.id
        got = self.confirm.reply(dpid, ev.msg.xid)
        if got is not None and self.active:
            self.send(self.core.switch_reply(dpid, got[0], got[1]))

    def _tick_loop(self):
        while True:
            hub.sleep(TICK_S)
            if not self.active:
                continue
            try:
                self.send(self.core.tick(time.time()))
                self.confirm.prune(time.monotonic())
            except Exception:  # a bug in one tick must not stop the controller
                log.exception("tick failed")


class CrsapGroupCommit:
    """CRSAP messages handled together: one store transaction (one disk sync) for all of
    them, then their flows, then their answers. The REST server's CRSAP lane hands over
    every complete report of a turn at once (`run`); messages from elsewhere (the WSGI
    route, probe answers) that arrive while the core is busy wait in a queue and go
    together too (`submit`)."""

    def __init__(self, app: CrsController):
        self.app = app
        self.queue = hub.Queue()
        hub.spawn(self._loop)

    def submit(self, raw: bytes) -> tuple[int, bytes]:
        if not self.app.active:
            return 503, _standby_body(self.app)
        done, slot, t0 = hub.Event(), [], time.perf_counter()
        self.queue.put((raw, done, slot, t0))
        done.wait()
        metrics.observe("report", time.perf_counter() - t0)
        return slot[0]

    def run(self, raws: list[bytes]) -> list[tuple[int, bytes]]:
        """One group: committed, its flows sent, then (status, body) for each message."""
        t0 = time.perf_counter()
        out = self._group(raws, [t0] * len(raws))
        dt = time.perf_counter() - t0
        for _ in raws:
            metrics.observe("report", dt)
        return out

    def _loop(self) -> None:
        while True:
            items = [self.queue.get()]
            while len(items) < MAX_GROUP:
                try:
                    items.append(self.queue.get_nowait())
                except hub.QueueEmpty:
                    break
            answers = self._group([it[0] for it in items], [it[3] for it in items])
            for (_, done, slot, _), answer in zip(items, answers):
                slot.append(answer)
                done.set()

    def _group(self, raws: list[bytes], t0s: list[float]) -> list[tuple[int, bytes]]:
        """The core's CPU time for the group is counted (`time_crsap_core_us`), and the
        flows' (`time_crsap_send_us`): with the lane's, where a report's CPU goes."""
        cpu0 = time.thread_time()
        try:
            if not self.app.active:     # stepped down while these waited
                results = [(503, _standby_body(self.app), [])] * len(raws)
            else:
                results = self.app.core.crsap_messages(raws, time.time())
        except Exception:  # a bug must not stop the loop nor leave senders waiting
            log.exception("CRSAP group of %d failed", len(raws))
            results = [(500, b'{"error": "internal error"}', [])] * len(raws)
        counters = self.app.core.counters
        cpu1 = time.thread_time()
        counters["time_crsap_core_us"] += int((cpu1 - cpu0) * 1e6)
        counters["crsap_group_commits"] += 1
        sent = []
        for t0, (_, _, out) in zip(t0s, results):   # committed: flows, then answers
            if not out:
                continue
            try:
                self.app.send(out)
                sent.append(t0)
            except Exception:
                log.exception("sending CRSAP flows failed")
        counters["time_crsap_send_us"] += int((time.thread_time() - cpu1) * 1e6)
        if not self.app.outputs.wait():     # the group's commit on disk, its flows sent
            return [(503, b'{"error": "the store did not sync in time"}')] * len(raws)
        for t0 in sent:
            metrics.observe("reaction", time.perf_counter() - t0)
        return [(status, body) for status, body, _ in results]


def _store_failed(error: OSError) -> None:
    """The store's disk sync failed: which decisions are on disk is unknown, and the kernel
    will not say again. Stop (as PostgreSQL does); restarted, the controller syncs the store
    before it says anything, and rebuilds every switch from it. Meanwhile the switches keep
    their flows: quarantined terminals stay quarantined."""
    log.critical("stopping: the store's disk sync failed (%s); nothing decided since the "
                 "last sync was sent", error)
    logging.shutdown()
    os._exit(70)


def _send(dp, msg) -> int:
    """One message to a switch: packed directly (`openflow.encode`, ~6 us against ~137 us
    through Ryu's message classes), or through Ryu if the encoder does not know it. Its
    transaction id (read before sending: a full send queue yields, and others send too)."""
    dp.xid = xid = (dp.xid + 1) & dp.ofproto.MAX_XID
    try:
        direct_write.write(dp, encode(msg, xid))
    except Unsupported:
        xid = _send_ryu(dp, msg, xid)
    return xid


def _send_ryu(dp, msg, xid: int) -> int:
    """A message the encoder does not know, through Ryu's classes; its transaction id."""
    ryu_msg = to_ryu(dp, msg)
    dp.send_msg(ryu_msg)
    return ryu_msg.xid if ryu_msg.xid is not None else xid


POST_DEADLINE_S = 10.0      # the whole exchange with an agent, however it dribbles


def _port_name(raw) -> str:
    """A port's name as the switch gives it (bytes in Ryu, NUL-padded)."""
    if isinstance(raw, bytes):
        raw = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(raw or "")


def _post(url: str, body: bytes, answer_to=None, source_ip: str | None = None) -> None:
    """POST to an agent (what the terminal answers is untrusted: no redirects followed,
    one deadline for the whole exchange, 64 KiB read at most); `answer_to` takes its
    answer when that is a CRSAP message (an SCAProbeResponse: authenticated by the core
    like any report). Sent from the controller's service address (`source_ip`): when that
    address is not up on this host, nothing leaves (never toward another network by the
    default route)."""
    import http.client

    import eventlet
    u = urllib.parse.urlsplit(url)
    answer, status = b"", 0
    try:
        with eventlet.Timeout(POST_DEADLINE_S):
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5,
                                              source_address=(source_ip, 0) if source_ip
                                              else None)
            try:
                conn.request("POST", u.path or "/", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                answer, status = r.read(64 * 1024), r.status
            finally:
                conn.close()
    except (Exception, eventlet.Timeout) as exc:  # the agent may be gone or stall
        log.info("POST %s failed: %s", url, exc or "deadline")
        return
    if answer_to is not None and status == 200 and answer:
        answer_to(answer)


def _operator_token(path: str | None) -> str | None:
    """The token the launcher wrote; None (every operator POST refused) if there is none."""
    if not path:
        log.warning("no operator token file: operator POSTs will be refused")
        return None
    try:
        return restguard.read_token(path)
    except (OSError, ValueError) as exc:
        log.warning("operator token unreadable (%s): operator POSTs will be refused", exc)
        return None


