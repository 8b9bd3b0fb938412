"""The access log: one line per request, JSON or text."""

from conftest import simple_config
from helpers import http_request, read_json_lines, wait_until

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
