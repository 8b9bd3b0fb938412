"""Retries (issue #5): attempts seen by the upstream, conditions, idempotency,
body replay, backoff, Retry-After, per-try timeouts, other endpoints and
the retry budget. The upstream counts and times every try; the client
sees only the last answer."""

import http.client
import json
import statistics
import time

from conftest import simple_config
from helpers import H2Conn, free_port, http_request, metric


def retry_route(retry, name="r", prefix="/", cluster="app", timeout=None):
    route = {"name": name, "match": {"prefix": prefix}, "cluster": cluster, "retry": retry}
    if timeout:
        route["timeout"] = timeout
    return route


def path_of(q):
    return q["target"].split("?")[0]


def tries(up, path):
    return [q for q in up.requests() if path_of(q) == path]


def test_5xx_is_retried_until_success_with_the_attempt_header(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config([retry_route({"attempts": 3, "on": ["5xx"]})],
                                   [{"name": "app", "endpoints": [up.addr]}]))
    res = http_request(r.port(), "GET", "/flaky?fail=2")
    assert res.status == 200, res
    seen = tries(up, "/flaky")
    assert [q["headers"].get("x-remora-attempt") for q in seen] == ["1", "2", "3"], seen
    assert metric(r.metrics(), "remora_retries_total", route="r") == 2


def test_attempts_bound_the_tries_and_the_last_answer_is_forwarded(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config([retry_route({"attempts": 2, "on": ["5xx"]})],
                                   [{"name": "app", "endpoints": [up.addr]}]))
    res = http_request(r.port(), "GET", "/down?fail=5")
    assert res.status == 503 and "x-remora-reason" not in res.headers, res  # the upstream's
    assert len(tries(up, "/down")) == 2


def test_statuses_not_in_the_policy_are_not_retried(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config([retry_route({"attempts": 3, "on": ["gateway-error"]})],
                                   [{"name": "app", "endpoints": [up.addr]}]))
    assert http_request(r.port(), "GET", "/e500?fail=1&fail_status=500").status == 500
    assert len(tries(up, "/e500")) == 1
    assert http_request(r.port(), "GET", "/e502?fail=1&fail_status=502").status == 200
    assert len(tries(up, "/e502")) == 2


def test_retriable_status_codes(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["retriable-status-codes"],
                      "retriable_status_codes": [409]})],
        [{"name": "app", "endpoints": [up.addr]}]))
    assert http_request(r.port(), "GET", "/c?fail=1&fail_status=409").status == 200
    assert len(tries(up, "/c")) == 2


def test_non_idempotent_methods_are_not_retried_unless_the_route_says_so(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["5xx"]}, name="strict", prefix="/strict"),
         retry_route({"attempts": 3, "on": ["5xx"], "retry_non_idempotent": True},
                     name="loose", prefix="/loose")],
        [{"name": "app", "endpoints": [up.addr]}]))
    body = b"x" * 3000
    assert http_request(r.port(), "POST", "/strict/p?fail=1", body=body).status == 503
    assert len(tries(up, "/strict/p")) == 1
    res = http_request(r.port(), "POST", "/loose/p?fail=1", body=body)
    assert res.status == 200, res
    assert res.json()["body_bytes"] == 3000
    seen = tries(up, "/loose/p")
    assert len(seen) == 2
    # The replayed body is the client's, byte for byte.
    bodies = [e for e in up.events("body") if e["id"] in {q["id"] for q in seen}]
    assert len({e["body_sha256"] for e in bodies}) == 1 and bodies[0]["body_bytes"] == 3000


def test_a_body_beyond_buffer_limit_turns_retries_off(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["5xx"], "retry_non_idempotent": True,
                      "buffer_limit": 1000})],
        [{"name": "app", "endpoints": [up.addr]}]))
    assert http_request(r.port(), "PUT", "/big?fail=1", body=b"y" * 5000).status == 503
    assert len(tries(up, "/big")) == 1
    assert http_request(r.port(), "PUT", "/small?fail=1", body=b"y" * 500).status == 200
    assert len(tries(up, "/small")) == 2


def test_connect_failures_go_to_the_other_endpoint(procs):
    up = procs.upstream("up")
    dead = "127.0.0.1:%d" % free_port()
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["connect-failure"]})],
        [{"name": "app", "endpoints": [dead, up.addr], "connect_timeout": "1s"}]))
    statuses = [http_request(r.port(), "GET", "/cf/%d" % i).status for i in range(20)]
    assert statuses == [200] * 20, statuses


def test_a_5xx_endpoint_is_avoided_on_the_retry(procs):
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["5xx"]})],
        [{"name": "app", "endpoints": [bad.addr, good.addr]}]))
    statuses = [http_request(r.port(), "GET", "/ep/%d" % i).status for i in range(20)]
    assert statuses == [200] * 20, statuses
    assert len(bad.requests()) >= 5  # the bad one was tried, and each time retried elsewhere


def test_resets_are_retried_then_reported(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config([retry_route({"attempts": 3, "on": ["reset"]})],
                                   [{"name": "app", "endpoints": [up.addr]}]))
    res = http_request(r.port(), "GET", "/reset")
    assert res.status == 502 and res.headers["x-remora-reason"] == "upstream_reset", res
    assert len(tries(up, "/reset")) == 3


def test_per_try_timeout_moves_on_to_a_faster_endpoint(procs):
    slow = procs.upstream("slow", delay=3000)
    fast = procs.upstream("fast")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["reset"], "per_try_timeout": "300ms"},
                     timeout="5s")],
        [{"name": "app", "endpoints": [slow.addr, fast.addr]}]))
    for i in range(6):
        start = time.monotonic()
        res = http_request(r.port(), "GET", "/pt/%d" % i)
        took = time.monotonic() - start
        assert res.status == 200 and res.headers["x-upstream"] == "fast", res
        assert took < 1.5, "try %d took %.2fs" % (i, took)
    assert len(slow.requests()) >= 2


def test_route_timeout_bounds_all_tries(procs):
    up = procs.upstream("up", delay=2000)
    r = procs.remora(simple_config(
        [retry_route({"attempts": 5, "on": ["reset"], "per_try_timeout": "300ms"},
                     timeout="1s")],
        [{"name": "app", "endpoints": [up.addr]}]))
    start = time.monotonic()
    res = http_request(r.port(), "GET", "/rt")
    took = time.monotonic() - start
    assert res.status == 504, res
    assert took < 1.8, took
    assert len(tries(up, "/rt")) <= 4


def test_backoff_is_full_jitter_under_its_cap(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["5xx"],
                      "backoff": {"base": "200ms", "max": "200ms"}})],
        [{"name": "app", "endpoints": [up.addr]}]))
    gaps = []
    for i in range(16):
        path = "/bo/%d" % i
        assert http_request(r.port(), "GET", path + "?fail=1").status == 200
        first, second = [q["time"] for q in tries(up, path)]
        gaps.append(second - first)
    assert max(gaps) < 0.2 + 0.1, gaps  # never above the cap (plus scheduling slack)
    assert 0.04 < statistics.mean(gaps) < 0.17, gaps  # uniform over [0, 200 ms]: mean ~100 ms


def test_retry_after_is_honoured(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["5xx"]}, timeout="5s")],
        [{"name": "app", "endpoints": [up.addr]}]))
    assert http_request(r.port(), "GET", "/ra?fail=1&retry_after=1").status == 200
    first, second = [q["time"] for q in tries(up, "/ra")]
    assert second - first >= 0.95, second - first
    # A Retry-After beyond the route's time left: no retry, the 503 goes back.
    assert http_request(r.port(), "GET", "/ra2?fail=1&retry_after=60").status == 503
    assert len(tries(up, "/ra2")) == 1


def test_budget_stops_a_retry_storm(procs):
    """Every request fails; 3 attempts each would triple the load. The budget
    (20 % of recent requests plus a floor of 10/s over its 10 s window)
    caps the extra load the upstream sees."""
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["5xx"], "budget_percent": 20,
                      "backoff": {"base": "1ms", "max": "1ms"}})],
        [{"name": "app", "endpoints": [up.addr]}]))
    n = 400
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    for i in range(n):
        assert http_request(r.port(), "GET", "/storm/%d?fail=9" % i, conn=conn).status == 503
    conn.close()
    seen = len([q for q in up.requests() if path_of(q).startswith("/storm/")])
    extra = seen - n
    assert extra <= 0.2 * n + 100 + 1, "the upstream saw %d extra tries for %d requests" % (extra, n)
    assert extra >= 50, extra  # retries did happen while the budget lasted
    samples = r.metrics()
    assert metric(samples, "remora_retries_total", route="r") == extra
    assert metric(samples, "remora_retry_budget_exhausted_total", route="r") > 0


def test_retry_config_is_reported_in_admin_config(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config([retry_route({"attempts": 3, "on": ["5xx"]})],
                                   [{"name": "app", "endpoints": [up.addr]}]))
    status, _, body = http_request(r.port(), "GET", "/x").status, None, None
    assert status == 200
    import urllib.request
    with urllib.request.urlopen(r.admin + "/config", timeout=5) as resp:
        config = json.loads(resp.read())
    assert config["route_tables"][0]["routes"][0]["retry"]["attempts"] == 3


# ---------------------------------------------------------------- gRPC over HTTP/2

GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]
MESSAGE = b"\x00\x00\x00\x00\x05hello"


def grpc_call(port, path):
    from helpers import H2Conn
    with H2Conn(port) as c:
        sid = c.request("POST", path, headers=GRPC_HEADERS, body=MESSAGE, content_length=False)
        return c.response(sid, 10)


def h2_tries(up, path):
    return [q for q in up.requests() if q["target"].split("?")[0] == path]


def test_grpc_unavailable_is_retried_with_the_message_replayed(procs):
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["unavailable"], "retry_non_idempotent": True})],
        [{"name": "app", "endpoints": [up.addr], "protocol": "http2"}]))
    st = grpc_call(r.port(), "/svc.Echo/Unary?grpc_fail=2")
    assert st.status == 200 and dict(st.headers).get("content-type") == "application/json", st
    body = json.loads(bytes(st.body))
    assert body["body_bytes"] == len(MESSAGE), body  # the third try got the whole message
    seen = h2_tries(up, "/svc.Echo/Unary")
    assert [q["headers"].get("x-remora-attempt") for q in seen] == ["1", "2", "3"], seen
    assert metric(r.metrics(), "remora_retries_total", route="r") == 2


def test_grpc_statuses_outside_the_policy_are_passed_back(procs):
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["unavailable"], "retry_non_idempotent": True})],
        [{"name": "app", "endpoints": [up.addr], "protocol": "http2"}]))
    st = grpc_call(r.port(), "/svc.Echo/Unary?grpc_fail=1&grpc_status=5")  # NOT_FOUND
    assert dict(st.headers).get("grpc-status") == "5", st
    assert len(h2_tries(up, "/svc.Echo/Unary")) == 1


def test_grpc_post_is_not_retried_without_retry_non_idempotent(procs):
    """gRPC calls are POSTs: a route must opt in (as Envoy's gRPC retry
    policies do for the codes they name)."""
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["unavailable"]})],
        [{"name": "app", "endpoints": [up.addr], "protocol": "http2"}]))
    st = grpc_call(r.port(), "/svc.Echo/Unary?grpc_fail=1")
    assert dict(st.headers).get("grpc-status") == "14", st
    assert len(h2_tries(up, "/svc.Echo/Unary")) == 1


def test_h2_client_to_h2_upstream_5xx_and_connect_failures(procs):
    up = procs.h2_upstream("h2up")
    dead = "127.0.0.1:%d" % free_port()
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["connect-failure"]})],
        [{"name": "app", "endpoints": [dead, up.addr], "protocol": "http2",
          "connect_timeout": "1s"}]))
    from helpers import H2Conn
    with H2Conn(r.port()) as c:
        statuses = [c.response(c.request("GET", "/h2cf/%d" % i), 10).status for i in range(10)]
    assert statuses == [200] * 10, statuses


def test_retry_refused_by_the_breaker_max_retries_is_counted(procs):
    import threading
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["5xx"]})],
        [{"name": "app", "endpoints": [up.addr], "circuit_breaker": {"max_retries": 1},
          "outlier_detection": {"disabled": True}}]))
    results = {}
    # A fails once after 1 s, then holds the cluster's only retry slot for its 1 s retry.
    a = threading.Thread(target=lambda: results.setdefault(
        "a", http_request(r.port(), "GET", "/a?fail=1&delay=1000", timeout=10)))
    a.start()
    time.sleep(1.3)
    # B's first try fails while A's retry is in flight: its retry is refused,
    # so it gets the upstream's 503 as is.
    results["b"] = http_request(r.port(), "GET", "/b?fail=1", timeout=10)
    a.join(10)
    assert results["a"].status == 200, results
    assert results["b"].status == 503, results
    samples = r.metrics()
    assert metric(samples, "remora_retry_overflow_total", route="r") == 1
    assert metric(samples, "remora_retries_total", route="r") == 1
    assert len(tries(up, "/b")) == 1


# ---------------------------------------------------------------- across protocols

def dead_address():
    """A 127.0.0.1 port nothing listens on: connects to it are refused."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def h2_cluster(*addrs):
    return {"name": "app", "endpoints": list(addrs), "protocol": "http2",
            "outlier_detection": {"disabled": True}}


def test_http1_client_to_http2_cluster_retries_5xx_with_the_body_replayed(procs):
    import hashlib
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["5xx"], "retry_non_idempotent": True})],
        [h2_cluster(up.addr)]))
    body = bytes(range(256)) * 200  # 51 200 bytes, within the 64 KiB an h2 stream keeps
    res = http_request(r.port(), "POST", "/flaky?fail=2", body=body)
    assert res.status == 200, res
    assert res.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    seen = [q for q in up.requests() if q["path"] == "/flaky"]
    assert [q["headers"].get("x-remora-attempt") for q in seen] == ["1", "2", "3"], seen
    assert all(q["complete"] and q["body_bytes"] == len(body) for q in seen), seen
    assert metric(r.metrics(), "remora_retries_total", route="r") == 2


def test_http1_client_to_http2_cluster_retry_goes_to_another_endpoint(procs):
    bad = procs.h2_upstream("bad", mode="grpc_status=14")  # every answer UNAVAILABLE
    good = procs.h2_upstream("good")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["unavailable"]})], [h2_cluster(bad.addr, good.addr)]))
    for i in range(4):
        res = http_request(r.port(), "GET", "/x%d" % i)
        # Round robin alternates the first try; a retry never stays on `bad`.
        assert res.status == 200 and res.headers["x-upstream"] == "good", res


def test_http1_client_to_http2_cluster_connect_failure_is_retried_with_an_unread_body(procs):
    dead = dead_address()
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["connect-failure"], "retry_non_idempotent": True})],
        [h2_cluster(dead, up.addr)]))
    for i in range(2):  # one of the two starts on the dead endpoint
        res = http_request(r.port(), "POST", "/up%d" % i, body=b"x" * 100000)
        assert res.status == 200 and res.json()["body_bytes"] == 100000, res


def test_http1_client_to_http2_cluster_per_try_timeout_ends_each_try(procs):
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "per_try_timeout": "200ms", "on": ["reset"]},
                     timeout="5s")],
        [h2_cluster(up.addr)]))
    start = time.monotonic()
    res = http_request(r.port(), "GET", "/slow?delay=1000")
    took = time.monotonic() - start
    # Both tries hang past their 200 ms: 504 after about two per-try timeouts, not 5 s.
    assert res.status == 504 and res.headers["x-remora-reason"] == "upstream_timeout", res
    assert took < 2.0, took
    assert len([q for q in up.requests() if q["path"] == "/slow"]) == 2


def test_http1_client_to_http2_cluster_route_timeout_is_504_and_the_connection_goes_on(procs):
    """Without a retry policy the route's deadline alone ends the wait for
    the response head, a client's shorter x-remora-timeout-ms ends it
    sooner, and the keep-alive connection serves the next request."""
    up = procs.h2_upstream("h2up")
    r = procs.remora(simple_config(
        [{"name": "r", "match": {"prefix": "/"}, "cluster": "app", "timeout": "400ms"}],
        [h2_cluster(up.addr)]))
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    cases = (("/slow?delay=3000", {}, 504, 0.35, 2.0),
             ("/slow?delay=3000", {"x-remora-timeout-ms": "100"}, 504, 0.08, 0.38),
             ("/fast", {}, 200, 0.0, 1.0))
    for path, headers, status, low, high in cases:
        start = time.monotonic()
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        res.read()
        took = time.monotonic() - start
        assert res.status == status, (path, headers, res.status, res.getheaders())
        if status == 504:
            assert res.getheader("x-remora-reason") == "upstream_timeout", res.getheaders()
        assert low <= took <= high, (path, headers, took)
    conn.close()


def test_http1_to_http1_connect_failure_is_retried_with_an_unread_body(procs):
    dead = dead_address()
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "on": ["connect-failure"], "retry_non_idempotent": True})],
        [{"name": "app", "endpoints": [dead, up.addr], "outlier_detection": {"disabled": True}}]))
    for i in range(2):
        res = http_request(r.port(), "POST", "/up%d" % i, body=b"y" * 100000)
        assert res.status == 200, res
    assert len(tries(up, "/up0")) + len(tries(up, "/up1")) == 2


def test_http2_client_to_http1_cluster_retries_5xx_with_the_body_replayed(procs):
    import hashlib
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["5xx"], "retry_non_idempotent": True})],
        [{"name": "app", "endpoints": [up.addr], "outlier_detection": {"disabled": True}}]))
    body = bytes(range(256)) * 200
    with H2Conn(r.port()) as c:
        st = c.response(c.request("POST", "/flaky?fail=2", body=body), 10)
    assert st.status == 200, st
    seen = tries(up, "/flaky")
    assert [q["headers"].get("x-remora-attempt") for q in seen] == ["1", "2", "3"], seen
    assert all(q.get("body_sha256") == hashlib.sha256(body).hexdigest() for q in seen), seen
    assert metric(r.metrics(), "remora_retries_total", route="r") == 2


def test_http2_client_to_http1_cluster_body_over_buffer_limit_is_not_retried(procs):
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 3, "on": ["5xx"], "retry_non_idempotent": True,
                      "buffer_limit": 1024})],
        [{"name": "app", "endpoints": [up.addr], "outlier_detection": {"disabled": True}}]))
    with H2Conn(r.port()) as c:
        st = c.response(c.request("POST", "/big?fail=1", body=b"z" * 4096), 10)
    assert st.status == 503, st  # the upstream's own answer: the body could not be sent again
    assert len(tries(up, "/big")) == 1


def test_http2_client_to_http1_cluster_connect_failure_and_per_try_timeout(procs):
    dead = dead_address()
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "per_try_timeout": "200ms",
                      "on": ["connect-failure", "reset"]}, timeout="5s")],
        [{"name": "app", "endpoints": [dead, up.addr], "outlier_detection": {"disabled": True}}]))
    with H2Conn(r.port()) as c:
        for i in range(2):  # one of the two starts on the dead endpoint
            st = c.response(c.request("GET", "/ok%d" % i), 10)
            assert st.status == 200, st
    r.stop()
    r = procs.remora(simple_config(
        [retry_route({"attempts": 2, "per_try_timeout": "200ms", "on": ["reset"]}, timeout="5s")],
        [{"name": "app", "endpoints": [up.addr], "outlier_detection": {"disabled": True}}]),
        name="remora2")
    with H2Conn(r.port()) as c:
        start = time.monotonic()
        st = c.response(c.request("GET", "/slow?delay=1500"), 10)
    # Both tries hang past their 200 ms: 504 after two per-try timeouts, not the route's 5 s.
    assert st.status == 504 and time.monotonic() - start < 1.2, st
    assert st.header("x-remora-reason") == "upstream_timeout", st
