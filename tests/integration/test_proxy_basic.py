"""HTTP/1.1 proxying basics, seen from a client and from what the upstream received."""

import hashlib
import os
import re
import socket
import subprocess
import time

from helpers import RawConn, http_request, metric, request_bytes, wait_until


def test_get_is_proxied_with_path_and_query(proxied):
    r, up = proxied
    res = http_request(r.port(), "GET", "/some/path?a=1&b=two", headers={"X-Custom": "v"})
    assert res.status == 200, res
    echo = res.json()
    assert echo["server"] == "up"
    assert echo["path"] == "/some/path"
    assert echo["query"] == "a=1&b=two"
    assert echo["headers"]["x-custom"] == "v"
    assert res.headers.get("x-upstream") == "up"
    reqs = up.requests()
    assert [(q["method"], q["target"]) for q in reqs] == [("GET", "/some/path?a=1&b=two")]


def test_downstream_keep_alive(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        for i in range(5):
            c.send(request_bytes("GET", "/ka/%d" % i))
            resp = c.read_final_response()
            assert resp.status == 200, resp
            assert resp.json()["path"] == "/ka/%d" % i
            assert (resp.header("connection") or "").lower() != "close"
    assert len(up.requests()) == 5


def test_client_that_half_closes_after_its_request_gets_the_answer_and_the_close(proxied):
    """A client may send its last request and shut its sending side at once
    (`nc -N`, HTTP/1.0-style tools): the FIN arrives with the request. It
    gets its answer, and remora closes promptly rather than holding the
    connection until the idle timeout. TCP_CORK holds the request back until
    the shutdown, so request and FIN travel in one segment: remora's first
    read has both waiting."""
    r, up = proxied
    for i in range(5):
        with RawConn(r.port()) as c:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            c.send(request_bytes("GET", "/half/%d" % i))
            c.sock.shutdown(socket.SHUT_WR)
            resp = c.read_final_response()
            assert resp.status == 200, resp
            assert resp.json()["path"] == "/half/%d" % i
            assert c.closed_by_peer(timeout=2.0), "connection %d still open 2 s after the answer" % i
    assert len(up.requests()) == 5


def test_pipelined_requests_answered_in_order(proxied):
    r, up = proxied
    body = b"x" * 1000
    batch = (request_bytes("GET", "/p1?delay=300")
             + request_bytes("GET", "/p2")
             + request_bytes("POST", "/p3?delay=100", [("Content-Length", str(len(body)))], body)
             + request_bytes("GET", "/p4"))
    with RawConn(r.port()) as c:
        c.send(batch)
        got = []
        for _ in range(4):
            resp = c.read_final_response()
            assert resp.status == 200, resp
            got.append((resp.json()["path"], resp.json()["body_bytes"]))
    assert got == [("/p1", 0), ("/p2", 0), ("/p3", 1000), ("/p4", 0)]


def test_chunked_request_body_is_forwarded(proxied):
    r, up = proxied
    chunks = [b"a" * 10, b"b" * 5000, b"c" * 70000, b"d"]
    payload = b"".join(chunks)
    wire = b"".join(b"%x\r\n%s\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
    with RawConn(r.port()) as c:
        c.send(request_bytes("POST", "/chunked-in", [("Transfer-Encoding", "chunked")], wire))
        resp = c.read_final_response()
    assert resp.status == 200, resp
    echo = resp.json()
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_chunked_response_is_forwarded(proxied):
    r, up = proxied
    n = 300_001
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/download?bytes=%d&chunked=1" % n))
        resp = c.read_final_response()
        assert resp.status == 200, resp
        assert resp.body_len == n
        assert resp.sha256 == resp.header("x-body-sha256")
        # The connection is still usable: the chunked framing ended where it should.
        c.send(request_bytes("GET", "/after"))
        assert c.read_final_response().json()["path"] == "/after"


def test_head_response_has_no_body(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        c.send(request_bytes("HEAD", "/head"))
        head = c.read_final_response(method="HEAD")
        assert head.status == 200, head
        c.send(request_bytes("GET", "/after-head"))
        after = c.read_final_response()
        assert after.status == 200, after
        assert after.json()["path"] == "/after-head"
    assert [q["method"] for q in up.requests()] == ["HEAD", "GET"]


def test_204_and_304_have_no_body(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        for status in (204, 304):
            c.send(request_bytes("GET", "/status/%d" % status))
            resp = c.read_final_response()
            assert resp.status == status, resp
            assert resp.header("transfer-encoding") is None
            c.send(request_bytes("GET", "/after-%d" % status))
            after = c.read_final_response()
            assert after.status == 200 and after.json()["path"] == "/after-%d" % status, after


def test_expect_100_continue(proxied):
    r, up = proxied
    body = os.urandom(100_000)
    with RawConn(r.port()) as c:
        c.send(request_bytes("POST", "/expect", [("Content-Length", str(len(body))),
                                                  ("Expect", "100-continue")]))
        interim = c.read_response()
        assert interim.status == 100, interim
        c.send(body)
        resp = c.read_final_response()
    assert resp.status == 200, resp
    assert resp.json()["body_bytes"] == len(body)
    assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_hop_by_hop_headers_are_removed(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/hop", [
            ("Connection", "keep-alive, X-Custom-Hop"),
            ("X-Custom-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "gzip"),
            ("Upgrade", "foo/1"),
            ("X-End-To-End", "kept"),
        ]))
        resp = c.read_final_response()
    assert resp.status == 200, resp
    got = up.requests()[-1]["headers"]
    for name in ("x-custom-hop", "keep-alive", "proxy-connection", "te", "upgrade"):
        assert name not in got, "%s reached the upstream: %r" % (name, got)
    conn_tokens = [t.strip().lower() for t in got.get("connection", "").split(",")]
    assert "x-custom-hop" not in conn_tokens and "upgrade" not in conn_tokens, got
    assert got.get("x-end-to-end") == "kept"


def test_forwarding_headers_generated_when_absent(proxied):
    r, up = proxied
    a = http_request(r.port(), "GET", "/fwd1").json()["headers"]
    b = http_request(r.port(), "GET", "/fwd2").json()["headers"]
    assert "127.0.0.1" in [x.strip() for x in a.get("x-forwarded-for", "").split(",")], a
    assert a.get("x-forwarded-proto") == "http", a
    assert a.get("x-request-id"), a
    assert b.get("x-request-id") and b["x-request-id"] != a["x-request-id"], (a, b)


def test_forwarding_headers_kept_when_sent(proxied):
    r, up = proxied
    got = http_request(r.port(), "GET", "/fwd", headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
        "X-Request-Id": "req-abc-123"}).json()["headers"]
    assert got["x-forwarded-for"].split(",")[0].strip() == "203.0.113.7", got
    assert got["x-forwarded-proto"] == "https", got
    assert got["x-request-id"] == "req-abc-123", got


def test_websocket_upgrade_is_an_opaque_tunnel(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]))
        resp = c.read_response()
        assert resp.status == 101, resp
        assert (resp.header("upgrade") or "").lower() == "websocket"
        assert resp.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        # Not HTTP any more: arbitrary bytes, including what looks like a request.
        for msg in (b"hello", b"GET / HTTP/1.1\r\n\r\n", os.urandom(1 << 20)):
            c.send(msg)
            assert c.read_exact(len(msg)) == msg
    got = up.requests()[-1]["headers"]
    assert got.get("upgrade", "").lower() == "websocket", got
    assert "upgrade" in got.get("connection", "").lower(), got
    # Closing the client side closes the upstream side of the tunnel.
    closed = wait_until(lambda: up.events("tunnel_closed"), timeout=5,
                        message="upstream side of the tunnel closed")
    assert closed[0]["echoed"] == 5 + 18 + (1 << 20)


def test_wrk_16_connections_no_errors(proxied):
    r, up = proxied
    before = metric(r.metrics(), "remora_requests_total", status_class="2xx")
    res = subprocess.run(["wrk", "-t2", "-c16", "-d3s", "--timeout", "5s",
                          "http://127.0.0.1:%d/wrk" % r.port()],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res
    out = res.stdout
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 100, out
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out
    after = metric(r.metrics(), "remora_requests_total", status_class="2xx")
    # wrk stops mid-flight, so a few requests may not be counted by it.
    assert after - before >= int(m.group(1)), (before, after, out)


def test_small_body_behind_its_head_arriving_late_or_after_100_continue(proxied):
    # A body that fits one read block is read in place right behind its head
    # when it is already there; here it is not (all of it, or all but a few
    # bytes, comes later): it must still reach the upstream whole.
    r, up = proxied
    body = os.urandom(10_000)
    with RawConn(r.port()) as c:
        c.send(request_bytes("POST", "/late", [("Content-Length", str(len(body)))]) + body[:100])
        time.sleep(0.3)
        c.send(body[100:])
        late = c.read_final_response()
        c.send(request_bytes("POST", "/continue", [("Content-Length", str(len(body))),
                                                    ("Expect", "100-continue")]))
        interim = c.read_response()
        assert interim.status == 100, interim
        time.sleep(0.1)
        c.send(body)
        continued = c.read_final_response()
    for resp in (late, continued):
        assert resp.status == 200, resp
        assert resp.json()["body_bytes"] == len(body)
        assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
