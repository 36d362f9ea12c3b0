"""The SCA (security correlative agent, X.1125) that runs on each terminal: `crs agent`.

It reads the terminal's posture file (the JSON document described in docs/crs.md, "The
posture file"), reports it to the SCS as a
signed SCIReport at start (after an MSConnectReport), every --interval seconds and at once when
the posture file changes (the kernel's file notifications wake it at once; without them
its mtime is polled every 100 ms). It signs with the crs-report key of the
keys file the supplicant writes (re-read when that file changes). It obeys the SCS: an
SCIResponse or an UpdateCommand naming an update makes it GET the item from the update server
and then rewrite the posture (raise patch level / signature version, mark threats cleaned,
clear attackers) and report again. It answers SCA probe requests on --listen (default 7125)
and sends Leave on SIGTERM/SIGINT. Standard library (urllib, http.server, json), plus
inotify_simple for the file notifications when it is there.
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import logging
import queue
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from controller import jsonfile
from controller.crs import messages as crsap
from controller.crs.filewatch import FileWatch
from controller.httpclient import Poster

AGENT_VERSION = "1.0.0"
POLL_S = 0.1
HTTP_TIMEOUT_S = 5.0
log = logging.getLogger("crs.agent")


read_json = jsonfile.read
write_json_atomic = jsonfile.write_atomic


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= crsap.MAX_INT else 0


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1e12:
        return v
    return None


def _str(v: Any, default: str) -> str:
    return v[:crsap.MAX_STR] if isinstance(v, str) else default


def sci_from_posture(p: dict[str, Any]) -> dict[str, Any]:
    """The SCI to report, built from the posture file: known keys only, in schema shape
    (the ground-truth `infection` entry is never reported)."""
    os_ = p.get("os") if isinstance(p.get("os"), dict) else {}
    av = p.get("antivirus") if isinstance(p.get("antivirus"), dict) else {}
    version = p.get("agent_version", AGENT_VERSION)
    if not (isinstance(version, str) and re.fullmatch(r"\d{1,6}(\.\d{1,6}){0,3}", version)):
        version = "0"
    threats = []
    for t in p.get("threats") or []:
        if isinstance(t, dict) and isinstance(t.get("name"), str):
            item = {"name": t["name"][:crsap.MAX_STR], "count": _int(t.get("count", 1)),
                    "cleaned": t.get("cleaned") is True}
            if _num(t.get("detected_at")) is not None:
                item["detected_at"] = t["detected_at"]
            threats.append(item)
    attackers = []
    for a in p.get("attackers") or []:
        if not isinstance(a, dict):
            continue
        try:
            ipaddress.IPv4Address(a.get("source"))
        except ValueError:
            continue
        item = {"source": a["source"]}
        if isinstance(a.get("threat"), str):
            item["threat"] = a["threat"][:crsap.MAX_STR]
        if "count" in a:
            item["count"] = _int(a["count"])
        if _num(a.get("last_seen")) is not None:
            item["last_seen"] = a["last_seen"]
        attackers.append(item)
    return {"os": {"name": _str(os_.get("name"), "unknown"),
                   "patch_level": _int(os_.get("patch_level"))},
            "antivirus": {"engine": _str(av.get("engine"), "none"),
                          "signature_version": _int(av.get("signature_version"))},
            "agent_version": version, "firewall": p.get("firewall") is True,
            "threats": threats[:crsap.MAX_LIST], "attackers": attackers[-crsap.MAX_LIST:]}


def install_update(posture: dict[str, Any], install: dict[str, Any],
                   now: float) -> dict[str, Any]:
    """The posture after installing an update item (never lowers a version)."""
    p = json.loads(json.dumps(posture))
    if "patch_level" in install:
        os_ = p.setdefault("os", {})
        os_["patch_level"] = max(_int(os_.get("patch_level")), install["patch_level"])
    if "signature_version" in install:
        av = p.setdefault("antivirus", {})
        av["signature_version"] = max(_int(av.get("signature_version")),
                                      install["signature_version"])
    if "agent_version" in install:
        p["agent_version"] = install["agent_version"]
    if "firewall" in install:
        p["firewall"] = install["firewall"]
    if install.get("clean"):
        for t in p.get("threats") or []:
            if isinstance(t, dict):
                t["cleaned"] = True
        p["attackers"] = []
    p["last_update"] = {"at": now, **install}
    return p


class Agent:
    def __init__(self, posture: Path, keys: Path, scs_url: str, name: str,
                 interval_s: float = 10.0, listen_port: int = 7125,
                 state_dir: Path | None = None, clock: Callable[[], float] = time.time):
        self.posture_path, self.keys_path = Path(posture), Path(keys)
        self.url = scs_url.rstrip("/") + (crsap.HTTP_PATH if not scs_url.rstrip("/").endswith(
            crsap.HTTP_PATH) else "")
        self.name, self.interval_s, self.clock = name, interval_s, clock
        self._poster: Poster | None = None       # one kept-alive connection to the SCS
        self._poster_url = ""
        self.state_dir = Path(state_dir) if state_dir else None
        self.key: bytes | None = None
        self.key_id: str | None = None
        self._keys_mtime: float | None = None
        self._posture_mtime: float | None = None
        self.seq = self._load_seq()
        self.replay = crsap.ReplayState()
        self.done_updates: set[str] = set()
        self.commands: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.last_level: str | None = None
        self.reports = 0
        self.probed = 0
        self.interval_set = False
        self.server = ThreadingHTTPServer(("0.0.0.0", listen_port), self._handler_class())
        self.server.daemon_threads = True
        self.listen_port = self.server.server_address[1]
        self._server_thread: threading.Thread | None = None

    # --- files ----------------------------------------------------------------------------

    def _load_seq(self) -> int | None:
        if self.state_dir is None:
            return None
        data = read_json(self.state_dir / "agent-state.json") or {}
        return data.get("seq") if isinstance(data.get("seq"), int) else None

    def _save_state(self) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.state_dir / "agent-state.json",
                          {"seq": self.seq, "level": self.last_level, "reports": self.reports,
                           "updates": sorted(self.done_updates)})

    def reload_keys(self) -> bool:
        """(Re-)read the keys file when it changed; True when a usable key is loaded."""
        try:
            mtime = self.keys_path.stat().st_mtime
        except OSError:
            return self.key is not None
        if mtime != self._keys_mtime:
            self._keys_mtime = mtime
            data = read_json(self.keys_path) or {}
            try:
                key = bytes.fromhex(data.get("crs_report_key", ""))
            except (TypeError, ValueError):
                key = b""
            if key:
                self.key = key
                self.key_id = data.get("isr_id") if isinstance(data.get("isr_id"), str) \
                    and re.fullmatch(crsap.ID_RE, data["isr_id"]) else None
            else:
                log.warning("keys file %s has no crs_report_key", self.keys_path)
        return self.key is not None

    def posture_changed(self) -> bool:
        try:
            mtime = self.posture_path.stat().st_mtime_ns
        except OSError:
            return False
        changed = mtime != self._posture_mtime
        self._posture_mtime = mtime
        return changed

    # --- CRSAP ----------------------------------------------------------------------------

    def send(self, type_: str, body: dict[str, Any]) -> crsap.Message | None:
        """POST one signed message to the SCS; the verified reply, if any."""
        if not self.reload_keys():
            log.warning("no crs-report key yet; %s not sent", type_)
            return None
        now = self.clock()
        self.seq = crsap.next_seq(self.seq, now)
        raw = crsap.encode(type_, self.name, self.seq, now, body, self.key, self.key_id)
        if self._poster is None or self._poster_url != self.url:
            self._poster, self._poster_url = Poster(self.url, HTTP_TIMEOUT_S), self.url
        try:
            status, answer = self._poster.post(raw, crsap.MAX_SIZE)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("%s to %s failed: %s", type_, self.url, exc)
            return None
        finally:
            self._save_state()
        if status != 200:
            log.warning("%s to %s failed: HTTP %d", type_, self.url, status)
            return None
        if not answer:
            return None
        try:
            msg = crsap.decode(answer)
            if msg.sender != "scs" or msg.body.get("ms_id") != self.name:
                raise crsap.BadMessage("reply not for us")
            crsap.verify(msg, self.key, self.replay, self.clock())
        except crsap.BadMessage as exc:
            log.warning("bad reply from SCS: %s", exc.reason)
            return None
        return msg

    def report(self) -> None:
        posture = read_json(self.posture_path)
        if posture is None:
            log.warning("posture file %s unreadable", self.posture_path)
            return
        reply = self.send("SCIReport", {"ms_id": self.name, "sci": sci_from_posture(posture)})
        self.reports += 1
        if reply is not None and reply.type == "SCIResponse":
            self.last_level = reply.body["level"]
            if "report_interval_s" in reply.body:
                self.interval_s = min(self.interval_s, reply.body["report_interval_s"])
            self._save_state()
            if "update" in reply.body:
                self.apply_update(reply.body["update"])

    def apply_update(self, update: dict[str, Any]) -> bool:
        """Fetch the update item, install it into the posture, report again."""
        if update["id"] in self.done_updates:
            return False
        try:
            with urllib.request.urlopen(update["url"], timeout=HTTP_TIMEOUT_S) as resp:
                resp.read(1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            log.warning("update %s from %s failed: %s", update["item"], update["url"], exc)
            return False
        posture = read_json(self.posture_path) or {}
        write_json_atomic(self.posture_path, install_update(posture, update["install"],
                                                            self.clock()))
        self.done_updates.add(update["id"])
        self.posture_changed()  # our own write: report once, below
        self.report()
        return True

    # --- probe / push listener ------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug(fmt, *args)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.path != crsap.HTTP_PATH or not 0 < length <= crsap.MAX_SIZE:
                    self.send_error(400)
                    return
                status, payload = agent.on_message(self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def on_message(self, raw: bytes) -> tuple[int, bytes]:
        """A message pushed to the agent: a probe (answered) or an update command (queued)."""
        try:
            msg = crsap.decode(raw)
            if not self.reload_keys():
                raise crsap.BadMessage("no key")
            if msg.sender != "scs" or msg.body.get("ms_id", self.name) != self.name:
                raise crsap.BadMessage("not from the SCS or not for this terminal")
            crsap.verify(msg, self.key, self.replay, self.clock())
        except crsap.BadMessage as exc:
            return 403, json.dumps({"error": exc.reason}).encode()
        if msg.type == "SCAProbeRequest":
            # the SCS says where and how often to report: keep it and use it (11.1)
            if msg.body.get("scs_url"):
                url = str(msg.body["scs_url"]).rstrip("/")
                self.url = url if url.endswith(crsap.HTTP_PATH) else url + crsap.HTTP_PATH
            if msg.body.get("report_interval_s"):
                self.interval_s = float(msg.body["report_interval_s"])
                self.interval_set = True        # the main loop reschedules its report
            self.probed += 1
            now = self.clock()
            self.seq = crsap.next_seq(self.seq, now)
            body = {"ms_id": self.name, "sca_version": AGENT_VERSION,
                    "nonce": msg.body["nonce"]}
            return 200, crsap.encode("SCAProbeResponse", self.name, self.seq, now, body,
                                     self.key, self.key_id)
        if msg.type == "UpdateCommand":
            self.commands.put(msg.body["update"])
            return 202, b"{}"
        return 400, json.dumps({"error": f"{msg.type} not handled by the agent"}).encode()

    # --- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        self._server_thread = threading.Thread(target=self.server.serve_forever,
                                               kwargs={"poll_interval": 0.2}, daemon=True)
        self._server_thread.start()
        try:
            self.reload_keys()
            self.send("MSConnectReport", {"ms_id": self.name, "sca_version": AGENT_VERSION})
            self.posture_changed()
            self.report()
            next_report = self.clock() + self.interval_s
            watch = FileWatch([self.posture_path, self.keys_path])
            try:
                self._loop(watch, next_report)
            finally:
                watch.close()
            self.send("Leave", {"ms_id": self.name, "reason": "stopped"})
        finally:
            self.server.shutdown()
            self.server.server_close()
        return 0

    def _loop(self, watch: FileWatch, next_report: float) -> None:
        """Until stopped: updates the SCS ordered, changed keys, reports (at once when the
        posture file changed, else every interval)."""
        while not self.stopping.is_set():
            watch.wait(POLL_S)           # returns at once when a watched file changes
            if self.stopping.is_set():
                break
            while not self.commands.empty():
                self.apply_update(self.commands.get_nowait())
            self.reload_keys()
            if self.interval_set:            # a probe set the interval: it runs from now
                self.interval_set = False
                next_report = min(next_report, self.clock() + self.interval_s)
            if self.posture_changed() or self.clock() >= next_report:
                self.report()
                next_report = self.clock() + self.interval_s

    def stop(self, *_: Any) -> None:
        self.stopping.set()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="crs agent", description=__doc__.splitlines()[0])
    ap.add_argument("--posture", required=True, type=Path, help="posture JSON file")
    ap.add_argument("--keys", required=True, type=Path, help="keys JSON file (supplicant)")
    ap.add_argument("--scs", required=True, help="SCS URL, e.g. http://10.0.100.254:8080")
    ap.add_argument("--name", required=True, help="terminal id (the CRSAP sender)")
    ap.add_argument("--interval", type=float, default=10.0, help="report interval, s")
    ap.add_argument("--listen", type=int, default=7125, help="probe/update port")
    ap.add_argument("--state-dir", type=Path, default=None, help="where to keep agent state")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s crs-agent %(levelname)s %(message)s")
    if not re.fullmatch(crsap.ID_RE, args.name) or args.interval <= 0 \
            or not 0 <= args.listen <= 65535:
        log.error("bad --name, --interval or --listen")
        return 2
    try:
        agent = Agent(args.posture, args.keys, args.scs, args.name, args.interval,
                      args.listen, args.state_dir)
    except OSError as exc:
        log.error("cannot listen on port %s: %s", args.listen, exc)
        return 1
    signal.signal(signal.SIGTERM, agent.stop)
    signal.signal(signal.SIGINT, agent.stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
