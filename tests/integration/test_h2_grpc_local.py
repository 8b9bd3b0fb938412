"""gRPC requests that remora answers itself (DESIGN §5): a trailers-only
response — HTTP 200, content-type application/grpc, grpc-status and
grpc-message on the one HEADERS frame, which carries END_STREAM — never a
bare 404/503/504.

Frames are read with the raw client of helpers.py; if python3-grpcio is
installed, a real grpcio client checks the status codes it sees.
"""

import time

import pytest

from helpers import H2_CODES, H2Conn, free_port

GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers"),
                ("grpc-accept-encoding", "identity")]
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"  # uncompressed, 0 bytes


@pytest.fixture(scope="module")
def env(module_procs):
    up = module_procs.upstream("up")
    slow = module_procs.upstream("slow", delay=3000)
    config = {
        "listeners": [{"name": "main", "route_table": "main"}],
        "route_tables": [{"name": "main", "routes": [
            {"name": "dead", "match": {"prefix": "/dead.Svc/"}, "cluster": "dead"},
            {"name": "hang", "match": {"prefix": "/hang"}, "cluster": "app", "timeout": "500ms"},
            {"name": "slow", "match": {"prefix": "/slow.Svc/"}, "cluster": "slow",
             "timeout": "500ms"},
            {"name": "known", "match": {"prefix": "/known.Svc/"}, "cluster": "app"},
        ]}],
        "clusters": [
            {"name": "app", "endpoints": [up.addr]},
            {"name": "slow", "endpoints": [slow.addr]},
            {"name": "dead", "endpoints": ["127.0.0.1:%d" % free_port()],
             "connect_timeout": "1s"},
        ],
    }
    r = module_procs.remora(config)
    return r, up, slow


def grpc_call(c, path, content_type="application/grpc", timeout=10):
    headers = [("content-type", content_type)] + GRPC_HEADERS[1:]
    sid = c.request("POST", path, headers=headers, body=EMPTY_MESSAGE, content_length=False)
    return c.response(sid, timeout)


def assert_trailers_only(st, grpc_status):
    # A reply sent before the request's END_STREAM arrived is followed by
    # RST_STREAM NO_ERROR (RFC 9113 §8.1): complete, not an error.
    assert st.reset in (None, H2_CODES["NO_ERROR"]), st
    assert st.headers is not None, st
    assert st.headers_end_stream, "END_STREAM not on the HEADERS frame: %r" % st
    assert st.data_frames == 0 and st.body_len == 0, "DATA on a trailers-only response: %r" % st
    assert st.trailers is None, st
    assert st.status == 200, st
    assert st.header("content-type", "").startswith("application/grpc"), st
    assert st.header("grpc-status") == str(grpc_status), st
    assert st.header("grpc-message"), "no grpc-message: %r" % st


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
def test_no_route_is_unimplemented(env, content_type):
    r, up, slow = env
    with H2Conn(r.port()) as c:
        st = grpc_call(c, "/pkg.Missing/Call", content_type)
        assert_trailers_only(st, 12)
        # The connection goes on.
        assert_trailers_only(grpc_call(c, "/pkg.Missing/Again", content_type), 12)
    assert not [q for q in up.requests() if q["target"].startswith("/pkg.Missing/")]


def test_upstream_down_is_unavailable(env):
    r, up, slow = env
    with H2Conn(r.port()) as c:
        st = grpc_call(c, "/dead.Svc/Call")
        assert_trailers_only(st, 14)


def test_route_timeout_is_deadline_exceeded(env):
    r, up, slow = env
    with H2Conn(r.port(), timeout=15) as c:
        start = time.monotonic()
        st = grpc_call(c, "/hang")
        elapsed = time.monotonic() - start
        assert_trailers_only(st, 4)
        assert 0.4 < elapsed < 5, elapsed


def test_same_failures_without_grpc_content_type_are_plain_http(env):
    """The control: the reply's form follows the request's content-type."""
    r, up, slow = env
    with H2Conn(r.port(), timeout=15) as c:
        for path, status in (("/pkg.Missing/Call", 404), ("/dead.Svc/Call", 503), ("/hang", 504)):
            st = c.response(c.request("POST", path, body=b"x",
                                      headers=[("content-type", "application/json")]))
            assert st.status == status, (path, st)
            assert st.header("grpc-status") is None, st
            assert not st.headers_end_stream and st.body_len > 0, st


# ---------------------------------------------------------------- grpcio

def _grpcio_status(r, method, timeout=10):
    import grpc  # python3-grpcio comes from scripts/deps: missing is a failure, not a skip
    channel = grpc.insecure_channel("127.0.0.1:%d" % r.port(),
                                    options=[("grpc.enable_http_proxy", 0)])
    try:
        call = channel.unary_unary(method, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as info:
            call(b"hello", timeout=timeout)
        return info.value.code(), info.value.details()
    finally:
        channel.close()


def test_grpcio_no_route_is_unimplemented(env):
    r, up, slow = env
    import grpc  # python3-grpcio comes from scripts/deps: missing is a failure, not a skip
    code, details = _grpcio_status(r, "/pkg.Missing/Call")
    assert code == grpc.StatusCode.UNIMPLEMENTED, (code, details)


def test_grpcio_upstream_down_is_unavailable(env):
    r, up, slow = env
    import grpc  # python3-grpcio comes from scripts/deps: missing is a failure, not a skip
    code, details = _grpcio_status(r, "/dead.Svc/Call")
    assert code == grpc.StatusCode.UNAVAILABLE, (code, details)


def test_grpcio_route_timeout_is_deadline_exceeded(env):
    r, up, slow = env
    import grpc  # python3-grpcio comes from scripts/deps: missing is a failure, not a skip
    start = time.monotonic()
    code, details = _grpcio_status(r, "/slow.Svc/Call", timeout=10)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
    assert time.monotonic() - start < 5  # remora's 500 ms route timeout, not the client's 10 s
