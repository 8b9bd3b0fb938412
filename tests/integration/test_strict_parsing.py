"""Malformed or oversized requests are answered by remora and never reach the upstream."""

import socket
import time

import pytest

from conftest import one_cluster_config
from helpers import RawConn, metric, request_bytes, wait_until


@pytest.fixture(scope="module")
def env(module_procs):
    up = module_procs.upstream("strict")
    config = one_cluster_config(up)
    config["listeners"][0]["limits"] = {"header_read_timeout": "1s"}
    r = module_procs.remora(config)
    return r, up


def _settled_requests(up):
    time.sleep(0.3)  # anything remora forwarded would have arrived by now
    return up.requests()


def _reject(r, up, raw, status, reason, must_close=True):
    before = len(up.requests())
    with RawConn(r.port()) as c:
        c.send(raw)
        resp = c.read_final_response()
        assert resp.status == status, resp
        assert resp.header("x-remora-reason") == reason, resp
        if must_close:
            assert c.closed_by_peer(5), "connection left open after %d" % status
    after = _settled_requests(up)
    assert after[before:] == [], "the upstream received: %r" % after[before:]


MALFORMED = {
    "content-length-and-transfer-encoding": request_bytes(
        "POST", "/smuggle", [("Content-Length", "5"), ("Transfer-Encoding", "chunked")], b"0\r\n\r\n"),
    "differing-content-lengths": request_bytes(
        "POST", "/smuggle", [("Content-Length", "5"), ("Content-Length", "6")], b"hello!"),
    "differing-content-length-list": request_bytes(
        "POST", "/smuggle", [("Content-Length", "5, 6")], b"hello!"),
    "content-length-plus-sign": request_bytes(
        "POST", "/smuggle", [("Content-Length", "+5")], b"hello"),
    "content-length-not-a-number": request_bytes(
        "POST", "/smuggle", [("Content-Length", "five")], b"hello"),
    "transfer-encoding-xchunked": request_bytes(
        "POST", "/smuggle", [("Transfer-Encoding", "xchunked")], b"5\r\nhello\r\n0\r\n\r\n"),
    "transfer-encoding-chunked-identity": request_bytes(
        "POST", "/smuggle", [("Transfer-Encoding", "chunked, identity")], b"5\r\nhello\r\n0\r\n\r\n"),
    "obs-fold": request_bytes("GET", "/fold", [("X-Folded", "a\r\n b")]),
    "space-in-header-name": request_bytes("GET", "/name", [("Bad Name", "x")]),
    "space-before-colon": request_bytes("GET", "/name", [("X-Foo ", "bar")]),
    "paren-in-header-name": request_bytes("GET", "/name", [("X(y)", "z")]),
    "nul-in-value": request_bytes("GET", "/value", [("X-V", "a\x00b")]),
    "cr-in-value": request_bytes("GET", "/value", [("X-V", "a\rb")]),
    "lf-in-value": request_bytes("GET", "/value", [("X-V", "a\nb")]),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_request_rejected_and_not_forwarded(env, case):
    r, up = env
    _reject(r, up, MALFORMED[case], 400, "bad_request")


def test_bad_chunk_size_rejected_and_not_forwarded(env):
    r, up = env
    _reject(r, up, request_bytes("POST", "/bad-chunk", [("Transfer-Encoding", "chunked")],
                                 b"zz\r\nhello\r\n0\r\n\r\n"), 400, "bad_request")


BAD_FRAMING = {
    "chunk-size-overflow": b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "negative-chunk-size": b"-5\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-chunk-data": b"5\r\nhelloXX0\r\n\r\n",
    "bad-size-in-second-chunk": b"5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_FRAMING), ids=list(BAD_FRAMING))
def test_bad_chunk_framing_never_completes_upstream(env, case):
    """Framing errors after the head: the head may already be on its way
    (bodies stream), but the upstream must never receive a complete request."""
    r, up = env
    before = len(up.requests())
    with RawConn(r.port()) as c:
        c.send(request_bytes("POST", "/bad-framing", [("Transfer-Encoding", "chunked")],
                             BAD_FRAMING[case]))
        resp = c.read_final_response()
        assert resp.status == 400, resp
        assert resp.header("x-remora-reason") == "bad_request", resp
        assert c.closed_by_peer(5)
    forwarded = _settled_requests(up)[before:]
    assert [q for q in forwarded if q["complete"]] == [], "the upstream received: %r" % forwarded


def test_malformed_request_after_a_good_one_on_the_same_connection(env):
    r, up = env
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/good-first")
               + request_bytes("GET", "/bad-second", [("Bad Name", "x")]))
        first = c.read_final_response()
        assert first.status == 200 and first.json()["path"] == "/good-first", first
        second = c.read_final_response()
        assert second.status == 400, second
        assert c.closed_by_peer(5)
    assert "/bad-second" not in [q["target"] for q in _settled_requests(up)]


def test_well_formed_request_of_the_same_shapes_passes(env):
    """The control: what the cases above break is accepted when well formed."""
    r, up = env
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with RawConn(r.port()) as c:
        c.send(request_bytes("POST", "/ok", [("Transfer-Encoding", "chunked"), ("X-V", "a b\tc"),
                                              ("X-Foo", "bar")], body))
        resp = c.read_final_response()
        assert resp.status == 200, resp
        assert resp.json()["body_bytes"] == 11
        c.send(request_bytes("POST", "/ok2", [("Content-Length", "5")], b"hello"))
        assert c.read_final_response().json()["body_bytes"] == 5
    assert [q["target"] for q in up.requests()[-2:]] == ["/ok", "/ok2"]


def _headers_of(total_bytes, count):
    per = max(1, total_bytes // count)
    return [("X-Big-%03d" % i, "v" * (per - 14)) for i in range(count)]


def test_header_block_over_60k_is_431(env):
    r, up = env
    _reject(r, up, request_bytes("GET", "/big", _headers_of(70 * 1024, 7)),
            431, "request_header_too_large", must_close=False)


def test_header_block_under_limit_passes(env):
    r, up = env
    headers = _headers_of(40 * 1024, 4)
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/big-ok", headers))
        resp = c.read_final_response()
    assert resp.status == 200, resp
    got = resp.json()["headers"]
    assert all(got.get(k.lower()) == v for k, v in headers)


def test_more_than_100_headers_is_431(env):
    r, up = env
    _reject(r, up, request_bytes("GET", "/many", [("X-H%d" % i, "v") for i in range(120)]),
            431, "request_header_too_large", must_close=False)


def test_90_headers_pass(env):
    r, up = env
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/many-ok", [("X-H%d" % i, "v") for i in range(90)]))
        resp = c.read_final_response()
    assert resp.status == 200, resp
    assert sum(1 for k in resp.json()["headers"] if k.startswith("x-h")) == 90


def test_target_over_16k_is_414(env):
    r, up = env
    _reject(r, up, request_bytes("GET", "/long?" + "q" * (17 * 1024)), 414, "uri_too_long",
            must_close=False)


def test_8k_target_passes(env):
    r, up = env
    target = "/long-ok?" + "q" * (8 * 1024)
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", target))
        resp = c.read_final_response()
    assert resp.status == 200 and resp.json()["target"] == target, resp


def test_slowloris_partial_head_gets_408_and_close(env):
    r, up = env
    before = len(up.requests())
    with RawConn(r.port()) as c:
        start = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: test.local\r\nX-Partial: ")
        resp = c.read_final_response()
        elapsed = time.monotonic() - start
        assert resp.status == 408, resp
        assert resp.header("x-remora-reason") == "request_timeout", resp
        assert c.closed_by_peer(5)
    assert 0.5 < elapsed < 5, elapsed
    assert _settled_requests(up)[before:] == []


def test_slowloris_trickling_bytes_still_times_out(env):
    """header_read_timeout bounds the whole head, not the gap between bytes."""
    r, up = env
    head = b"GET /trickle HTTP/1.1\r\nHost: test.local\r\n" + b"X-Trickle: " + b"a" * 200
    with RawConn(r.port()) as c:
        c.sock.settimeout(0.2)
        start = time.monotonic()
        got = b""
        for byte in head:
            if time.monotonic() - start > 8:
                break
            try:
                c.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                data = c.sock.recv(65536)
                got += data
                if not data or b"\r\n\r\n" in got:
                    break
            except socket.timeout:
                pass
        elapsed = time.monotonic() - start
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert elapsed < 5, elapsed


def test_connection_cap_answers_503_overloaded(procs, upstream):
    config = one_cluster_config(upstream)
    config["listeners"][0]["limits"] = {"max_connections": 2}
    r = procs.remora(config)
    held = [RawConn(r.port()) for _ in range(2)]
    try:
        for c in held:
            c.send(request_bytes("GET", "/held"))
            assert c.read_final_response().status == 200
        with RawConn(r.port()) as extra:
            extra.send(request_bytes("GET", "/extra"))
            resp = extra.read_final_response()
            assert resp.status == 503, resp
            assert resp.header("x-remora-reason") == "overloaded", resp
        assert "/extra" not in [q["target"] for q in upstream.requests()]
        rejected = metric(r.metrics(), "remora_downstream_rejected_total", listener="main")
        assert rejected >= 1
    finally:
        for c in held:
            c.close()

    def served():
        with RawConn(r.port()) as c:
            c.send(request_bytes("GET", "/after-cap"))
            return c.read_final_response().status == 200

    wait_until(served, timeout=5, message="a new connection served once others closed")


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(procs, upstream):
    config = one_cluster_config(upstream)
    config["listeners"][0]["limits"] = {"idle_timeout": "1s"}
    r = procs.remora(config)
    with RawConn(r.port()) as c:
        c.send(request_bytes("GET", "/once"))
        assert c.read_final_response().status == 200
        start = time.monotonic()
        assert c.closed_by_peer(5), "idle connection still open 5 s after a 1 s idle_timeout"
        assert time.monotonic() - start > 0.5
    # A connection that keeps working is not cut by the idle timer.
    with RawConn(r.port()) as c:
        for i in range(4):
            c.send(request_bytes("GET", "/busy/%d" % i))
            assert c.read_final_response().status == 200
            time.sleep(0.5)
