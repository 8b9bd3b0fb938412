"""The admin listener: /ready, /metrics, /config, /clusters."""

import json
import subprocess
import time

import pytest

from conftest import simple_config
from helpers import (H2Conn, RawConn, free_port, has_metric, http_get, http_request, metric,
                     parse_metrics, project_version, request_bytes, wait_until)


@pytest.fixture
def env(procs):
    up = procs.upstream("app")
    dead_port = free_port()
    config = simple_config(
        [{"name": "dead", "match": {"prefix": "/dead"}, "cluster": "dead"},
         {"name": "all", "match": {"prefix": "/"}, "cluster": "app"}],
        [{"name": "app", "endpoints": [up.addr]},
         {"name": "dead", "endpoints": ["127.0.0.1:%d" % dead_port], "connect_timeout": "1s"}])
    # A second listener whose table has no catch-all, for no_route replies.
    config["listeners"].append({"name": "edge", "route_table": "edge"})
    config["route_tables"].append(
        {"name": "edge", "routes": [{"name": "only", "match": {"path": "/only"}, "cluster": "app"}]})
    return procs.remora(config), up, dead_port


def _walk(node):
    """Every string (keys and values) in a JSON document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)
    else:
        yield str(node)


def test_ready(env):
    r, up, _ = env
    status, _, _ = http_get(r.admin + "/ready")
    assert status == 200


def test_metrics_pass_promtool(env):
    r, up, _ = env
    assert http_request(r.port(), "GET", "/traffic").status == 200
    assert http_request(r.port(), "GET", "/dead").status == 503
    text = r.metrics_text()
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, "promtool:\n%s%s\n--- metrics:\n%s" % (res.stdout, res.stderr, text[:5000])


def test_request_counters_and_histogram_move_with_traffic(env):
    r, up, _ = env
    labels = dict(listener="main", route="all", cluster="app")
    before = r.metrics()
    for i in range(5):
        assert http_request(r.port(), "GET", "/count/%d" % i).status == 200
    assert http_request(r.port(), "GET", "/count?status=503").status == 503

    def delta(samples, name, **extra):
        return metric(samples, name, **extra) - metric(before, name, **extra)

    after = wait_until(
        lambda: (lambda m: m if delta(m, "remora_requests_total", status_class="5xx", **labels) >= 1
                 else None)(r.metrics()), timeout=5, message="5xx counter +1")
    assert (metric(after, "remora_requests_total", status_class="2xx", **labels)
            - metric(before, "remora_requests_total", status_class="2xx", **labels)) == 5
    assert (metric(after, "remora_requests_total", status_class="5xx", **labels)
            - metric(before, "remora_requests_total", status_class="5xx", **labels)) == 1
    assert (metric(after, "remora_request_duration_seconds_count", listener="main", route="all")
            - metric(before, "remora_request_duration_seconds_count", listener="main", route="all")) == 6
    assert has_metric(after, "remora_request_duration_seconds_bucket", listener="main", route="all",
                      le="+Inf")


def test_no_route_counted_as_4xx(env):
    r, up, _ = env
    before = metric(r.metrics(), "remora_requests_total", listener="edge", status_class="4xx")
    res = http_request(r.port("edge"), "GET", "/not-routed")
    assert res.status == 404 and res.headers.get("x-remora-reason") == "no_route", res
    assert http_request(r.port("edge"), "GET", "/only").status == 200
    wait_until(lambda: metric(r.metrics(), "remora_requests_total", listener="edge",
                              status_class="4xx") == before + 1, timeout=5, message="4xx +1")
    assert metric(r.metrics(), "remora_requests_total", listener="edge", route="only",
                  status_class="2xx") == 1


def test_request_counters_by_protocol(env):
    """remora_requests_total{protocol}: the same route, N requests over
    HTTP/1.1 and M over h2c (prior knowledge, one connection and one more),
    counted apart as "http1" and "http2"."""
    r, up, _ = env
    n, m = 4, 3
    labels = dict(listener="main", route="all", cluster="app", status_class="2xx")

    def counts():
        samples = r.metrics()
        return {p: metric(samples, "remora_requests_total", protocol=p, **labels)
                for p in ("http1", "http2")}

    before = counts()
    for i in range(n):
        assert http_request(r.port(), "GET", "/by-protocol/h1/%d" % i).status == 200
    with H2Conn(r.port()) as c:
        for i in range(m - 1):
            st = c.response(c.request("GET", "/by-protocol/h2/%d" % i))
            assert st.status == 200, st
    with H2Conn(r.port()) as c:  # a second h2 connection
        st = c.response(c.request("GET", "/by-protocol/h2/%d" % (m - 1)))
        assert st.status == 200, st
    want = {"http1": n, "http2": m}

    def deltas():
        now = counts()
        return {p: now[p] - before[p] for p in now}

    def reached():
        d = deltas()
        assert d == want, "deltas %r" % d
        return True

    # The h2 stream is counted as it ends, which may be just after the client
    # saw END_STREAM: wait (bounded), then make sure nothing more arrives.
    wait_until(reached, timeout=5, message="requests_total 2xx deltas == %r" % want)
    time.sleep(0.2)
    assert deltas() == want
    samples = r.metrics()
    for p in ("http1", "http2"):
        for cls in ("1xx", "3xx", "4xx", "5xx"):
            assert has_metric(samples, "remora_requests_total", listener="main", route="all",
                              cluster="app", protocol=p, status_class=cls), (p, cls)


def test_connection_gauges(env):
    r, up, _ = env
    base = metric(r.metrics(), "remora_downstream_connections_active", listener="main")
    conns = [RawConn(r.port()) for _ in range(3)]
    try:
        for c in conns:
            c.send(request_bytes("GET", "/gauge"))
            assert c.read_final_response().status == 200
        wait_until(lambda: metric(r.metrics(), "remora_downstream_connections_active",
                                  listener="main") >= base + 3, timeout=5,
                   message="downstream_connections_active +3")
        assert metric(r.metrics(), "remora_upstream_connections_active", cluster="app") >= 1
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: metric(r.metrics(), "remora_downstream_connections_active",
                              listener="main") <= base, timeout=5,
               message="downstream_connections_active back to %s" % base)


def test_connect_failures_counted(env):
    r, up, _ = env
    before = metric(r.metrics(), "remora_upstream_connect_failures_total", cluster="dead")
    assert http_request(r.port(), "GET", "/dead").status == 503
    wait_until(lambda: metric(r.metrics(), "remora_upstream_connect_failures_total",
                              cluster="dead") >= before + 1, timeout=5, message="connect failure +1")


def test_build_info(env):
    r, up, _ = env
    samples = [(n, l, v) for n, l, v in r.metrics() if n == "remora_build_info"]
    assert len(samples) == 1, samples
    name, labels, value = samples[0]
    assert value == 1
    assert labels.get("version") == project_version(), labels


def test_config_endpoint_shows_effective_config(env):
    r, up, dead_port = env
    status, headers, body = http_get(r.admin + "/config")
    assert status == 200
    doc = json.loads(body)
    strings = set(_walk(doc))
    for expected in ("main", "app", "dead", up.addr, "127.0.0.1:%d" % dead_port,
                     r.config["listeners"][0]["address"]):
        assert expected in strings, "%s missing from /config: %s" % (expected, body[:2000])


def test_clusters_endpoint_lists_endpoints(env):
    r, up, dead_port = env
    assert http_request(r.port(), "GET", "/warm").status == 200
    status, headers, body = http_get(r.admin + "/clusters")
    assert status == 200
    doc = json.loads(body)
    strings = set(_walk(doc))
    for expected in ("app", "dead", up.addr, "127.0.0.1:%d" % dead_port):
        assert expected in strings, "%s missing from /clusters: %s" % (expected, body[:2000])
