"""Self-test of upstream.py, the peer the integration tests trust: talk to it directly.

Run: /usr/bin/python3 -m pytest -q tests/upstream
"""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from helpers import RawConn, pattern_sha256, read_json_lines, request_bytes  # noqa: E402


@pytest.fixture
def up(tmp_path):
    log = tmp_path / "up.log"
    proc = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", "0",
                             "--name", "self", "--log", str(log)], stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    assert line.startswith("listening on "), line
    port = int(line.split()[-1])
    yield port, log
    proc.terminate()
    proc.wait(5)
    proc.stdout.close()


def test_echo_and_log(up):
    port, log = up
    with RawConn(port) as c:
        c.send(request_bytes("POST", "/p?x=1", [("Content-Length", "5"), ("X-A", "1"), ("X-A", "2")],
                             b"hello"))
        r = c.read_final_response()
    echo = r.json()
    assert r.status == 200 and echo["server"] == "self" and echo["path"] == "/p"
    assert echo["query"] == "x=1" and echo["headers"]["x-a"] == "1, 2"
    assert echo["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    time.sleep(0.2)
    events = read_json_lines(log)
    assert [e["event"] for e in events] == ["connect", "request", "body", "disconnect"]
    assert events[1]["target"] == "/p?x=1" and events[2]["body_bytes"] == 5


def test_keep_alive_pipelining_and_chunked_request(up):
    port, log = up
    body = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-t: v\r\n\r\n"
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/one?delay=200")
               + request_bytes("POST", "/two", [("Transfer-Encoding", "chunked")], body)
               + request_bytes("HEAD", "/three"))
        one, two = c.read_final_response(), c.read_final_response()
        three = c.read_final_response(method="HEAD")
    assert (one.json()["path"], two.json()["path"]) == ("/one", "/two")
    assert two.json()["body_bytes"] == 5 and two.json()["trailers"] == {"x-t": "v"}
    assert three.status == 200 and three.body == b""
    assert one.json()["conn"] == two.json()["conn"]


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_download(up, chunked):
    port, _ = up
    n = 3 * 65536 + 17
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/download?bytes=%d&chunked=%s" % (n, chunked)))
        r = c.read_final_response()
    assert r.body_len == n and r.sha256 == r.header("x-body-sha256") == pattern_sha256(n)


def test_status_trailers_close_and_expect(up):
    port, _ = up
    with RawConn(port) as c:
        for s in (204, 304):
            c.send(request_bytes("GET", "/status/%d" % s))
            assert c.read_final_response().status == s
        c.send(request_bytes("GET", "/x?status=418"))
        assert c.read_final_response().status == 418
        c.send(request_bytes("GET", "/trailers"))
        r = c.read_final_response()
        assert dict(r.trailers)["x-checksum"] == hashlib.sha256(r.body).hexdigest()
        c.send(request_bytes("POST", "/e", [("Content-Length", "2"), ("Expect", "100-continue")]))
        assert c.read_response().status == 100
        c.send(b"ok")
        assert c.read_final_response().json()["body_bytes"] == 2
        c.send(request_bytes("GET", "/close"))
        r = c.read_final_response()
        assert r.header("connection") == "close"
        assert c.closed_by_peer(2)


def test_misbehaviours(up):
    port, _ = up
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/reset"))
        assert c.closed_by_peer(2)
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/garbage"))
        assert c.read_until(b"\r\n").startswith(b"HTTP/1.1 abc")
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/hang"))
        assert not c.closed_by_peer(0.5)
    with RawConn(port) as c:
        start = time.monotonic()
        c.send(request_bytes("GET", "/slow-body?bytes=10&ms=1000"))
        c.read_until(b"\r\n\r\n")
        head = time.monotonic() - start
        c.read_exact(10)
        assert head < 0.5 and time.monotonic() - start > 0.8


def test_websocket_echo(up):
    port, log = up
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]))
        r = c.read_response()
        assert r.status == 101 and r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        c.send(b"ping")
        assert c.read_exact(4) == b"ping"
    time.sleep(0.2)
    assert [e for e in read_json_lines(log) if e["event"] == "tunnel_closed"][0]["echoed"] == 4


def test_bad_request_is_logged_not_served(up):
    port, log = up
    with RawConn(port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n")
        assert c.read_final_response().status == 400
    events = read_json_lines(log)
    assert "request" not in [e["event"] for e in events]
    assert any(e["event"] == "bad_request" for e in events)


def test_health_control_changes_what_healthz_answers(up):
    port, _ = up
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/healthz"))
        assert c.read_final_response().status == 200  # until changed
        c.send(request_bytes("POST", "/__health?status=503"))
        r = c.read_final_response()
        assert r.status == 200 and r.json() == {"status": 503, "delay": 0.0, "hang": False}
        c.send(request_bytes("GET", "/healthz"))
        assert c.read_final_response().status == 503
        c.send(request_bytes("GET", "/other"))
        assert c.read_final_response().status == 200  # only /healthz changes
        c.send(request_bytes("POST", "/__health?status=204&delay=300"))
        assert c.read_final_response().json()["delay"] == 300.0
        start = time.monotonic()
        c.send(request_bytes("GET", "/healthz"))
        assert c.read_final_response().status == 204 and time.monotonic() - start >= 0.3
        c.send(request_bytes("POST", "/__health?hang=1&delay=0"))
        assert c.read_final_response().json() == {"status": 204, "delay": 0.0, "hang": True}
    with RawConn(port) as c:
        c.send(request_bytes("GET", "/healthz"))
        assert not c.closed_by_peer(0.5)  # no answer
    with RawConn(port) as c:
        c.send(request_bytes("POST", "/__health?hang=0&status=200"))
        c.read_final_response()
        c.send(request_bytes("GET", "/healthz"))
        assert c.read_final_response().status == 200
