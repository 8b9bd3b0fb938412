"""Route matching (first match wins), weighted splits, rewrites and header mutations."""

import http.client

import pytest

from helpers import http_request


@pytest.fixture(scope="module")
def env(module_procs):
    ups = {n: module_procs.upstream(n) for n in ("a", "b", "c", "d")}
    routes = [
        {"name": "host-exact", "match": {"host": "api.example.com"}, "cluster": "c"},
        {"name": "host-wildcard", "match": {"host": "*.example.org"}, "cluster": "d"},
        {"name": "exact", "match": {"path": "/exact"}, "cluster": "b"},
        {"name": "first", "match": {"prefix": "/first"}, "cluster": "a"},
        {"name": "shadowed", "match": {"prefix": "/first/deeper"}, "cluster": "b"},
        {"name": "hdr-exact", "match": {"prefix": "/h", "headers": {"x-env": "canary"}}, "cluster": "b"},
        {"name": "hdr-present", "match": {"prefix": "/h", "headers": {"x-debug": {"present": True}}},
         "cluster": "c"},
        {"name": "hdr-regex", "match": {"prefix": "/h", "headers": {"x-version": {"regex": "v[0-9]+"}}},
         "cluster": "d"},
        {"name": "split", "match": {"prefix": "/split"},
         "split": [{"cluster": "a", "weight": 25}, {"cluster": "b", "weight": 75}]},
        {"name": "rewrite", "match": {"prefix": "/old/"}, "rewrite_prefix": "/new/", "cluster": "a"},
        {"name": "mutate", "match": {"prefix": "/mutate"}, "cluster": "a",
         "request_headers": {"add": {"x-added": "yes1"}, "remove": ["x-secret"]},
         "response_headers": {"add": {"x-resp-added": "r1"}, "remove": ["x-upstream"]}},
        {"name": "api", "match": {"prefix": "/api/"}, "cluster": "a"},
    ]
    config = {
        "listeners": [{"name": "main", "route_table": "main"}],
        "route_tables": [{"name": "main", "routes": routes}],
        "clusters": [{"name": n, "endpoints": [u.addr]} for n, u in ups.items()],
    }
    return module_procs.remora(config), ups


def served_by(r, target, host=None, headers=None):
    h = dict(headers or {})
    if host:
        h["Host"] = host
    res = http_request(r.port(), "GET", target, headers=h)
    if res.status == 404:
        assert res.headers.get("x-remora-reason") == "no_route", res
        return None
    assert res.status == 200, res
    return res.json()["server"]


def test_prefix(env):
    r, ups = env
    assert served_by(r, "/api/v1/items") == "a"
    assert served_by(r, "/api/") == "a"
    assert served_by(r, "/apix") is None


def test_exact_path(env):
    r, ups = env
    assert served_by(r, "/exact") == "b"
    assert served_by(r, "/exact?q=1") == "b"
    assert served_by(r, "/exact/more") is None
    assert served_by(r, "/exactly") is None


def test_host_ignores_port(env):
    r, ups = env
    assert served_by(r, "/anything", host="api.example.com") == "c"
    assert served_by(r, "/anything", host="api.example.com:8080") == "c"
    assert served_by(r, "/anything", host="other.example.com") is None


def test_host_wildcard_suffix(env):
    r, ups = env
    assert served_by(r, "/w", host="foo.example.org") == "d"
    assert served_by(r, "/w", host="foo.example.org:443") == "d"
    assert served_by(r, "/w", host="a.b.example.org") == "d"
    assert served_by(r, "/w", host="badexample.org") is None
    assert served_by(r, "/w", host="example.org") is None


def test_header_matchers(env):
    r, ups = env
    assert served_by(r, "/h", headers={"x-env": "canary"}) == "b"
    assert served_by(r, "/h", headers={"x-env": "prod"}) is None
    assert served_by(r, "/h", headers={"x-debug": "1"}) == "c"
    assert served_by(r, "/h", headers={"x-version": "v12"}) == "d"
    assert served_by(r, "/h", headers={"x-version": "vx"}) is None
    assert served_by(r, "/h") is None


def test_first_match_wins(env):
    r, ups = env
    assert served_by(r, "/first/deeper/x") == "a"
    # Both header routes match: the earlier one wins.
    assert served_by(r, "/h", headers={"x-env": "canary", "x-debug": "1"}) == "b"


def test_weighted_split_distribution(env):
    r, ups = env
    n = 2000
    counts = {"a": 0, "b": 0}
    conn = http.client.HTTPConnection("127.0.0.1", r.port(), timeout=10)
    try:
        for _ in range(n):
            res = http_request(r.port(), "GET", "/split", conn=conn)
            assert res.status == 200, res
            counts[res.json()["server"]] += 1
    finally:
        conn.close()
    # 25 % of 2000 = 500, standard deviation ~19: ±100 is > 5 sigma.
    assert 400 <= counts["a"] <= 600, counts
    assert counts["a"] + counts["b"] == n


def test_rewrite_prefix(env):
    r, ups = env
    res = http_request(r.port(), "GET", "/old/path/x?q=1")
    assert res.status == 200, res
    echo = res.json()
    assert echo["server"] == "a"
    assert echo["path"] == "/new/path/x"
    assert echo["query"] == "q=1"


def test_request_and_response_header_mutation(env):
    r, ups = env
    res = http_request(r.port(), "GET", "/mutate", headers={"X-Secret": "s3cr3t", "X-Other": "o"})
    assert res.status == 200, res
    got = res.json()["headers"]
    assert got.get("x-added") == "yes1", got
    assert "x-secret" not in got, got
    assert got.get("x-other") == "o", got
    assert res.headers.get("x-resp-added") == "r1", res.headers
    assert "x-upstream" not in res.headers, res.headers
    # Other routes are untouched.
    plain = http_request(r.port(), "GET", "/api/x", headers={"X-Secret": "s3cr3t"})
    assert plain.json()["headers"].get("x-secret") == "s3cr3t"
    assert plain.headers.get("x-upstream") == "a"


def test_no_route_is_404_and_reaches_no_upstream(env):
    r, ups = env
    seen = {n: len(u.requests()) for n, u in ups.items()}
    res = http_request(r.port(), "GET", "/nowhere/at/all")
    assert res.status == 404, res
    assert res.headers.get("x-remora-reason") == "no_route", res
    assert {n: len(u.requests()) for n, u in ups.items()} == seen
