"""HTTP/2 upstream and downstream features, against a real h2 upstream.

The upstream is tests/upstream/h2_upstream.py (python3-h2, h2c prior
knowledge), started with procs.h2_upstream(name, mode=...); it can refuse
streams (GOAWAY, RST_STREAM REFUSED_STREAM), ignore PINGs and answer
slowly, and it logs every connection, stream, PING and GOAWAY as JSON lines
(up.requests(), up.pings(), up.connections(), up.disconnect(conn)).

  a) streams the upstream refused (GOAWAY past them, or REFUSED_STREAM) are
     sent again, once, body included, and counted in
     remora_upstream_refused_stream_retries_total{cluster}
  b) idle upstream h2 connections are kept alive with PINGs
     (clusters[].pool.keepalive_interval / keepalive_timeout), and closed
     when the PINGs go unanswered
  c) request trailers cross an h2 → h2 hop
  d) listeners[].limits.stream_idle_timeout: a silent stream gets 408
     (x-remora-reason: stream_idle_timeout), a slow but steady one does not;
     remora_h2_defence_total{listener, defence="stream_idle_timeout"}
  e) listeners[].limits.idle_timeout on an h2 connection: GOAWAY(NO_ERROR),
     then close
  f) empty DATA frame flood (CVE-2019-9518): GOAWAY ENHANCE_YOUR_CALM,
     remora_h2_defence_total{defence="empty_frame_flood"}

Every remora here runs one worker, so that consecutive requests share the
worker's upstream h2 connection (the retry and keep-alive tests count
upstream connections).
"""

import hashlib
import json
import os
import socket
import subprocess
import time

import pytest

from helpers import H2_ERRORS, H2Conn, RawConn, metric, request_bytes, wait_until

CLUSTER = "app"
RETRIES = "remora_upstream_refused_stream_retries_total"
DEFENCE = "remora_h2_defence_total"
KEEPALIVE = {"keepalive_interval": "200ms", "keepalive_timeout": "300ms"}


def config(up, protocol="http2", pool=None, h2_limits=None, timeout="30s"):
    """Listeners "main" (auto: HTTP/1.1 and h2c) and "h2" (http2 only, with
    `h2_limits`), one route to cluster "app" = `up`."""
    cluster = {"name": CLUSTER, "endpoints": [up.addr], "protocol": protocol}
    if pool:
        cluster["pool"] = pool
    h2 = {"name": "h2", "route_table": "main", "protocol": "http2"}
    if h2_limits:
        h2["limits"] = h2_limits
    return {
        "workers": 1,
        "listeners": [{"name": "main", "route_table": "main"}, h2],
        "route_tables": [{"name": "main", "routes": [
            {"name": "all", "match": {"prefix": "/"}, "cluster": CLUSTER, "timeout": timeout}]}],
        "clusters": [cluster],
    }


def code_name(code):
    return H2_ERRORS.get(code, code)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def grpc_message(total=1000):
    """A gRPC length-prefixed message, `total` bytes in all."""
    payload = os.urandom(total - 5)
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def attempts(up, target):
    """What the upstream received for `target`, one entry per stream."""
    return [q for q in up.requests() if q["target"] == target]


def defence(r, name, **labels):
    return metric(r.metrics(), DEFENCE, defence=name, **labels)


class Answer:
    def __init__(self, status, body, version, headers=None, trailers=None):
        self.status = status
        self.body = body
        self.version = version   # "2" or "1.1"
        self.headers = headers or {}
        self.trailers = trailers or {}

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Answer HTTP/%s %s %r %r>" % (self.version, self.status, self.headers,
                                              self.body[:300])


def curl(port, path, version, tmp_path, body=None, headers=()):
    """One request with curl, HTTP/1.1 or h2c prior knowledge."""
    out = tmp_path / ("curl-body-%d" % time.monotonic_ns())
    hdr = tmp_path / ("curl-head-%d" % time.monotonic_ns())
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-o", str(out), "-D", str(hdr),
           "-w", "%{http_code} %{http_version}",
           "--http2-prior-knowledge" if version == "2" else "--http1.1"]
    for k, v in headers:
        cmd += ["-H", "%s: %s" % (k, v)]
    if body is not None:
        src = tmp_path / ("curl-upload-%d" % time.monotonic_ns())
        src.write_bytes(body)
        cmd += ["--data-binary", "@%s" % src, "-H", "Expect:"]
    cmd.append("http://127.0.0.1:%d%s" % (port, path))
    res = subprocess.run(cmd, capture_output=True, timeout=20)
    assert res.returncode == 0, res.stderr.decode("latin-1")
    code, got_version = res.stdout.decode().split()
    headers = {}
    for line in hdr.read_text("latin-1").splitlines()[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return Answer(int(code), out.read_bytes(), got_version, headers)


def h2_answer(st):
    return Answer(st.status, bytes(st.body), "2", dict(st.headers or ()), dict(st.trailers or ()))


# ---------------------------------------------------------------- a) refused streams

def assert_retried_once_upstream_side(up, mode, targets, bodies, answers, method):
    """What the upstream saw of the two requests: the refused one twice (the
    second time answered, body intact), the other once."""
    grpc = method == "POST"
    first, second = (attempts(up, t) for t in targets)
    if mode == "goaway_second":
        assert up.connections() == [1, 2], \
            "expected the retry on a second upstream connection: %r" % up.events("connect")
        goaways = up.events("goaway_sent")
        assert len(goaways) == 1 and goaways[0]["conn"] == 1, goaways
        assert len(first) == 1 and first[0]["conn"] == 1 and first[0]["answered"], first
        assert goaways[0]["last_stream_id"] == first[0]["stream"], (goaways, first)
        # Request 2: sent on connection 1 past the GOAWAY, then again on connection 2.
        assert [(a["conn"], a["answered"]) for a in second] == [(1, False), (2, True)], second
        assert second[0]["stream"] > goaways[0]["last_stream_id"], second
        assert answers[1].json()["conn"] == 2, answers[1]
        retried, answered = second
    else:
        refused = up.events("refused")
        assert len(refused) == 1 and refused[0]["conn"] == 1, refused
        assert [(a["refused"], a["answered"]) for a in first] == [(True, False), (False, True)], \
            "the refused stream was not sent again exactly once: %r" % first
        assert len(second) == 1 and second[0]["answered"], second
        retried, answered = first
        assert (answered["conn"], answered["stream"]) != (retried["conn"], retried["stream"])
        assert (answers[0].json()["conn"], answers[0].json()["stream"]) == \
            (answered["conn"], answered["stream"]), (answers[0], answered)
    # The retry carried the same request: head and body.
    assert answered["complete"], answered
    body = bodies[1] if mode == "goaway_second" else bodies[0]
    assert answered["body_bytes"] == len(body or b""), answered
    assert answered["body_sha256"] == sha(body or b""), answered
    assert answered["method"] == retried["method"] == method
    if grpc:
        assert answered["headers"].get("content-type") == "application/grpc", answered


CLIENTS = ["h2conn", "curl-h2", "curl-h1"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mode", ["goaway_second", "refuse_first"])
def test_refused_stream_is_retried(procs, tmp_path, mode, client, method):
    """Two requests in a row. goaway_second: the upstream answers the first
    and sends GOAWAY(NO_ERROR, last_stream_id = the first stream) when the
    second arrives, never answering it; refuse_first: the first request's
    stream gets RST_STREAM(REFUSED_STREAM). Either way the refused request
    was never processed: remora sends it again (once), on a connection that
    can take it, body and all, and both clients get the upstream's 200."""
    up = procs.h2_upstream("h2up", mode=mode)
    r = procs.remora(config(up))
    assert metric(r.metrics(), RETRIES, cluster=CLUSTER) == 0

    grpc = method == "POST"
    headers = [("content-type", "application/grpc"), ("te", "trailers")] if grpc else []
    bodies = [grpc_message() if grpc else None for _ in range(2)]
    targets = ["/retry/%s/%s/%s/%d" % (mode, client, method, i) for i in (1, 2)]
    answers = []
    if client == "h2conn":
        with H2Conn(r.port("main")) as c:
            for target, body in zip(targets, bodies):
                # gRPC clients send no content-length
                st = c.response(c.request(method, target, headers=headers, body=body,
                                          content_length=not grpc))
                assert st.reset is None, "stream reset by remora: %r (%r)" % (st, c.log[-10:])
                answers.append(h2_answer(st))
    else:
        version = "2" if client == "curl-h2" else "1.1"
        for target, body in zip(targets, bodies):
            answers.append(curl(r.port("main"), target, version, tmp_path, body, headers))
            assert answers[-1].version == version, answers[-1]

    for target, body, ans in zip(targets, bodies, answers):
        # For gRPC, remora's own error is a 200 with grpc-status (UNAVAILABLE...).
        assert "grpc-status" not in ans.headers and "grpc-status" not in ans.trailers, \
            "%s: answered by remora, not the upstream: %r" % (target, ans)
        assert ans.status == 200, "%s: %r" % (target, ans)
        assert ans.headers.get("x-upstream") == "h2up", ans
        echo = ans.json()  # the upstream's own answer, not one made up by remora
        assert (echo["method"], echo["target"]) == (method, target), echo
        assert echo["body_bytes"] == len(body or b""), echo
        assert echo["body_sha256"] == sha(body or b""), echo
        if grpc:
            assert echo["headers"].get("content-type") == "application/grpc", echo

    assert_retried_once_upstream_side(up, mode, targets, bodies, answers, method)
    assert metric(r.metrics(), RETRIES, cluster=CLUSTER) >= 1, \
        [s for s in r.metrics() if s[0] == RETRIES]


# ---------------------------------------------------------------- b) PING keep-alive

def test_idle_upstream_h2_connection_is_pinged(procs):
    """keepalive_interval 200ms: an idle upstream h2 connection gets a PING
    after 200 ms of silence; the upstream answers them, so 1.5 s of idleness
    brings several PINGs and the connection stays in use."""
    up = procs.h2_upstream("h2up")
    r = procs.remora(config(up, pool=KEEPALIVE))
    assert up.pings() == []
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/keepalive/1"))
    assert st.status == 200, st
    conn = st.json()["conn"]
    idle_from = time.time()
    time.sleep(1.5)
    pings = [p for p in up.pings(conn) if p["time"] >= idle_from]
    assert len(pings) >= 3, "%d PINGs on the idle upstream connection in 1.5 s (all: %r)" % (
        len(pings), up.pings())
    assert all(p["acked"] for p in pings)
    assert up.disconnect(conn) is None, up.disconnect(conn)
    # The answered PINGs kept the connection: the next request uses it.
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/keepalive/2"))
    assert st.status == 200 and st.json()["conn"] == conn, st
    assert up.connections() == [conn]


def test_upstream_h2_connection_without_ping_ack_is_closed(procs):
    """The upstream never acknowledges PINGs: keepalive_timeout (300ms) after
    the PING, remora closes the connection; the next request opens a new one."""
    up = procs.h2_upstream("h2up", mode="no_ping_ack")
    r = procs.remora(config(up, pool=KEEPALIVE))
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/no-ping-ack/1"))
    assert st.status == 200, st
    conn = st.json()["conn"]
    idle_from = time.time()
    time.sleep(1.5)
    gone = wait_until(lambda: up.disconnect(conn), timeout=1.5,
                      message="remora closing the upstream connection whose PINGs go unanswered "
                              "(PINGs seen: %r)" % up.pings())
    assert gone["closed_by"] == "peer", gone  # remora closed it, not the upstream
    pings = up.pings(conn)
    assert pings and not any(p["acked"] for p in pings), pings
    assert pings[0]["time"] <= gone["time"]
    # Not closed at once: a PING after the interval, then the timeout.
    assert gone["time"] - idle_from >= 0.3, (gone, idle_from)
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/no-ping-ack/2"))
    assert st.status == 200, st
    assert st.json()["conn"] != conn and up.connections() == [conn, st.json()["conn"]], \
        up.events("connect")


# ---------------------------------------------------------------- c) trailers

def test_h2_request_trailers_reach_the_h2_upstream(procs):
    up = procs.h2_upstream("h2up")
    r = procs.remora(config(up))
    payload = os.urandom(5000)
    with H2Conn(r.port("h2")) as c:
        sid = c.request("POST", "/h2-trailers", headers=[("content-type", "application/octet-stream"),
                                                         ("te", "trailers")], end_stream=False)
        c.send_data(sid, payload)  # no END_STREAM: the trailers end the stream
        c.send_headers(sid, [("x-checksum", "abc123")], end_stream=True)
        st = c.response(sid)
    assert st.status == 200, st
    echo = st.json()
    assert echo["body_bytes"] == len(payload) and echo["body_sha256"] == sha(payload), echo
    assert echo["trailers"] == {"x-checksum": "abc123"}, echo
    got = attempts(up, "/h2-trailers")
    assert len(got) == 1 and got[0]["complete"], got
    assert got[0]["trailers"] == {"x-checksum": "abc123"}, got
    assert "x-checksum" not in got[0]["headers"], got  # a trailer, not a header


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (clock ticks of 1/100 s)."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_endless_chunk_header_to_an_h2_upstream_is_400_without_spinning(procs, tmp_path):
    """An HTTP/1.1 chunked upload to an http2 cluster whose chunk header never
    ends (a 120 KiB chunk extension) fills the read buffer: remora answers
    400 bad_request and closes, without spinning on empty reads, and the
    upstream never sees a complete request."""
    up = procs.h2_upstream("h2up")
    r = procs.remora(config(up))
    before = cpu_seconds(r.pid)
    with RawConn(r.port("main")) as c:
        c.send(request_bytes("POST", "/endless-chunk-ext", [("Transfer-Encoding", "chunked")],
                             b"5\r\nhello\r\n5;" + b"x" * (120 * 1024)))
        resp = c.read_final_response()
        assert resp.status == 400, resp
        assert resp.header("x-remora-reason") == "bad_request", resp
        assert c.closed_by_peer(5), "connection left open after 400"
    time.sleep(0.5)
    spent = cpu_seconds(r.pid) - before
    assert spent < 0.5, "remora used %.2f s of CPU for one bad request" % spent
    assert [q for q in attempts(up, "/endless-chunk-ext") if q["complete"]] == [], up.requests()
    assert curl(r.port("main"), "/after", "1.1", tmp_path).status == 200


def exchange_until_close(port, request):
    """Sends `request` raw and reads until remora closes: (head, body) bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_http10_client_gets_a_close_delimited_body_not_chunks(procs):
    """An HTTP/2 upstream's response without content-length, to an HTTP/1.0
    client: HTTP/1.0 has no chunked coding (RFC 9112 §7.1), so the body ends
    with the connection."""
    up = procs.h2_upstream("h2up")
    r = procs.remora(config(up))
    head, body = exchange_until_close(r.port("main"), b"GET /h10?fail=1 HTTP/1.0\r\nHost: app\r\n\r\n")
    head = head.decode("latin-1").lower()
    assert head.startswith("http/1.1 503"), head
    assert "transfer-encoding" not in head and "content-length" not in head, head
    assert "connection: close" in head, head
    assert body == b"failing on purpose\n", body


def test_route_response_header_mutation_reaches_an_http11_client_of_an_h2_upstream(procs):
    """The route's response_headers apply on the HTTP/2 upstream → HTTP/1.1
    client path too: the removed field is gone, the added one is there, the
    upstream's other fields and its content-length (so no chunking) stay."""
    up = procs.h2_upstream("h2up")
    cfg = config(up)
    cfg["route_tables"][0]["routes"][0]["response_headers"] = {
        "add": {"x-resp-added": "r1"}, "remove": ["x-upstream"]}
    r = procs.remora(cfg)
    head, body = exchange_until_close(
        r.port("main"), b"GET /mutated HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    assert fields.get("x-resp-added") == ["r1"], fields
    assert "x-upstream" not in fields, fields
    assert fields.get("x-upstream-conn"), fields
    assert "transfer-encoding" not in fields, fields
    assert fields.get("content-length") == [str(len(body))], fields
    assert json.loads(body)["path"] == "/mutated"


# ---------------------------------------------------------------- d) stream idle timeout

def slow_upstream(procs, kind):
    """The HTTP/1.1 upstream.py or the h2 upstream; ?delay=MS slows one request."""
    if kind == "http1":
        return procs.upstream("up"), "http1"
    return procs.h2_upstream("h2up"), "http2"


@pytest.mark.parametrize("kind", ["http1", "http2"])
def test_silent_stream_gets_408(procs, kind):
    up, protocol = slow_upstream(procs, kind)
    r = procs.remora(config(up, protocol=protocol, h2_limits={"stream_idle_timeout": "500ms"}))
    assert defence(r, "stream_idle_timeout", listener="h2") == 0
    with H2Conn(r.port("h2"), timeout=10) as c:
        start = time.monotonic()
        st = c.response(c.request("GET", "/stream-idle/silent?delay=5000"), 8)
        elapsed = time.monotonic() - start
        assert st.status == 408, st
        assert st.header("x-remora-reason") == "stream_idle_timeout", st
        assert 0.45 <= elapsed <= 3, "408 after %.2f s (stream_idle_timeout 500ms)" % elapsed
        # A stream error: the connection goes on.
        assert c.goaway is None, c.goaway
        again = c.response(c.request("GET", "/stream-idle/after"))
        assert again.status == 200, again
    # It was remora's downstream timer: the request had reached the upstream.
    assert attempts(up, "/stream-idle/silent?delay=5000"), up.requests()
    assert defence(r, "stream_idle_timeout", listener="h2") >= 1, \
        [s for s in r.metrics() if s[0] == DEFENCE and s[2]]


@pytest.mark.parametrize("kind", ["http1", "http2"])
def test_slow_but_steady_stream_is_not_timed_out(procs, kind):
    """Request DATA every 200 ms for 2 s: each frame resets the 500 ms timer."""
    up, protocol = slow_upstream(procs, kind)
    r = procs.remora(config(up, protocol=protocol, h2_limits={"stream_idle_timeout": "500ms"}))
    pieces = [os.urandom(100) for _ in range(10)]
    with H2Conn(r.port("h2"), timeout=10) as c:
        start = time.monotonic()
        sid = c.request("POST", "/stream-idle/steady",
                        headers=[("content-type", "application/octet-stream")], end_stream=False)
        for i, piece in enumerate(pieces):
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:
                c.pump(max(0.0, deadline - time.monotonic()))
            assert not c.streams[sid].done, "stream ended while the client was sending: %r" \
                % c.streams[sid]
            c.send_data(sid, piece, end_stream=i == len(pieces) - 1)
        st = c.response(sid, 5)
        elapsed = time.monotonic() - start
    assert elapsed >= 1.9, elapsed  # longer than the timeout, four times over
    assert st.status == 200, st
    body = b"".join(pieces)
    echo = st.json()
    assert echo["body_bytes"] == len(body) and echo["body_sha256"] == sha(body), echo
    assert defence(r, "stream_idle_timeout", listener="h2") == 0


# ---------------------------------------------------------------- e) connection idle timeout

def test_idle_h2_connection_gets_goaway_and_is_closed(procs):
    up = procs.upstream("up")
    r = procs.remora(config(up, protocol="http1", h2_limits={"idle_timeout": "500ms"}))
    with H2Conn(r.port("h2")) as used, H2Conn(r.port("h2")) as bare:
        st = used.response(used.request("GET", "/conn-idle/1"))
        assert st.status == 200, st
        start = time.monotonic()
        for c, what in ((used, "after one request"), (bare, "with no stream ever")):
            assert c.wait_closed(4), "h2 connection %s still open after 4 s" % what
            elapsed = time.monotonic() - start
            assert c.goaway is not None, "closed without GOAWAY (%s): %r" % (what, c.log[-5:])
            assert code_name(c.goaway[1]) == "NO_ERROR", c.goaway
            assert 0.4 <= elapsed <= 3, "closed %.2f s after going idle (%s)" % (elapsed, what)


def test_h2_connection_with_a_stream_in_flight_is_not_idle(procs):
    """The control: a stream waiting 1.5 s on the upstream keeps the
    connection open past idle_timeout 500ms; GOAWAY only once it is done."""
    up = procs.upstream("up")
    r = procs.remora(config(up, protocol="http1", h2_limits={"idle_timeout": "500ms"}))
    with H2Conn(r.port("h2")) as c:
        st = c.response(c.request("GET", "/conn-idle/busy?delay=1500"), 5)
        assert st.status == 200, st
        assert c.goaway is None and not c.closed, (c.goaway, c.log[-5:])
        assert c.wait_closed(4)
        assert c.goaway is not None and code_name(c.goaway[1]) == "NO_ERROR", c.goaway


# ---------------------------------------------------------------- f) empty DATA flood

def test_empty_data_frame_flood_gets_enhance_your_calm(procs):
    """CVE-2019-9518: DATA frames without payload cost the server work and
    the client nothing. 1000 of them on an open stream end the connection
    with GOAWAY ENHANCE_YOUR_CALM."""
    up = procs.upstream("up")
    r = procs.remora(config(up, protocol="http1"))
    assert defence(r, "empty_frame_flood") == 0
    # The control: the usual empty DATA carrying END_STREAM is fine.
    with H2Conn(r.port("h2")) as c:
        sid = c.request("POST", "/empty-flood/control", end_stream=False)
        c.send_data(sid, b"abc")
        c.send_data(sid, b"", end_stream=True)
        st = c.response(sid)
        assert st.status == 200 and st.json()["body_bytes"] == 3, st
    with H2Conn(r.port("h2")) as c:
        c.wait(lambda: c.peer_settings and c.settings_acks, 5, "the SETTINGS exchange")
        sid = c.request("POST", "/empty-flood/attack", end_stream=False)
        empty = c.data_frame(sid, b"").serialize()
        try:
            c.send(empty * 1000)
        except OSError:
            pass  # remora stopped reading: fine, the GOAWAY is what counts
        deadline = time.monotonic() + 5
        while c.goaway is None and not c.closed and time.monotonic() < deadline:
            c.pump(0.2)
        assert c.goaway is not None, "no GOAWAY after 1000 empty DATA frames (closed=%s, " \
                                     "last frames %r)" % (c.closed, c.log[-5:])
        assert code_name(c.goaway[1]) == "ENHANCE_YOUR_CALM", c.goaway
        assert c.wait_closed(5), "connection still open after the GOAWAY"
    assert defence(r, "empty_frame_flood") >= 1, \
        [s for s in r.metrics() if s[0] == DEFENCE and s[2]]
    # A second client is served normally.
    with H2Conn(r.port("h2")) as c:
        st = c.response(c.request("GET", "/empty-flood/second-client"))
    assert st.status == 200 and st.json()["path"] == "/empty-flood/second-client", st
