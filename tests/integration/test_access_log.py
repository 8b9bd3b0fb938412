"""The access log: one line per request, JSON or text."""

import os

import pytest

from conftest import simple_config
from helpers import H2Conn, http_request, read_json_lines, wait_until

FIELDS = ("time", "method", "authority", "path", "status", "duration_ms", "bytes_in", "bytes_out",
          "upstream", "request_id", "reason", "listener", "route")


def _config(up, log_path, fmt):
    return simple_config(
        [{"name": "ra", "match": {"prefix": "/a"}, "cluster": "app"},
         {"name": "rb", "match": {"prefix": "/b"}, "cluster": "app"}],
        [{"name": "app", "endpoints": [up.addr]}],
        observability={"access_log": {"path": str(log_path), "format": fmt}})


def test_json_access_log_has_one_line_per_request(procs, upstream, tmp_path):
    log = tmp_path / "access.log"
    r = procs.remora(_config(upstream, log, "json"))
    a = http_request(r.port(), "GET", "/a?x=1", headers={"Host": "svc.local",
                                                         "X-Request-Id": "rid-1"})
    assert a.status == 200
    body = b"p" * 1234
    b = http_request(r.port(), "POST", "/b", body=body)
    assert b.status == 200
    c = http_request(r.port(), "GET", "/zzz")
    assert c.status == 404

    lines = wait_until(lambda: (lambda l: l if len(l) >= 3 else None)(read_json_lines(log)),
                       timeout=5, message="3 access log lines")
    raw = [l for l in log.read_text().splitlines() if l.strip()]
    assert len(raw) == 3 and len(lines) == 3, raw
    for line in lines:
        missing = [f for f in FIELDS if f not in line]
        assert not missing, "fields %s missing in %r" % (missing, line)
        assert line["listener"] == "main"
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0, line
        assert line["time"], line

    la, lb, lc = sorted(lines, key=lambda l: l["path"])
    assert (la["method"], la["status"], la["authority"], la["route"]) == ("GET", 200, "svc.local", "ra"), la
    assert la["path"].startswith("/a"), la
    assert la["request_id"] == "rid-1", la
    assert la["upstream"] == upstream.addr, la
    assert la["bytes_in"] == 0, la
    assert la["bytes_out"] >= len(a.body), la

    assert (lb["method"], lb["status"], lb["route"], lb["path"]) == ("POST", 200, "rb", "/b"), lb
    assert lb["bytes_in"] >= len(body), lb
    # A generated request id is the one the upstream received.
    assert lb["request_id"] and lb["request_id"] == b.json()["headers"].get("x-request-id"), lb

    assert (lc["method"], lc["status"], lc["reason"]) == ("GET", 404, "no_route"), lc
    assert lc["path"] == "/zzz", lc
    assert not lc["upstream"] or lc["upstream"] == "-", lc


def test_text_access_log_has_one_line_per_request(procs, upstream, tmp_path):
    log = tmp_path / "access.txt"
    r = procs.remora(_config(upstream, log, "text"))
    assert http_request(r.port(), "GET", "/a/text-one").status == 200
    assert http_request(r.port(), "GET", "/nope-two").status == 404
    lines = wait_until(lambda: (lambda l: l if len(l) >= 2 else None)(
        [x for x in log.read_text().splitlines() if x.strip()]), timeout=5, message="2 lines")
    assert len(lines) == 2, lines
    assert "/a/text-one" in lines[0] and "200" in lines[0], lines
    assert "/nope-two" in lines[1] and "404" in lines[1], lines


@pytest.mark.parametrize("upstream_protocol", ["http1", "http2"])
def test_h2_access_log_has_request_id_and_data_bytes(procs, tmp_path, upstream_protocol):
    """An h2c client: the JSON line has the client's x-request-id (the one
    the upstream got too), bytes_in / bytes_out = DATA payload bytes each
    way; without x-request-id, the generated id is logged and sent upstream.
    Five larger responses (100 000 bytes from upstream.py's /download;
    h2_upstream.py answers its JSON echo) check that bytes_out counts the
    last DATA frames too (the log line is written after them)."""
    if upstream_protocol == "http2":
        up = procs.h2_upstream("h2up")
    else:
        up = procs.upstream("up")
    log = tmp_path / "access-h2.log"
    config = _config(up, log, "json")
    config["clusters"][0]["protocol"] = upstream_protocol
    config["route_tables"][0]["routes"].append(
        {"name": "dl", "match": {"prefix": "/download"}, "cluster": "app"})
    r = procs.remora(config)
    body = os.urandom(1000)
    with H2Conn(r.port()) as c:
        a = c.response(c.request("POST", "/a/h2-with-id", body=body,
                                 headers=[("x-request-id", "rid-h2-1")]))
        b = c.response(c.request("GET", "/b/h2-without-id"))
        ds = [c.response(c.request("GET", "/download?bytes=100000&n=%d" % i)) for i in range(5)]
    assert a.status == 200 and b.status == 200, (a, b)
    for d in ds:
        assert d.status == 200, d
        if upstream_protocol == "http1":
            assert d.body_len == 100000, d
    ea, eb = a.json(), b.json()
    assert ea["body_bytes"] == 1000, ea
    assert ea["headers"].get("x-request-id") == "rid-h2-1", ea["headers"]
    generated = eb["headers"].get("x-request-id")
    assert generated, "no x-request-id reached the upstream: %r" % eb["headers"]
    # The upstream's own log saw the same ids.
    seen = {q["target"]: q["headers"].get("x-request-id") for q in up.requests()}
    assert seen.get("/a/h2-with-id") == "rid-h2-1", seen
    assert seen.get("/b/h2-without-id") == generated, seen

    lines = wait_until(lambda: (lambda l: l if len(l) >= 7 else None)(read_json_lines(log)),
                       timeout=5, message="7 access log lines")
    assert len(lines) == 7, lines
    la = next(l for l in lines if l["path"] == "/a/h2-with-id")
    lb = next(l for l in lines if l["path"] == "/b/h2-without-id")
    lds = [next(l for l in lines if l["path"] == "/download?bytes=100000&n=%d" % i)
           for i in range(5)]
    for line in [la, lb] + lds:
        missing = [f for f in FIELDS if f not in line]
        assert not missing, "fields %s missing in %r" % (missing, line)
        assert line["listener"] == "main" and line["status"] == 200, line
        assert line["upstream"] == up.addr, line
    assert (la["method"], la["route"]) == ("POST", "ra"), la
    assert la["request_id"] == "rid-h2-1", la
    assert la["bytes_in"] == 1000, la
    assert (lb["method"], lb["route"]) == ("GET", "rb"), lb
    assert lb["request_id"] == generated, (lb, generated)
    assert lb["bytes_in"] == 0, lb
    for ld in lds:
        assert ld["request_id"] and ld["route"] == "dl" and ld["bytes_in"] == 0, ld
    # bytes_out: the DATA payload the client received, on every line.
    logged = {l["path"]: l["bytes_out"] for l in [la, lb] + lds}
    received = {la["path"]: a.body_len, lb["path"]: b.body_len}
    received.update({ld["path"]: d.body_len for ld, d in zip(lds, ds)})
    assert logged == received, "bytes_out logged %r, DATA bytes received %r" % (logged, received)
