"""Upstream side: load balancing, connection pooling, and upstream failures."""

import http.client
import threading
import time

from conftest import one_cluster_config, simple_config
from helpers import RawConn, free_port, http_request, metric, request_bytes


def _lb_config(ups, lb):
    return simple_config([{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
                         [{"name": "app", "lb": lb, "endpoints": [u.addr for u in ups]}])


def test_round_robin_alternates(procs):
    ups = [procs.upstream("rr1"), procs.upstream("rr2")]
    r = procs.remora(_lb_config(ups, "round_robin"))
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    try:
        order = [http_request(r.port(), "GET", "/rr", conn=conn).json()["server"] for _ in range(100)]
    finally:
        conn.close()
    assert order.count("rr1") == 50 and order.count("rr2") == 50, order
    assert all(a != b for a, b in zip(order, order[1:])), order


def test_least_request_prefers_the_idle_endpoint(procs):
    slow = procs.upstream("slow", delay=200)
    fast = procs.upstream("fast")
    r = procs.remora(_lb_config([slow, fast], "least_request"))
    counts = {"slow": 0, "fast": 0}
    errors = []
    lock = threading.Lock()
    deadline = time.monotonic() + 2.5

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
        try:
            for _ in range(2000):
                if time.monotonic() > deadline:
                    break
                res = http_request(r.port(), "GET", "/lr", conn=conn)
                with lock:
                    if res.status == 200:
                        counts[res.json()["server"]] += 1
                    else:
                        errors.append(res)
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
    total = counts["slow"] + counts["fast"]
    # Round robin would give each about half; least_request keeps sending to
    # the endpoint that has no request outstanding.
    assert total > 50, counts
    assert counts["fast"] >= 0.8 * total, counts


def test_keep_alive_pool_reuses_upstream_connections(proxied):
    r, up = proxied
    for i in range(20):
        res = http_request(r.port(), "GET", "/pool/%d" % i)  # a new client connection each time
        assert res.status == 200, res
    conns = {q["conn"] for q in up.requests()}
    workers = r.config["workers"]
    assert len(conns) <= workers, "20 requests used %d upstream connections" % len(conns)
    assert len(up.events("connect")) <= workers


def test_connection_closed_by_upstream_is_not_reused(proxied):
    r, up = proxied
    with RawConn(r.port()) as c:
        for i in range(10):
            c.send(request_bytes("GET", "/close?i=%d" % i))
            first = c.read_final_response()
            assert first.status == 200, first
            # Connection: close is hop-by-hop: the client's connection stays open.
            c.send(request_bytes("GET", "/next?i=%d" % i))
            second = c.read_final_response()
            assert second.status == 200, second
    used = {}
    for q in up.requests():
        used.setdefault(q["conn"], []).append(q["target"])
    for conn, targets in used.items():
        if any(t.startswith("/close") for t in targets):
            assert targets[-1].startswith("/close"), "connection %s used after close: %r" % (conn, targets)


def test_idle_connection_closed_by_upstream_is_not_reused(proxied):
    """The upstream closes a kept-alive connection shortly after answering."""
    r, up = proxied
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    try:
        for i in range(5):
            res = http_request(r.port(), "GET", "/close?silent=1&i=%d" % i, conn=conn)
            assert res.status == 200, res
            time.sleep(0.3)  # the upstream has closed that connection by now
            res = http_request(r.port(), "GET", "/after-silent-close?i=%d" % i, conn=conn)
            assert res.status == 200, res
    finally:
        conn.close()


def test_connect_refused_is_503_upstream_connect_failure(procs):
    config = simple_config([{"name": "dead", "match": {"prefix": "/"}, "cluster": "dead"}],
                           [{"name": "dead", "endpoints": ["127.0.0.1:%d" % free_port()],
                             "connect_timeout": "1s"}])
    r = procs.remora(config)
    res = http_request(r.port(), "GET", "/x")
    assert res.status == 503, res
    assert res.headers.get("x-remora-reason") == "upstream_connect_failure", res
    assert metric(r.metrics(), "remora_upstream_connect_failures_total", cluster="dead") >= 1


def test_upstream_closing_without_answer_is_502_upstream_reset(proxied):
    r, up = proxied
    for target in ("/reset", "/reset?rst=1"):
        res = http_request(r.port(), "GET", target)
        assert res.status == 502, (target, res)
        assert res.headers.get("x-remora-reason") == "upstream_reset", (target, res)
    assert http_request(r.port(), "GET", "/fine").status == 200


def test_invalid_upstream_response_is_502_bad_upstream_response(proxied):
    r, up = proxied
    res = http_request(r.port(), "GET", "/garbage")
    assert res.status == 502, res
    assert res.headers.get("x-remora-reason") == "bad_upstream_response", res
    assert http_request(r.port(), "GET", "/fine").status == 200


def test_route_timeout_is_504_upstream_timeout(procs, upstream):
    config = simple_config([{"name": "hang", "match": {"prefix": "/hang"}, "cluster": "app",
                             "timeout": "500ms"},
                            {"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
                           [{"name": "app", "endpoints": [upstream.addr]}])
    r = procs.remora(config)
    start = time.monotonic()
    res = http_request(r.port(), "GET", "/hang", timeout=15)
    elapsed = time.monotonic() - start
    assert res.status == 504, res
    assert res.headers.get("x-remora-reason") == "upstream_timeout", res
    assert 0.4 < elapsed < 5, elapsed
    assert http_request(r.port(), "GET", "/fine").status == 200


def test_dns_endpoint(procs, upstream):
    config = simple_config([{"name": "all", "match": {"prefix": "/"}, "cluster": "named"}],
                           [{"name": "named", "endpoints": ["dns:localhost:%d" % upstream.port]}])
    r = procs.remora(config)
    res = http_request(r.port(), "GET", "/via-dns")
    assert res.status == 200, res
    assert res.json()["server"] == "up"


def test_client_abort_mid_upload_does_not_poison_the_pool(proxied):
    """An upstream connection with half a request body on it must not be reused."""
    r, up = proxied
    with RawConn(r.port()) as c:
        c.send(request_bytes("POST", "/aborted", [("Content-Length", str(10 << 20))]))
        c.send(b"x" * (1 << 20))
        time.sleep(0.3)
    time.sleep(0.3)
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    try:
        for i in range(6):
            res = http_request(r.port(), "POST", "/after-abort/%d" % i, body=b"abc", conn=conn)
            assert res.status == 200, res
            assert res.json()["path"] == "/after-abort/%d" % i and res.json()["body_bytes"] == 3
    finally:
        conn.close()
    aborted = [q for q in up.requests() if q["target"] == "/aborted"]
    assert aborted and not aborted[0]["complete"], aborted


def test_client_abort_while_waiting_does_not_mix_responses(proxied):
    """A response still owed on an upstream connection never reaches another client."""
    r, up = proxied
    for i in range(3):
        with RawConn(r.port()) as c:
            c.send(request_bytes("GET", "/abandoned?delay=500&i=%d" % i))
            time.sleep(0.1)
        for j in range(4):
            res = http_request(r.port(), "GET", "/next/%d/%d" % (i, j))
            assert res.status == 200, res
            assert res.json()["path"] == "/next/%d/%d" % (i, j), res
    time.sleep(0.6)
    res = http_request(r.port(), "GET", "/last")
    assert res.status == 200 and res.json()["path"] == "/last", res


def test_pool_idle_timeout_closes_upstream_connections(procs, upstream):
    config = simple_config([{"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
                           [{"name": "app", "endpoints": [upstream.addr],
                             "pool": {"max_idle": 4, "idle_timeout": "1s"}}])
    r = procs.remora(config)
    assert http_request(r.port(), "GET", "/warm").status == 200
    conn_id = upstream.requests()[-1]["conn"]
    time.sleep(0.3)
    assert not [e for e in upstream.events("disconnect") if e["conn"] == conn_id], \
        "pooled connection closed well before its idle_timeout"
    start = time.monotonic()
    while time.monotonic() - start < 5:
        if [e for e in upstream.events("disconnect") if e["conn"] == conn_id]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("pooled upstream connection still open 5 s after a 1 s idle_timeout")
    assert http_request(r.port(), "GET", "/again").status == 200
