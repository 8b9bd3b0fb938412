"""Endpoint health: passive outlier detection (ejection), active health
checks, panic mode, and the hashing balancers (ring_hash, maglev) that keep
a key on its endpoint while the others come and go.

What a user checks: which upstream answered (x-upstream, the upstreams'
own request logs), /metrics (remora_outlier_ejections_total,
remora_upstream_endpoints{state}, remora_upstream_panic,
remora_lb_panic_total, remora_health_checks_total) and the admin
/clusters page (per endpoint state, ejections, health-check record).
Over HTTP/1.1 and, for gRPC, over HTTP/2 (trailers-only grpc-status)."""

import http.client
import json
import subprocess
import sys
import time

import pytest

from conftest import REMORA_BIN, simple_config
from helpers import REPO, H2Conn, free_port, http_get, http_request, metric, wait_until

GRPC_ECHO = REPO / "tests" / "upstream" / "grpc_echo.py"
GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"


# ---------------------------------------------------------------- helpers

def addr(e):
    return e if isinstance(e, str) else e.addr


def cluster(name, endpoints, **kw):
    c = {"name": name, "endpoints": [addr(e) for e in endpoints]}
    c.update(kw)
    return c


def route(cluster_name, prefix="/", **kw):
    r = {"name": cluster_name if prefix != "/" else "all", "match": {"prefix": prefix},
         "cluster": cluster_name}
    r.update(kw)
    return r


def one_cluster(endpoints, **kw):
    return simple_config([route("app")], [cluster("app", endpoints, **kw)])


def clusters_doc(r):
    status, _, body = http_get(r.admin + "/clusters")
    assert status == 200, status
    return json.loads(body)


def cluster_view(r, name):
    return next(c for c in clusters_doc(r)["clusters"] if c["name"] == name)


def endpoint_view(r, name, endpoint):
    view = cluster_view(r, name)
    return next(e for e in view["endpoints"] if e["address"] == addr(endpoint))


def state_of(r, name, endpoint):
    return endpoint_view(r, name, endpoint)["state"]


def ejections(r, name="app"):
    return metric(r.metrics(), "remora_outlier_ejections_total", cluster=name)


def endpoint_gauges(samples, name="app"):
    return {s: metric(samples, "remora_upstream_endpoints", cluster=name, state=s)
            for s in ("available", "unhealthy", "ejected")}


def hits(up, prefix="/t/"):
    """Requests the upstream saw whose target starts with prefix (not the probes)."""
    return len([q for q in up.requests() if q["target"].startswith(prefix)])


def get(r, path, headers=None):
    """One GET through remora on a new connection (so any worker may take it)."""
    return http_request(r.port(), "GET", path, headers=headers)


def set_health(up, **params):
    """What upstream.py's /healthz answers from now on (its /__health control)."""
    query = "&".join("%s=%s" % kv for kv in params.items())
    res = http_request(up.port, "POST", "/__health?" + query)
    assert res.status == 200, res
    return res.json()


def grpc_call(conn, path, extra=()):
    sid = conn.request("POST", path, headers=GRPC_HEADERS + list(extra), body=EMPTY_MESSAGE,
                       content_length=False)
    return conn.response(sid, 10)


def grpc_status(st):
    return dict(st.headers or []).get("grpc-status") or dict(st.trailers or []).get("grpc-status")


HC_FAST = {"path": "/healthz", "interval": "200ms", "timeout": "1s",
           "healthy_threshold": 2, "unhealthy_threshold": 3}


# ---------------------------------------------------------------- outlier detection (HTTP/1.1)

@pytest.mark.parametrize("lb", ["round_robin", "least_request", "random"])
def test_5xx_endpoint_is_ejected_after_5_errors_and_traffic_moves_to_the_healthy_one(procs, lb):
    bad = procs.upstream("bad", error_rate=1.0)  # every answer 503
    good = procs.upstream("good")
    r = procs.remora(one_cluster([bad, good], lb=lb))  # outlier detection: on, defaults
    for i in range(60):
        res = get(r, "/t/%d" % i)
        assert res.status == (503 if res.headers["x-upstream"] == "bad" else 200), res
        if hits(bad) == 4:
            assert ejections(r) == 0, "ejected before the 5th failure"
        if hits(bad) == 5:
            break
    assert hits(bad) == 5
    samples = r.metrics()
    assert metric(samples, "remora_outlier_ejections_total", cluster="app") == 1
    assert endpoint_gauges(samples) == {"available": 1, "unhealthy": 0, "ejected": 1}
    assert metric(samples, "remora_upstream_panic", cluster="app") == 0
    view = cluster_view(r, "app")
    assert view["panic"] is False and view["health_checked"] is False, view
    b = endpoint_view(r, "app", bad)
    assert b["state"] == "ejected" and b["ejected"] is True and b["healthy"] is True, b
    assert b["times_ejected"] == 1 and b["requests"] == 5, b
    assert 20000 < b["ejected_for_ms"] <= 30000, b  # base_ejection_time 30s, just started
    assert b["active_requests"] == 0, b
    g = endpoint_view(r, "app", good)
    assert g["state"] == "available" and g["ejected"] is False and "ejected_for_ms" not in g, g

    # From now on everything goes to the healthy endpoint.
    good_before = hits(good)
    answers = [get(r, "/t/after/%d" % i) for i in range(30)]
    assert [(a.status, a.headers["x-upstream"]) for a in answers] == [(200, "good")] * 30
    assert hits(bad) == 5 and hits(good) == good_before + 30


def _eject(r, bad, limit=60, prefix="/t/"):
    """Requests until `bad` is ejected; returns the time the ejection was seen."""
    before = ejections(r)
    for i in range(limit):
        get(r, "%sej/%d/%f" % (prefix, i, time.monotonic()))
        if ejections(r) > before:
            return time.monotonic()
    raise AssertionError("%s not ejected after %d requests: %r"
                         % (bad.name, limit, endpoint_view(r, "app", bad)))


def test_ejection_ends_by_itself_and_a_second_one_lasts_twice_as_long(procs):
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    r = procs.remora(one_cluster([bad, good], outlier_detection={"base_ejection_time": "1s"}))

    ejected_at = _eject(r, bad)
    assert hits(bad) == 5
    assert endpoint_view(r, "app", bad)["times_ejected"] == 1
    # Back by itself, with no traffic, after ~1 s; then requests reach it again.
    wait_until(lambda: state_of(r, "app", bad) == "available", timeout=6,
               interval=0.02, message="bad back from its first ejection")
    first = time.monotonic() - ejected_at
    assert first >= 0.8, "the first ejection lasted only %.2fs (base_ejection_time 1s)" % first
    assert first < 5, first
    b = endpoint_view(r, "app", bad)
    assert b["ejected"] is False and "ejected_for_ms" not in b and b["times_ejected"] == 1, b
    assert metric(r.metrics(), "remora_upstream_endpoints", cluster="app", state="ejected") == 0

    # It still fails: ejected again after 5 more failures, this time for 2 s.
    ejected_again = _eject(r, bad)
    assert hits(bad) == 10
    b = endpoint_view(r, "app", bad)
    assert b["state"] == "ejected" and b["times_ejected"] == 2, b
    assert 1000 < b["ejected_for_ms"] <= 2000, b
    assert ejections(r) == 2
    wait_until(lambda: state_of(r, "app", bad) == "available", timeout=8,
               interval=0.02, message="bad back from its second ejection")
    second = time.monotonic() - ejected_again
    assert second >= 1.8, "the second ejection lasted only %.2fs (2 × 1s)" % second
    assert second < 6, second
    wait_until(lambda: get(r, "/t/back/%f" % time.monotonic()) and hits(bad) > 10, timeout=5,
               message="requests reach bad again")


def test_retried_failures_count_too(procs):
    """With retries the client never sees the bad endpoint's 503s, but each
    try counts against the endpoint it went to: it is still ejected."""
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    r = procs.remora(simple_config(
        [route("app", retry={"attempts": 2, "on": ["5xx"]})], [cluster("app", [bad, good])]))
    for i in range(60):
        res = get(r, "/t/%d" % i)
        assert res.status == 200 and res.headers["x-upstream"] == "good", res
        if hits(bad) == 5:
            break
    assert hits(bad) == 5 and ejections(r) == 1
    assert state_of(r, "app", bad) == "ejected"


def test_max_ejection_time_caps_repeated_ejections(procs):
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    r = procs.remora(one_cluster([bad, good], outlier_detection={
        "base_ejection_time": "1s", "max_ejection_time": "1s"}))
    _eject(r, bad)
    wait_until(lambda: state_of(r, "app", bad) == "available", timeout=6, interval=0.02,
               message="bad back from its first ejection")
    _eject(r, bad)
    b = endpoint_view(r, "app", bad)
    assert b["times_ejected"] == 2, b
    assert b["ejected_for_ms"] <= 1000, "2 × 1s, capped at max_ejection_time 1s: %r" % b


def test_refused_endpoint_is_ejected_after_5_connect_failures(procs):
    good = procs.upstream("good")
    dead = "127.0.0.1:%d" % free_port()  # nothing listens: connections are refused
    r = procs.remora(one_cluster([dead, good], connect_timeout="1s"))
    refused = 0
    for i in range(60):
        res = get(r, "/t/%d" % i)
        if res.status == 503:
            assert res.headers.get("x-remora-reason") == "upstream_connect_failure", res
            refused += 1
        else:
            assert res.status == 200 and res.headers["x-upstream"] == "good", res
        if refused == 4:
            assert ejections(r) == 0
        if refused == 5:
            break
    assert refused == 5
    assert ejections(r) == 1
    d = endpoint_view(r, "app", dead)
    assert d["state"] == "ejected" and d["connect_failures"] == 5 and d["times_ejected"] == 1, d
    answers = [get(r, "/t/after/%d" % i).status for i in range(20)]
    assert answers == [200] * 20
    assert endpoint_view(r, "app", dead)["connect_failures"] == 5  # not tried again


def test_disabled_outlier_detection_never_ejects(procs):
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    r = procs.remora(one_cluster([bad, good], outlier_detection={"disabled": True}))
    statuses = [get(r, "/t/%d" % i).status for i in range(40)]
    assert statuses.count(503) == hits(bad) >= 10, (statuses, hits(bad))
    samples = r.metrics()
    assert metric(samples, "remora_outlier_ejections_total", cluster="app") == 0
    assert endpoint_gauges(samples) == {"available": 2, "unhealthy": 0, "ejected": 0}
    b = endpoint_view(r, "app", bad)
    assert b["state"] == "available" and b["times_ejected"] == 0, b


@pytest.mark.parametrize("percent,expected", [(None, 1), (100, 2)])
def test_max_ejection_percent_caps_the_ejected_endpoints(procs, percent, expected):
    """3 endpoints, 2 always failing. Default 10 % of 3 is 0, but one
    endpoint may always be ejected: exactly one goes; at 100 % both."""
    bad1 = procs.upstream("bad1", error_rate=1.0)
    bad2 = procs.upstream("bad2", error_rate=1.0)
    good = procs.upstream("good")
    od = {} if percent is None else {"max_ejection_percent": percent}
    r = procs.remora(one_cluster([bad1, bad2, good], outlier_detection=od))
    for i in range(90):
        get(r, "/t/%d" % i)
        if min(hits(bad1), hits(bad2)) >= 12:  # both well past 5 failures in a row
            break
    samples = r.metrics()
    assert metric(samples, "remora_outlier_ejections_total", cluster="app") == expected
    assert endpoint_gauges(samples) == {"available": 3 - expected, "unhealthy": 0,
                                        "ejected": expected}
    states = sorted(state_of(r, "app", b) for b in (bad1, bad2))
    assert states == (["available", "ejected"] if expected == 1 else ["ejected", "ejected"])
    if expected == 1:
        # The one left in keeps getting (and failing) its share.
        still_in = bad1 if state_of(r, "app", bad1) == "available" else bad2
        before = hits(still_in)
        statuses = [get(r, "/t/more/%d" % i).status for i in range(12)]
        assert hits(still_in) > before and 503 in statuses, statuses
        assert ejections(r) == 1
    else:
        assert [get(r, "/t/more/%d" % i).headers["x-upstream"] for i in range(10)] == ["good"] * 10


def test_single_endpoint_is_ejected_but_still_used_in_panic_mode(procs):
    up = procs.upstream("up")
    r = procs.remora(one_cluster([up], outlier_detection={"base_ejection_time": "2s"}))
    assert [get(r, "/t/fail/%d?status=503" % i).status for i in range(5)] == [503] * 5
    samples = r.metrics()
    assert metric(samples, "remora_outlier_ejections_total", cluster="app") == 1
    assert endpoint_gauges(samples) == {"available": 0, "unhealthy": 0, "ejected": 1}
    assert metric(samples, "remora_upstream_panic", cluster="app") == 1
    panic_before = metric(samples, "remora_lb_panic_total", cluster="app")
    view = cluster_view(r, "app")
    assert view["panic"] is True and view["endpoints"][0]["state"] == "ejected", view

    # No endpoint is usable: requests are balanced over all of them anyway.
    assert [get(r, "/t/ok/%d" % i).status for i in range(10)] == [200] * 10
    assert hits(up, "/t/ok/") == 10
    assert metric(r.metrics(), "remora_lb_panic_total", cluster="app") == panic_before + 10

    # The ejection ends: out of panic mode.
    wait_until(lambda: metric(r.metrics(), "remora_upstream_panic", cluster="app") == 0,
               timeout=8, message="panic over")
    assert cluster_view(r, "app")["panic"] is False
    panic_after = metric(r.metrics(), "remora_lb_panic_total", cluster="app")
    assert get(r, "/t/later").status == 200
    assert metric(r.metrics(), "remora_lb_panic_total", cluster="app") == panic_after


def test_what_counts_as_a_failure_over_http1(procs):
    """Each cluster has one endpoint (the same upstream, or a closed port) and
    its own counters. consecutive_gateway_failure: 3 with consecutive_5xx:
    50 ejects on the third gateway failure (502/503/504, upstream timeout,
    reset, connect failure) and never on 500s; consecutive_5xx: 3 ejects on
    the third 5xx; a success in between starts again; 4xx are no failures."""
    up = procs.upstream("up")
    dead = "127.0.0.1:%d" % free_port()
    gateway = {"consecutive_5xx": 50, "consecutive_gateway_failure": 3}
    five_xx = {"consecutive_5xx": 3}
    specs = {  # cluster -> (outlier_detection, endpoint, route extras)
        "s500": (gateway, up, {}),
        "s502": (gateway, up, {}),
        "s503": (gateway, up, {}),
        "s504": (gateway, up, {}),
        "timeout": (gateway, up, {"timeout": "300ms"}),
        "reset": (gateway, up, {"rewrite_prefix": "/"}),
        "connect": (gateway, dead, {}),
        "gw_resets": (gateway, up, {}),
        "five_xx": (five_xx, up, {}),
        "reset_5xx": (five_xx, up, {"rewrite_prefix": "/"}),
        "resets": (five_xx, up, {}),
        "client": (five_xx, up, {}),
        "fault": (five_xx, up, {"fault": {"abort": {"status": 503, "percent": 100}}}),
    }
    routes = [route(name, "/%s/" % name, **extra) for name, (_, _, extra) in specs.items()]
    clusters = [cluster(name, [ep], outlier_detection=od, connect_timeout="1s")
                for name, (od, ep, _) in specs.items()]
    r = procs.remora(simple_config(routes, clusters))

    def send(name, path, times, status):
        got = [get(r, "/%s/%s" % (name, path)).status for _ in range(times)]
        assert got == [status] * times, (name, got)

    # Gateway failures: ejected on the third, not before.
    for name, path, status in [("s502", "x?status=502", 502), ("s503", "x?status=503", 503),
                               ("s504", "x?status=504", 504), ("timeout", "x?delay=1500", 504),
                               ("reset", "reset", 502), ("connect", "x", 503)]:
        send(name, path, 2, status)
        assert ejections(r, name) == 0, name
        send(name, path, 1, status)
        assert ejections(r, name) == 1, name
        assert state_of(r, name, dead if name == "connect" else up) == "ejected", name
    # A 500 is a server error, not a gateway failure.
    send("s500", "x?status=500", 10, 500)
    assert ejections(r, "s500") == 0
    # consecutive_5xx counts every 5xx.
    send("five_xx", "x?status=500", 2, 500)
    assert ejections(r, "five_xx") == 0
    send("five_xx", "x?status=500", 1, 500)
    assert ejections(r, "five_xx") == 1
    # Gateway failures count for consecutive_5xx too.
    send("reset_5xx", "reset", 2, 502)
    assert ejections(r, "reset_5xx") == 0
    send("reset_5xx", "reset", 1, 502)
    assert ejections(r, "reset_5xx") == 1
    # A success resets the counts.
    send("gw_resets", "x?status=503", 2, 503)
    send("gw_resets", "x", 1, 200)
    send("gw_resets", "x?status=503", 2, 503)
    assert ejections(r, "gw_resets") == 0
    send("gw_resets", "x?status=503", 1, 503)
    assert ejections(r, "gw_resets") == 1
    send("resets", "x?status=500", 2, 500)
    send("resets", "x", 1, 200)
    send("resets", "x?status=500", 2, 500)
    assert ejections(r, "resets") == 0
    send("resets", "x?status=500", 1, 500)
    assert ejections(r, "resets") == 1
    # The client's errors are not the endpoint's.
    send("client", "x?status=404", 10, 404)
    assert ejections(r, "client") == 0
    # remora's own replies never reached the endpoint.
    send("fault", "x", 10, 503)
    assert ejections(r, "fault") == 0


# ------------------------------------------------------------ outlier detection (gRPC, HTTP/2)

def test_what_counts_as_a_failure_for_grpc(procs):
    """Trailers-only answers (HTTP 200) by grpc-status: UNAVAILABLE (14) and
    DEADLINE_EXCEEDED (4) are gateway failures; UNKNOWN (2), INTERNAL (13)
    and DATA_LOSS (15) server errors; NOT_FOUND (5) the caller's."""
    up = procs.h2_upstream("h2up")
    gateway = {"consecutive_5xx": 50, "consecutive_gateway_failure": 3}
    five_xx = {"consecutive_5xx": 3}
    specs = {"gw14": gateway, "gw4": gateway,
             "gw2": gateway, "gw13": gateway, "gw15": gateway,
             "sx2": five_xx, "sx13": five_xx, "sx15": five_xx,
             "nf5": {"consecutive_5xx": 3, "consecutive_gateway_failure": 3}}
    r = procs.remora(simple_config(
        [route(name, "/%s/" % name) for name in specs],
        [cluster(name, [up], protocol="http2", outlier_detection=od)
         for name, od in specs.items()]))

    with H2Conn(r.port()) as c:
        def call(name, times):
            code = "".join(ch for ch in name if ch.isdigit())
            for i in range(times):
                st = grpc_call(c, "/%s/svc.S/M%d?grpc_fail=1000&grpc_status=%s" % (name, i, code))
                assert st.status == 200 and grpc_status(st) == code, (name, st)

        for name in ("gw14", "gw4", "sx2", "sx13", "sx15"):
            call(name, 2)
            assert ejections(r, name) == 0, name
            call(name, 1)
            assert ejections(r, name) == 1, name
            assert state_of(r, name, up) == "ejected", name
        for name in ("gw2", "gw13", "gw15", "nf5"):
            call(name, 8)
            assert ejections(r, name) == 0, name
            assert state_of(r, name, up) == "available", name


def test_grpc_unavailable_endpoint_is_ejected_and_calls_go_to_the_healthy_one(procs):
    bad = procs.h2_upstream("bad", mode="grpc_status=14")
    good = procs.h2_upstream("good")
    r = procs.remora(one_cluster([bad, good], protocol="http2"))
    with H2Conn(r.port()) as c:
        codes = []
        for i in range(40):
            codes.append(grpc_status(grpc_call(c, "/svc.S/M%d" % i)))
            if len(bad.requests()) == 4:
                assert ejections(r) == 0
            if len(bad.requests()) == 5:
                break
        assert len(bad.requests()) == 5 and codes.count("14") == 5, codes
        assert ejections(r) == 1
        b = endpoint_view(r, "app", bad)
        assert b["state"] == "ejected" and b["times_ejected"] == 1, b
        good_before = len(good.requests())
        answers = [grpc_call(c, "/svc.S/after%d" % i) for i in range(20)]
        assert [(a.status, grpc_status(a), a.header("x-upstream")) for a in answers] == \
            [(200, None, "good")] * 20
    assert len(bad.requests()) == 5 and len(good.requests()) == good_before + 20


def test_grpc_refused_endpoint_is_ejected_after_5_connect_failures(procs):
    good = procs.h2_upstream("good")
    dead = "127.0.0.1:%d" % free_port()
    r = procs.remora(one_cluster([dead, good], protocol="http2", connect_timeout="1s"))
    with H2Conn(r.port()) as c:
        unavailable = 0
        for i in range(40):
            st = grpc_call(c, "/svc.S/M%d" % i)
            if grpc_status(st) == "14":
                unavailable += 1
            else:
                assert st.status == 200 and st.header("x-upstream") == "good", st
            if unavailable == 5:
                break
        assert unavailable == 5
        assert ejections(r) == 1
        d = endpoint_view(r, "app", dead)
        assert d["state"] == "ejected" and d["connect_failures"] == 5, d
        answers = [grpc_call(c, "/svc.S/after%d" % i) for i in range(10)]
        assert [a.header("x-upstream") for a in answers] == ["good"] * 10


# ---------------------------------------------------------------- active health checks (HTTP)

def _watch(r, name, endpoint, until_state, timeout):
    """Polls /clusters until the endpoint is in until_state; returns (seconds, the
    views seen on the way, in order)."""
    start = time.monotonic()
    seen = []
    while time.monotonic() - start < timeout:
        view = endpoint_view(r, name, endpoint)
        seen.append(view)
        if view["state"] == until_state:
            return time.monotonic() - start, seen
        time.sleep(0.02)
    raise AssertionError("%s not %s within %ss; last views %r"
                         % (addr(endpoint), until_state, timeout, seen[-3:]))


def _spread(r, n, prefix="/t/"):
    return [get(r, "%s%d/%f" % (prefix, i, time.monotonic())).headers["x-upstream"]
            for i in range(n)]


def test_health_check_transitions_move_traffic_away_and_back(procs):
    a = procs.upstream("a")
    b = procs.upstream("b")
    r = procs.remora(one_cluster([a, b], health_check=HC_FAST))
    wait_until(lambda: all(state_of(r, "app", e) == "available" for e in (a, b)), timeout=5,
               message="both endpoints healthy")
    view = cluster_view(r, "app")
    assert view["health_checked"] is True and view["panic"] is False, view
    hc = endpoint_view(r, "app", b)["health_check"]
    assert hc["checked"] is True and hc["passes_in_a_row"] >= 1 and hc["failures_in_a_row"] == 0, hc
    assert set(_spread(r, 20)) == {"a", "b"}

    # /healthz of b fails from now on: it leaves after 3 failures in a row (~3 intervals).
    set_health(b, status=503)
    took, seen = _watch(r, "app", b, "unhealthy", timeout=10)
    early = [v for v in seen if v["state"] != "unhealthy"]
    assert all(v["health_check"]["failures_in_a_row"] < 3 for v in early), early
    last = seen[-1]
    assert last["healthy"] is False and last["health_check"]["failures_in_a_row"] >= 3, last
    assert "503" in last["health_check"]["last_failure"], last
    assert 0.35 <= took < 5, "unhealthy %.2fs after the first failure: 3 checks 200ms apart" % took
    samples = r.metrics()
    assert metric(samples, "remora_health_checks_total", cluster="app", result="failed") >= 3
    assert metric(samples, "remora_health_checks_total", cluster="app", result="passed") >= 2
    assert endpoint_gauges(samples) == {"available": 1, "unhealthy": 1, "ejected": 0}
    b_before = hits(b)
    assert _spread(r, 20, "/t/away/") == ["a"] * 20
    assert hits(b) == b_before

    # Healthy again after 2 passes in a row.
    set_health(b, status=200)
    took, seen = _watch(r, "app", b, "available", timeout=10)
    early = [v for v in seen if v["state"] != "available"]
    assert all(v["health_check"]["passes_in_a_row"] < 2 for v in early), early
    assert seen[-1]["health_check"]["passes_in_a_row"] >= 2, seen[-1]
    assert 0.15 <= took < 5, "healthy %.2fs after the first pass: 2 checks 200ms apart" % took
    assert "b" in _spread(r, 20, "/t/back/")


def test_a_never_checked_endpoint_is_unhealthy_until_its_first_check_passes(procs):
    a = procs.upstream("a")
    b = procs.upstream("b")
    set_health(b, delay=2500)  # b's first check takes 2.5 s
    hc = dict(HC_FAST, timeout="5s", healthy_threshold=5)
    r = procs.remora(one_cluster([a, b], health_check=hc))
    v = endpoint_view(r, "app", b)
    assert v["state"] == "unhealthy" and v["healthy"] is False, v
    assert v["health_check"]["checked"] is False, v
    wait_until(lambda: state_of(r, "app", a) == "available", timeout=5, message="a healthy")
    assert _spread(r, 10) == ["a"] * 10  # b is not used before it passed a check
    # Its first check passes: healthy at once (healthy_threshold applies only afterwards).
    took, seen = _watch(r, "app", b, "available", timeout=8)
    assert seen[-1]["health_check"]["passes_in_a_row"] == 1, seen[-1]
    assert "b" in _spread(r, 10, "/t/then/")


def test_after_a_failed_first_check_it_takes_healthy_threshold_passes(procs):
    """Only a first check that passes makes an endpoint healthy at once (as in
    Envoy); one that failed its first check is like any unhealthy endpoint."""
    up = procs.upstream("up")
    set_health(up, status=503)
    r = procs.remora(one_cluster([up], health_check=dict(HC_FAST, healthy_threshold=3)))
    wait_until(lambda: endpoint_view(r, "app", up)["health_check"]["failures_in_a_row"] >= 1,
               timeout=5, message="first check failed")
    set_health(up, status=200)
    took, seen = _watch(r, "app", up, "available", timeout=10)
    early = [v for v in seen if v["state"] != "available"]
    assert all(v["health_check"]["passes_in_a_row"] < 3 for v in early), early
    assert seen[-1]["health_check"]["passes_in_a_row"] >= 3, seen[-1]
    assert took >= 0.35, "healthy %.2fs after the flip: 3 passes are 200ms apart" % took


def test_all_endpoints_unhealthy_is_panic_mode(procs):
    a = procs.upstream("a")
    b = procs.upstream("b")
    for up in (a, b):
        set_health(up, status=503)
    r = procs.remora(one_cluster([a, b], health_check=HC_FAST))
    wait_until(lambda: all(endpoint_view(r, "app", e)["health_check"]["checked"] for e in (a, b)),
               timeout=5, message="both checked")
    samples = r.metrics()
    assert endpoint_gauges(samples) == {"available": 0, "unhealthy": 2, "ejected": 0}
    assert metric(samples, "remora_upstream_panic", cluster="app") == 1
    assert cluster_view(r, "app")["panic"] is True
    panic_before = metric(samples, "remora_lb_panic_total", cluster="app")
    # Better some requests fail than all: both endpoints are used.
    answers = [get(r, "/t/%d" % i) for i in range(20)]
    assert [x.status for x in answers] == [200] * 20
    assert {x.headers["x-upstream"] for x in answers} == {"a", "b"}
    assert metric(r.metrics(), "remora_lb_panic_total", cluster="app") == panic_before + 20

    # a recovers: panic is over and a takes all the traffic.
    set_health(a, status=200)
    _watch(r, "app", a, "available", timeout=10)
    samples = r.metrics()
    assert metric(samples, "remora_upstream_panic", cluster="app") == 0
    assert endpoint_gauges(samples) == {"available": 1, "unhealthy": 1, "ejected": 0}
    panic_after = metric(samples, "remora_lb_panic_total", cluster="app")
    assert _spread(r, 10, "/t/after/") == ["a"] * 10
    assert metric(r.metrics(), "remora_lb_panic_total", cluster="app") == panic_after


def test_one_probe_per_interval_per_endpoint_whatever_the_workers(procs):
    a = procs.upstream("a")
    b = procs.upstream("b")
    config = one_cluster([a, b], health_check=HC_FAST)
    config["workers"] = 2
    r = procs.remora(config)

    def probes(up):
        return [q for q in up.requests() if q["target"] == "/healthz"]

    wait_until(lambda: len(probes(a)) >= 8 and len(probes(b)) >= 8, timeout=10,
               message="8 probes on each endpoint")
    for up in (a, b):
        seen = probes(up)[:8]
        times = [q["time"] for q in seen]
        gaps = [t2 - t1 for t1, t2 in zip(times, times[1:])]
        # Two checkers (one per worker) would probe twice per interval.
        assert min(gaps) >= 0.15, "probes %.3fs apart: %r" % (min(gaps), gaps)
        assert times[-1] - times[0] >= 7 * 0.18, gaps
        for q in seen:
            assert q["method"] == "GET" and q["version"] == "HTTP/1.1", q
            assert q["headers"].get("host") == "app", q
            assert q["headers"].get("user-agent") == "remora-health-check", q
    assert r.proc.poll() is None


def test_jitter_spreads_the_probes(procs):
    up = procs.upstream("up")
    r = procs.remora(one_cluster([up], health_check=dict(HC_FAST, jitter="300ms")))

    def probes():
        return [q["time"] for q in up.requests() if q["target"] == "/healthz"]

    wait_until(lambda: len(probes()) >= 8, timeout=10, message="8 probes")
    times = probes()[:8]
    gaps = [t2 - t1 for t1, t2 in zip(times, times[1:])]
    # Each wait is interval + up to jitter: between 200 and 500 ms, not always the same.
    assert min(gaps) >= 0.18 and max(gaps) < 0.5 + 0.3, gaps
    assert max(gaps) - min(gaps) > 0.03, gaps
    assert r.proc.poll() is None


def test_expected_statuses_decide_what_passes(procs):
    up = procs.upstream("up")
    set_health(up, status=204)
    hc = dict(HC_FAST)
    r = procs.remora(simple_config(
        [route("strict", "/strict/"), route("lenient", "/lenient/")],
        [cluster("strict", [up], health_check=hc),
         cluster("lenient", [up], health_check=dict(hc, expected_statuses=[200, 204]))]))
    wait_until(lambda: state_of(r, "lenient", up) == "available", timeout=5,
               message="lenient healthy")
    wait_until(lambda: endpoint_view(r, "strict", up)["health_check"]["failures_in_a_row"] >= 1,
               timeout=5, message="strict checked")
    strict = endpoint_view(r, "strict", up)
    assert strict["state"] == "unhealthy", strict
    assert "204" in strict["health_check"]["last_failure"], strict
    samples = r.metrics()
    assert metric(samples, "remora_health_checks_total", cluster="lenient", result="passed") >= 1
    assert metric(samples, "remora_health_checks_total", cluster="lenient", result="failed") == 0
    assert metric(samples, "remora_health_checks_total", cluster="strict", result="failed") >= 1
    assert metric(samples, "remora_health_checks_total", cluster="strict", result="passed") == 0


def test_health_check_timeout_against_a_hanging_endpoint(procs):
    a = procs.upstream("a")
    b = procs.upstream("b")
    hc = dict(HC_FAST, timeout="300ms")
    r = procs.remora(one_cluster([a, b], health_check=hc))
    wait_until(lambda: all(state_of(r, "app", e) == "available" for e in (a, b)), timeout=5,
               message="both healthy")
    set_health(b, hang=1)  # /healthz never answers
    took, seen = _watch(r, "app", b, "unhealthy", timeout=10)
    assert "timeout" in seen[-1]["health_check"]["last_failure"].lower(), seen[-1]
    # Each hanging probe was given up (its connection closed) about `timeout` after it began.
    requests = {q["conn"]: q["time"] for q in b.requests() if q["target"] == "/healthz"}
    closed = {e["conn"]: e["time"] for e in b.events("disconnect")}
    waits = [closed[c] - t for c, t in requests.items() if c in closed]
    hung = [w for w in waits if w >= 0.2]
    assert len(hung) >= 3, waits
    assert all(w < 1.5 for w in hung), hung
    assert _spread(r, 10) == ["a"] * 10
    set_health(b, hang=0)
    _watch(r, "app", b, "available", timeout=10)


def test_http2_cluster_is_checked_with_an_h2c_get(procs):
    up = procs.h2_upstream("h2up")
    r = procs.remora(one_cluster([up], protocol="http2", health_check=HC_FAST))
    wait_until(lambda: state_of(r, "app", up) == "available", timeout=5, message="healthy")
    probe = next(q for q in up.requests() if q["path"] == "/healthz")
    assert probe["method"] == "GET" and probe["authority"] == "app", probe
    assert probe["headers"].get("user-agent") == "remora-health-check", probe
    assert get(r, "/t/x").status == 200


# ---------------------------------------------------------------- active health checks (gRPC)

class GrpcServer:
    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen([sys.executable, str(GRPC_ECHO), str(self.port), name],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline().strip()
        if line != b"ready":
            self.stop()
            raise RuntimeError("grpc_echo %s did not start: %r" % (name, line))

    def call(self, method, request, timeout=5):
        import grpc
        with grpc.insecure_channel(self.addr) as ch:
            return ch.unary_unary("/test.Echo/" + method)(request, timeout=timeout)

    def set_health(self, status, service=""):
        assert self.call("SetHealth", ("%s=%d" % (service, status)).encode()) == b"ok"

    def health_log(self):
        return json.loads(self.call("HealthLog", b""))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture
def grpc_servers():
    started = []

    def start(name):
        s = GrpcServer(name)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_grpc_health_check_follows_serving_status(procs, grpc_servers):
    import grpc
    g1 = grpc_servers("g1")
    g2 = grpc_servers("g2")
    grpc_hc = dict(HC_FAST, grpc={"service": ""})
    del grpc_hc["path"]
    r = procs.remora(simple_config(
        [route("grpc", "/test.Echo/")],
        [cluster("grpc", [g1, g2], protocol="http2", health_check=grpc_hc),
         cluster("named", [g1], protocol="http2",
                 health_check=dict(grpc_hc, grpc={"service": "test.Echo"})),
         cluster("unknown", [g1], protocol="http2",
                 health_check=dict(grpc_hc, grpc={"service": "no.Such"}))]))
    wait_until(lambda: all(state_of(r, "grpc", g) == "available" for g in (g1, g2)), timeout=5,
               message="both gRPC endpoints serving")
    wait_until(lambda: state_of(r, "named", g1) == "available", timeout=5, message="named")
    wait_until(lambda: endpoint_view(r, "unknown", g1)["health_check"]["checked"], timeout=5,
               message="unknown checked")
    unknown = endpoint_view(r, "unknown", g1)
    assert unknown["state"] == "unhealthy", unknown
    services = {c["service"] for c in g1.health_log()}
    assert {"", "test.Echo", "no.Such"} <= services, services
    assert all("remora-health-check" in c["user_agent"] for c in g1.health_log())

    with grpc.insecure_channel("127.0.0.1:%d" % r.port()) as ch:
        whoami = ch.unary_unary("/test.Echo/Whoami")
        assert {whoami(b"", timeout=5) for _ in range(10)} == {b"g1", b"g2"}

        g2.set_health(2)  # NOT_SERVING
        took, seen = _watch(r, "grpc", g2, "unhealthy", timeout=10)
        assert seen[-1]["health_check"]["failures_in_a_row"] >= 3, seen[-1]
        assert seen[-1]["health_check"]["last_failure"], seen[-1]
        assert metric(r.metrics(), "remora_health_checks_total", cluster="grpc",
                      result="failed") >= 3
        assert [whoami(b"", timeout=5) for _ in range(10)] == [b"g1"] * 10

        g2.set_health(1)  # SERVING
        _watch(r, "grpc", g2, "available", timeout=10)
        assert b"g2" in {whoami(b"", timeout=5) for _ in range(10)}


# ---------------------------------------------------------------- ring_hash / maglev

def _owner(r, user, path="/t/k"):
    res = get(r, "%s?u=%s" % (path, user), headers={"x-user": user})
    assert res.status == 200, res
    return res.headers["x-upstream"]


@pytest.mark.parametrize("how", ["ejected", "unhealthy"])
@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_hash_keeps_keys_on_their_endpoint_and_only_the_lost_ones_move(procs, lb, how):
    ups = [procs.upstream("u%d" % i) for i in range(3)]
    extra = {"lb": lb, "hash": {"header": "x-user"}}
    if how == "ejected":
        extra["outlier_detection"] = {"base_ejection_time": "3s"}
    else:
        extra["health_check"] = HC_FAST
    r = procs.remora(one_cluster(ups, **extra))
    if how == "unhealthy":
        wait_until(lambda: all(state_of(r, "app", u) == "available" for u in ups), timeout=5,
                   message="all healthy")
    users = ["user-%d" % i for i in range(40)]
    owners = {u: _owner(r, u) for u in users}
    # The same key lands on the same endpoint, on any connection (any worker).
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    for u in users:
        res = http_request(r.port(), "GET", "/t/again", headers={"x-user": u}, conn=conn)
        assert res.headers["x-upstream"] == owners[u], u
    conn.close()
    assert len(set(owners.values())) >= 2, owners
    # A request without the header is balanced at random.
    assert len(set(_spread(r, 30, "/t/nokey/"))) >= 2

    by_endpoint = {}
    for u, o in owners.items():
        by_endpoint.setdefault(o, []).append(u)
    victim_name = max(by_endpoint, key=lambda o: len(by_endpoint[o]))
    victim = next(u for u in ups if u.name == victim_name)
    if how == "ejected":
        key = by_endpoint[victim_name][0]
        for i in range(5):
            res = get(r, "/t/fail?status=503", headers={"x-user": key})
            assert res.status == 503 and res.headers["x-upstream"] == victim_name, res
        assert state_of(r, "app", victim) == "ejected"
    else:
        set_health(victim, status=503)
        _watch(r, "app", victim, "unhealthy", timeout=10)

    moved = {u: _owner(r, u, "/t/moved") for u in users}
    assert state_of(r, "app", victim) == how  # still out while we looked
    for u in users:
        if owners[u] == victim_name:
            assert moved[u] != victim_name, (u, moved[u])
        else:
            assert moved[u] == owners[u], "%s moved from %s to %s" % (u, owners[u], moved[u])

    # Back in: its keys come back to it.
    if how == "unhealthy":
        set_health(victim, status=200)
    _watch(r, "app", victim, "available", timeout=10)
    assert {u: _owner(r, u, "/t/back") for u in users} == owners


def test_hash_on_client_address(procs):
    ups = [procs.upstream("u%d" % i) for i in range(3)]
    r = procs.remora(one_cluster(ups, lb="ring_hash", hash={"client_address": True}))

    def owner(source, user):
        conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10,
                                          source_address=(source, 0))
        try:
            return http_request(r.port(), "GET", "/t/c", headers={"x-user": user},
                                conn=conn).headers["x-upstream"]
        finally:
            conn.close()

    sources = ["127.0.0.%d" % i for i in range(2, 26)]
    owners = {s: owner(s, "x") for s in sources}
    # The same client address always lands on the same endpoint, whatever the header.
    for s in sources:
        assert owner(s, "other-%s" % s) == owners[s], s
    assert len(set(owners.values())) >= 2, owners


# ---------------------------------------------------------------- config errors

HASH_CONFIG = """\
admin:
  address: 127.0.0.1:{admin}
listeners:
  - name: main
    address: 127.0.0.1:{port}
    route_table: main
route_tables:
  - name: main
    routes:
      - match: {{ prefix: / }}
        cluster: app
clusters:
  - name: app
    endpoints: [ "127.0.0.1:8080" ]
{extra}"""


def _validate(tmp_path, extra):
    text = HASH_CONFIG.format(admin=free_port(), port=free_port(), extra=extra)
    path = tmp_path / "remora.yaml"
    path.write_text(text)
    res = subprocess.run([str(REMORA_BIN), "validate", "-c", str(path)], capture_output=True,
                         text=True, timeout=20, stdin=subprocess.DEVNULL)
    return text, path, res


def _position(text, needle):
    for i, line in enumerate(text.splitlines(), start=1):
        col = line.find(needle)
        if col >= 0:
            return i, col + 1
    raise AssertionError(needle)


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_validate_requires_a_hash_key_for_hashing_balancers(tmp_path, lb):
    text, path, res = _validate(tmp_path, "    lb: %s\n" % lb)
    assert res.returncode == 1, res
    line, col = _position(text, "name: app")  # the cluster block that lacks it
    errors = [l for l in res.stderr.splitlines() if "clusters[0].hash" in l]
    assert errors and errors[0].startswith("%s:%d:%d: clusters[0].hash: " % (path, line, col)), \
        res.stderr
    # Both keys at once is as wrong as none.
    text, path, res = _validate(
        tmp_path, "    lb: %s\n    hash: { header: x-user, client_address: true }\n" % lb)
    assert res.returncode == 1 and "clusters[0].hash" in res.stderr, res
    for ok in ("    hash: { header: x-user }\n", "    hash: { client_address: true }\n"):
        text, path, res = _validate(tmp_path, "    lb: %s\n%s" % (lb, ok))
        assert res.returncode == 0, res


@pytest.mark.parametrize("lb", [None, "round_robin", "least_request", "random"])
def test_validate_refuses_hash_with_other_balancers(tmp_path, lb):
    extra = ("    lb: %s\n" % lb if lb else "") + "    hash: { header: x-user }\n"
    text, path, res = _validate(tmp_path, extra)
    assert res.returncode == 1, res
    line, col = _position(text, "{ header: x-user }")
    assert any(l.startswith("%s:%d:%d: clusters[0].hash: " % (path, line, col))
               for l in res.stderr.splitlines()), res.stderr


def test_validate_grpc_health_check_needs_http2_and_no_path(tmp_path):
    text, path, res = _validate(tmp_path, "    health_check: { grpc: { service: \"\" } }\n")
    assert res.returncode == 1 and "clusters[0].health_check.grpc" in res.stderr, res
    assert "http2" in res.stderr, res
    text, path, res = _validate(
        tmp_path,
        "    protocol: http2\n    health_check: { path: /healthz, grpc: { service: x } }\n")
    assert res.returncode == 1 and "clusters[0].health_check.path" in res.stderr, res
    text, path, res = _validate(
        tmp_path, "    protocol: http2\n    health_check: { grpc: { service: \"\" } }\n")
    assert res.returncode == 0, res
    # The documented defaults, written out, are a valid config.
    text, path, res = _validate(
        tmp_path,
        "    outlier_detection: { consecutive_5xx: 5, consecutive_gateway_failure: 0,\n"
        "      base_ejection_time: 30s, max_ejection_time: 300s, max_ejection_percent: 10,\n"
        "      disabled: false }\n"
        "    health_check: { path: /healthz, interval: 5s, timeout: 1s,\n"
        "      healthy_threshold: 2, unhealthy_threshold: 3, expected_statuses: [ 200 ] }\n")
    assert res.returncode == 0, res


# ---------------------------------------------------------------- state across reloads

def test_ejections_and_health_survive_a_reload(procs):
    """DESIGN §2: endpoint health and ejections outlive a reload (the state is
    kept by cluster and address); a reload neither forgives an ejected
    endpoint nor re-checks healthy ones from scratch."""
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    sick = procs.upstream("sick")
    config = simple_config(
        [route("app"), route("checked", prefix="/c/")],
        [cluster("app", [bad, good]),
         cluster("checked", [sick, good], health_check=dict(HC_FAST, interval="300ms"))])
    r = procs.remora(config)
    _eject(r, bad)
    set_health(sick, status=503)
    _watch(r, "checked", sick, "unhealthy", timeout=10)
    wait_until(lambda: state_of(r, "checked", good) == "available", timeout=5)
    until = endpoint_view(r, "app", bad)["ejected_for_ms"]

    # A reload that changes something else (a route timeout) keeps all of it.
    config = r.config  # as written, with the addresses the fixture chose
    config["route_tables"][0]["routes"][0]["timeout"] = "7s"
    r.reload(config)
    wait_until(lambda: metric(r.metrics(), "remora_config_reloads_total", result="ok") == 1,
               timeout=5, message="reload applied")
    b = endpoint_view(r, "app", bad)
    assert b["state"] == "ejected" and b["times_ejected"] == 1, b
    assert b["ejected_for_ms"] <= until, b
    assert state_of(r, "checked", sick) == "unhealthy"
    assert state_of(r, "checked", good) == "available"
    assert ejections(r) == 1
    assert [get(r, "/t/after/%d" % i).headers["x-upstream"] for i in range(10)] == ["good"] * 10
    assert [get(r, "/c/after/%d" % i).headers["x-upstream"] for i in range(10)] == ["good"] * 10


def test_http2_clients_eject_after_exactly_5_failures_too(procs):
    """Each try is recorded once on the HTTP/2 client → HTTP/1.1 cluster path."""
    bad = procs.upstream("bad", error_rate=1.0)
    good = procs.upstream("good")
    r = procs.remora(one_cluster([bad, good]))
    with H2Conn(r.port()) as c:
        for i in range(60):
            st = c.response(c.request("GET", "/t/h2/%d" % i), 10)
            if hits(bad) == 4:
                assert ejections(r) == 0, "ejected before the 5th failure"
            if hits(bad) == 5:
                break
    assert hits(bad) == 5
    wait_until(lambda: ejections(r) == 1, timeout=2, message="ejected after the 5th")


def test_a_deadline_the_client_shortened_never_ejects(procs):
    """x-remora-timeout-ms / grpc-timeout are the client's choice: any client
    could send 0 and eject healthy endpoints. Only the route's own timeout
    counts as the endpoint's gateway failure."""
    up = procs.upstream("up")
    r = procs.remora(simple_config(
        [route("app", timeout="400ms")],
        [cluster("app", [up], outlier_detection={"consecutive_5xx": 50,
                                                 "consecutive_gateway_failure": 3})]))
    for i in range(5):
        res = get(r, "/t/client/%d?delay=1000" % i, headers={"x-remora-timeout-ms": "50"})
        assert res.status == 504, res
    with H2Conn(r.port()) as c:
        for i in range(3):
            st = c.response(c.request("GET", "/t/h2client/%d?delay=1000" % i,
                                      headers=[("x-remora-timeout-ms", "50")]), 10)
            assert st.status == 504, st
    assert ejections(r) == 0
    for i in range(3):
        assert get(r, "/t/route/%d?delay=1000" % i).status == 504
    assert ejections(r) == 1
