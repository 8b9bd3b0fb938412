"""HTTP/2 downstream (h2c, prior knowledge) proxied to an HTTP/1.1 upstream.

Seen as a user would: curl --http2-prior-knowledge and h2load for the
ordinary cases, the raw frame client of helpers.py (H2Conn) where a test
needs to see frames or to send what curl would not. What the upstream
received is read from its JSON log.
"""

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from helpers import (H2_PREFACE, H2Conn, RawConn, free_port, http_request,
                     pattern_sha256, wait_until)

UUIDISH = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CONNECTION_SPECIFIC = ("connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade")


def h2_config(up, dead_port, bulk=None):
    """`bulk` takes h2load's 20000 requests, so that the log of `up` stays short."""
    main_routes = [
        {"name": "bulk", "match": {"prefix": "/h2load"}, "cluster": "bulk"},
        {"name": "hang", "match": {"prefix": "/hang"}, "cluster": "app", "timeout": "500ms"},
        {"name": "dead", "match": {"prefix": "/dead"}, "cluster": "dead"},
        {"name": "all", "match": {"prefix": "/"}, "cluster": "app"},
    ]
    return {
        "listeners": [
            {"name": "main", "route_table": "main"},  # protocol: auto, the default
            {"name": "h2", "route_table": "main", "protocol": "http2"},
            {"name": "h1", "route_table": "main", "protocol": "http1"},
            {"name": "sparse", "route_table": "sparse"},
        ],
        "route_tables": [
            {"name": "main", "routes": main_routes},
            {"name": "sparse", "routes": [{"name": "only", "match": {"prefix": "/only"},
                                           "cluster": "app"}]},
        ],
        "clusters": [
            {"name": "app", "endpoints": [up.addr]},
            {"name": "bulk", "endpoints": [(bulk or up).addr]},
            {"name": "dead", "endpoints": ["127.0.0.1:%d" % dead_port], "connect_timeout": "1s"},
        ],
    }


@pytest.fixture(scope="module")
def env(module_procs):
    up = module_procs.upstream("up")
    bulk = module_procs.upstream("bulk")
    r = module_procs.remora(h2_config(up, free_port(), bulk))
    return r, up


def curl(args, timeout=60):
    cmd = ["curl", "-sS", "--noproxy", "*", "--http2-prior-knowledge", "--max-time",
           str(timeout)] + args
    return subprocess.run(cmd, capture_output=True, timeout=timeout + 10)


def parse_curl_headers(path):
    """curl -D output → (status line, {lower-case name: value})."""
    lines = path.read_text("latin-1").splitlines()
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return lines[0].strip(), headers


def upstream_request(up, target):
    """The one request the upstream logged for `target` (waits for it briefly)."""
    found = wait_until(lambda: [q for q in up.requests() if q["target"] == target],
                       timeout=5, message="upstream request for %s" % target)
    assert len(found) == 1, found
    return found[0]


def assert_no_connection_specific_headers(headers):
    names = [k for k, _ in headers] if isinstance(headers, list) else list(headers)
    bad = [n for n in names if n.lower() in CONNECTION_SPECIFIC]
    assert not bad, "connection-specific fields in an HTTP/2 response: %r" % headers


# ---------------------------------------------------------------- curl

@pytest.mark.parametrize("listener", ["main", "h2"])
def test_curl_get_headers_are_translated(env, tmp_path, listener):
    r, up = env
    port = r.port(listener)
    target = "/curl/get/%s?a=1&b=two" % listener
    hdr, body = tmp_path / "headers", tmp_path / "body"
    res = curl(["-D", str(hdr), "-o", str(body), "-H", "X-Custom-Header: Mixed Case",
                "http://127.0.0.1:%d%s" % (port, target)])
    assert res.returncode == 0, res.stderr
    status_line, headers = parse_curl_headers(hdr)
    assert status_line == "HTTP/2 200", status_line
    assert headers.get("x-upstream") == "up", headers
    assert headers.get("content-type") == "application/json", headers
    assert_no_connection_specific_headers(headers)

    echo = json.loads(body.read_bytes())
    assert (echo["method"], echo["path"], echo["query"]) == ("GET", "/curl/get/%s" % listener,
                                                             "a=1&b=two")
    got = upstream_request(up, target)
    assert got["version"] == "HTTP/1.1"
    names = [n for n, _ in got["raw_headers"]]
    assert all(n == n.lower() for n in names), names
    assert not any(n.startswith(":") for n in names), names
    h = got["headers"]
    assert h.get("host") == "127.0.0.1:%d" % port, h  # :authority → Host
    assert h.get("x-custom-header") == "Mixed Case", h
    assert h.get("x-forwarded-for") == "127.0.0.1", h
    assert h.get("x-forwarded-proto") == "http", h
    assert UUIDISH.match(h.get("x-request-id", "")), h


@pytest.mark.parametrize("listener", ["main", "h2"])
def test_curl_post_body_reaches_the_upstream(env, tmp_path, listener):
    r, up = env
    payload = os.urandom(300 * 1024)  # larger than remora's 64 KiB stream window
    path = tmp_path / "payload"
    path.write_bytes(payload)
    target = "/curl/post/%s" % listener
    hdr, body = tmp_path / "headers", tmp_path / "body"
    res = curl(["-D", str(hdr), "-o", str(body), "--data-binary", "@%s" % path,
                "-H", "Content-Type: application/octet-stream",
                "http://127.0.0.1:%d%s" % (r.port(listener), target)])
    assert res.returncode == 0, res.stderr
    status_line, _ = parse_curl_headers(hdr)
    assert status_line == "HTTP/2 200", status_line
    echo = json.loads(body.read_bytes())
    assert echo["method"] == "POST"
    assert echo["body_bytes"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    got = upstream_request(up, target)
    assert got["complete"] and got["body_bytes"] == len(payload), got
    assert got["headers"].get("content-type") == "application/octet-stream"


def test_auto_listener_still_serves_http1(env):
    r, up = env
    res = http_request(r.port("main"), "GET", "/plain-h1")
    assert res.status == 200, res
    assert res.json()["path"] == "/plain-h1"


def test_http1_listener_answers_the_h2_preface_with_400(env):
    r, up = env
    with RawConn(r.port("h1")) as c:
        c.send(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # + empty SETTINGS
        resp = c.read_response()
        assert resp.status == 400, resp
        assert resp.header("x-remora-reason") == "bad_request", resp
        assert c.closed_by_peer(5)
    res = curl(["-o", os.devnull, "http://127.0.0.1:%d/h1-listener-h2" % r.port("h1")], timeout=10)
    assert res.returncode != 0, "curl spoke h2c to a protocol: http1 listener"
    assert not [q for q in up.requests() if q["target"] == "/h1-listener-h2"]
    # The same listener serves HTTP/1.1.
    assert http_request(r.port("h1"), "GET", "/after-preface").status == 200


def test_h2load_20000_requests_all_succeed(env, module_procs):
    r, up = env
    bulk = next(u for u in module_procs.upstreams if u.name == "bulk")
    res = subprocess.run(["h2load", "-n", "20000", "-c", "10", "-m", "10",
                          "http://127.0.0.1:%d/h2load" % r.port("main")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", res.stdout)
    assert m, res.stdout[-2000:]
    total, started, done, succeeded, failed, errored, timeout = map(int, m.groups())
    assert (done, succeeded, failed, errored, timeout) == (20000, 20000, 0, 0, 0), m.group(0)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", res.stdout)
    assert m and int(m.group(1)) == 20000, res.stdout[-2000:]
    # None lost, none doubled on the way to the upstream.
    with open(bulk.log_path, encoding="utf-8") as f:
        forwarded = sum(1 for line in f if '"event": "request"' in line)
    assert forwarded == 20000, forwarded


def test_64mib_download_sha256(env):
    r, up = env
    n = 64 << 20
    proc = subprocess.Popen(["curl", "-sS", "--noproxy", "*", "--http2-prior-knowledge",
                             "--max-time", "60", "-D", "/dev/stderr", "-o", "-",
                             "http://127.0.0.1:%d/download?bytes=%d" % (r.port("main"), n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    h = hashlib.sha256()
    got = 0
    try:
        while True:
            block = proc.stdout.read(1 << 20)
            if not block:
                break
            h.update(block)
            got += len(block)
        err = proc.stderr.read().decode("latin-1")
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err
    assert "HTTP/2 200" in err, err
    assert got == n
    assert h.hexdigest() == pattern_sha256(n)
    assert "x-body-sha256: %s" % pattern_sha256(n) in err


def test_64mib_upload_sha256(env, tmp_path):
    r, up = env
    path = tmp_path / "upload"
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(64):
            piece = block[i:] + block[:i]
            f.write(piece)
            h.update(piece)
    res = curl(["-o", str(tmp_path / "body"), "--data-binary", "@%s" % path,
                "http://127.0.0.1:%d/upload64" % r.port("main")])
    assert res.returncode == 0, res.stderr
    echo = json.loads((tmp_path / "body").read_bytes())
    assert echo["body_bytes"] == 64 << 20
    assert echo["body_sha256"] == h.hexdigest()


# ---------------------------------------------------------------- raw h2

@pytest.mark.memory_bound
def test_256mib_upload_while_other_streams_complete(procs):
    """One stream uploads 256 MiB; a GET is opened on the same connection every
    8 MiB and must complete while the upload goes on. remora's peak RSS
    (VmHWM) must stay under 48 MiB: it holds at most its windows (1 MiB
    connection, 64 KiB per stream), never the body."""
    up = procs.upstream("up")
    r = procs.remora(h2_config(up, free_port()))
    total = 256 << 20
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with H2Conn(r.port("main"), timeout=30) as c:
        c.wait(lambda: c.settings_acks, 5, "remora's SETTINGS ack")
        sid = c.request("POST", "/upload256", headers=[("content-type", "application/octet-stream"),
                                                       ("content-length", str(total))],
                        end_stream=False)
        st = c.streams[sid]
        sent = 0
        side = {}  # stream id -> upload bytes sent when it was opened
        finished_during_upload = []
        next_side = 0
        deadline = time.monotonic() + 60
        while sent < total:
            assert time.monotonic() < deadline, "256 MiB not sent in 60 s (%d sent)" % sent
            assert not st.done and not c.closed, (st, c.goaway)
            if sent >= next_side:
                side[c.request("GET", "/side?at=%d" % sent)] = sent
                next_side += 8 << 20
            frames = []
            n = min(16384, c.conn_send_window, st.send_window, total - sent)
            while n > 0 and len(frames) < 8:
                off = sent % len(block)
                piece = block[off:off + min(n, len(block) - off)]
                h.update(piece)
                sent += len(piece)
                c.conn_send_window -= len(piece)
                st.send_window -= len(piece)
                flags = b"\x01" if sent == total else b"\x00"
                frames.append(len(piece).to_bytes(3, "big") + b"\x00" + flags
                              + sid.to_bytes(4, "big") + piece)
                n = min(16384, c.conn_send_window, st.send_window, total - sent)
            if frames:
                c.send(b"".join(frames))
                c.pump(0)
            else:
                c.pump(0.5)  # wait for WINDOW_UPDATE
            for s2 in side:
                if c.streams[s2].done and s2 not in finished_during_upload:
                    finished_during_upload.append(s2)
        res = c.response(sid, 30)
        for s2 in side:
            c.response(s2, 10)
    assert res.status == 200, res
    echo = res.json()
    assert echo["body_bytes"] == total
    assert echo["body_sha256"] == h.hexdigest()
    assert len(side) == 32
    assert all(c.streams[s2].status == 200 for s2 in side), [c.streams[s2] for s2 in side]
    # All but the last one or two were answered before the upload ended.
    assert len(finished_during_upload) >= 30, (len(finished_during_upload), side)
    hwm = r.vm_status("VmHWM")
    assert hwm < 48 * 1024, "remora VmHWM %d KiB after a 256 MiB upload (bound 48 MiB)" % hwm


def test_no_route_is_404_with_reason(env):
    r, up = env
    with H2Conn(r.port("sparse")) as c:
        st = c.response(c.request("GET", "/nowhere/h2"))
    assert st.status == 404, st
    assert st.header("x-remora-reason") == "no_route", st
    assert bytes(st.body) == b"no_route\n", st
    assert not [q for q in up.requests() if q["target"] == "/nowhere/h2"]


def test_route_timeout_is_504_and_the_connection_goes_on(env):
    r, up = env
    with H2Conn(r.port("main"), timeout=15) as c:
        start = time.monotonic()
        st = c.response(c.request("GET", "/hang?h2=1"))
        elapsed = time.monotonic() - start
        assert st.status == 504, st
        assert st.header("x-remora-reason") == "upstream_timeout", st
        assert 0.4 < elapsed < 5, elapsed
        again = c.response(c.request("GET", "/after-timeout"))
        assert again.status == 200, again


def test_upstream_down_is_503(env):
    r, up = env
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/dead/h2"))
        assert st.status == 503, st
        assert st.header("x-remora-reason") == "upstream_connect_failure", st
        assert c.response(c.request("GET", "/after-dead")).status == 200


def test_cancelled_download_does_not_break_other_streams(env):
    """RST_STREAM(CANCEL) on a 64 MiB download in progress: the other streams
    on the connection complete intact, new ones work, and remora lets go of
    the cancelled stream's upstream connection."""
    r, up = env
    n_big, n_small = 64 << 20, 4 << 20
    with H2Conn(r.port("main"), timeout=20) as c:
        big = c.request("GET", "/download?bytes=%d&cancel=1" % n_big, keep_body=False)
        small = c.request("GET", "/download?bytes=%d&during=1" % n_small, keep_body=False)
        c.wait(lambda: c.streams[big].body_len >= 1 << 20, message="1 MiB of the big download")
        c.rst(big, "CANCEL")
        cancelled_at = c.streams[big].body_len
        after = c.request("GET", "/download?bytes=%d&after=1" % n_small, keep_body=False)
        for sid in (small, after):
            st = c.response(sid)
            assert st.status == 200 and st.reset is None, st
            assert st.body_len == n_small and st.sha.hexdigest() == pattern_sha256(n_small), st
        assert not c.streams[big].ended, "the cancelled stream was completed anyway"
        assert c.goaway is None and not c.closed
        assert c.streams[big].body_len < n_big
        assert c.response(c.request("GET", "/after-cancel")).status == 200
    big_req = upstream_request(up, "/download?bytes=%d&cancel=1" % n_big)
    wait_until(lambda: any(e.get("conn") == big_req["conn"] for e in up.events("disconnect")),
               timeout=5, message="the cancelled stream's upstream connection closed "
                                  "(cancelled after %d bytes)" % cancelled_at)


def test_body_without_content_length_is_framed_for_the_upstream(env):
    """An h2 request body needs no content-length (gRPC clients send none).
    HEADERS and DATA(END_STREAM) arriving together must still reach the
    HTTP/1.1 upstream as one framed body (chunked or with Content-Length):
    unframed, the body bytes would be read as the next request on the
    upstream connection (request smuggling)."""
    r, up = env
    smuggled = b"GET /smuggled-by-h2 HTTP/1.1\r\nHost: evil.local\r\nX-Smuggled: 1\r\n\r\n"
    with H2Conn(r.port("main")) as c:
        c.wait(lambda: c.settings_acks, 5, "remora's SETTINGS ack")
        for i in range(3):
            sid = c.new_stream_id()
            c.stream(sid)
            heads = c.headers_frames(sid, [(":method", "POST"), (":scheme", "http"),
                                           (":authority", "test.local"),
                                           (":path", "/innocent/%d" % i)])
            # One write: HEADERS + DATA with END_STREAM, no content-length.
            c.send(b"".join(f.serialize() for f in heads)
                   + c.data_frame(sid, smuggled, end_stream=True).serialize())
            st = c.response(sid)
            assert st.status == 200, st
            assert st.json()["body_bytes"] == len(smuggled), st
    time.sleep(0.3)
    reqs = up.requests()
    assert not [q for q in reqs if "smuggled" in q["target"]], \
        "the upstream read an h2 request body as a request: %r" % [
            (q["target"], q["headers"]) for q in reqs if "smuggled" in q["target"]]
    for i in range(3):
        got = upstream_request(up, "/innocent/%d" % i)
        assert got["body_bytes"] == len(smuggled), got


def test_host_field_differing_from_authority(env):
    """:authority routes the request; a host field that says otherwise must
    not be what the upstream sees (RFC 9113 §8.3.1: treat as malformed, or
    forward the :authority as Host)."""
    r, up = env
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/host-vs-authority", authority="a.local",
                                  headers=[("host", "b.local")]))
    if st.reset is not None or (st.status and 400 <= st.status < 500):
        return  # refused as malformed: fine
    assert st.status == 200, st
    got = upstream_request(up, "/host-vs-authority")
    assert got["headers"].get("host") == "a.local", \
        "routed by :authority a.local, forwarded with Host %r" % got["headers"].get("host")


def test_response_has_no_connection_specific_fields(env):
    r, up = env
    with H2Conn(r.port("main")) as c:
        for target in ("/close", "/download?bytes=100000&chunked=1", "/status/200"):
            st = c.response(c.request("GET", target))
            assert st.status == 200, (target, st)
            assert_no_connection_specific_headers(st.headers)
        st = c.response(c.request("GET", "/download?bytes=100000&chunked=1&again=1"))
        assert st.body_len == 100000 and st.sha.hexdigest() == pattern_sha256(100000)


def test_te_trailers_is_kept(env):
    """Issue #4 (translation): connection-specific fields are dropped, but
    `te: trailers` is kept."""
    r, up = env
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/te-trailers", headers=[("te", "trailers")]))
    assert st.status == 200, st
    got = upstream_request(up, "/te-trailers")
    assert got["headers"].get("te") == "trailers", got["headers"]


def test_cookie_crumbs_reach_the_upstream_as_one_field(env):
    """RFC 9113 §8.2.3: a cookie an HTTP/2 client splits into crumbs reaches
    the HTTP/1.1 upstream as one field, "; "-joined in the order sent, with
    the fields between the crumbs intact."""
    r, up = env
    crumbs = ["a=1", "session=" + "s" * 700, "c=3"]  # one crumb past the head's first block
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/cookie-crumbs", headers=[
            ("cookie", crumbs[0]), ("x-between", "kept"), ("cookie", crumbs[1]),
            ("cookie", crumbs[2])]))
    assert st.status == 200, st
    got = upstream_request(up, "/cookie-crumbs")
    cookies = [v for n, v in got["raw_headers"] if n.lower() == "cookie"]
    assert cookies == ["; ".join(crumbs)], got["raw_headers"]
    assert got["headers"].get("x-between") == "kept", got["raw_headers"]


def test_upstream_response_trailers_reach_the_h2_client(env):
    """Issue #4 (translation): trailers carried wherever the protocol allows —
    an HTTP/1.1 chunked trailer becomes an h2 trailing HEADERS frame."""
    r, up = env
    with H2Conn(r.port("main")) as c:
        st = c.response(c.request("GET", "/trailers"))
    assert st.status == 200 and st.ended, st
    assert st.trailers is not None, "no trailers on the h2 stream: %r" % st
    assert st.trailer("x-checksum") == hashlib.sha256(bytes(st.body)).hexdigest(), st


def test_h2_request_trailers_reach_the_upstream(env):
    """Issue #4 (translation): request trailers (HEADERS after DATA) become
    a chunked trailer for the HTTP/1.1 upstream."""
    r, up = env
    with H2Conn(r.port("main")) as c:
        sid = c.request("POST", "/request-trailers", end_stream=False)
        c.send_data(sid, b"some body")
        c.send_headers(sid, [("x-trailer-check", "t1")], end_stream=True)
        st = c.response(sid)
    assert st.status == 200, st
    assert st.json()["body_bytes"] == 9
    got = upstream_request(up, "/request-trailers")
    assert got["trailers"] == {"x-trailer-check": "t1"}, got
