"""Route and cluster policies before the upstream call (issue #5, DESIGN §1):
local rate limiting, fault injection, the circuit breaker's request cap.
Each is checked by what the client gets, what the upstream saw and what
/metrics counts, over HTTP/1.1 and for gRPC over HTTP/2."""

import http.client
import threading
import time

from conftest import simple_config
from helpers import H2Conn, http_request, metric, wait_until

GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


def upstream_count(up, prefix):
    return len([q for q in up.requests() if q["target"].startswith(prefix)])


def grpc_call(port, path, extra=()):
    with H2Conn(port) as c:
        sid = c.request("POST", path, headers=GRPC_HEADERS + list(extra), body=EMPTY_MESSAGE,
                        content_length=False)
        return c.response(sid, 10)


def grpc_status(st):
    return dict(st.headers).get("grpc-status") or dict(st.trailers or []).get("grpc-status")


# ---------------------------------------------------------------- rate limit

def test_rate_limit_refuses_beyond_the_bucket_with_429(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "limited", "match": {"prefix": "/limited"}, "cluster": "app",
          "rate_limit": {"rate": 2, "burst": 5}},
         {"name": "free", "match": {"prefix": "/"}, "cluster": "app"}],
        [{"name": "app", "endpoints": [up.addr]}]))
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    start = time.monotonic()
    results = [http_request(r.port(), "GET", "/limited/%d" % i, conn=conn) for i in range(30)]
    elapsed = time.monotonic() - start
    ok = [x for x in results if x.status == 200]
    limited = [x for x in results if x.status == 429]
    assert len(ok) + len(limited) == 30, [x.status for x in results]
    # The burst, plus what the rate refilled meanwhile (2/s).
    assert 5 <= len(ok) <= 5 + int(2 * elapsed) + 1, (len(ok), elapsed)
    assert all(x.headers["x-remora-reason"] == "rate_limited" for x in limited)
    assert upstream_count(up, "/limited") == len(ok)
    # Other routes are not limited.
    assert all(http_request(r.port(), "GET", "/other/%d" % i, conn=conn).status == 200
               for i in range(10))
    conn.close()
    assert metric(r.metrics(), "remora_rate_limited_total", route="limited") == len(limited)


def test_rate_limit_is_shared_by_all_workers(procs):
    """One bucket for the proxy, not one per worker: 4 workers and 40 new
    connections (spread over the workers by SO_REUSEPORT) still get the one
    burst of 10."""
    up = procs.upstream("up")
    config = simple_config(
        [{"name": "limited", "match": {"prefix": "/"}, "cluster": "app",
          "rate_limit": {"rate": 0.1, "burst": 10}}],
        [{"name": "app", "endpoints": [up.addr]}])
    config["workers"] = 4
    r = procs.remora(config)
    statuses = [http_request(r.port(), "GET", "/w/%d" % i).status for i in range(40)]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 30, statuses


def test_rate_limited_grpc_call_is_resource_exhausted(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "limited", "match": {"prefix": "/"}, "cluster": "app",
          "rate_limit": {"rate": 0.1, "burst": 1}}],
        [{"name": "app", "endpoints": [up.addr]}]))
    first = grpc_call(r.port(), "/svc.S/M")
    assert first.status == 200 and grpc_status(first) != "8", first
    second = grpc_call(r.port(), "/svc.S/M")
    assert second.status == 200 and second.headers_end_stream, second  # trailers-only
    assert grpc_status(second) == "8", second  # RESOURCE_EXHAUSTED
    assert dict(second.headers).get("x-remora-reason") == "rate_limited"


# ---------------------------------------------------------------- faults

def test_fault_abort_percentage_over_2000_requests(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "chaos", "match": {"prefix": "/"}, "cluster": "app",
          "fault": {"abort": {"status": 503, "percent": 30}}}],
        [{"name": "app", "endpoints": [up.addr]}]))
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    n = 2000
    statuses = []
    for i in range(n):
        res = http_request(r.port(), "GET", "/f/%d" % i, conn=conn)
        if res.status == 503:
            assert res.headers["x-remora-reason"] == "fault_abort", res
        statuses.append(res.status)
    conn.close()
    aborted = statuses.count(503)
    assert statuses.count(200) + aborted == n
    # Binomial(2000, 0.3): mean 600, sd 20.5; ±5 sd.
    assert 497 <= aborted <= 703, aborted
    assert upstream_count(up, "/f/") == n - aborted  # aborted requests never went upstream
    assert metric(r.metrics(), "remora_faults_total", route="chaos", kind="abort") == aborted


def test_fault_delay_only_for_requests_with_the_header(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "slow", "match": {"prefix": "/"}, "cluster": "app",
          "fault": {"header": "x-chaos", "delay": {"duration": "300ms", "percent": 100}}}],
        [{"name": "app", "endpoints": [up.addr]}]))
    assert http_request(r.port(), "GET", "/warm-up").status == 200  # connections, caches
    start = time.monotonic()
    assert http_request(r.port(), "GET", "/plain").status == 200
    plain = time.monotonic() - start
    start = time.monotonic()
    assert http_request(r.port(), "GET", "/chaos", headers={"x-chaos": "1"}).status == 200
    delayed = time.monotonic() - start
    assert delayed >= 0.3, delayed
    assert plain < 0.3, plain
    samples = r.metrics()
    assert metric(samples, "remora_faults_total", route="slow", kind="delay") == 1  # not /warm-up
    assert metric(samples, "remora_faults_total", route="slow", kind="abort") == 0


def test_fault_abort_for_grpc_is_trailers_only_with_the_configured_status(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "chaos", "match": {"prefix": "/"}, "cluster": "app",
          "fault": {"abort": {"grpc_status": 14, "percent": 100}}}],
        [{"name": "app", "endpoints": [up.addr]}]))
    st = grpc_call(r.port(), "/svc.S/M")
    assert st.status == 200 and st.headers_end_stream, st
    assert grpc_status(st) == "14", st
    assert dict(st.headers).get("x-remora-reason") == "fault_abort"
    # And over HTTP/1.1 the abort is a 503 (no HTTP status configured).
    assert http_request(r.port(), "GET", "/plain").status == 503
    assert upstream_count(up, "/") == 0


# ---------------------------------------------------------------- circuit breaker

def test_breaker_caps_requests_in_flight_and_refuses_at_once(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
        [{"name": "app", "endpoints": [up.addr], "circuit_breaker": {"max_requests": 2}}]))
    results = {}

    def call(i):
        start = time.monotonic()
        res = http_request(r.port(), "GET", "/slow/%d?delay=1500" % i, timeout=15)
        results[i] = (res, time.monotonic() - start)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: metric(r.metrics(), "remora_circuit_breaker_occupancy", cluster="app",
                              resource="requests") == 2, 5, message="two requests in flight")
    for t in threads:
        t.join(20)
    ok = [res for res, _ in results.values() if res.status == 200]
    refused = [(res, took) for res, took in results.values() if res.status == 503]
    assert len(ok) == 2 and len(refused) == 4, [res.status for res, _ in results.values()]
    for res, took in refused:
        assert res.headers["x-remora-reason"] == "circuit_open", res
        assert took < 1.0, "a refusal waited %.2fs: it must be immediate" % took
    samples = r.metrics()
    assert metric(samples, "remora_circuit_open_total", cluster="app") == 4
    assert metric(samples, "remora_circuit_breaker_occupancy", cluster="app",
                  resource="requests") == 0
    assert metric(samples, "remora_circuit_breaker_limit", cluster="app", resource="requests") == 2
    # The slots came back: the next request goes through.
    assert http_request(r.port(), "GET", "/after").status == 200


def test_breaker_caps_upstream_connections_across_clients(procs):
    # Each slow request needs its own HTTP/1.1 upstream connection: the third
    # finds both of the cluster's connections taken and is refused at once.
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
        [{"name": "app", "endpoints": [up.addr], "circuit_breaker": {"max_connections": 2}}],
        workers=1))  # one worker: its pool holds both connections when they are idle again
    results = {}

    def call(i):
        start = time.monotonic()
        results[i] = (http_request(r.port(), "GET", "/slow/%d?delay=1500" % i, timeout=15),
                      time.monotonic() - start)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: metric(r.metrics(), "remora_circuit_breaker_occupancy", cluster="app",
                              resource="connections") == 2, 5, message="two connections open")
    call(2)
    res, took = results[2]
    assert res.status == 503 and res.headers["x-remora-reason"] == "circuit_open", res
    assert took < 1.0, "the refusal waited %.2fs: it must be immediate" % took
    for t in threads:
        t.join(20)
    assert [results[i][0].status for i in range(2)] == [200, 200]
    samples = r.metrics()
    assert metric(samples, "remora_circuit_open_total", cluster="app") == 1
    assert metric(samples, "remora_circuit_breaker_limit", cluster="app",
                  resource="connections") == 2
    # The two connections stay pooled (they still count) and serve what follows
    # (with more workers, a worker without an idle one would be refused).
    assert http_request(r.port(), "GET", "/after").status == 200
    assert metric(r.metrics(), "remora_circuit_breaker_occupancy", cluster="app",
                  resource="connections") <= 2


def test_breaker_caps_requests_waiting_for_a_connection(procs):
    # An endpoint whose accept queue is full: connects to it hang (the kernel
    # drops the SYNs), so the first request waits for its connection and the
    # second, over max_pending, is refused at once.
    import socket
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (never accepted)
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(hung.getsockname())
            fillers.append(f)
        time.sleep(0.2)
        addr = "127.0.0.1:%d" % hung.getsockname()[1]
        r = procs.remora(simple_config(
            [{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
            [{"name": "app", "endpoints": [addr], "connect_timeout": "2s",
              "circuit_breaker": {"max_pending": 1},
              "outlier_detection": {"disabled": True}}]))
        first = {}
        t = threading.Thread(target=lambda: first.setdefault(
            "res", http_request(r.port(), "GET", "/first", timeout=15)))
        t.start()
        wait_until(lambda: metric(r.metrics(), "remora_circuit_breaker_occupancy", cluster="app",
                                  resource="pending") == 1, 5, message="one request connecting")
        start = time.monotonic()
        res = http_request(r.port(), "GET", "/second", timeout=15)
        assert res.status == 503 and res.headers["x-remora-reason"] == "circuit_open", res
        assert time.monotonic() - start < 1.0
        t.join(20)
        # The first waited out connect_timeout: a connect failure, not the breaker.
        assert first["res"].status == 503, first
        assert first["res"].headers["x-remora-reason"] == "upstream_connect_failure"
        assert metric(r.metrics(), "remora_circuit_breaker_occupancy", cluster="app",
                      resource="pending") == 0
    finally:
        for f in fillers:
            f.close()
        hung.close()


def test_breaker_open_for_grpc_is_unavailable(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
        [{"name": "app", "endpoints": [up.addr], "circuit_breaker": {"max_requests": 1}}]))
    with H2Conn(r.port()) as c:
        slow = c.request("GET", "/slow?delay=1500")
        wait_until(lambda: metric(r.metrics(), "remora_circuit_breaker_occupancy", cluster="app",
                                  resource="requests") == 1, 5, message="one request in flight")
        sid = c.request("POST", "/svc.S/M", headers=GRPC_HEADERS, body=EMPTY_MESSAGE,
                        content_length=False)
        st = c.response(sid, 5)
        assert grpc_status(st) == "14" and st.headers_end_stream, st  # UNAVAILABLE
        assert dict(st.headers).get("x-remora-reason") == "circuit_open"
        assert c.response(slow, 10).status == 200


# ---------------------------------------------------------------- client deadlines

def test_client_deadline_header_shortens_the_route_timeout_never_lengthens_it(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "all", "match": {"prefix": "/"}, "cluster": "app", "timeout": "1s"}],
        [{"name": "app", "endpoints": [up.addr], "outlier_detection": {"disabled": True}}]))
    start = time.monotonic()
    res = http_request(r.port(), "GET", "/slow?delay=3000", headers={"x-remora-timeout-ms": "200"})
    took = time.monotonic() - start
    assert res.status == 504 and res.headers["x-remora-reason"] == "upstream_timeout", res
    assert took < 0.9, "the 200 ms client deadline did not apply (%.2fs)" % took
    # A longer client deadline does not stretch the route's 1 s.
    start = time.monotonic()
    res = http_request(r.port(), "GET", "/slow?delay=3000", headers={"x-remora-timeout-ms": "9000"})
    assert res.status == 504 and time.monotonic() - start < 2.5, res
    # Over HTTP/2 the same header applies.
    with H2Conn(r.port()) as c:
        start = time.monotonic()
        st = c.response(c.request("GET", "/slow?delay=3000",
                                  headers=[("x-remora-timeout-ms", "200")]), 10)
        assert st.status == 504 and time.monotonic() - start < 0.9, st


def test_after_its_own_504_remora_keeps_the_http1_client_connection(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [{"name": "all", "match": {"prefix": "/"}, "cluster": "app", "timeout": "300ms"}],
        [{"name": "app", "endpoints": [up.addr], "outlier_detection": {"disabled": True}}]))
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    conn.request("GET", "/slow?delay=2000")
    res = conn.getresponse()
    assert res.status == 504 and res.getheader("x-remora-reason") == "upstream_timeout"
    assert res.getheader("connection") != "close"
    res.read()
    sock = conn.sock
    assert sock is not None  # http.client drops a connection the server said it closes
    conn.request("GET", "/next")  # the same connection: the whole request had been sent
    res = conn.getresponse()
    assert res.status == 200 and conn.sock is sock
    res.read()
    conn.close()
