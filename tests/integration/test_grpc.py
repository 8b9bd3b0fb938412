"""gRPC through remora: a real grpcio client and server (Debian's
python3-grpcio), h2c both sides, all four call kinds."""
import subprocess
import sys
import time

import grpc
import pytest

from conftest import simple_config
from helpers import REPO, free_port, metric, wait_until

SERVER = REPO / "tests" / "upstream" / "grpc_echo.py"


@pytest.fixture
def grpc_server():
    port = free_port()
    proc = subprocess.Popen(["/usr/bin/python3", str(SERVER), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def grpc_config(port, timeout="15s"):
    return simple_config(
        [{"name": "echo", "match": {"prefix": "/test.Echo/"}, "cluster": "grpc",
          "timeout": timeout}],
        [{"name": "grpc", "protocol": "http2", "endpoints": ["127.0.0.1:%d" % port]}])


@pytest.fixture
def channel(procs, grpc_server):
    remora = procs.remora(grpc_config(grpc_server))
    ch = grpc.insecure_channel("127.0.0.1:%d" % remora.port())
    yield ch, remora
    ch.close()


def test_unary_with_trailing_metadata(channel):
    ch, _ = channel
    response, call = ch.unary_unary("/test.Echo/Unary").with_call(b"hi", timeout=5)
    assert response == b"echo:hi"
    trailers = dict(call.trailing_metadata())
    assert trailers["x-trace"] == "t1"
    assert trailers["x-custom-bin"] == b"\x00\x01"
    assert call.code() == grpc.StatusCode.OK


def test_error_status_and_message_pass_through(channel):
    ch, _ = channel
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/test.Echo/Unary")(b"fail", timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no such thing"


def test_client_streaming_1000_messages(channel):
    ch, _ = channel
    total = ch.stream_unary("/test.Echo/ClientStream")(iter([b"x" * 100] * 1000), timeout=20)
    assert total == b"100000"


def test_server_streaming_1000_messages(channel):
    ch, _ = channel
    messages = list(ch.unary_stream("/test.Echo/ServerStream")(b"1000", timeout=20))
    assert messages == [b"m%d" % i for i in range(1000)]


def test_bidi_streaming_1000_messages(channel):
    ch, _ = channel
    sent = [b"msg%d" % i for i in range(1000)]
    got = list(ch.stream_stream("/test.Echo/Bidi")(iter(sent), timeout=20))
    assert got == [m.upper() for m in sent]


def test_client_deadline_is_honoured(channel):
    ch, remora = channel
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/test.Echo/Slow")(b"3000", timeout=0.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 2.5
    # the connection and the proxy still serve
    assert ch.unary_unary("/test.Echo/Unary")(b"again", timeout=5) == b"echo:again"


def test_unknown_service_is_unimplemented(channel):
    ch, _ = channel
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/other.Service/Call")(b"x", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_upstream_down_is_unavailable(procs):
    remora = procs.remora(grpc_config(free_port()))
    with grpc.insecure_channel("127.0.0.1:%d" % remora.port()) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Unary")(b"x", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_route_timeout_is_deadline_exceeded(procs, grpc_server):
    remora = procs.remora(grpc_config(grpc_server, timeout="300ms"))
    with grpc.insecure_channel("127.0.0.1:%d" % remora.port()) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Slow")(b"2000", timeout=5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_http1_client_to_http2_upstream_gets_body_and_trailers(channel):
    """Translation h1 → h2: a gRPC-framed POST over HTTP/1.1 reaches the h2c
    server; the response comes back chunked with grpc-status and the custom
    metadata as HTTP/1.1 trailers."""
    import socket
    _, remora = channel
    message = b"\x00\x00\x00\x00\x02hi"
    request = (b"POST /test.Echo/Unary HTTP/1.1\r\nHost: echo\r\ncontent-type: application/grpc\r\n"
               b"te: trailers\r\ncontent-length: %d\r\n\r\n" % len(message)) + message
    with socket.create_connection(("127.0.0.1", remora.port()), timeout=5) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + 5
        while not data.endswith(b"\r\n\r\n") or b"\r\n0\r\n" not in data:
            assert time.monotonic() < deadline, data
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"\x00\x00\x00\x00\x07echo:hi" in body
    trailer_block = body[body.index(b"\r\n0\r\n") + 5:]
    assert b"grpc-status: 0\r\n" in trailer_block, trailer_block
    assert b"x-trace: t1\r\n" in trailer_block, trailer_block


def test_deadline_racing_the_upstreams_own_answer_still_answers(procs, grpc_server):
    """grpcio enforces the forwarded grpc-timeout too, so its trailers-only
    DEADLINE_EXCEEDED and remora's own deadline fire at the same moment. A
    whole answer must reach the client either way (remora once reset the
    stream when the deadline fired after the answer arrived, which dropped
    the queued HEADERS: about one request in ten got nothing)."""
    import socket
    import h2.connection
    import h2.events
    remora = procs.remora(grpc_config(grpc_server, timeout="30s"))
    message = b"2000"
    for attempt in range(40):
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        with socket.create_connection(("127.0.0.1", remora.port()), timeout=5) as s:
            s.sendall(conn.data_to_send())
            conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "echo"),
                                  (":path", "/test.Echo/Slow"), ("content-type", "application/grpc"),
                                  ("te", "trailers"), ("grpc-timeout", "40m")])
            conn.send_data(1, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
            s.sendall(conn.data_to_send())
            headers, reset = None, None
            while headers is None and reset is None:
                data = s.recv(65536)
                assert data, "connection closed (attempt %d)" % attempt
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        headers = dict(event.headers)
                    elif isinstance(event, h2.events.StreamReset):
                        reset = event.error_code
                s.sendall(conn.data_to_send())
        assert reset is None, "attempt %d: stream reset (%r) instead of an answer" % (attempt, reset)
        assert headers[b"grpc-status"] == b"4", (attempt, headers)


def test_grpc_timeout_shortens_the_route_timeout(procs, grpc_server):
    """The client's grpc-timeout (sent by grpcio from its deadline) caps the
    route timeout: remora gives up on the upstream and answers
    DEADLINE_EXCEEDED itself, with its reason header. (The route drops
    grpc-timeout toward the upstream here, so that grpcio's own enforcement
    of it cannot answer first: see the racing test above.)"""
    import socket
    import h2.connection
    import h2.events
    config = grpc_config(grpc_server, timeout="30s")
    config["route_tables"][0]["routes"][0]["request_headers"] = {"remove": ["grpc-timeout"]}
    remora = procs.remora(config)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", remora.port()), timeout=10) as s:
        s.sendall(conn.data_to_send())
        message = b"2000"
        conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "echo"),
                              (":path", "/test.Echo/Slow"), ("content-type", "application/grpc"),
                              ("te", "trailers"), ("grpc-timeout", "300m")])
        conn.send_data(1, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        s.sendall(conn.data_to_send())
        start = time.monotonic()
        headers = None
        while headers is None:
            data = s.recv(65536)
            assert data, "connection closed"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
            s.sendall(conn.data_to_send())
        elapsed = time.monotonic() - start
    assert headers[b"grpc-status"] == b"4", headers
    assert headers[b"x-remora-reason"] == b"upstream_timeout", headers
    assert elapsed < 1.5, elapsed


GRPC_REQUESTS = "remora_grpc_requests_total"


def _grpc_series(samples, listener="main"):
    """(route, cluster, grpc_status) → value of remora_grpc_requests_total."""
    return {(l.get("route"), l.get("cluster"), l.get("grpc_status")): v
            for n, l, v in samples if n == GRPC_REQUESTS and l.get("listener") == listener}


def _h2_2xx(samples, route, cluster):
    return metric(samples, "remora_requests_total", listener="main", route=route,
                  cluster=cluster, protocol="http2", status_class="2xx")


def test_grpc_requests_counted_by_grpc_status(procs, grpc_server):
    """remora_grpc_requests_total{listener, route, cluster, grpc_status}: k OK
    calls count as "0"; a status the server fails a call with (NOT_FOUND)
    as "5"; remora's own trailers-only replies as theirs: no route as "12"
    on the unrouted series (route="", cluster=""), upstream down as "14".
    Every one of them is a 200 over h2: remora_requests_total{protocol=
    "http2", status_class="2xx"} counts them all, by the same labels."""
    config = grpc_config(grpc_server)
    dead = free_port()
    config["route_tables"][0]["routes"].insert(
        0, {"name": "down", "match": {"prefix": "/test.Down/"}, "cluster": "dead"})
    config["clusters"].append({"name": "dead", "protocol": "http2", "connect_timeout": "1s",
                               "endpoints": ["127.0.0.1:%d" % dead]})
    remora = procs.remora(config)
    before = remora.metrics()
    k = 3
    with grpc.insecure_channel("127.0.0.1:%d" % remora.port()) as ch:
        for i in range(k):
            assert ch.unary_unary("/test.Echo/Unary")(b"ok%d" % i, timeout=5) == b"echo:ok%d" % i
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Unary")(b"fail", timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/other.Service/Call")(b"x", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Down/Unary")(b"x", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE

    want = {("echo", "grpc", "0"): k, ("echo", "grpc", "5"): 1,
            ("", "", "12"): 1, ("down", "dead", "14"): 1}
    want_2xx = {("echo", "grpc"): k + 1, ("", ""): 1, ("down", "dead"): 1}
    old = _grpc_series(before)

    def deltas(samples):
        now = _grpc_series(samples)
        return {key: v - old.get(key, 0) for key, v in now.items() if v != old.get(key, 0)}

    def deltas_2xx(samples):
        return {key: _h2_2xx(samples, *key) - _h2_2xx(before, *key) for key in want_2xx}

    def reached():
        samples = remora.metrics()
        got = (deltas(samples), deltas_2xx(samples))
        assert got == (want, want_2xx), "grpc deltas %r, h2 2xx deltas %r" % got
        return True

    # A stream is counted as it ends, which may be just after grpcio saw it.
    wait_until(reached, timeout=5, message="grpc_requests_total deltas %r" % want)
    time.sleep(0.2)
    samples = remora.metrics()
    assert deltas(samples) == want
    assert deltas_2xx(samples) == want_2xx
    # Nothing of it was counted under HTTP/1.1 or outside 2xx.
    for route, cluster in want_2xx:
        for protocol, cls in [("http1", c) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")] + \
                             [("http2", c) for c in ("1xx", "3xx", "4xx", "5xx")]:
            labels = dict(listener="main", route=route, cluster=cluster, protocol=protocol,
                          status_class=cls)
            assert metric(samples, "remora_requests_total", **labels) == \
                metric(before, "remora_requests_total", **labels), labels
