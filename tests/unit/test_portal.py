"""The remediation portal's page and its two ports, with a stand-in for the controller."""
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from controller.crs.portal import make_handler, page


def test_the_page_says_level_reason_and_what_to_do_and_escapes_everything():
    info = {"name": "c1t1<script>", "level": "INFECTED", "reason": "threat <b>Worm</b>",
            "actions": ["isolate"], "update": "clean", "sca": "yes"}
    html = page(info, "10.0.1.1", ["clean", "baseline"])
    assert 'id="level">INFECTED<' in html and "isolated" in html
    assert "<script>" not in html and "&lt;b&gt;Worm" in html
    assert 'href="/updates/clean"' in html and 'href="/downloads/crs-agent.py"' in html
    assert "authenticate first" in page(None, "10.9.9.9", [])


@pytest.mark.parametrize("portal", [True, False])
def test_the_ports_serve_updates_the_agent_and_on_the_portal_port_the_page(portal):
    asked = []

    def ask(ip):
        asked.append(ip)
        return {"name": "t", "level": "UNKNOWN", "reason": "r", "actions": ["redirect_web"],
                "update": None, "sca": "unknown"}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(ask, ["clean"], portal))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert urllib.request.urlopen(f"{base}/updates/clean").read() == b"update clean\n"
        assert b"def " in urllib.request.urlopen(f"{base}/downloads/crs-agent.py").read()
        try:      # only the named items: no path reaches a file (the portal page, or 404)
            got = urllib.request.urlopen(f"{base}/updates/../../etc/passwd").read()
        except urllib.error.HTTPError as exc:
            got = exc.read()
        assert b"root:" not in got
        if portal:
            body = urllib.request.urlopen(f"{base}/any/path?x=1").read().decode()
            assert 'id="level">UNKNOWN<' in body and asked[-1] == "127.0.0.1"
        else:
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{base}/")
    finally:
        srv.shutdown()
        srv.server_close()
